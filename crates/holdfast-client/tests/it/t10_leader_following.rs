//! Finding and following the leader: hints, endpoints without hints, pinned clients.

use holdfast_client::{ClientError, Outcome, WriteOptions};

use crate::client_for;
use crate::fake::{FakeNode, Script};

async fn leader_and_follower(hint: Option<&str>) -> (FakeNode, FakeNode) {
    let leader = FakeNode::start(1, Script::default()).await;
    let follower_of = Some(hint.map_or_else(|| leader.addr.clone(), str::to_owned));
    let follower = FakeNode::start(2, Script { follower_of, ..Script::default() }).await;
    (leader, follower)
}

#[tokio::test]
async fn leader_hint_is_followed_with_the_same_request_id() {
    let (leader, follower) = leader_and_follower(None).await;
    // The client knows only the follower; the leader comes from its hint.
    let client = client_for(&[&follower.addr], 3);

    let written = client.put("population", "UA-1", "v1", WriteOptions::default()).await.expect("put via hint");

    assert_eq!(follower.write_request_ids(), [written.request_id.as_str()]);
    assert_eq!(leader.write_request_ids(), [written.request_id.as_str()]);
    let leader_url = format!("http://{}", leader.addr);
    assert_eq!(client.leader(), Some(leader_url.clone()));
    assert!(client.endpoints().contains(&leader_url));

    // The leader is remembered: the next write skips the follower.
    client.put("population", "UA-2", "v2", WriteOptions::default()).await.expect("second put");
    assert_eq!(follower.calls(), 1);
    assert_eq!(leader.write_request_ids().len(), 2);
}

#[tokio::test]
async fn without_a_hint_the_next_endpoint_is_tried() {
    let (leader, follower) = leader_and_follower(Some("")).await;
    let client = client_for(&[&follower.addr, &leader.addr], 3);

    let written = client.delete("population", "UA-1", WriteOptions::default()).await.expect("delete via next endpoint");

    assert_eq!(leader.write_request_ids(), [written.request_id]);
    assert_eq!(client.leader(), Some(format!("http://{}", leader.addr)));
}

#[tokio::test]
async fn pinned_client_reports_not_leader_instead_of_following() {
    let (leader, follower) = leader_and_follower(None).await;
    let client = client_for(&[&leader.addr], 3);
    let pinned = client.on_endpoint(&follower.addr).expect("valid endpoint");

    let error = pinned.put("population", "UA-1", "v1", WriteOptions::default()).await.expect_err("follower refuses");

    match &error {
        ClientError::NotLeader { leader: hint, .. } => {
            assert_eq!(hint.as_deref(), Some(leader.addr.as_str()));
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }
    assert_eq!(error.outcome(), Outcome::NotApplied);
    assert!(leader.write_request_ids().is_empty());
}
