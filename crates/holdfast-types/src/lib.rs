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
    /// Terms, leader ids, votes, entries and the runtime (tokio) are
    /// openraft's defaults (a leader id is a term and a node id, as in
    /// Raft's paper).
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = NodeInfo,
);

/// A Raft log entry of holdfast.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// A log id (term, leader, index).
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A leader id as log ids carry it (term and node).
pub type CommittedLeaderId = openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig>;
/// A vote (term, candidate, whether a quorum granted it).
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// A stored membership config.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;

/// What opens a snapshot transfer to a follower: the sending leader's vote,
/// the snapshot's metadata and the file's length. The file's bytes follow
/// in order; a transfer that ends short of `len` installs nothing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotOffer {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub len: u64,
}
