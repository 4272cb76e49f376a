//! The access audit trail: events recorded by the serving node, batched, and
//! committed through Raft as `Command::Audit` entries.
//!
//! Many requests share one entry (up to `AUDIT_BATCH_EVENTS_MAX` events), so
//! the trail costs one Raft commit per batch, not per read. A follower hands
//! its batches to the leader over the internal Raft service. In `strict`
//! mode a read is answered only after its event is committed: no record can
//! be read without leaving a trace, even if the node then crashes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use holdfast_storage::Raft;
use holdfast_types::audit::AUDIT_BATCH_EVENTS_MAX;
use holdfast_types::{AuditEvent, AuditOp, AuditOutcome, Command, LogId, NodeId, Permission, RegistryName, Revision};
use openraft::errors::{ClientWriteError, RaftError};
use openraft::RaftNetworkFactory;
use tokio::sync::{mpsc, oneshot, watch};

use crate::auth::{Authorizer, Caller};
use crate::batching::{self, Limits};
use crate::error::ServerError;
use crate::metrics::NodeMetrics;
use crate::network::Network;

/// How reads wait for their audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditMode {
    /// A read is answered only after its event is committed (default).
    #[default]
    Strict,
    /// Events are committed in the background; a crash may lose the last
    /// batch, and reads never wait.
    BestEffort,
    /// No trail at all (benchmarks measuring its cost).
    Off,
}

impl AuditMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "strict" => Some(AuditMode::Strict),
            "best-effort" => Some(AuditMode::BestEffort),
            "off" => Some(AuditMode::Off),
            _ => None,
        }
    }
}

/// Events waiting for a batch; bounds memory when the trail cannot commit.
const QUEUE_EVENTS_MAX: usize = 64 * 1024;
/// How long one batch may keep trying (elections, a lost leader).
const BATCH_DEADLINE: Duration = Duration::from_secs(10);

/// How a batch was committed: by this node as leader, as this log entry,
/// or handed to another leader (`None`).
type Committed = Result<Option<LogId>, String>;

struct Pending {
    event: AuditEvent,
    done: Option<oneshot::Sender<Committed>>,
}

