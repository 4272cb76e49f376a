//! Readiness for the standard gRPC health service: the service
//! `holdfast.v1.Registry` is SERVING only while this node knows a leader that
//! still hears from a quorum and has applied what it knows to be committed.
//! Liveness (service `""`) is SERVING whenever the process answers at all.

use std::sync::Arc;
use std::time::Duration;

use holdfast_types::{NodeId, NodeInfo, Raft};
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

/// Whether a node in state `m`, knowing `committed`, may serve the registry.
/// `quorum_ack_stale_ms`: a leader whose quorum has not acknowledged it for
/// longer is likely cut off (openraft 0.9 leaders do not step down by
/// themselves), so it stops reporting ready.
pub fn is_ready(m: &openraft::RaftMetrics<NodeId, NodeInfo>, committed: Option<u64>, quorum_ack_stale_ms: u64) -> bool {
    if m.running_state.is_err() {
        return false;
    }
    let Some(leader) = m.current_leader else {
        return false;
    };
    if leader == m.id && m.millis_since_quorum_ack.is_none_or(|ms| ms > quorum_ack_stale_ms) {
        return false;
    }
    let applied = m.last_applied.map_or(0, |id| id.index);
    applied + READY_APPLY_LAG_ENTRIES_MAX >= committed.unwrap_or(0)
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
        let state = raft_metrics.borrow().clone();
        // A stopped Raft core answers nothing: not ready.
        let committed = raft.with_raft_state(|st| st.committed.map(|id| id.index)).await;
        let ready = committed.is_ok_and(|c| is_ready(&state, c, quorum_ack_stale_ms));
        if reported != Some(ready) {
            let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
            reporter.set_service_status(REGISTRY_SERVICE, status).await;
            metrics.set_ready(ready);
            tracing::info!(ready, "registry readiness changed");
            reported = Some(ready);
        }
        // Poll, never wake on every metrics change: asking the Raft core for
        // its state makes it publish metrics again, so waking on changes
        // turned this into a busy loop (40% of a core per idle node).
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
    use openraft::{CommittedLeaderId, LogId, RaftMetrics};

    use super::*;

    fn applied(m: &mut RaftMetrics<NodeId, NodeInfo>, index: u64) {
        m.last_applied = Some(LogId::new(CommittedLeaderId::new(1, 1), index));
    }

    #[test]
    fn ready_needs_a_leader_a_fresh_quorum_and_a_caught_up_state_machine() {
        let mut m = RaftMetrics::new_initial(2);
        assert!(!is_ready(&m, None, 1000), "no leader");
        m.current_leader = Some(1);
        applied(&mut m, 500);
        assert!(is_ready(&m, Some(500), 1000));
        assert!(is_ready(&m, Some(500 + READY_APPLY_LAG_ENTRIES_MAX), 1000));
        assert!(!is_ready(&m, Some(501 + READY_APPLY_LAG_ENTRIES_MAX), 1000), "replaying a backlog");

        m.current_leader = Some(2);
        assert!(!is_ready(&m, Some(500), 1000), "leader never acknowledged");
        m.millis_since_quorum_ack = Some(200);
        assert!(is_ready(&m, Some(500), 1000));
        m.millis_since_quorum_ack = Some(5000);
        assert!(!is_ready(&m, Some(500), 1000), "leader cut off from its quorum");
    }
}
