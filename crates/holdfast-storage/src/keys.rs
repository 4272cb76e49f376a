//! Column families and key layouts. Do not change: data on disk uses them.
//!
//! Record keys are `registry | 0x00 | u16 BE length | record`, and history
//! keys append the revision as u64 BE. Registry names never contain 0x00 (see
//! `RegistryName`), so a registry's keys form one contiguous range, and the
//! length prefix makes record keys unambiguous whatever bytes they hold.
//! Scans therefore return records ordered by (record length, record bytes).

use holdfast_types::{RegistryName, Revision, Scope};

/// Raft log entries by index (u64 BE).
pub const CF_LOG: &str = "log";
/// Vote, last purged log id, committed log id.
pub const CF_RAFT_META: &str = "raft_meta";
/// last_applied, membership, snapshot install marker.
pub const CF_SM_META: &str = "sm_meta";
/// Each live record → its [`RecordHead`]: where its latest version sits
/// in `history`. The value is stored once, in `history`.
pub const CF_RECORDS: &str = "records";
/// Every revision of every record, tombstones included.
pub const CF_HISTORY: &str = "history";
/// Remembered request ids → their sequence number (u64 BE) and the result
/// first returned; plus [`REQUEST_COUNT`]. Ids older than the last
/// `REQUEST_IDS_REMEMBERED` count as forgotten and compaction drops them.
pub const CF_REQUESTS: &str = "requests";
/// Wrapped data keys by id (u32 BE) and the current id; opaque bytes.
pub const CF_KEYS: &str = "keys";

/// Access grants: `identity | 0x00 | scope` → the permission set.
pub const CF_ACCESS: &str = "access";
/// The access audit trail: `record key | revision u64 BE | position u32 BE`
/// → event. Append-only: nothing deletes from it.
pub const CF_AUDIT: &str = "audit";

pub const ALL_CFS: [&str; 9] =
    [CF_LOG, CF_RAFT_META, CF_SM_META, CF_RECORDS, CF_HISTORY, CF_REQUESTS, CF_KEYS, CF_ACCESS, CF_AUDIT];

/// Column families that make up the state machine's data, in snapshot order.
/// The tag of each is its position + 1. Do not reorder; append only (a
/// change here is a new snapshot format).
pub const SNAPSHOT_CFS: [&str; 6] = [CF_RECORDS, CF_HISTORY, CF_REQUESTS, CF_KEYS, CF_ACCESS, CF_AUDIT];

pub const META_VOTE: &[u8] = b"vote";
pub const META_LAST_PURGED: &[u8] = b"last_purged";
pub const META_COMMITTED: &[u8] = b"committed";
pub const META_LAST_APPLIED: &[u8] = b"last_applied";
pub const META_MEMBERSHIP: &[u8] = b"membership";
/// Id (u32 BE) of the data key that seals new writes, kept in the `keys`
/// family under this reserved key so snapshots carry it.
pub const KEYS_CURRENT: &[u8] = b"current";
/// How many request ids were ever remembered and how many of the latest are
/// remembered (u64 BE each), in the `requests` family under the empty key,
/// which no request id can be, so snapshots carry them.
pub const REQUEST_COUNT: &[u8] = b"";
/// The data directory's format (u32 BE), in `sm_meta`.
pub const META_FORMAT: &[u8] = b"format";
/// Present while a received snapshot is being loaded; names its file so an
/// interrupted install is redone at the next open.
pub const META_INSTALLING: &[u8] = b"installing_snapshot";

pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

pub fn decode_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// Start of a registry's key range in `records` and `history`.
pub fn registry_prefix(registry: &RegistryName) -> Vec<u8> {
    let mut key = Vec::with_capacity(registry.as_str().len() + 1);
    key.extend_from_slice(registry.as_str().as_bytes());
    key.push(0);
    key
}

pub fn record_key(registry: &RegistryName, record: &[u8]) -> Vec<u8> {
    let mut key = registry_prefix(registry);
    // Record ids are bounded far below u16::MAX by RECORD_ID_BYTES_MAX and
    // blind ids are 32 bytes; the cast cannot truncate a validated id.
    key.extend_from_slice(&(record.len() as u16).to_be_bytes());
    key.extend_from_slice(record);
    key
}

/// What `records` holds for a live record: the revision of its latest
/// version (whose `history` key is the record key and this revision) and the
/// revision it was created at, u64 BE each. A write checks its condition and
/// carries the creation revision on from these alone; a read takes the
/// version itself from `history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHead {
    pub revision: Revision,
    pub create_revision: Revision,
}

impl RecordHead {
    pub fn encode(&self) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.revision.to_be_bytes());
        bytes[8..].copy_from_slice(&self.create_revision.to_be_bytes());
        bytes
    }

    /// `None` unless `bytes` is exactly one encoded head.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 16 {
            return None;
        }
        Some(Self { revision: decode_u64(&bytes[..8])?, create_revision: decode_u64(&bytes[8..])? })
    }
}

