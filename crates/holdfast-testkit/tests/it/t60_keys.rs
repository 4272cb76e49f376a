//! Data key rotation under load: new writes use the new key at once, older
//! revisions are re-sealed in the background, the old key is retired once
//! nothing needs it, and a leader killed mid-way does not stop the work.

use std::time::Duration;

use holdfast_client::{Client, KeyStatus, ReadOptions};
use holdfast_testkit::{wait_until, TestCluster};

use crate::{client, opts, LEADER_TIMEOUT};

const RESEAL_TIMEOUT: Duration = Duration::from_secs(90);

async fn resealed(c: &Client) -> Option<KeyStatus> {
    let status = c.key_status().await.ok()?;
    (status.revisions_to_reseal == 0 && status.keys.len() == 1).then_some(status)
}

#[tokio::test]
async fn rotation_under_load_reseals_everything_and_survives_leader_loss() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(&["ua-kyiv", "ua-lviv", "eu-frankfurt"]).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let c = client(cluster.endpoints());
    for i in 0..150 {
        c.put("population", format!("UA-{i}"), format!("v{i}"), opts("birth")).await?;
    }
    let before = c.key_status().await?;
    assert!(before.encrypted);
    assert_eq!(before.current_key_id, 1);

    // Writers keep going while the key rotates.
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            for i in 150..300 {
                c.put("population", format!("UA-{i}"), format!("v{i}"), opts("birth")).await?;
            }
            anyhow::Ok(())
        })
    };
    let rotated = c.rotate_key().await?;
    assert_eq!(rotated.current_key_id, 2);
    writer.await??;

    // Kill the leader while re-sealing is under way; the next leader resumes.
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    cluster.stop(leader).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let done = wait_until("re-sealing to finish and key 1 to be retired", RESEAL_TIMEOUT, || resealed(&c)).await?;
    assert_eq!(done.current_key_id, 2);
    assert_eq!(done.keys[0].id, 2);
    assert!(done.keys[0].revisions >= 300);

    cluster.restart(leader).await?;
    let last = c.put("population", "UA-final", "end", opts("check")).await?;
    cluster.wait_applied(last.revision, LEADER_TIMEOUT).await?;
    for i in 0..300 {
        let record = c.get("population", format!("UA-{i}"), ReadOptions::default()).await?.expect("present");
        assert_eq!(record.value, Some(format!("v{i}").into_bytes()));
    }
    // The restarted node converged on the re-sealed state.
    cluster.wait_converged(LEADER_TIMEOUT).await?;
    cluster.shutdown().await
}
