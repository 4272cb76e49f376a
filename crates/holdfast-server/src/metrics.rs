//! The node's Prometheus metrics: Raft state (leader, term, commit and
//! applied index, per-peer replication lag), proposals, storage fsync
//! latency and gRPC requests, rendered in the text exposition format.
//!
//! Raft gauges are read from openraft at scrape time, so they cost nothing
//! between scrapes; only events that a scrape would miss (leader changes)
//! are counted by a background task.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use holdfast_storage::{HistogramSnapshot, LatencyHistogram, Raft};
use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;

use crate::request_metrics::RequestStats;
use crate::tls::TlsState;
use crate::tls_accept::HandshakeStats;

/// Everything a scrape reports, shared by the gRPC layer, the health task
/// and the HTTP endpoint.
pub struct NodeMetrics {
    raft: Raft,
    sync_latency: Arc<LatencyHistogram>,
    requests: Arc<RequestStats>,
    leader_changes: AtomicU64,
    ready: AtomicBool,
    audit_committed: AtomicU64,
    audit_dropped: AtomicU64,
    /// Linearizable gets answered on their audit commit, and those that fell
    /// back to a ReadIndex round.
    gets_confirmed_by_audit: AtomicU64,
    gets_fell_back: AtomicU64,
    /// Set when the node serves TLS: failed handshakes and reloads.
    tls: Option<(Arc<TlsState>, Arc<HandshakeStats>)>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").field("ready", &self.ready).finish_non_exhaustive()
    }
}

impl NodeMetrics {
    pub fn new(
        raft: Raft,
        sync_latency: Arc<LatencyHistogram>,
        tls: Option<(Arc<TlsState>, Arc<HandshakeStats>)>,
    ) -> Arc<Self> {
        Arc::new(Self {
            raft,
            sync_latency,
            requests: Arc::default(),
            leader_changes: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            audit_committed: AtomicU64::new(0),
            audit_dropped: AtomicU64::new(0),
            gets_confirmed_by_audit: AtomicU64::new(0),
            gets_fell_back: AtomicU64::new(0),
            tls,
        })
    }

    /// Audit events this node committed to the trail.
    pub fn audit_committed(&self, events: u64) {
        self.audit_committed.fetch_add(events, Ordering::Relaxed);
    }

    /// Audit events this node could not commit (queue full, no quorum).
    pub fn audit_dropped(&self, events: u64) {
        self.audit_dropped.fetch_add(events, Ordering::Relaxed);
    }

