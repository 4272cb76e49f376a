//! Readiness for the standard gRPC health service: the service
//! `holdfast.v1.Registry` is SERVING only while this node knows a leader that
//! still hears from a quorum and has applied what it knows to be committed.
//! Liveness (service `""`) is SERVING whenever the process answers at all.

use std::sync::Arc;
use std::time::Duration;

use holdfast_storage::Raft;
use holdfast_types::TypeConfig;
use openraft::async_runtime::WatchReceiver;
use openraft::Instant as _;
use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::metrics::NodeMetrics;

/// The service name clients and load balancers ask readiness for.
pub const REGISTRY_SERVICE: &str = "holdfast.v1.Registry";

/// How far (in entries) applied may trail committed and the node still count
/// as caught up. Applying is asynchronous, so under load a healthy node is
/// always a few entries behind; a restarted node replaying a backlog is far
/// more than this behind.
pub const READY_APPLY_LAG_ENTRIES_MAX: u64 = 100;

/// How often readiness is re-checked (also bounds how long a change of
/// readiness takes to show).
const READINESS_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Whether a node in state `m` may serve the registry: it knows a leader
/// and has applied (nearly) all it knows to be committed.
/// `quorum_ack_age`: how long ago a quorum last acknowledged this node as
/// leader; a leader not acknowledged for longer than `quorum_ack_stale_ms`
/// is likely cut off (openraft leaders do not step down by themselves), so
/// it stops reporting ready.
pub fn is_ready(
    m: &openraft::RaftMetrics<TypeConfig>,
    quorum_ack_age: Option<Duration>,
    quorum_ack_stale_ms: u64,
) -> bool {
    if m.running_state.is_err() {
        return false;
    }
    let Some(leader) = m.current_leader else {
        return false;
    };
    // A lone voter is its own quorum: nobody else acknowledges it.
    let mut voters = m.membership_config.membership().voter_ids();
    let alone = voters.next() == Some(m.id) && voters.next().is_none();
    if leader == m.id && !alone && quorum_ack_age.is_none_or(|age| age > Duration::from_millis(quorum_ack_stale_ms)) {
        return false;
    }
    let applied = m.last_applied.map_or(0, |id| id.index);
    let committed = m.local_committed.map_or(0, |id| id.index);
    applied + READY_APPLY_LAG_ENTRIES_MAX >= committed
}

/// Keeps the registry's health status current until shutdown, then reports
/// NOT_SERVING so load balancers drain this node first.
pub async fn report_readiness(
    raft: Raft,
    reporter: HealthReporter,
    metrics: Arc<NodeMetrics>,
    quorum_ack_stale_ms: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let raft_metrics = raft.metrics();
    let mut reported = None;
    loop {
        let state = raft_metrics.borrow_watched().clone();
        let quorum_ack_age = state.last_quorum_acked.as_ref().map(|at| at.elapsed());
        let ready = is_ready(&state, quorum_ack_age, quorum_ack_stale_ms);
        if reported != Some(ready) {
            let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
            reporter.set_service_status(REGISTRY_SERVICE, status).await;
            metrics.set_ready(ready);
            tracing::info!(ready, "registry readiness changed");
            reported = Some(ready);
        }
        // Poll: a leader's quorum acknowledgement ages without any metrics
        // change, and waking on every change would wake on every write.
        tokio::select! {
            _ = tokio::time::sleep(READINESS_POLL_INTERVAL) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    reporter.set_service_status(REGISTRY_SERVICE, ServingStatus::NotServing).await;
    metrics.set_ready(false);
}

#[cfg(test)]
mod tests {
    use holdfast_types::{CommittedLeaderId, LogId};
    use openraft::RaftMetrics;

    use super::*;

    fn log_id(index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId { term: 1, node_id: 1 }, index))
    }

    fn applied(m: &mut RaftMetrics<TypeConfig>, index: u64) {
        m.last_applied = log_id(index);
    }

    #[test]
    fn ready_needs_a_leader_a_fresh_quorum_and_a_caught_up_state_machine() {
        let ms = |ms: u64| Some(Duration::from_millis(ms));
        let mut m = RaftMetrics::<TypeConfig>::new_initial(2);
        assert!(!is_ready(&m, None, 1000), "no leader");
        m.current_leader = Some(1);
        applied(&mut m, 500);
        m.local_committed = log_id(500);
        assert!(is_ready(&m, None, 1000));
        m.local_committed = log_id(500 + READY_APPLY_LAG_ENTRIES_MAX);
        assert!(is_ready(&m, None, 1000));
        m.local_committed = log_id(501 + READY_APPLY_LAG_ENTRIES_MAX);
        assert!(!is_ready(&m, None, 1000), "replaying a backlog");

        m.local_committed = log_id(500);
        m.current_leader = Some(2);
        assert!(!is_ready(&m, None, 1000), "leader never acknowledged");
        assert!(is_ready(&m, ms(200), 1000));
        assert!(!is_ready(&m, ms(5000), 1000), "leader cut off from its quorum");

        // A lone voter leads with nobody to acknowledge it.
        let voters = vec![std::collections::BTreeSet::from([2u64])];
        let lone = openraft::Membership::new_with_defaults(voters, Vec::<u64>::new());
        m.membership_config = std::sync::Arc::new(openraft::StoredMembership::new(log_id(1), lone));
        assert!(is_ready(&m, None, 1000), "a single-voter leader is its own quorum");
    }
}
