//! Request semantics: idempotent retries, conditional writes, bad input.

use holdfast_client::{ClientError, Outcome, ReadOptions, WriteOptions};
use holdfast_testkit::TestCluster;
use holdfast_types::limits::{RECORD_ID_BYTES_MAX, REGISTRY_NAME_BYTES_MAX, VALUE_BYTES_MAX};

use crate::{client, opts, LEADER_TIMEOUT};

#[tokio::test]
async fn a_retried_request_id_applies_once() -> anyhow::Result<()> {
    let cluster = TestCluster::start(&["a", "b", "c"]).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let c = client(cluster.endpoints());
    let options = WriteOptions { request_id: Some("req-42".into()), ..opts("issue") };
    let first = c.put("passports", "FX1", "v1", options.clone()).await?;
    assert!(!first.duplicate);
    // The same id again, even with a different value: the first result, no new revision.
    let retry = c.put("passports", "FX1", "v2", options).await?;
    assert!(retry.duplicate);
    assert_eq!(retry.revision, first.revision);
    let history = c.history("passports", "FX1", 0, 10).await?;
    assert_eq!(history.revisions.len(), 1, "applied once");
    assert_eq!(history.revisions[0].value.as_deref(), Some(&b"v1"[..]));
    cluster.shutdown().await
}

#[tokio::test]
async fn conditional_writes_compare_revisions() -> anyhow::Result<()> {
    let cluster = TestCluster::start(&["a", "b", "c"]).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let c = client(cluster.endpoints());
    let must_not_exist = WriteOptions { if_revision: Some(0), ..opts("create") };
    let created = c.put("land", "parcel-7", "owner-a", must_not_exist.clone()).await?;
    let err = c.put("land", "parcel-7", "owner-b", must_not_exist).await.expect_err("already exists");
    match &err {
        ClientError::CasConflict { current_revision, .. } => assert_eq!(*current_revision, Some(created.revision)),
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(err.outcome(), Outcome::NotApplied);
    let stale = WriteOptions { if_revision: Some(created.revision + 1000), ..opts("sale") };
    assert!(matches!(c.put("land", "parcel-7", "owner-c", stale).await, Err(ClientError::CasConflict { .. })));
    let fresh = WriteOptions { if_revision: Some(created.revision), ..opts("sale") };
    let updated = c.put("land", "parcel-7", "owner-d", fresh).await?;
    let record = c.get("land", "parcel-7", ReadOptions::default()).await?.expect("present");
    assert_eq!(record.revision, updated.revision);
    assert_eq!(record.value.as_deref(), Some(&b"owner-d"[..]));
    cluster.shutdown().await
}

#[tokio::test]
async fn bad_input_is_refused_with_the_limit_named_and_writes_nothing() -> anyhow::Result<()> {
    let cluster = TestCluster::start(&["a", "b", "c"]).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let c = client(cluster.endpoints());
    let marker = c.put("population", "UA-1", "v", opts("birth")).await?;

    let cases: Vec<(&str, Vec<u8>, Vec<u8>, &str)> = vec![
        ("population", b"UA-2".to_vec(), vec![0; VALUE_BYTES_MAX + 1], "VALUE_BYTES_MAX"),
        ("population", vec![b'x'; RECORD_ID_BYTES_MAX + 1], b"v".to_vec(), "RECORD_ID_BYTES_MAX"),
        ("population", Vec::new(), b"v".to_vec(), "record id is empty"),
        ("Population", b"UA-2".to_vec(), b"v".to_vec(), "malformed"),
        ("", b"UA-2".to_vec(), b"v".to_vec(), "empty"),
    ];
    let long_registry = "r".repeat(REGISTRY_NAME_BYTES_MAX + 1);
    let mut all = cases;
    all.push((long_registry.as_str(), b"UA-2".to_vec(), b"v".to_vec(), "REGISTRY_NAME_BYTES_MAX"));
    for (registry, id, value, expected) in all {
        let err = c.put(registry, id, value, opts("bad")).await.expect_err("refused");
        assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains(expected), "{err} should mention {expected}");
        assert_eq!(err.outcome(), Outcome::NotApplied);
    }
    let too_long_reason = WriteOptions { reason: "x".repeat(10_000), ..Default::default() };
    assert!(matches!(c.put("population", "UA-3", "v", too_long_reason).await, Err(ClientError::InvalidArgument(_))));
    assert!(matches!(c.history("population", "UA-1", 0, 5000).await, Err(ClientError::InvalidArgument(_))));

    // Nothing was written: no record, no revision, and no audit event (the
    // marker's own put is the only event the registry holds).
    for id in ["UA-2", "UA-3"] {
        assert!(c.get("population", id, ReadOptions::default()).await?.is_none(), "{id} was not written");
    }
    let history = c.history("population", "UA-1", 0, 10).await?;
    assert_eq!(history.revisions.iter().map(|r| r.revision).collect::<Vec<_>>(), vec![marker.revision]);
    let trail = c.audit_trail_all("population", "UA-2", false).await?;
    assert!(trail.iter().all(|e| e.op != "put"), "refused writes leave no put event: {trail:?}");
    cluster.shutdown().await
}
