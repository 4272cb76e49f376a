//! The access audit trail on a plaintext cluster (callers are `anonymous`;
//! identities and grants are covered by the TLS tests): every read and write
//! lands in the replicated trail, followers forward theirs, and in strict
//! mode no record is returned unless its read was recorded.

use std::time::Duration;

use holdfast_client::{Consistency, ReadOptions, WriteOptions};
use holdfast_server::AuditMode;
use holdfast_testkit::TestCluster;

use crate::{client, opts, LEADER_TIMEOUT};

#[tokio::test]
async fn reads_and_writes_are_recorded_on_every_replica() -> anyhow::Result<()> {
    let cluster = TestCluster::start(&["a", "b", "c"]).await?;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let c = client(cluster.endpoints());
    let written = c.put("population", "UA-1", "v1", opts("birth")).await?;
    let conflict = WriteOptions { if_revision: Some(0), ..opts("again") };
    assert!(c.put("population", "UA-1", "v2", conflict).await.is_err());
    c.get("population", "UA-1", ReadOptions::default()).await?;
    c.history("population", "UA-1", 0, 10).await?;
    assert!(c.get("population", "UA-404", ReadOptions::default()).await?.is_none());
    // A stale read served by a follower: its event travels to the leader.
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    let f = client(vec![cluster.endpoint(follower)]);
    let stale = ReadOptions { consistency: Consistency::Stale, ..Default::default() };
    cluster.wait_applied(written.revision, Duration::from_secs(10)).await?;
    assert!(f.get("population", "UA-1", stale).await?.is_some());
    c.scan("population", None, 10).await?;

    let trail = c.audit_trail_all("population", "UA-1", false).await?;
    let ops: Vec<(&str, &str)> = trail.iter().map(|e| (e.op.as_str(), e.outcome.as_str())).collect();
    for expected in [("put", "ok"), ("put", "conflict"), ("get", "ok"), ("history", "ok"), ("scan", "ok")] {
        assert!(ops.contains(&expected), "{expected:?} missing from {ops:?}");
    }
    assert!(trail.iter().any(|e| e.op == "get" && e.node == follower), "the follower's read is recorded: {trail:?}");
    // A plaintext node knows no identities: readers are anonymous, and a
    // write carries the actor its client named.
    assert!(trail.iter().filter(|e| e.op != "put").all(|e| e.identity == "anonymous"), "{trail:?}");
    assert!(trail.iter().filter(|e| e.op == "put").all(|e| e.identity == "test"), "{trail:?}");
    let put = trail.iter().find(|e| e.op == "put" && e.outcome == "ok").expect("put");
    assert_eq!(put.revision, written.revision);

    // who-read: reads only, and the previous trail query is among them.
    let who_read = c.audit_trail_all("population", "UA-1", true).await?;
    assert!(who_read.iter().all(|e| e.op != "put"));
    assert!(who_read.iter().any(|e| e.op == "read-audit"), "reading the trail is itself recorded");
    let missing = c.audit_trail_all("population", "UA-404", false).await?;
    assert_eq!(missing.first().map(|e| e.outcome.as_str()), Some("not-found"), "a lookup of an absent id is recorded");

    // Replicated: every node holds the same trail (the digest covers it).
    cluster.wait_converged(Duration::from_secs(10)).await?;
    cluster.shutdown().await
}

/// Stops every node but one follower, which is left without a quorum.
async fn keep_one_follower(cluster: &mut TestCluster, leader: u64) -> anyhow::Result<u64> {
    let survivor = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    for id in cluster.ids() {
        if id != survivor {
            cluster.stop(id).await?;
        }
    }
    Ok(survivor)
}

#[tokio::test]
async fn a_strict_read_fails_when_it_cannot_be_recorded() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(&["a", "b", "c"]).await?;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let c = client(cluster.endpoints());
    let written = c.put("passports", "FX-1", "v1", opts("issue")).await?;
    cluster.wait_applied(written.revision, Duration::from_secs(10)).await?;
    let survivor = keep_one_follower(&mut cluster, leader).await?;
    // The survivor has the record but no quorum to record the read: nothing
    // is returned.
    let s = holdfast_client::Client::builder(vec![cluster.endpoint(survivor)])
        .timeout(Duration::from_secs(30))
        .max_retries(0)
        .build()?;
    let stale = ReadOptions { consistency: Consistency::Stale, ..Default::default() };
    let err = s.get("passports", "FX-1", stale).await.expect_err("unrecorded read refused");
    assert!(err.to_string().contains("audit trail"), "{err}");
    cluster.shutdown().await
}

