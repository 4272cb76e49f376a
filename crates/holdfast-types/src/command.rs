//! The commands replicated through Raft and what applying them returns.
//!
//! Storage treats `record` and `value` as opaque bytes: the server decides
//! what they are (plain, or sealed and blinded), and storage never knows.

use serde::{Deserialize, Serialize};

use crate::record::{RegistryName, Revision};

/// Who wrote, why and when. The time is taken by the leader when it proposes,
/// so every replica applies the same value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteMeta {
    /// Client-chosen id; a retry with the same id returns the first result.
    pub request_id: String,
    pub actor: String,
    pub reason: String,
    pub commit_time_ms: u64,
}

/// One replicated write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Write a new revision of a record. `if_revision`: `Some(0)` means the
    /// record must not exist (or be deleted); `Some(n)` means its latest live
    /// revision must be `n`.
    Put { registry: RegistryName, record: Vec<u8>, value: Vec<u8>, if_revision: Option<Revision>, meta: WriteMeta },
    /// Write a tombstone revision; history stays readable.
    Delete { registry: RegistryName, record: Vec<u8>, if_revision: Option<Revision>, meta: WriteMeta },
}

impl Command {
    pub fn meta(&self) -> &WriteMeta {
        match self {
            Command::Put { meta, .. } | Command::Delete { meta, .. } => meta,
        }
    }
}

impl std::fmt::Display for Command {
    // Never prints record ids or values: they are personal data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Put { registry, meta, .. } => write!(f, "put({registry}, req={})", meta.request_id),
            Command::Delete { registry, meta, .. } => write!(f, "delete({registry}, req={})", meta.request_id),
        }
    }
}

/// The result of applying one entry. Membership and blank entries return
/// [`CommandResult::None`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CommandResult {
    #[default]
    None,
    /// The write happened at `revision`.
    Written { revision: Revision },
    /// The condition failed; nothing was written. `current` is the latest live
    /// revision (0 if absent).
    Conflict { current: Revision },
    /// Delete of a record that does not exist; nothing was written.
    NotFound,
    /// This request id was applied before; the first result is returned.
    Duplicate(Box<CommandResult>),
}
