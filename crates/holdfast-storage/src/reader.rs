//! Client reads of the state machine: latest or past revision of a record,
//! its history, a registry scan, and a digest for convergence checks. Each
//! read uses one RocksDB snapshot, so the data and the applied revision it
//! reports agree.

use rocksdb::{Direction, IteratorMode, ReadOptions};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use holdfast_types::codec::decode;
use holdfast_types::record::applied_revision;
use holdfast_types::{
    AccessPolicy, AuditEvent, AuditOp, AuditOutcome, KeyringState, LogId, RecordVersion, RegistryName, Revision,
};

use crate::db::{read_options, total_order, PromptApplySyncs, Store};
use crate::error::{blocking, StorageError};
use crate::keys::*;

/// A cheap, cloneable read handle.
#[derive(Clone)]
pub struct ReadView {
    store: Store,
    applied_rx: watch::Receiver<u64>,
    keyring_rx: watch::Receiver<KeyringState>,
    access_rx: watch::Receiver<AccessPolicy>,
}

impl std::fmt::Debug for ReadView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadView").field("applied", &*self.applied_rx.borrow()).finish()
    }
}

/// One page of a record's history, oldest first.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub versions: Vec<RecordVersion>,
    /// Set when more revisions follow: pass it as `after_revision`.
    pub next_after: Option<Revision>,
    pub applied: Revision,
}

/// One page of a registry's live records.
#[derive(Debug, Clone)]
pub struct ScanPage {
    pub entries: Vec<(Vec<u8>, RecordVersion)>,
    /// Set when more records follow: pass it as `after_record`.
    pub next_after: Option<Vec<u8>>,
    pub applied: Revision,
}

/// One page of a record's audit trail, oldest first.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Set when more events follow: pass it back as `after`.
    pub next_after: Option<Vec<u8>>,
    pub applied: Revision,
}

/// One stored revision found by [`ReadView::versions`].
#[derive(Debug, Clone)]
pub struct StoredVersion {
    pub key: Vec<u8>,
    pub registry: RegistryName,
    pub record: Vec<u8>,
    pub version: RecordVersion,
}

/// A batch of stored revisions and where to resume.
#[derive(Debug, Clone)]
pub struct VersionBatch {
    pub versions: Vec<StoredVersion>,
    pub resume: Option<Vec<u8>>,
}

type View<'a> = rocksdb::SnapshotWithThreadMode<'a, rocksdb::DB>;

fn applied_in(store: &Store, view: &View<'_>) -> Result<Revision, StorageError> {
    applied_in_with(store, view, read_options(false))
}

fn applied_in_with(store: &Store, view: &View<'_>, opts: ReadOptions) -> Result<Revision, StorageError> {
    match view.get_cf_opt(store.cf(CF_SM_META), META_LAST_APPLIED, opts)? {
        Some(b) => {
            let last: Option<LogId> = decode(&b).map_err(StorageError::corrupt("last applied"))?;
            Ok(applied_revision(last.map_or(0, |l| l.index)))
        }
        None => Ok(0),
    }
}

fn decode_version(bytes: &[u8]) -> Result<RecordVersion, StorageError> {
    decode(bytes).map_err(StorageError::corrupt("record"))
}

/// Where an event sits in a record's audit trail: the revision (u64 BE)
/// and the position in its entry (u32 BE), as `audit` keys end.
type TrailPosition = [u8; AUDIT_SUFFIX_BYTES];

/// The trail position of `key` (an `audit` key when `suffix` is 12, a
/// `history` key at position 0 when it is 8), or `None` if the key belongs
/// to another record.
fn trail_position(prefix: &[u8], key: &[u8], suffix: usize) -> Option<TrailPosition> {
    if key.len() != prefix.len() + suffix || !key.starts_with(prefix) {
        return None;
    }
    let mut position = [0; AUDIT_SUFFIX_BYTES];
    position[..suffix].copy_from_slice(&key[prefix.len()..]);
    Some(position)
}