    /// A linearizable get tried its audit commit as its leadership
    /// confirmation: `answered` on it, or fell back to a ReadIndex round.
    pub fn get_confirmed_by_audit(&self, answered: bool) {
        let counter = if answered { &self.gets_confirmed_by_audit } else { &self.gets_fell_back };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests(&self) -> Arc<RequestStats> {
        self.requests.clone()
    }

    /// Mirrors what the health service reports for the registry.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Counts leader changes until shutdown. A scrape only sees the current
    /// leader, so flapping between scrapes would otherwise go unnoticed.
    /// Watches the server metrics (leader, state, vote, membership), which
    /// change only with them: the full metrics change with every entry, and
    /// waking on each would wake this task on every write.
    pub async fn count_leader_changes(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut metrics = self.raft.server_metrics();
        let mut leader = metrics.borrow_watched().current_leader;
        loop {
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let now = metrics.borrow_watched().current_leader;
            if now.is_some() && now != leader {
                self.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
            leader = now;
        }
    }

    /// The whole exposition, `text/plain; version=0.0.4`.
    pub fn render(&self) -> String {
        let m = self.raft.metrics().borrow_watched().clone();
        let committed = m.local_committed.map(|id| id.index);
        let mut out = String::with_capacity(4096);
        let leader = m.current_leader;
        gauge(
            &mut out,
            "holdfast_ready",
            "1 if the registry is ready to serve (has a leader, caught up)",
            &[("", u64::from(self.ready.load(Ordering::Relaxed)))],
        );
        gauge(
            &mut out,
            "holdfast_raft_has_leader",
            "1 if this node knows a leader",
            &[("", u64::from(leader.is_some()))],
        );
        gauge(
            &mut out,
            "holdfast_raft_is_leader",
            "1 if this node is the leader",
            &[("", u64::from(leader == Some(m.id)))],
        );
        gauge(
            &mut out,
            "holdfast_raft_leader_id",
            "Id of the leader this node follows, 0 if none",
            &[("", leader.unwrap_or(0))],
        );
        counter(
            &mut out,
            "holdfast_raft_leader_changes_total",
            "Times this node saw a new leader",
            &[("", self.leader_changes.load(Ordering::Relaxed))],
        );
        gauge(&mut out, "holdfast_raft_term", "Current Raft term", &[("", m.current_term)]);
        gauge(
            &mut out,
            "holdfast_raft_last_log_index",
            "Index of the last entry in the local log",
            &[("", m.last_log_index.unwrap_or(0))],
        );
        gauge(&mut out, "holdfast_raft_commit_index", "Highest index known committed", &[("", committed.unwrap_or(0))]);
        gauge(
            &mut out,
            "holdfast_raft_applied_index",
            "Highest index applied to the state machine",
            &[("", m.last_applied.map_or(0, |id| id.index))],
        );
        // Only a leader tracks its followers; elsewhere the family is empty.
        let last = m.last_log_index.unwrap_or(0);
        let lags: Vec<(String, u64)> = m
            .replication
            .iter()
            .flatten()
            .filter(|(peer, _)| **peer != m.id)
            .map(|(peer, matched)| (format!("peer=\"{peer}\""), last.saturating_sub(matched.map_or(0, |id| id.index))))
            .collect();
        let lags: Vec<(&str, u64)> = lags.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        gauge(&mut out, "holdfast_raft_replication_lag_entries", "Leader only: entries a peer is behind", &lags);
        let (committed_proposals, failed_proposals) = self.requests.proposals();
        counter(
            &mut out,
            "holdfast_proposals_committed_total",
            "Writes whose Raft entry committed",
            &[("", committed_proposals)],
        );
        counter(
            &mut out,
            "holdfast_proposals_failed_total",
            "Writes proposed that failed or timed out (outcome unknown to the client)",
            &[("", failed_proposals)],
        );
        counter(
            &mut out,
            "holdfast_audit_events_committed_total",
            "Access audit events this node recorded in the replicated trail",
            &[("", self.audit_committed.load(Ordering::Relaxed))],
        );
        counter(
            &mut out,
            "holdfast_audit_events_dropped_total",
            "Access audit events this node could not record (strict reads among them failed)",
            &[("", self.audit_dropped.load(Ordering::Relaxed))],
        );
        counter(
            &mut out,
            "holdfast_gets_confirmed_by_audit_total",
            "Linearizable gets whose strict audit commit confirmed leadership (answered), or that then took a ReadIndex round (fell_back)",
            &[
                ("result=\"answered\"", self.gets_confirmed_by_audit.load(Ordering::Relaxed)),
                ("result=\"fell_back\"", self.gets_fell_back.load(Ordering::Relaxed)),
            ],
        );
        histogram_header(&mut out, "holdfast_storage_fsync_seconds", "Duration of storage WAL syncs (fsync)");
        histogram(&mut out, "holdfast_storage_fsync_seconds", "", &self.sync_latency.snapshot());
        if let Some((tls, handshakes)) = &self.tls {
            counter(
                &mut out,
                "holdfast_tls_handshake_failures_total",
                "Inbound TLS handshakes that failed or timed out",
                &[("", handshakes.failed())],
            );
            counter(
                &mut out,
                "holdfast_tls_reloads_total",
                "Times new TLS files were loaded without a restart",
                &[("", tls.generation())],
            );
            counter(
                &mut out,
                "holdfast_tls_reload_failures_total",
                "Reloads refused because a TLS file was unusable (the old ones stayed)",
                &[("", tls.reloads_failed())],
            );
        }
        self.render_requests(&mut out);
        out
    }

    fn render_requests(&self, out: &mut String) {
        let series = self.requests.snapshot();
        let _ = writeln!(out, "# HELP holdfast_grpc_requests_total gRPC requests by method and status code");
        let _ = writeln!(out, "# TYPE holdfast_grpc_requests_total counter");
        for (method, code, h) in &series {
            let code = tonic::Code::from(*code);
            let _ = writeln!(
                out,
                "holdfast_grpc_requests_total{{method=\"{}\",code=\"{code:?}\"}} {}",
                escape(method),
                h.snapshot().count
            );
        }
        histogram_header(out, "holdfast_grpc_request_duration_seconds", "gRPC request latency to the response head");
        for (method, code, h) in &series {
            let labels = format!("method=\"{}\",code=\"{:?}\"", escape(method), tonic::Code::from(*code));
            histogram(out, "holdfast_grpc_request_duration_seconds", &labels, &h.snapshot());
        }
    }
}

/// Label values may hold any client-sent path; escape what the format needs.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, help: &str, kind: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, samples: &[(&str, u64)]) {
    family(out, name, help, "gauge", samples);
}

fn counter(out: &mut String, name: &str, help: &str, samples: &[(&str, u64)]) {
    family(out, name, help, "counter", samples);
}

fn histogram_header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, count) in &h.cumulative {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}
