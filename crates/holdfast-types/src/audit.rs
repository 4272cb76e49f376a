//! The access audit trail: one event per record read or write, with who did
//! it, on which (blind) record, and what came of it.
//!
//! Events are proposed in batches by the node that served the request and
//! kept in their own append-only column family; no client command can write
//! or delete them.

use serde::{Deserialize, Serialize};

use crate::record::{RegistryName, Revision};

/// Most events in one replicated batch: bounds the size of one Raft entry.
pub const AUDIT_BATCH_EVENTS_MAX: usize = 1024;

/// What was done to the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditOp {
    Get,
    History,
    /// The record was returned by a scan of its registry.
    Scan,
    Put,
    Delete,
    /// Someone read this record's audit trail.
    ReadAudit,
}

impl AuditOp {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOp::Get => "get",
            AuditOp::History => "history",
            AuditOp::Scan => "scan",
            AuditOp::Put => "put",
            AuditOp::Delete => "delete",
            AuditOp::ReadAudit => "read-audit",
        }
    }

    /// Whether the operation looked at the record's content.
    pub fn is_read(self) -> bool {
        matches!(self, AuditOp::Get | AuditOp::History | AuditOp::Scan | AuditOp::ReadAudit)
    }
}

/// How the request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditOutcome {
    /// Served (for reads: the record was returned).
    Ok,
    /// Refused for lack of permission; nothing was returned or written.
    Denied,
    /// No such record (or revision).
    NotFound,
    /// A conditional write whose condition failed.
    Conflict,
    /// Failed for another reason (unavailable, invalid, ...).
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Denied => "denied",
            AuditOutcome::NotFound => "not-found",
            AuditOutcome::Conflict => "conflict",
            AuditOutcome::Failed => "failed",
        }
    }
}

/// One audited access. `record` is the record id as storage keys it: the
/// blind id when encryption is on, so the trail never holds a citizen's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub time_ms: u64,
    pub identity: String,
    pub registry: RegistryName,
    #[serde(with = "serde_bytes")]
    pub record: Vec<u8>,
    pub op: AuditOp,
    /// The revision read or written (0 when none).
    pub revision: Revision,
    pub outcome: AuditOutcome,
    /// The node that served the request.
    pub node: u64,
}