/// The audit event of the successful write that stored `version`, as it
/// was recorded when the write applied.
fn write_event(registry: &RegistryName, record: &[u8], version: RecordVersion) -> AuditEvent {
    AuditEvent {
        time_ms: version.commit_time_ms,
        op: if version.is_tombstone() { AuditOp::Delete } else { AuditOp::Put },
        identity: version.actor,
        registry: registry.clone(),
        record: record.to_vec(),
        revision: version.revision,
        outcome: AuditOutcome::Ok,
        node: version.node,
    }
}

/// The latest version of a record and the applied revision, from one
/// snapshot; `memory_only` as in [`read_options`](crate::db::read_options).
fn latest_with(
    store: &Store,
    registry: &RegistryName,
    record: &[u8],
    memory_only: bool,
) -> Result<(Option<RecordVersion>, Revision), StorageError> {
    let view = store.db.snapshot();
    let applied = applied_in_with(store, &view, read_options(memory_only))?;
    let version =
        match view.get_cf_opt(store.cf(CF_RECORDS), record_key(registry, record), read_options(memory_only))? {
            Some(head) => Some(version_at_head(store, &view, registry, record, &head, read_options(memory_only))?),
            None => None,
        };
    Ok((version, applied))
}

/// The version a `records` entry (`record` of `registry` → `head`) points
/// at, read from `history` in the same snapshot. Versions are never deleted
/// from `history` (a snapshot install clears it, then loads it before
/// `records`), so a head without its version is corruption.
fn version_at_head(
    store: &Store,
    view: &View<'_>,
    registry: &RegistryName,
    record: &[u8],
    head: &[u8],
    opts: ReadOptions,
) -> Result<RecordVersion, StorageError> {
    let head = RecordHead::decode(head).ok_or(StorageError::CorruptValue("records"))?;
    match view.get_cf_opt(store.cf(CF_HISTORY), history_key(registry, record, head.revision), opts)? {
        Some(bytes) => decode_version(&bytes),
        None => Err(StorageError::CorruptValue("records (a live record's latest version is missing from history)")),
    }
}

impl ReadView {
    pub(crate) fn new(
        store: Store,
        applied_rx: watch::Receiver<u64>,
        keyring_rx: watch::Receiver<KeyringState>,
        access_rx: watch::Receiver<AccessPolicy>,
    ) -> Self {
        Self { store, applied_rx, keyring_rx, access_rx }
    }

    /// The replicated access policy; changes whenever a grant changes.
    pub fn access(&self) -> watch::Receiver<AccessPolicy> {
        self.access_rx.clone()
    }