/// Splits a `records` key back into the record part (after the registry).
pub fn record_of_key(prefix_len: usize, key: &[u8]) -> Option<&[u8]> {
    let rest = key.get(prefix_len..)?;
    let len = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let record = rest.get(2..)?;
    (record.len() == len).then_some(record)
}

pub fn history_key(registry: &RegistryName, record: &[u8], revision: Revision) -> Vec<u8> {
    let mut key = record_key(registry, record);
    key.extend_from_slice(&revision.to_be_bytes());
    key
}

/// Splits a `history` key into registry name, record and revision.
pub fn split_history_key(key: &[u8]) -> Option<(RegistryName, &[u8], Revision)> {
    let sep = key.iter().position(|b| *b == 0)?;
    let registry = RegistryName::parse(std::str::from_utf8(&key[..sep]).ok()?).ok()?;
    let rest = &key[sep + 1..];
    let len = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let record = rest.get(2..2 + len)?;
    let revision = decode_u64(rest.get(2 + len..)?)?;
    Some((registry, record, revision))
}

/// Key of one grant. Identities have no control characters (see
/// `validate_identity`), so the separator is unambiguous.
pub fn access_key(identity: &str, scope: &Scope) -> Vec<u8> {
    let mut key = identity.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(scope.to_string().as_bytes());
    key
}

/// Splits an `access` key into identity and scope.
pub fn split_access_key(key: &[u8]) -> Option<(String, Scope)> {
    let sep = key.iter().position(|b| *b == 0)?;
    let identity = std::str::from_utf8(&key[..sep]).ok()?.to_string();
    let scope = Scope::parse(std::str::from_utf8(&key[sep + 1..]).ok()?).ok()?;
    Some((identity, scope))
}

/// The record key an audit key starts with (empty for a key too short to
/// be one, which the `audit` family never holds).
pub fn audit_record_of(key: &[u8]) -> &[u8] {
    &key[..key.len().saturating_sub(AUDIT_SUFFIX_BYTES)]
}

/// Revision (u64 BE) and position (u32 BE) after an audit key's record key.
pub const AUDIT_SUFFIX_BYTES: usize = 12;

/// Key of one audit event: events of a record sort together, oldest first,
/// by revision and then position in their entry (a refused write's event is
/// at its revision, position 0, where a successful write's history version
/// sits in the trail).
pub fn audit_key(registry: &RegistryName, record: &[u8], revision: Revision, position: u32) -> Vec<u8> {
    let mut key = record_key(registry, record);
    key.extend_from_slice(&revision.to_be_bytes());
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// The revision at the end of a `history` key.
#[cfg(test)]
pub fn revision_of_history_key(key: &[u8]) -> Option<Revision> {
    decode_u64(key.get(key.len().checked_sub(8)?..)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_round_trip_and_do_not_collide() {
        let reg = RegistryName::parse("population").unwrap();
        let prefix = registry_prefix(&reg);
        let k = record_key(&reg, b"UA-123");
        assert_eq!(record_of_key(prefix.len(), &k), Some(&b"UA-123"[..]));
        // "ab" in one record vs "a" followed by history bytes cannot meet.
        assert_ne!(record_key(&reg, b"ab"), record_key(&reg, b"a"));
        let h = history_key(&reg, b"UA-123", 42);
        assert_eq!(revision_of_history_key(&h), Some(42));
        assert!(h.starts_with(&k));
        assert_eq!(record_of_key(prefix.len(), &prefix[..]), None);
        let (r, rec, rev) = split_history_key(&h).unwrap();
        assert_eq!((r, rec, rev), (reg.clone(), &b"UA-123"[..], 42));
        let a = access_key("population-service", &Scope::Registry(reg.clone()));
        assert_eq!(split_access_key(&a), Some(("population-service".to_string(), Scope::Registry(reg.clone()))));
        assert_eq!(split_access_key(&access_key("root", &Scope::All)), Some(("root".to_string(), Scope::All)));
        assert!(audit_key(&reg, b"UA-123", 7, 1).starts_with(&k));
        assert_eq!(audit_record_of(&audit_key(&reg, b"UA-123", 7, 1)), &k[..]);
        assert_eq!(audit_record_of(b"short"), b"");
        assert!(audit_key(&reg, b"UA-123", 7, 1) < audit_key(&reg, b"UA-123", 8, 0));
    }

    #[test]
    fn record_heads_round_trip_and_refuse_any_other_length() {
        let head = RecordHead { revision: 1 << 40 | 7, create_revision: 3 };
        assert_eq!(RecordHead::decode(&head.encode()), Some(head));
        assert_eq!(RecordHead::decode(&head.encode()[..15]), None);
        assert_eq!(RecordHead::decode(&[head.encode().as_slice(), &[0]].concat()), None);
        assert_eq!(RecordHead::decode(b""), None);
    }
}
