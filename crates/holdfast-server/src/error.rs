//! The server's error type and the one function that turns any error into a
//! `tonic::Status`, with the leader hint in metadata.

use holdfast_types::{NodeId, TypeConfig, ValidationError};
use openraft::errors::{ClientWriteError, ForwardToLeader, LinearizableReadError, RaftError};
use tonic::{Code, Status};

/// Metadata key carrying the leader's `host:port` on a NOT_LEADER answer.
pub const LEADER_METADATA: &str = "holdfast-leader";
/// Metadata key set to `true` when a write was refused before it was
/// proposed, so the client knows it was definitely not applied.
pub const NOT_PROPOSED_METADATA: &str = "holdfast-not-proposed";
/// Metadata key carrying the current revision on a failed condition.
pub const CURRENT_REVISION_METADATA: &str = "holdfast-current-revision";

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("not the leader")]
    NotLeader { leader: Option<(NodeId, String)> },
    #[error("condition failed: the record's current revision is {current}")]
    Conflict { current: u64 },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("refused by placement rule: {0}")]
    Topology(String),
    #[error("storage: {0}")]
    Storage(#[from] holdfast_storage::StorageError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Refused before proposing because the node cannot serve it yet.
    #[error("not ready: {0}")]
    NotReady(String),
    /// A stored value failed verification: never returned as data.
    #[error("stored value of registry {registry} at revision {revision} failed verification")]
    DataLoss { registry: String, revision: u64 },
    #[error("keys: {0}")]
    Crypto(String),
    /// The caller lacks a permission; nothing was read or written. The gRPC
    /// code says "permission denied"; the message names who lacks what.
    #[error("{0}")]
    PermissionDenied(String),
    #[error("tls: {0}")]
    Tls(String),
}

/// The leader these metrics name, with its address: the hint a NOT_LEADER
/// answer carries.
pub(crate) fn known_leader(metrics: &openraft::RaftMetrics<TypeConfig>) -> Option<(NodeId, String)> {
    let leader = metrics.current_leader?;
    metrics.membership_config.membership().get_node(&leader).map(|node| (leader, node.addr.clone()))
}

/// Refuses with "not the leader" (and the leader's address when known)
/// unless this node leads now: a refusal here proposed nothing.
pub(crate) fn ensure_leading(raft: &holdfast_storage::Raft) -> Result<(), ServerError> {
    use openraft::async_runtime::WatchReceiver;
    let metrics = raft.metrics();
    let metrics = metrics.borrow_watched();
    if metrics.current_leader == Some(metrics.id) {
        Ok(())
    } else {
        Err(ServerError::NotLeader { leader: known_leader(&metrics) })
    }
}

impl ServerError {
    pub(crate) fn from_forward(f: &ForwardToLeader<TypeConfig>) -> Self {
        let leader = match (f.leader_id, &f.leader_node) {
            (Some(id), Some(node)) => Some((id, node.addr.clone())),
            _ => None,
        };
        ServerError::NotLeader { leader }
    }

    /// The same failure for another request that shared its Raft proposal
    /// (a batch): what the client is told, and whether it was proposed, stay
    /// exactly the same.
    pub(crate) fn for_another_waiter(&self) -> Self {
        match self {
            ServerError::NotLeader { leader } => ServerError::NotLeader { leader: leader.clone() },
            ServerError::InvalidArgument(message) => ServerError::InvalidArgument(message.clone()),
            ServerError::NotReady(message) => ServerError::NotReady(message.clone()),
            ServerError::Timeout(message) => ServerError::Timeout(message.clone()),
            ServerError::Raft(message) => ServerError::Raft(message.clone()),
            // Anything else leaves the outcome unknown, as `Raft` says.
            other => ServerError::Raft(other.to_string()),
        }
    }

    /// Whether a caller may retry the same request (with the same request id).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ServerError::NotLeader { .. } | ServerError::Raft(_) | ServerError::Timeout(_))
    }
}

