//! The reference topology as real `holdfast serve` processes: kill -9 of the
//! leader, SIGTERM draining with exit 0, restart with data, bad config.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use holdfast_client::{ReadOptions, WriteOptions};
use holdfast_testkit::process::{reference_topology, workspace_binary, NodeOptions, ProcessCluster};

const TIMEOUT: Duration = Duration::from_secs(30);

fn holdfast() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_holdfast"))
}

#[tokio::test]
async fn reference_cluster_survives_kill_of_leader_and_term_drains() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster =
        ProcessCluster::configure(&holdfast(), dir.path(), &reference_topology(), None, |_| NodeOptions::default())?;
    cluster.start_all()?;
    let leader = cluster.wait_for_leader(TIMEOUT).await?;
    let client = cluster.client_builder().timeout(Duration::from_secs(5)).build()?;
    let opts = || WriteOptions { reason: "test".into(), ..Default::default() };
    let before = client.put("population", "UA-1", "before", opts()).await?;

    // Write straight after the kill: the client must ride out the election.
    cluster.kill(leader)?;
    let after = client.put("population", "UA-1", "after", opts()).await?;
    assert!(after.revision > before.revision);
    let new_leader = cluster.wait_for_leader(TIMEOUT).await?;
    assert_ne!(new_leader, leader);

    // SIGTERM drains and exits 0; the node comes back with its data.
    let follower = reference_topology().iter().map(|s| s.id).find(|id| *id != new_leader && *id != leader).unwrap_or(1);
    assert_eq!(cluster.stop(follower).await?, Some(0), "SIGTERM exits 0");
    cluster.start(leader)?;
    cluster.start(follower)?;
    let endpoint = cluster.node(follower).map(|n| n.addr.clone()).unwrap_or_default();
    holdfast_testkit::wait_until("the restarted node to catch up", TIMEOUT, || async {
        let status = holdfast_testkit::process::status_of(&endpoint, cluster.client_tls()).await?;
        (status.applied_revision >= after.revision).then_some(())
    })
    .await?;
    let record = client.get("population", "UA-1", ReadOptions::default()).await?.expect("present");
    assert_eq!(record.value.as_deref(), Some(&b"after"[..]));
    cluster.stop_all().await?;
    Ok(())
}

#[test]
fn bad_config_exits_non_zero_with_one_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.toml");
    let out = Command::new(holdfast()).args(["serve", "--config"]).arg(&missing).output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "id = 1\nlisten = \"127.0.0.1:0\"\ndata_dir = \"x\"\nplacement = { region = \"a\" }\nunknown_key = 3\n",
    )?;
    let out = Command::new(holdfast()).args(["serve", "--config"]).arg(&bad).output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown_key") || stderr.contains("unknown field"), "{stderr}");
    assert!(!dir.path().join("x").exists(), "a refused config creates no data dir");

    // Neither [tls] nor insecure_transport: refused, saying which to set.
    let no_transport = dir.path().join("no-transport.toml");
    std::fs::write(
        &no_transport,
        "id = 1\nlisten = \"127.0.0.1:0\"\ndata_dir = \"y\"\ninsecure_plaintext = true\nplacement = { region = \"a\" }\n",
    )?;
    let out = Command::new(holdfast()).args(["serve", "--config"]).arg(&no_transport).output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("[tls]") && stderr.contains("insecure_transport"), "{stderr}");
    assert!(!dir.path().join("y").exists(), "a refused config creates no data dir");
    let _ = workspace_binary("holdfast")?;
    Ok(())
}
