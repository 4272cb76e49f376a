//! Registries, records, revisions and the validation of what clients send.

use serde::{Deserialize, Serialize};

use crate::limits::*;

/// A revision names one write: `log index << REVISION_POSITION_BITS |
/// position of the write in its entry` (see [`revision_of`]). Global,
/// strictly increasing, the same on every replica; not dense, because one
/// Raft entry may carry a batch of writes and most carry one.
pub type Revision = u64;

/// Bits of a revision that hold a write's position in its Raft entry.
pub const REVISION_POSITION_BITS: u32 = 10;

/// The revision of the write at `position` of the entry at log `index`.
/// `position` must be below `1 << REVISION_POSITION_BITS` (the batcher
/// never builds larger batches; see `WRITE_BATCH_COMMANDS_MAX`).
pub fn revision_of(index: u64, position: u32) -> Revision {
    (index << REVISION_POSITION_BITS) | u64::from(position & ((1 << REVISION_POSITION_BITS) - 1))
}

/// The highest revision any write in entries up to `index` can have: what
/// "applied up to index" means in revisions.
pub fn applied_revision(index: u64) -> Revision {
    if index == 0 {
        0
    } else {
        revision_of(index + 1, 0) - 1
    }
}

/// A request that breaks a rule; it is answered with `INVALID_ARGUMENT` and
/// nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("registry name is empty")]
    RegistryEmpty,
    #[error("registry name is {0} bytes, over the limit REGISTRY_NAME_BYTES_MAX = {REGISTRY_NAME_BYTES_MAX}")]
    RegistryTooLong(usize),
    #[error("registry name {0:?} is malformed: use lowercase letters, digits, '_' and '-', starting with a letter")]
    RegistryMalformed(String),
    #[error("record id is empty")]
    RecordIdEmpty,
    #[error("record id is {0} bytes, over the limit RECORD_ID_BYTES_MAX = {RECORD_ID_BYTES_MAX}")]
    RecordIdTooLong(usize),
    #[error("value is {0} bytes, over the limit VALUE_BYTES_MAX = {VALUE_BYTES_MAX}")]
    ValueTooLarge(usize),
    #[error("actor is {0} bytes, over the limit ACTOR_BYTES_MAX = {ACTOR_BYTES_MAX}")]
    ActorTooLong(usize),
    #[error("reason is {0} bytes, over the limit REASON_BYTES_MAX = {REASON_BYTES_MAX}")]
    ReasonTooLong(usize),
    #[error("request id is empty")]
    RequestIdEmpty,
    #[error("request id is {0} bytes, over the limit REQUEST_ID_BYTES_MAX = {REQUEST_ID_BYTES_MAX}")]
    RequestIdTooLong(usize),
    #[error("page limit {0} is over PAGE_LIMIT_MAX = {PAGE_LIMIT_MAX}")]
    PageTooLarge(u32),
}

/// A validated registry name: `[a-z][a-z0-9_-]*`, at most
/// [`REGISTRY_NAME_BYTES_MAX`] bytes. The restricted alphabet guarantees the
/// name never contains the separator byte used in storage keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RegistryName(String);

impl RegistryName {
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        if name.is_empty() {
            return Err(ValidationError::RegistryEmpty);
        }
        if name.len() > REGISTRY_NAME_BYTES_MAX {
            return Err(ValidationError::RegistryTooLong(name.len()));
        }
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !(first_ok && rest_ok) {
            return Err(ValidationError::RegistryMalformed(name.to_string()));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RegistryName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a record id against its limits.
pub fn validate_record_id(id: &[u8]) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::RecordIdEmpty);
    }
    if id.len() > RECORD_ID_BYTES_MAX {
        return Err(ValidationError::RecordIdTooLong(id.len()));
    }
    Ok(())
}

/// Checks a value against [`VALUE_BYTES_MAX`].
pub fn validate_value(value: &[u8]) -> Result<(), ValidationError> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(ValidationError::ValueTooLarge(value.len()));
    }
    Ok(())
}

/// Checks a request id against its limits.
pub fn validate_request_id(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::RequestIdEmpty);
    }
    if id.len() > REQUEST_ID_BYTES_MAX {
        return Err(ValidationError::RequestIdTooLong(id.len()));
    }
    Ok(())
}

/// Clamps a requested page size: 0 means the default; over the maximum is an error.
pub fn page_limit(requested: u32) -> Result<u32, ValidationError> {
    match requested {
        0 => Ok(PAGE_LIMIT_DEFAULT),
        n if n > PAGE_LIMIT_MAX => Err(ValidationError::PageTooLarge(n)),
        n => Ok(n),
    }
}

/// One revision of one record as the state machine keeps it: in the live
/// table (latest only) and in history (every one, tombstones included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordVersion {
    pub revision: Revision,
    /// `None` for a tombstone written by a delete.
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
    /// Revision at which the record was (re)created after being absent.
    pub create_revision: Revision,
    pub commit_time_ms: u64,
    pub actor: String,
    pub reason: String,
    /// The node that accepted the write and proposed it (the leader then).
    /// With `actor` and `commit_time_ms` it is the write's audit event: the
    /// trail of a record reads its successful writes from history.
    pub node: u64,
}

impl RecordVersion {
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names() {
        assert!(RegistryName::parse("population").is_ok());
        assert!(RegistryName::parse("idp_2024-a").is_ok());
        assert_eq!(RegistryName::parse(""), Err(ValidationError::RegistryEmpty));
        assert!(matches!(RegistryName::parse("Passports"), Err(ValidationError::RegistryMalformed(_))));
        assert!(matches!(RegistryName::parse("1land"), Err(ValidationError::RegistryMalformed(_))));
        assert!(matches!(RegistryName::parse("a\0b"), Err(ValidationError::RegistryMalformed(_))));
        let long = "a".repeat(REGISTRY_NAME_BYTES_MAX + 1);
        assert!(matches!(RegistryName::parse(&long), Err(ValidationError::RegistryTooLong(_))));
    }

    #[test]
    fn limits_name_themselves() {
        let err = validate_value(&vec![0; VALUE_BYTES_MAX + 1]).unwrap_err();
        assert!(err.to_string().contains("VALUE_BYTES_MAX"));
        let err = validate_record_id(&vec![b'x'; RECORD_ID_BYTES_MAX + 1]).unwrap_err();
        assert!(err.to_string().contains("RECORD_ID_BYTES_MAX"));
        assert!(validate_value(&vec![0; VALUE_BYTES_MAX]).is_ok());
        assert_eq!(page_limit(0), Ok(PAGE_LIMIT_DEFAULT));
        assert!(page_limit(PAGE_LIMIT_MAX + 1).is_err());
    }
}