    /// Up to `limit` audit events of one record, oldest first, after the
    /// resume token `after` (from the previous page). A record's trail is
    /// two sorted streams merged by position (revision, then position in
    /// its entry): its history versions, each the event of a successful
    /// write at (revision, 0), and the `audit` family's events (reads,
    /// refused writes). No two events share a position: a log entry holds
    /// either writes or audited reads.
    pub async fn audit_trail(
        &self,
        registry: RegistryName,
        record: Vec<u8>,
        after: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<AuditPage, StorageError> {
        let store = self.store.clone();
        blocking(move || {
            let view = store.db.snapshot();
            let applied = applied_in(&store, &view)?;
            let prefix = record_key(&registry, &record);
            // The token is the position of the first event not yet returned.
            let from: TrailPosition = match after {
                Some(token) => token.try_into().map_err(|_| StorageError::CorruptKey("audit page token"))?,
                None => [0; AUDIT_SUFFIX_BYTES],
            };
            // Up to `limit + 1` events of each stream: enough to fill the
            // page and to find where the next one starts.
            let wanted = limit as usize + 1;
            let mut trail: Vec<(TrailPosition, AuditEvent)> = Vec::with_capacity(wanted);
            let start = [&prefix[..], &from].concat();
            // Within the record's events: the memtable seeks its list alone.
            let mut opts = ReadOptions::default();
            opts.set_prefix_same_as_start(true);
            for item in view.iterator_cf_opt(store.cf(CF_AUDIT), opts, IteratorMode::From(&start, Direction::Forward)) {
                let (key, value) = item?;
                let Some(position) = trail_position(&prefix, &key, AUDIT_SUFFIX_BYTES) else { break };
                if trail.len() == wanted {
                    break;
                }
                trail.push((position, decode(&value).map_err(StorageError::corrupt("audit event"))?));
            }
            let from_written = trail.len();
            let start = [&prefix[..], &from[..8]].concat();
            for item in view.iterator_cf(store.cf(CF_HISTORY), IteratorMode::From(&start, Direction::Forward)) {
                let (key, value) = item?;
                let Some(position) = trail_position(&prefix, &key, 8) else { break };
                if position < from {
                    // The write at the token's revision, when the token
                    // points past its position 0.
                    continue;
                }
                if trail.len() - from_written == wanted {
                    break;
                }
                trail.push((position, write_event(&registry, &record, decode_version(&value)?)));
            }
            trail.sort_by_key(|(position, _)| *position);
            let next_after = trail.get(limit as usize).map(|(position, _)| position.to_vec());
            trail.truncate(limit as usize);
            Ok(AuditPage { events: trail.into_iter().map(|(_, event)| event).collect(), next_after, applied })
        })
        .await
    }

    /// The replicated keyring; changes whenever a key is added or retired.
    pub fn keyring(&self) -> watch::Receiver<KeyringState> {
        self.keyring_rx.clone()
    }

    /// Up to `limit` stored revisions (any registry) after the history key
    /// `after`, in key order, with a resume key. For background passes over
    /// every stored value, such as re-encryption.
    pub async fn versions(&self, after: Option<Vec<u8>>, limit: usize) -> Result<VersionBatch, StorageError> {
        let store = self.store.clone();
        blocking(move || {
            let view = store.db.snapshot();
            let mut versions = Vec::new();
            let start = after.clone().map(|mut k| {
                k.push(0);
                k
            });
            let mode = match &start {
                Some(k) => IteratorMode::From(k, Direction::Forward),
                None => IteratorMode::Start,
            };
            let mut resume = None;
            for item in view.iterator_cf(store.cf(CF_HISTORY), mode) {
                let (key, value) = item?;
                if versions.len() == limit {
                    resume = versions.last().map(|v: &StoredVersion| v.key.clone());
                    break;
                }
                let (registry, record, _) = split_history_key(&key).ok_or(StorageError::CorruptKey("history"))?;
                let record = record.to_vec();
                versions.push(StoredVersion { key: key.to_vec(), registry, record, version: decode_version(&value)? });
            }
            Ok(VersionBatch { versions, resume })
        })
        .await
    }

    /// Until the guard drops, an apply syncs at once rather than wait for a
    /// log append's sync to cover it, and one that is waiting now syncs at
    /// once: for a reader about to wait for the applied index (which moves
    /// only after the sync, and no append may come soon), and for a node
    /// shutting down (no append will come).
    pub fn prompt_apply_syncs(&self) -> PromptApplySyncs {
        PromptApplySyncs::new(&self.store)
    }

    /// The log index of the last applied entry, as published by the state
    /// machine.
    pub fn applied_index(&self) -> u64 {
        *self.applied_rx.borrow()
    }

    /// The highest revision the applied entries can hold: every write at or
    /// below it is visible to reads.
    pub fn applied_revision(&self) -> Revision {
        applied_revision(self.applied_index())
    }

    /// Waits until the state machine has applied the entry at log `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<(), StorageError> {
        let _prompt = self.prompt_apply_syncs();
        let mut rx = self.applied_rx.clone();
        rx.wait_for(|applied| *applied >= index)
            .await
            .map_err(|_| StorageError::Task("state machine closed".into()))?;
        Ok(())
    }

