//! Domain vocabulary of holdfast, with no IO: registries and records, the
//! commands replicated through Raft and their results, node placement, named
//! limits, the internal codec, and the openraft type configuration.

pub mod access;
pub mod audit;
pub mod codec;
pub mod command;
pub mod limits;
pub mod node;
pub mod record;
pub mod topology;

pub use access::{AccessPolicy, Permission, Scope};
pub use audit::{AuditEvent, AuditOp, AuditOutcome};
pub use command::{BatchedWrite, Command, CommandResult, KeyringState, WriteMeta, WriteRef};
pub use node::{Jurisdiction, NodeInfo, Placement};
pub use record::{RecordVersion, RegistryName, Revision, ValidationError};

/// Raft node ids are plain integers chosen by the operator in node configs.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration shared by storage, server and tests.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft log entry of holdfast.
pub type Entry = openraft::Entry<TypeConfig>;
/// The Raft handle type.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id (term, leader, index).
pub type LogId = openraft::LogId<NodeId>;
/// A stored membership config.
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;
