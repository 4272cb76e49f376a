//! Failures: leader loss, every node restarting, a follower that missed so
//! much that it needs a snapshot, a whole region lost, and a leader cut off
//! with a write in flight.

use std::time::{Duration, Instant};

use holdfast_client::ReadOptions;
use holdfast_proto::v1 as pb;
use holdfast_proto::v1::registry_client::RegistryClient;
use holdfast_server::error::NOT_PROPOSED_METADATA;
use holdfast_testkit::process::{
    node_endpoint, reference_topology, status_of, workspace_binary, NodeOptions, NodeSpec, ProcessCluster,
};
use holdfast_testkit::{wait_until, TestCluster};
use holdfast_types::NodeId;
use openraft::async_runtime::WatchReceiver;

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
        leader_node.raft().metrics().borrow_watched().purged.is_some().then_some(())
    })
    .await?;
    cluster.restart(lagging).await?;
    cluster.wait_applied(last, Duration::from_secs(60)).await?;
    let follower = cluster.node(lagging).expect("restarted");
    assert!(follower.raft().metrics().borrow_watched().snapshot.is_some(), "follower installed a snapshot");
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

/// A leader appends a write, is cut off before any follower has it, and the
/// followers elect a new leader whose log replaces the entry. The old leader
/// must not tell the client "not proposed" (which promises the write was
/// not applied): a later leader holding a copy of such an entry could still
/// commit it. Real node processes: the followers are killed, the leader
/// appends, is frozen (SIGSTOP) while the followers restart and elect, and
/// is thawed to find its entry replaced.
#[tokio::test]
async fn a_write_cut_off_by_a_new_leader_is_never_reported_as_not_proposed() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    // Three voters in three regions.
    let specs: Vec<NodeSpec> = reference_topology().into_iter().filter(|s| [1, 3, 4].contains(&s.id)).collect();
    let binary = workspace_binary("holdfast")?;
    let mut cluster = ProcessCluster::configure(&binary, root.path(), &specs, None, |_| NodeOptions::default())?;
    cluster.start_all()?;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let tls = cluster.client_tls().cloned();
    let addrs: std::collections::BTreeMap<NodeId, String> =
        cluster.nodes().map(|n| (n.spec.id, n.addr.clone())).collect();
    let addr = |id: NodeId| addrs[&id].clone();
    let followers: Vec<NodeId> = specs.iter().map(|s| s.id).filter(|id| *id != leader).collect();
    // A first write commits: the cluster has its data key and serves.
    let c = cluster.client_builder().timeout(Duration::from_secs(5)).build()?;
    c.put("passports", "P-first", "v", opts("issue")).await?;

    // Killed, not paused: a paused process still receives into its socket
    // buffers and would find the entry there when thawed.
    for f in &followers {
        cluster.kill(*f)?;
    }
    let leader_addr = addr(leader);
    let appended_before = status_of(&leader_addr, tls.as_ref()).await.expect("leader answers").last_log_index;
    let mut registry = RegistryClient::new(node_endpoint(&leader_addr, tls.as_ref())?.connect().await?);
    let put = tokio::spawn(async move {
        let options = pb::WriteOptions { request_id: "cut-off-1".into(), ..Default::default() };
        let request = pb::PutRequest {
            registry: "passports".into(),
            record_id: b"P-cut-off".to_vec(),
            value: b"v".to_vec(),
            options: Some(options),
        };
        registry.put(request).await
    });
    wait_until("the leader appends the write to its own log", LEADER_TIMEOUT, || async {
        let status = status_of(&leader_addr, tls.as_ref()).await?;
        (status.last_log_index > appended_before).then_some(())
    })
    .await?;

    cluster.pause(leader)?;
    for f in &followers {
        cluster.start(*f)?;
    }
    let follower_addrs: Vec<String> = followers.iter().map(|f| addr(*f)).collect();
    wait_until("a follower is elected", LEADER_TIMEOUT, || async {
        for a in &follower_addrs {
            if status_of(a, tls.as_ref()).await.is_some_and(|s| s.role == "leader") {
                return Some(());
            }
        }
        None
    })
    .await?;
    cluster.resume(leader)?;

    let status = put.await?.expect_err("the entry is replaced, so the write cannot have been acknowledged");
    assert!(
        status.metadata().get(NOT_PROPOSED_METADATA).is_none(),
        "a proposed write was reported as not proposed: {status:?}"
    );
    // Unknown outcome: "leadership moved", or, on a machine so loaded that
    // the election outlasts the proposal timeout, a timeout.
    assert!(
        matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
            && status.message().contains("may or may not be applied"),
        "{status:?}"
    );
    cluster.stop_all().await
}

/// A snapshot transfer that ends short of the length it offered, or whose
/// offer does not decode, is refused and installs nothing; the follower
/// keeps following.
#[tokio::test]
async fn a_short_or_malformed_snapshot_transfer_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    use holdfast_proto::v1::raft_client::RaftClient;
    use holdfast_proto::v1::RaftMessage;
    use holdfast_types::codec::encode;
    use holdfast_types::{SnapshotMeta, SnapshotOffer};

    let cluster = TestCluster::start(&["ua-kyiv", "ua-lviv", "eu-frankfurt"]).await?;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let c = client(cluster.endpoints());
    c.put("idp", "person-1", "shelter-3", opts("registered")).await?;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    let node = cluster.node(follower).expect("follower runs");
    let (vote, meta) = {
        let m = node.raft().metrics().borrow_watched().clone();
        (m.vote, SnapshotMeta { last_log_id: m.last_applied, last_membership: (*m.membership_config).clone() })
    };
    let mut raft = RaftClient::connect(format!("http://{}", cluster.endpoint(follower))).await?;

    let junk = vec![RaftMessage { payload: b"not an offer".to_vec() }];
    let refused = raft.install_snapshot(futures::stream::iter(junk)).await.expect_err("malformed offer");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");

    let offer = encode(&SnapshotOffer { vote, meta, len: 1000 })?;
    let short = vec![RaftMessage { payload: offer }, RaftMessage { payload: vec![0; 10] }];
    let refused = raft.install_snapshot(futures::stream::iter(short)).await.expect_err("short transfer");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
    assert!(refused.message().contains("10 of 1000 bytes"), "{refused}");

    assert!(node.raft().metrics().borrow_watched().snapshot.is_none(), "nothing was installed");
    let after = c.put("idp", "person-2", "shelter-4", opts("registered")).await?;
    cluster.wait_applied(after.revision, Duration::from_secs(10)).await?;
    cluster.shutdown().await
}
