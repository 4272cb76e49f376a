//! Encryption at rest as an attacker with the disks would see it: no record
//! id or value appears in any file a node writes (RocksDB files, WAL,
//! snapshots and the files they are sent as, logs), and a node given the
//! wrong master key refuses to start without changing a byte of its data
//! dir.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use holdfast_client::WriteOptions;
use holdfast_testkit::process::{reference_topology, NodeOptions, ProcessCluster};
use sha2::{Digest, Sha256};

fn holdfast() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_holdfast"))
}

/// Every file under `root` with its bytes, except the key and config files
/// the test itself wrote.
fn node_files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.extension().is_some_and(|e| e == "toml" || e == "key") {
                files.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    files
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Runs three nodes, writes marked records (enough for snapshots and log
/// purges) while one of them is stopped, restarts it and waits until it is
/// sent a snapshot, stops them all, and counts the marker in their files,
/// raw and hex.
async fn marker_hits(plaintext: bool) -> anyhow::Result<(usize, usize)> {
    let dir = tempfile::tempdir()?;
    let specs: Vec<_> = reference_topology().into_iter().filter(|s| [1, 3, 4].contains(&s.id)).collect();
    let options = |_| NodeOptions {
        insecure_plaintext: plaintext,
        extra_toml: "[raft]\nsnapshot_every_entries = 40\nlogs_kept_after_snapshot = 10\n".into(),
        ..Default::default()
    };
    let mut cluster = ProcessCluster::configure(&holdfast(), dir.path(), &specs, None, options)?;
    cluster.start_all()?;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    // A follower misses the writes, so that it is sent a snapshot: the
    // file streamed from the leader's checkpoint is searched too.
    let lagging = specs.iter().map(|s| s.id).find(|id| *id != leader).expect("a follower");
    cluster.stop(lagging).await?;
    let client = cluster.client_builder().timeout(Duration::from_secs(5)).build()?;
    let marker = format!("QXMARKER{}", holdfast_client::new_request_id().replace('-', ""));
    for i in 0..120 {
        let id = format!("{marker}-id-{i}");
        let value = format!("{{\"name\":\"{marker}-value-{i}\"}}");
        client.put("population", &id, value, WriteOptions::default()).await?;
    }
    cluster.start(lagging)?;
    let snapshots = cluster.node(lagging).expect("configured").data_dir.join("snapshots");
    let received = || std::fs::read_dir(&snapshots).into_iter().flatten().flatten().map(|e| e.path());
    holdfast_testkit::wait_until("the lagging node to receive a snapshot", Duration::from_secs(60), || {
        let found = received().any(|p| p.extension().is_some_and(|e| e == "snap"));
        async move { found.then_some(()) }
    })
    .await?;
    cluster.stop_all().await?;
    let files = node_files(dir.path());
    // Snapshots are checkpoints (table files under `snapshots/*.ckpt/`),
    // streamed into a file when sent.
    let in_checkpoint = |p: &Path| p.ancestors().any(|a| a.extension().is_some_and(|e| e == "ckpt"));
    assert!(files.keys().any(|p| in_checkpoint(p)), "snapshots were taken");
    assert!(files.keys().any(|p| p.extension().is_some_and(|e| e == "log")), "logs are searched too");
    let hex_marker = hex::encode(marker.as_bytes());
    let raw = files.values().map(|b| count(b, marker.as_bytes())).sum();
    let hexed = files.values().map(|b| count(b, hex_marker.as_bytes())).sum();
    Ok((raw, hexed))
}

#[tokio::test]
async fn no_record_id_or_value_reaches_any_file_and_the_search_can_fail() -> anyhow::Result<()> {
    let (raw, hexed) = marker_hits(false).await?;
    assert_eq!((raw, hexed), (0, 0), "marker found in an encrypted node's files");
    // Control: the same search over a plaintext cluster finds the marker.
    let (raw, _) = marker_hits(true).await?;
    assert!(raw > 0, "the search must be able to find plaintext");
    Ok(())
}

fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, [u8; 32]> {
    node_files(dir).into_iter().map(|(p, bytes)| (p, Sha256::digest(&bytes).into())).collect()
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let specs: Vec<_> = reference_topology().into_iter().filter(|s| [1, 3, 4].contains(&s.id)).collect();
    let mut cluster = ProcessCluster::configure(&holdfast(), dir.path(), &specs, None, |_| NodeOptions::default())?;
    cluster.start_all()?;
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let client = cluster.client_builder().timeout(Duration::from_secs(5)).build()?;
    client.put("passports", "FX1", "v", WriteOptions::default()).await?;
    cluster.stop_all().await?;

    let node = cluster.node(3).expect("node 3");
    let before = fingerprint(&node.data_dir);
    let wrong_key = dir.path().join("wrong.key");
    std::fs::write(&wrong_key, "ab".repeat(32))?;
    let config = std::fs::read_to_string(&node.config_path)?;
    let bad_config = dir.path().join("n3-wrong-key.toml");
    let key_line = config.lines().find(|l| l.starts_with("key_file")).expect("key_file line");
    std::fs::write(
        &bad_config,
        config.replace(key_line, &format!("key_file = {:?}", wrong_key.display().to_string())),
    )?;

    let out = Command::new(holdfast()).args(["serve", "--config"]).arg(&bad_config).output()?;
    assert!(!out.status.success(), "a node with the wrong key must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("master key does not match"), "{stderr}");
    assert_eq!(fingerprint(&node.data_dir), before, "no file in the data dir changed");
    Ok(())
}