    /// The record as of `at_revision` (latest live when `None`): the newest
    /// version at or before it, which may be a tombstone.
    ///
    /// The latest version is first looked up in place, from memory only
    /// (memtables and cached blocks): that answers most reads and costs less
    /// than handing them to the blocking pool. A read that would touch the
    /// disk goes to the pool, so a slow disk never stalls the runtime.
    pub async fn get(
        &self,
        registry: RegistryName,
        record: Vec<u8>,
        at_revision: Option<Revision>,
    ) -> Result<(Option<RecordVersion>, Revision), StorageError> {
        if at_revision.is_none() {
            match latest_with(&self.store, &registry, &record, true) {
                Err(e) if e.is_incomplete() => {}
                answered => return answered,
            }
        }
        let store = self.store.clone();
        blocking(move || {
            let Some(at) = at_revision else {
                return latest_with(&store, &registry, &record, false);
            };
            let view = store.db.snapshot();
            let applied = applied_in(&store, &view)?;
            let prefix = record_key(&registry, &record);
            let seek = history_key(&registry, &record, at);
            let mut iter = view.iterator_cf(store.cf(CF_HISTORY), IteratorMode::From(&seek, Direction::Reverse));
            let version = match iter.next().transpose()? {
                Some((key, value)) if key.len() == prefix.len() + 8 && key.starts_with(&prefix) => {
                    Some(decode_version(&value)?)
                }
                _ => None,
            };
            Ok((version, applied))
        })
        .await
    }

    /// Up to `limit` revisions of a record after `after_revision`, oldest first.
    pub async fn history(
        &self,
        registry: RegistryName,
        record: Vec<u8>,
        after_revision: Revision,
        limit: u32,
    ) -> Result<HistoryPage, StorageError> {
        let store = self.store.clone();
        blocking(move || {
            let view = store.db.snapshot();
            let applied = applied_in(&store, &view)?;
            let prefix = record_key(&registry, &record);
            let start = history_key(&registry, &record, after_revision.saturating_add(1));
            let mut versions = Vec::new();
            let mut next_after = None;
            for item in view.iterator_cf(store.cf(CF_HISTORY), IteratorMode::From(&start, Direction::Forward)) {
                let (key, value) = item?;
                if !(key.len() == prefix.len() + 8 && key.starts_with(&prefix)) {
                    break;
                }
                if versions.len() == limit as usize {
                    next_after = versions.last().map(|v: &RecordVersion| v.revision);
                    break;
                }
                versions.push(decode_version(&value)?);
            }
            Ok(HistoryPage { versions, next_after, applied })
        })
        .await
    }

