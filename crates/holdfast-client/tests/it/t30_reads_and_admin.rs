//! Reads (linearizable, stale, paged) and cluster calls against fake nodes.

use holdfast_client::{ClientError, Consistency, Outcome, Placement, ReadOptions, Role};

use crate::fake::{FakeNode, Script, PRESENT_ID};
use crate::{client_for, closed_addr};

async fn leader_and_follower() -> (FakeNode, FakeNode) {
    let leader = FakeNode::start(1, Script::default()).await;
    let follower = FakeNode::start(2, Script { follower_of: Some(leader.addr.clone()), ..Script::default() }).await;
    (leader, follower)
}

#[tokio::test]
async fn linearizable_get_follows_leader_and_stale_get_stays() {
    let (leader, follower) = leader_and_follower().await;
    let client = client_for(&[&follower.addr], 3);

    // The fake puts the answering node's id in the value.
    let record = client
        .get("population", PRESENT_ID, ReadOptions::default())
        .await
        .expect("linearizable get")
        .expect("record exists");
    assert_eq!(record.value.as_deref(), Some(&b"1"[..]));

    let stale = ReadOptions { consistency: Consistency::Stale, at_revision: None };
    let pinned = client.on_endpoint(&follower.addr).expect("valid endpoint");
    let record = pinned.get("population", PRESENT_ID, stale).await.expect("stale get").expect("record exists");
    assert_eq!(record.value.as_deref(), Some(&b"2"[..]));
    assert_eq!(leader.calls(), 1);
}

#[tokio::test]
async fn missing_record_is_none() {
    let (leader, _follower) = leader_and_follower().await;
    let client = client_for(&[&leader.addr], 3);
    let missing = client.get("population", "nobody", ReadOptions::default()).await.expect("not found is not an error");
    assert_eq!(missing, None);
}

#[tokio::test]
async fn history_pages_and_scan() {
    let (leader, _follower) = leader_and_follower().await;
    let client = client_for(&[&leader.addr], 3);

    let first = client.history("population", PRESENT_ID, 0, 2).await.expect("first page");
    assert_eq!(first.revisions.len(), 2);
    assert_eq!(first.next_after_revision, Some(2));
    let last = client.history("population", PRESENT_ID, 2, 2).await.expect("last page");
    assert_eq!(last.next_after_revision, None);
    assert!(last.revisions[0].deleted);
    assert_eq!(last.revisions[0].value, None);

    let page = client.scan("population", None, 10).await.expect("scan");
    assert_eq!(page.entries[0].record_id, PRESENT_ID);
    assert_eq!(page.next_page_token, None);
}

#[tokio::test]
async fn status_all_keeps_going_past_an_unreachable_endpoint() {
    let (leader, follower) = leader_and_follower().await;
    let dead = closed_addr().await;
    let client = client_for(&[&leader.addr, &dead, &follower.addr], 3);

    let statuses = client.status_all().await;

    assert_eq!(statuses.len(), 3);
    let leader_status = statuses[0].status.as_ref().expect("leader answers");
    assert_eq!(leader_status.role, Role::Leader);
    assert!(matches!(statuses[1].status, Err(ClientError::Connect { .. })));
    let follower_status = statuses[2].status.as_ref().expect("follower answers");
    assert_eq!(follower_status.id, 2);
}

#[tokio::test]
async fn membership_calls_go_to_the_leader_and_are_not_resent() {
    let (leader, follower) = leader_and_follower().await;
    let client = client_for(&[&follower.addr], 3);

    let members = client.members().await.expect("members");
    assert_eq!(members.leader_id, Some(1));
    assert_eq!(members.survival.fatal_regions, ["ua-kyiv"]);

    let calls_before = leader.calls();
    let error = client.add_learner(4, "127.0.0.1:7004", Placement::default()).await.expect_err("fake never catches up");
    assert_eq!(error.outcome(), Outcome::Unknown);
    assert_eq!(leader.calls(), calls_before + 1, "unknown outcome not resent");

    let refused = client.promote(4, false).await.expect_err("placement rule");
    assert!(matches!(refused, ClientError::FailedPrecondition(_)));
    assert_eq!(refused.outcome(), Outcome::NotApplied);

    client.remove(4, true).await.expect("remove");
}
