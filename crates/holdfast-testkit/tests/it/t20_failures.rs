//! Failures: leader loss, every node restarting, a follower that missed so
//! much that it needs a snapshot, and a whole region lost.

use std::time::{Duration, Instant};

use holdfast_client::ReadOptions;
use holdfast_testkit::TestCluster;

use crate::{client, opts, LEADER_TIMEOUT};

#[tokio::test]
async fn leader_loss_elects_new_leader_and_keeps_acked_writes() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(&["ua-kyiv", "ua-lviv", "eu-frankfurt"]).await?;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let c = client(cluster.endpoints());
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push((
            format!("P-{i}"),
            c.put("passports", format!("P-{i}"), format!("v{i}"), opts("issue")).await?.revision,
        ));
    }
    let stopped_at = Instant::now();
    cluster.stop(leader).await?;
    let new_leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    assert_ne!(new_leader, leader);
    // Election timeout is at most 600 ms in tests; allow scheduling slack.
    assert!(stopped_at.elapsed() < Duration::from_secs(10), "new leader took {:?}", stopped_at.elapsed());
    for (id, revision) in &acked {
        let record = c.get("passports", id, ReadOptions::default()).await?.expect("acknowledged write survives");
        assert_eq!(record.revision, *revision);
    }
    c.put("passports", "P-after", "v", opts("issue")).await?;
    cluster.shutdown().await
}

#[tokio::test]
async fn every_node_restarts_with_data_and_history() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(&["a", "b", "c"]).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let c = client(cluster.endpoints());
    for i in 0..5 {
        c.put("vehicles", "AA1234BB", format!("owner-{i}"), opts("re-registration")).await?;
    }
    let before = c.history("vehicles", "AA1234BB", 0, 100).await?;
    for id in cluster.ids() {
        cluster.stop(id).await?;
    }
    for id in cluster.ids() {
        cluster.restart(id).await?;
    }
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let after = c.history("vehicles", "AA1234BB", 0, 100).await?;
    assert_eq!(before.revisions, after.revisions);
    c.put("vehicles", "AA1234BB", "owner-5", opts("sale")).await?;
    cluster.shutdown().await
}

#[tokio::test]
async fn lagging_follower_catches_up_by_snapshot_after_log_purge() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(&["a", "b", "c"]).await?;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    cluster.stop(lagging).await?;
    let c = client(cluster.endpoints());
    // Test nodes snapshot every 500 entries and keep 50: 700 writes purge
    // the log past what the stopped follower has.
    let mut last = 0;
    for i in 0..700 {
        last = c.put("idp", format!("person-{i}"), "shelter-7", opts("registered")).await?.revision;
    }
    let leader_node = cluster.node(leader).expect("leader runs");
    holdfast_testkit::wait_until("the leader to purge its log", LEADER_TIMEOUT, || async {
        leader_node.raft().metrics().borrow().purged.is_some().then_some(())
    })
    .await?;
    cluster.restart(lagging).await?;
    cluster.wait_applied(last, Duration::from_secs(60)).await?;
    let follower = cluster.node(lagging).expect("restarted");
    assert!(follower.raft().metrics().borrow().snapshot.is_some(), "follower installed a snapshot");
    cluster.wait_converged(Duration::from_secs(30)).await?;
    cluster.shutdown().await
}

#[tokio::test]
async fn losing_a_whole_region_keeps_the_reference_cluster_writable() -> anyhow::Result<()> {
    let regions = ["ua-kyiv", "ua-kyiv", "ua-lviv", "eu-frankfurt", "eu-amsterdam"];
    let mut cluster = TestCluster::start(&regions).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let c = client(cluster.endpoints());
    let before = c.put("population", "UA-9", "before", opts("birth")).await?;
    // Nodes 1 and 2 are ua-kyiv.
    cluster.stop(1).await?;
    cluster.stop(2).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let after = c.put("population", "UA-9", "after", opts("update")).await?;
    assert!(after.revision > before.revision);
    let record = c.get("population", "UA-9", ReadOptions::default()).await?.expect("present");
    assert_eq!(record.value.as_deref(), Some(&b"after"[..]));
    cluster.shutdown().await
}