#[tokio::test]
async fn best_effort_mode_answers_without_waiting_for_the_trail() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start_with(&["a", "b", "c"], |c| c.audit = AuditMode::BestEffort).await?;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let c = client(cluster.endpoints());
    let written = c.put("passports", "FX-2", "v1", opts("issue")).await?;
    cluster.wait_applied(written.revision, Duration::from_secs(10)).await?;
    let survivor = keep_one_follower(&mut cluster, leader).await?;
    let s = client(vec![cluster.endpoint(survivor)]);
    let stale = ReadOptions { consistency: Consistency::Stale, ..Default::default() };
    assert!(s.get("passports", "FX-2", stale).await?.is_some());
    cluster.shutdown().await
}

/// A strict-audited linearizable get on the leader uses its audit commit as
/// its leadership confirmation. Each get leaves an event naming exactly the
/// revision it returned, and no get misses a write acknowledged before it
/// began, even with a writer racing the reader on the same record.
#[tokio::test]
async fn gets_confirmed_by_their_audit_commit_are_linearizable_and_recorded() -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let cluster = TestCluster::start_with(&["a", "b", "c"], |c| c.metrics_listen = Some("127.0.0.1:0".into())).await?;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let c = client(cluster.endpoints());
    let first = c.put("population", "UA-7", "v1", opts("birth")).await?;
    let got = c.get("population", "UA-7", ReadOptions::default()).await?.expect("written");
    assert_eq!((got.revision, got.value.as_deref()), (first.revision, Some(&b"v1"[..])));
    let second = c.put("population", "UA-7", "v2", opts("move")).await?;
    let got = c.get("population", "UA-7", ReadOptions::default()).await?.expect("written");
    assert_eq!((got.revision, got.value.as_deref()), (second.revision, Some(&b"v2"[..])));
    let gets: Vec<u64> = c
        .audit_trail_all("population", "UA-7", true)
        .await?
        .into_iter()
        .filter(|e| e.op == "get")
        .map(|e| e.revision)
        .collect();
    assert_eq!(gets, vec![first.revision, second.revision], "one event per get, naming what it returned");

    // A writer and a reader race on one record.
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let c = c.clone();
        let acked = acked.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let written = c.put("population", "UA-race", format!("w{i}"), opts("race")).await?;
                acked.fetch_max(written.revision, Ordering::SeqCst);
            }
            anyhow::Ok(())
        })
    };
    let mut returned = Vec::new();
    while !writer.is_finished() {
        let floor = acked.load(Ordering::SeqCst);
        if let Some(record) = c.get("population", "UA-race", ReadOptions::default()).await? {
            assert!(record.revision >= floor, "a get returned {} after {floor} was acknowledged", record.revision);
            returned.push(record.revision);
        }
    }
    writer.await??;
    let trail = c.audit_trail_all("population", "UA-race", true).await?;
    for revision in &returned {
        assert!(
            trail.iter().any(|e| e.op == "get" && e.outcome == "ok" && e.revision == *revision),
            "the get that returned {revision} is recorded"
        );
    }
    assert!(!returned.is_empty(), "the reader read while the writer wrote");
    // The gets were answered on their audit commits (no extra round), unless
    // leadership moved meanwhile.
    if cluster.wait_for_leader(LEADER_TIMEOUT).await? == leader {
        let addr = cluster.node(leader).and_then(|n| n.metrics_addr()).expect("metrics_listen was set");
        let metrics = crate::t50_health::http(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await?;
        let answered =
            crate::t50_health::sample(&metrics, "holdfast_gets_confirmed_by_audit_total{result=\"answered\"}");
        assert!(answered.is_some_and(|n| n >= 2.0), "{metrics}");
    }
    cluster.shutdown().await
}
