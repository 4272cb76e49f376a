//! The commands replicated through Raft and what applying them returns.
//!
//! Storage treats `record` and `value` as opaque bytes: the server decides
//! what they are (plain, or sealed and blinded), and storage never knows.

use serde::{Deserialize, Serialize};

use crate::access::{Permission, Scope};
use crate::audit::AuditEvent;
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
    Put {
        registry: RegistryName,
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        if_revision: Option<Revision>,
        meta: WriteMeta,
    },
    /// Write a tombstone revision; history stays readable.
    Delete {
        registry: RegistryName,
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
        if_revision: Option<Revision>,
        meta: WriteMeta,
    },
    /// Add a wrapped data key to the replicated keyring and make it current
    /// for new writes. Storage keeps the bytes without reading them.
    AddDataKey {
        key_id: u32,
        #[serde(with = "serde_bytes")]
        wrapped: Vec<u8>,
    },
    /// Replace the stored bytes of one existing revision (re-encryption under
    /// the current key) without creating a revision. Applied only if the
    /// stored bytes still hash to `expected_sha256`, so a stale re-seal can
    /// never overwrite newer bytes.
    Reseal {
        registry: RegistryName,
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
        revision: Revision,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        expected_sha256: [u8; 32],
    },
    /// Drop a data key that no stored revision needs any more.
    RetireKey { key_id: u32 },
    /// Add permissions for an identity on a scope.
    Grant { identity: String, scope: Scope, permissions: Vec<Permission> },
    /// Remove permissions of an identity on a scope.
    Revoke { identity: String, scope: Scope, permissions: Vec<Permission> },
    /// Append events to the access audit trail.
    Audit { events: Vec<AuditEvent> },
    /// Client writes that arrived together, applied in order as if each had
    /// its own entry: the write at position `p` of the entry at index `i`
    /// gets revision `revision_of(i, p)`.
    Batch { writes: Vec<BatchedWrite> },
}

/// A client write as a batch carries it: the fields of `Command::Put` or
/// `Command::Delete`. Its own type rather than `Command`, so a batch can
/// never hold a batch and decoding an entry (from a peer or from disk)
/// never recurses, however the bytes were crafted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchedWrite {
    Put {
        registry: RegistryName,
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        if_revision: Option<Revision>,
        meta: WriteMeta,
    },
    Delete {
        registry: RegistryName,
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
        if_revision: Option<Revision>,
        meta: WriteMeta,
    },
}

/// One client write, borrowed from a `Command` or a `BatchedWrite`;
/// `value` is `None` for a delete.
#[derive(Debug, Clone, Copy)]
pub struct WriteRef<'a> {
    pub registry: &'a RegistryName,
    pub record: &'a [u8],
    pub value: Option<&'a [u8]>,
    pub if_revision: Option<Revision>,
    pub meta: &'a WriteMeta,
}

impl BatchedWrite {
    pub fn as_write(&self) -> WriteRef<'_> {
        match self {
            BatchedWrite::Put { registry, record, value, if_revision, meta } => {
                WriteRef { registry, record, value: Some(value), if_revision: *if_revision, meta }
            }
            BatchedWrite::Delete { registry, record, if_revision, meta } => {
                WriteRef { registry, record, value: None, if_revision: *if_revision, meta }
            }
        }
    }
}

impl TryFrom<Command> for BatchedWrite {
    /// Anything but a put or a delete is handed back.
    type Error = Command;

    fn try_from(command: Command) -> Result<Self, Command> {
        match command {
            Command::Put { registry, record, value, if_revision, meta } => {
                Ok(BatchedWrite::Put { registry, record, value, if_revision, meta })
            }
            Command::Delete { registry, record, if_revision, meta } => {
                Ok(BatchedWrite::Delete { registry, record, if_revision, meta })
            }
            other => Err(other),
        }
    }
}

impl From<BatchedWrite> for Command {
    /// A write proposed on its own rather than in a batch.
    fn from(write: BatchedWrite) -> Self {
        match write {
            BatchedWrite::Put { registry, record, value, if_revision, meta } => {
                Command::Put { registry, record, value, if_revision, meta }
            }
            BatchedWrite::Delete { registry, record, if_revision, meta } => {
                Command::Delete { registry, record, if_revision, meta }
            }
        }
    }
}

impl Command {
    /// The client write this command is, if it is a put or a delete.
    pub fn as_write(&self) -> Option<WriteRef<'_>> {
        match self {
            Command::Put { registry, record, value, if_revision, meta } => {
                Some(WriteRef { registry, record, value: Some(value), if_revision: *if_revision, meta })
            }
            Command::Delete { registry, record, if_revision, meta } => {
                Some(WriteRef { registry, record, value: None, if_revision: *if_revision, meta })
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Command {
    // Never prints record ids or values: they are personal data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Put { registry, meta, .. } => write!(f, "put({registry}, req={})", meta.request_id),
            Command::Delete { registry, meta, .. } => write!(f, "delete({registry}, req={})", meta.request_id),
            Command::AddDataKey { key_id, .. } => write!(f, "add-data-key({key_id})"),
            Command::Reseal { registry, revision, .. } => write!(f, "reseal({registry}@{revision})"),
            Command::RetireKey { key_id } => write!(f, "retire-key({key_id})"),
            Command::Grant { identity, scope, .. } => write!(f, "grant({identity}, {scope})"),
            Command::Revoke { identity, scope, .. } => write!(f, "revoke({identity}, {scope})"),
            Command::Audit { events } => write!(f, "audit({} events)", events.len()),
            Command::Batch { writes } => write!(f, "batch({} writes)", writes.len()),
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
    /// The results of a `Command::Batch`, one per command, in order.
    Batch(Vec<CommandResult>),
}

/// The replicated keyring as storage keeps it: wrapped data keys by id and
/// which one seals new writes. Opaque bytes; only the server unwraps them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyringState {
    pub current: Option<u32>,
    pub wrapped: std::collections::BTreeMap<u32, Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;
    use crate::record::RecordVersion;

    /// The shape of `Command` before its byte fields were encoded as one
    /// slice: each byte a sequence element.
    #[derive(Serialize)]
    enum ElementWise {
        Put { registry: RegistryName, record: Vec<u8>, value: Vec<u8>, if_revision: Option<Revision>, meta: WriteMeta },
    }

    #[test]
    fn byte_fields_encode_exactly_as_element_by_element() {
        // Entries in logs and records on disk were written element by
        // element; the slice encoding must produce the same bytes.
        let registry = RegistryName::parse("land").expect("valid name");
        let meta =
            WriteMeta { request_id: "r-1".into(), actor: "clerk".into(), reason: "fix".into(), commit_time_ms: 9 };
        let (record, value) = (vec![0u8, 1, 255], vec![7u8; 300]);
        let now = Command::Put {
            registry: registry.clone(),
            record: record.clone(),
            value: value.clone(),
            if_revision: Some(3),
            meta: meta.clone(),
        };
        let before = ElementWise::Put { registry, record, value: value.clone(), if_revision: Some(3), meta };
        assert_eq!(encode(&now).expect("encodes"), encode(&before).expect("encodes"));

        let version = RecordVersion {
            revision: 7,
            value: Some(value.clone()),
            create_revision: 5,
            commit_time_ms: 9,
            actor: "a".into(),
            reason: "r".into(),
            node: 4,
        };
        let tuple = (7u64, Some(value), 5u64, 9u64, "a".to_owned(), "r".to_owned(), 4u64);
        assert_eq!(encode(&version).expect("encodes"), encode(&tuple).expect("encodes"));
    }
}