impl From<RaftError<TypeConfig, ClientWriteError<TypeConfig>>> for ServerError {
    fn from(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Self {
        match e {
            // Refused before the entry was appended: definitely not applied.
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ServerError::from_forward(&f),
            // Appended, then discarded when another leader's log replaced
            // it; a copy elsewhere may still commit.
            RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)) => ServerError::Raft(format!(
                "leadership moved{} while the write was being proposed; it may or may not be applied",
                f.leader_id.map(|id| format!(" to node {id}")).unwrap_or_default()
            )),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                ServerError::InvalidArgument(c.to_string())
            }
            RaftError::APIError(ClientWriteError::PreconditionFailed(p)) => ServerError::InvalidArgument(p.to_string()),
            RaftError::Fatal(f) => ServerError::Raft(f.to_string()),
        }
    }
}

impl From<RaftError<TypeConfig, LinearizableReadError<TypeConfig>>> for ServerError {
    fn from(e: RaftError<TypeConfig, LinearizableReadError<TypeConfig>>) -> Self {
        match e {
            RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) => ServerError::from_forward(&f),
            RaftError::APIError(LinearizableReadError::QuorumNotEnough(q)) => ServerError::Raft(q.to_string()),
            RaftError::Fatal(f) => ServerError::Raft(f.to_string()),
        }
    }
}

fn insert(status: &mut Status, key: &'static str, value: &str) {
    if let Ok(v) = value.parse() {
        status.metadata_mut().insert(key, v);
    }
}

/// The one mapping from server errors to gRPC statuses.
pub fn to_status(err: ServerError) -> Status {
    match &err {
        ServerError::Invalid(_) | ServerError::InvalidArgument(_) | ServerError::Config(_) => {
            Status::invalid_argument(err.to_string())
        }
        ServerError::NotLeader { leader } => {
            let msg = match leader {
                Some((id, addr)) => format!("not the leader; the leader is node {id} at {addr}"),
                None => "not the leader, and no leader is known yet".to_string(),
            };
            let mut status = Status::unavailable(msg);
            insert(&mut status, NOT_PROPOSED_METADATA, "true");
            if let Some((_, addr)) = leader {
                insert(&mut status, LEADER_METADATA, addr);
            }
            status
        }
        ServerError::Conflict { current } => {
            let mut status = Status::aborted(err.to_string());
            insert(&mut status, CURRENT_REVISION_METADATA, &current.to_string());
            status
        }
        ServerError::NotFound(_) => Status::not_found(err.to_string()),
        ServerError::Topology(_) => Status::failed_precondition(err.to_string()),
        ServerError::Timeout(_) => Status::deadline_exceeded(err.to_string()),
        ServerError::NotReady(_) => {
            let mut status = Status::unavailable(err.to_string());
            insert(&mut status, NOT_PROPOSED_METADATA, "true");
            status
        }
        ServerError::DataLoss { .. } => Status::data_loss(err.to_string()),
        ServerError::PermissionDenied(_) => Status::permission_denied(err.to_string()),
        ServerError::Crypto(_) | ServerError::Tls(_) => {
            tracing::error!(error = %err, "request failed on keys");
            Status::internal(err.to_string())
        }
        ServerError::Raft(_) => Status::unavailable(err.to_string()),
        ServerError::Storage(_) | ServerError::Io(_) => {
            tracing::error!(error = %err, "request failed in storage");
            Status::new(Code::Internal, err.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_carries_hint_and_not_proposed() {
        let s = to_status(ServerError::NotLeader { leader: Some((2, "127.0.0.1:7002".into())) });
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.metadata().get(LEADER_METADATA).and_then(|v| v.to_str().ok()), Some("127.0.0.1:7002"));
        assert_eq!(s.metadata().get(NOT_PROPOSED_METADATA).and_then(|v| v.to_str().ok()), Some("true"));
        let s = to_status(ServerError::Raft("quorum lost".into()));
        assert!(s.metadata().get(NOT_PROPOSED_METADATA).is_none(), "an unknown outcome must not claim 'not proposed'");
    }

    #[test]
    fn conflict_carries_current_revision() {
        let s = to_status(ServerError::Conflict { current: 42 });
        assert_eq!(s.code(), Code::Aborted);
        assert_eq!(s.metadata().get(CURRENT_REVISION_METADATA).and_then(|v| v.to_str().ok()), Some("42"));
    }
}
