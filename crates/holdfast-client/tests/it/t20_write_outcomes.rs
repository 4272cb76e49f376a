//! Write retries and outcomes: same request id on every attempt, unknown vs not applied.

use std::collections::VecDeque;
use std::time::Duration;

use holdfast_client::{Client, ClientError, Outcome, WriteOptions, CURRENT_REVISION_METADATA};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::fake::{FakeNode, Script};
use crate::{client_for, closed_addr};

async fn node_failing_with(failures: Vec<Status>) -> FakeNode {
    FakeNode::start(1, Script { write_failures: VecDeque::from(failures), ..Script::default() }).await
}

#[tokio::test]
async fn unknown_outcomes_are_retried_with_the_callers_request_id() {
    let node = node_failing_with(vec![Status::deadline_exceeded("slow commit"), Status::internal("hiccup")]).await;
    let client = client_for(&[&node.addr], 3);
    let options = WriteOptions { request_id: Some("fixed-id".to_owned()), ..WriteOptions::default() };

    let written = client.put("population", "UA-1", "v", options).await.expect("third attempt succeeds");

    assert_eq!(written.request_id, "fixed-id");
    assert_eq!(node.write_request_ids(), ["fixed-id"; 3]);
}

#[tokio::test]
async fn unknown_on_every_attempt_is_reported_unknown() {
    let node = node_failing_with(vec![Status::unavailable("busy"); 10]).await;
    let client = client_for(&[&node.addr], 2);

    let error = client.put("population", "UA-1", "v", WriteOptions::default()).await.expect_err("every attempt fails");

    assert!(matches!(error, ClientError::RetriesExhausted { attempts: 3, .. }), "{error:?}");
    assert_eq!(error.outcome(), Outcome::Unknown);
    let ids = node.write_request_ids();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| id == &ids[0]));
}

#[tokio::test]
async fn cas_conflict_is_final_and_carries_the_current_revision() {
    let mut metadata = MetadataMap::new();
    metadata.insert(CURRENT_REVISION_METADATA, "9".parse().expect("ASCII"));
    let conflict = Status::with_metadata(Code::Aborted, "revision mismatch", metadata);
    let node = node_failing_with(vec![conflict]).await;
    let client = client_for(&[&node.addr], 3);
    let options = WriteOptions { if_revision: Some(4), ..WriteOptions::default() };

    let error = client.put("population", "UA-1", "v", options).await.expect_err("conflict");

    assert!(matches!(error, ClientError::CasConflict { current_revision: Some(9), .. }));
    assert_eq!(error.outcome(), Outcome::NotApplied);
    assert_eq!(node.write_request_ids().len(), 1);
}

#[tokio::test]
async fn timeout_is_unknown() {
    let node = FakeNode::start(1, Script { write_delay: Some(Duration::from_secs(2)), ..Script::default() }).await;
    let client = Client::builder(vec![node.addr.clone()])
        .timeout(Duration::from_millis(200))
        .max_retries(0)
        .build()
        .expect("valid endpoint");

    let error = client.put("population", "UA-1", "v", WriteOptions::default()).await.expect_err("times out");

    assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
    assert_eq!(error.outcome(), Outcome::Unknown);
}

#[tokio::test]
async fn refused_connection_is_not_applied() {
    let client = client_for(&[&closed_addr().await], 1);

    let error = client.put("population", "UA-1", "v", WriteOptions::default()).await.expect_err("nothing listens");

    match &error {
        ClientError::RetriesExhausted { maybe_applied: false, last, .. } => {
            assert!(matches!(**last, ClientError::Connect { .. }), "{last:?}")
        }
        other => panic!("expected exhausted connect retries, got {other:?}"),
    }
    assert_eq!(error.outcome(), Outcome::NotApplied);
}