/// Records audit events for one node's services.
#[derive(Clone)]
pub struct Auditor {
    node: NodeId,
    mode: AuditMode,
    tx: Option<mpsc::Sender<Pending>>,
    metrics: std::sync::Arc<NodeMetrics>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Auditor {
    /// Starts the batching task (unless the mode is `Off`).
    pub fn start(
        node: NodeId,
        mode: AuditMode,
        raft: Raft,
        network: Network,
        metrics: std::sync::Arc<NodeMetrics>,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, Option<tokio::task::JoinHandle<()>>) {
        if mode == AuditMode::Off {
            return (Self { node, mode, tx: None, metrics }, None);
        }
        let (tx, rx) = mpsc::channel(QUEUE_EVENTS_MAX);
        let task = tokio::spawn(run(rx, raft, network, metrics.clone(), shutdown));
        (Self { node, mode, tx: Some(tx), metrics }, Some(task))
    }

    /// An event about `record` of `registry`, served by this node now.
    pub fn event(
        &self,
        identity: &str,
        registry: &RegistryName,
        record: &[u8],
        op: AuditOp,
        revision: Revision,
        outcome: AuditOutcome,
    ) -> AuditEvent {
        AuditEvent {
            time_ms: now_ms(),
            identity: identity.to_string(),
            registry: registry.clone(),
            record: record.to_vec(),
            op,
            revision,
            outcome,
            node: self.node,
        }
    }

    /// Checks `caller`'s permission; a refusal is recorded in the trail
    /// (`record` empty for registry-wide requests) and nothing else happens.
    pub fn authorize(
        &self,
        auth: &Authorizer,
        caller: &Caller,
        registry: &RegistryName,
        record: &[u8],
        op: AuditOp,
        wanted: Permission,
    ) -> Result<(), ServerError> {
        auth.check(caller, Some(registry), wanted).inspect_err(|_| {
            self.record_detached(vec![self.event(caller.name(), registry, record, op, 0, AuditOutcome::Denied)]);
        })
    }

    /// Records events of a read that returned data. In strict mode, waits
    /// until they are committed and fails (returning nothing to the client)
    /// if they cannot be.
    pub async fn record_read(&self, events: Vec<AuditEvent>) -> Result<(), ServerError> {
        if self.mode != AuditMode::Strict {
            self.record_detached(events);
            return Ok(());
        }
        let mut waits = Vec::with_capacity(events.len());
        for event in events {
            waits.push(self.enqueue(event).await?);
        }
        for wait in waits {
            Self::committed(wait).await?;
        }
        Ok(())
    }

    /// For a strict trail (callers check [`Auditor::is_strict`]): commits
    /// `event` and returns the log id of the entry that holds it when this
    /// node proposed that entry itself, as leader. The entry was proposed
    /// after the event was made, so its commit confirms that no later
    /// leader acknowledged anything before then (see
    /// `RegistryService::get_confirmed_by_audit`). `None` when the batch
    /// went to another leader.
    pub async fn record_read_confirming(&self, event: AuditEvent) -> Result<Option<LogId>, ServerError> {
        let wait = self.enqueue(event).await?;
        Self::committed(wait).await
    }

    /// Whether reads wait for their events (`strict`).
    pub fn is_strict(&self) -> bool {
        self.mode == AuditMode::Strict && self.tx.is_some()
    }

    async fn enqueue(&self, event: AuditEvent) -> Result<oneshot::Receiver<Committed>, ServerError> {
        let shut = || ServerError::NotReady("the audit trail is shut down".into());
        let tx = self.tx.as_ref().ok_or_else(shut)?;
        let (done, wait) = oneshot::channel();
        tx.send(Pending { event, done: Some(done) }).await.map_err(|_| shut())?;
        Ok(wait)
    }

    async fn committed(wait: oneshot::Receiver<Committed>) -> Result<Option<LogId>, ServerError> {
        match wait.await {
            Ok(Ok(index)) => Ok(index),
            Ok(Err(e)) => Err(ServerError::Raft(format!("cannot record the access in the audit trail: {e}"))),
            Err(_) => Err(ServerError::NotReady("the audit trail is shut down".into())),
        }
    }

    /// Records events without waiting (writes, whose history is their own
    /// durable record, and refusals). Dropped, and counted, if the queue is
    /// full.
    pub fn record_detached(&self, events: Vec<AuditEvent>) {
        let Some(tx) = &self.tx else { return };
        for event in events {
            if tx.try_send(Pending { event, done: None }).is_err() {
                self.metrics.audit_dropped(1);
            }
        }
    }
}

async fn run(
    rx: mpsc::Receiver<Pending>,
    raft: Raft,
    network: Network,
    metrics: std::sync::Arc<NodeMetrics>,
    shutdown: watch::Receiver<bool>,
) {
    let limits = Limits::new(AUDIT_BATCH_EVENTS_MAX, usize::MAX);
    batching::run(
        rx,
        limits,
        |_| 0,
        shutdown,
        move |batch| {
            let raft = raft.clone();
            let network = network.clone();
            let metrics = metrics.clone();
            async move {
                let (events, waiters): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.event, p.done)).unzip();
                let count = events.len();
                let result = commit(&raft, &network, events).await;
                match &result {
                    Ok(_) => metrics.audit_committed(count as u64),
                    Err(e) => {
                        tracing::warn!(events = count, error = %e, "could not commit audit events");
                        metrics.audit_dropped(count as u64);
                    }
                }
                for done in waiters.into_iter().flatten() {
                    let _ = done.send(result.clone());
                }
            }
        },
    )
    .await
}

/// Commits one batch through the leader, retrying across elections until
/// the deadline.
async fn commit(raft: &Raft, network: &Network, events: Vec<AuditEvent>) -> Committed {
    let deadline = tokio::time::Instant::now() + BATCH_DEADLINE;
    let mut last_error;
    loop {
        // Bounded: a deposed leader's proposal can stay unanswered.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(written) =
            tokio::time::timeout(left, raft.client_write(Command::Audit { events: events.clone() })).await
        else {
            return Err(format!("not committed within {} s", BATCH_DEADLINE.as_secs()));
        };
        match written {
            Ok(response) => return Ok(Some(response.log_id)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f) | ClientWriteError::LogEntryDiscarded(f))) => {
                match (f.leader_id, f.leader_node) {
                    (Some(leader), Some(node)) => {
                        let mut peer = network.clone().new_client(leader, &node).await;
                        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                        match peer.forward_audit(&events, left.min(Duration::from_secs(5))).await {
                            Ok(()) => return Ok(None),
                            Err(e) => last_error = e,
                        }
                    }
                    _ => last_error = "no leader is known".to_string(),
                }
            }
            // Raft has stopped (the node is shutting down): nothing to retry.
            Err(RaftError::Fatal(fatal)) => return Err(fatal.to_string()),
            Err(e) => last_error = e.to_string(),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(last_error);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
