//! A healthy cluster: election, replication to every node, reads of every
//! kind, history, scans.

use holdfast_client::{Consistency, ReadOptions};
use holdfast_testkit::TestCluster;

use crate::{client, opts, LEADER_TIMEOUT};

#[tokio::test]
async fn three_nodes_elect_replicate_and_read_everywhere() -> anyhow::Result<()> {
    let cluster = TestCluster::start(&["ua-kyiv", "ua-lviv", "eu-frankfurt"]).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let c = client(cluster.endpoints());

    let first = c.put("population", "UA-1", "v1", opts("birth")).await?;
    let second = c.put("population", "UA-1", "v2", opts("name change")).await?;
    assert!(second.revision > first.revision, "revisions increase");
    c.put("population", "UA-2", "other", opts("birth")).await?;
    let deleted = c.delete("population", "UA-2", opts("death")).await?;

    // Every node applies it; then every node answers a stale read with it,
    // and a linearizable read through any node's client finds the leader.
    cluster.wait_applied(deleted.revision, LEADER_TIMEOUT).await?;
    for endpoint in cluster.endpoints() {
        let pinned = c.on_endpoint(&endpoint)?;
        let stale = ReadOptions { consistency: Consistency::Stale, at_revision: None };
        let record = pinned.get("population", "UA-1", stale).await?.expect("replicated");
        assert_eq!(record.value.as_deref(), Some(&b"v2"[..]), "stale read on {endpoint}");
        assert!(pinned.get("population", "UA-2", stale).await?.is_none(), "delete replicated to {endpoint}");
        let linear = client(vec![endpoint.clone()]).get("population", "UA-1", ReadOptions::default()).await?;
        assert_eq!(linear.expect("present").revision, second.revision);
    }

    // The past stays readable, with who and why.
    let past =
        c.get("population", "UA-1", ReadOptions { at_revision: Some(first.revision), ..Default::default() }).await?;
    assert_eq!(past.expect("past revision").value.as_deref(), Some(&b"v1"[..]));
    let history = c.history("population", "UA-2", 0, 10).await?;
    assert_eq!(history.revisions.len(), 2);
    assert!(history.revisions[1].deleted, "tombstone kept in history");
    assert_eq!(history.revisions[0].reason, "birth");
    assert_eq!(history.revisions[1].actor, "test");

    let scan = c.scan("population", None, 10).await?;
    let ids: Vec<&[u8]> = scan.entries.iter().map(|e| e.record_id.as_slice()).collect();
    assert_eq!(ids, vec![&b"UA-1"[..]], "scan shows live records only");
    cluster.shutdown().await
}

#[tokio::test]
async fn history_and_scan_paginate() -> anyhow::Result<()> {
    let cluster = TestCluster::start(&["a", "b", "c"]).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let c = client(cluster.endpoints());
    for i in 0..7 {
        c.put("land", "parcel-1", format!("owner-{i}"), opts("sale")).await?;
        c.put("land", format!("parcel-{}", i + 10), "x", opts("survey")).await?;
    }
    let mut revisions = Vec::new();
    let mut after = 0;
    loop {
        let page = c.history("land", "parcel-1", after, 3).await?;
        revisions.extend(page.revisions.iter().map(|r| r.revision));
        match page.next_after_revision {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(revisions.len(), 7);
    assert!(revisions.windows(2).all(|w| w[0] < w[1]));

    let mut seen = 0;
    let mut token: Option<Vec<u8>> = None;
    loop {
        let page = c.scan("land", token.as_deref(), 3).await?;
        seen += page.entries.len();
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen, 8);
    cluster.shutdown().await
}