    /// Up to `limit` live records of a registry after `after_record`, in key
    /// order (record length, then bytes).
    pub async fn scan(
        &self,
        registry: RegistryName,
        after_record: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<ScanPage, StorageError> {
        let store = self.store.clone();
        blocking(move || {
            let view = store.db.snapshot();
            let applied = applied_in(&store, &view)?;
            let prefix = registry_prefix(&registry);
            let start = match &after_record {
                // The key right after the last one returned.
                Some(record) => {
                    let mut k = record_key(&registry, record);
                    k.push(0);
                    k
                }
                None => prefix.clone(),
            };
            let mut entries: Vec<(Vec<u8>, RecordVersion)> = Vec::new();
            let mut next_after = None;
            for item in view.iterator_cf(store.cf(CF_RECORDS), IteratorMode::From(&start, Direction::Forward)) {
                let (key, value) = item?;
                if !key.starts_with(&prefix) {
                    break;
                }
                if entries.len() == limit as usize {
                    next_after = entries.last().map(|(r, _)| r.clone());
                    break;
                }
                let record = record_of_key(prefix.len(), &key).ok_or(StorageError::CorruptKey("records"))?;
                let version = version_at_head(&store, &view, &registry, record, &value, ReadOptions::default())?;
                entries.push((record.to_vec(), version));
            }
            Ok(ScanPage { entries, next_after, applied })
        })
        .await
    }

    /// SHA-256 over every live record, history entry, grant and audit event, with the
    /// applied revision it describes. Replicas that applied the same log
    /// have the same digest.
    pub async fn digest(&self) -> Result<(Revision, String), StorageError> {
        let store = self.store.clone();
        blocking(move || {
            let view = store.db.snapshot();
            let applied = applied_in(&store, &view)?;
            let mut hasher = Sha256::new();
            for name in [CF_RECORDS, CF_HISTORY, CF_ACCESS, CF_AUDIT] {
                let mut opts = total_order();
                opts.fill_cache(false);
                for item in view.iterator_cf_opt(store.cf(name), opts, IteratorMode::Start) {
                    let (key, value) = item?;
                    hasher.update((key.len() as u64).to_be_bytes());
                    hasher.update(&key);
                    hasher.update((value.len() as u64).to_be_bytes());
                    hasher.update(&value);
                }
            }
            Ok((applied, hex::encode(hasher.finalize())))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::put;
    use crate::db::StoreOptions;
    use holdfast_types::record::revision_of;

    /// After a restart the block cache is cold: the in-memory lookup cannot
    /// answer and the read must still find the record, from disk.
    #[tokio::test]
    async fn a_get_that_needs_the_disk_is_answered_from_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
            store.state_machine().await.unwrap().apply_batch(vec![put(1, "on-disk")]).await.unwrap();
            for cf in [CF_RECORDS, CF_HISTORY, CF_SM_META] {
                store.db.flush_cf(store.cf(cf)).unwrap();
            }
        }
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let registry = RegistryName::parse("population").unwrap();
        let cold = latest_with(&store, &registry, b"on-disk", true);
        assert!(
            matches!(&cold, Err(e) if e.is_incomplete()),
            "a memory-only read of a cold block reports Incomplete: {cold:?}"
        );
        let view = store.state_machine().await.unwrap().read_view();
        let (version, applied) = view.get(registry, b"on-disk".to_vec(), None).await.unwrap();
        assert_eq!(version.map(|v| v.value), Some(Some(b"v".to_vec())));
        assert_eq!(applied, applied_revision(1));
    }

    /// A `records` value that is not a head, or a head whose version is not
    /// in `history`, is reported as corruption by reads; a value that is
    /// not a head, by the next write of that record too, which writes
    /// nothing. Nothing panics.
    #[tokio::test]
    async fn a_corrupt_record_head_is_an_error_for_reads_and_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let mut sm = store.state_machine().await.unwrap();
        sm.apply_batch(vec![put(1, "short"), put(2, "dangling")]).await.unwrap();
        let registry = RegistryName::parse("population").unwrap();
        let records = store.cf(CF_RECORDS);
        store.db.put_cf(records, record_key(&registry, b"short"), b"not a head").unwrap();
        let missing = RecordHead { revision: revision_of(99, 0), create_revision: revision_of(2, 0) };
        store.db.put_cf(records, record_key(&registry, b"dangling"), missing.encode()).unwrap();

        let view = sm.read_view();
        for (record, says) in [(&b"short"[..], "corrupt value in records"), (b"dangling", "missing from history")] {
            let read = view.get(registry.clone(), record.to_vec(), None).await;
            assert!(matches!(&read, Err(e) if e.to_string().contains(says)), "{read:?}");
        }
        let scanned = view.scan(registry.clone(), None, 10).await;
        assert!(matches!(&scanned, Err(e) if e.to_string().contains("records")), "{scanned:?}");
        // A new request id: a retry of the first would be answered from memory.
        let mut write = put(3, "short");
        if let openraft::EntryPayload::Normal(holdfast_types::Command::Put { meta, .. }) = &mut write.payload {
            meta.request_id = "another".into();
        }
        let applied = sm.apply_batch(vec![write]).await;
        assert!(matches!(&applied, Err(e) if e.to_string().contains("corrupt value in records")), "{applied:?}");
        let (_, applied_now) = view.get(registry, b"dangling".to_vec(), Some(revision_of(2, 0))).await.unwrap();
        assert_eq!(applied_now, applied_revision(2), "the failed apply changed nothing");
    }
}
