//! Applying commands to the state machine: one `WriteBatch` per `apply` call,
//! with an overlay so entries later in the batch see earlier ones.

use std::collections::{BTreeSet, HashMap};

use rocksdb::{ReadOptions, WriteBatch};
use sha2::{Digest, Sha256};

use holdfast_types::codec::{decode, encode};
use holdfast_types::limits::WRITE_BATCH_COMMANDS_MAX;
use holdfast_types::record::revision_of;
use holdfast_types::{
    AuditEvent, AuditOp, AuditOutcome, Command, CommandResult, Permission, RecordVersion, RegistryName, Revision,
    WriteMeta, WriteRef,
};

use crate::db::{read_options, Store};
use crate::error::StorageError;
use crate::keys::*;

/// Pending changes of one `apply` call.
pub(crate) struct ApplyBatch<'a> {
    store: &'a Store,
    pub(crate) batch: WriteBatch,
    /// Live-record changes made earlier in this batch (`None` = deleted).
    records: HashMap<Vec<u8>, Option<RecordHead>>,
    /// Request ids remembered earlier in this batch, with their sequence
    /// numbers.
    requests: HashMap<String, (u64, CommandResult)>,
    /// How many request ids were ever remembered (loaded on first use).
    count: Option<RequestCount>,
    /// Key ids added or retired in this batch.
    pub(crate) keys_changed: Vec<u32>,
    /// Grants changed earlier in this batch (`None` = removed).
    access: HashMap<Vec<u8>, Option<BTreeSet<Permission>>>,
    /// How the batch reads what earlier batches left.
    read: ReadOptions,
}

impl<'a> ApplyBatch<'a> {
    /// An empty batch. Its reads, if `memory_only`, fail with `Incomplete`
    /// ([`StorageError::is_incomplete`]) rather than touch the disk: a batch
    /// that may be built on a runtime thread.
    pub(crate) fn new(store: &'a Store, memory_only: bool) -> Self {
        Self {
            store,
            batch: WriteBatch::default(),
            records: HashMap::new(),
            requests: HashMap::new(),
            count: None,
            keys_changed: Vec::new(),
            access: HashMap::new(),
            read: read_options(memory_only),
        }
    }

    /// Where the latest version of the record at `key` is, if it is live.
    fn latest(&self, key: &[u8]) -> Result<Option<RecordHead>, StorageError> {
        if let Some(pending) = self.records.get(key) {
            return Ok(*pending);
        }
        match self.store.db.get_pinned_cf_opt(self.store.cf(CF_RECORDS), key, &self.read)? {
            Some(bytes) => Ok(Some(RecordHead::decode(&bytes).ok_or(StorageError::CorruptValue("records"))?)),
            None => Ok(None),
        }
    }

    /// The first result of `request_id`, if it is still remembered: one of
    /// the latest ids remembered, as many as the stored window holds.
    fn remembered(&mut self, request_id: &str) -> Result<Option<CommandResult>, StorageError> {
        let found = match self.requests.get(request_id) {
            Some(pending) => Some(pending.clone()),
            None => match self.store.db.get_cf_opt(self.store.cf(CF_REQUESTS), request_id.as_bytes(), &self.read)? {
                Some(bytes) => Some(decode_remembered(&bytes)?),
                None => None,
            },
        };
        let Some((seq, result)) = found else { return Ok(None) };
        let state = self.request_count()?;
        Ok(still_remembered(seq, state.count, state.limit).then_some(result))
    }

    /// Remembers the result of `request_id` as the next in the sequence of
    /// remembered ids. Nothing is deleted: an id falls out of the window as
    /// newer ones arrive (deterministically, on every replica, whatever the
    /// grouping of entries into apply calls), and compaction drops it later.
    fn remember(&mut self, request_id: &str, result: &CommandResult) -> Result<(), StorageError> {
        if request_id.is_empty() {
            return Ok(());
        }
        let state = self.request_count()?;
        let seq = state.count;
        state.count += 1;
        self.batch.put_cf(self.store.cf(CF_REQUESTS), request_id.as_bytes(), encode_remembered(seq, result)?);
        self.requests.insert(request_id.to_string(), (seq, result.clone()));
        Ok(())
    }

    fn request_count(&mut self) -> Result<&mut RequestCount, StorageError> {
        if self.count.is_none() {
            let state = match self.store.db.get_cf_opt(self.store.cf(CF_REQUESTS), REQUEST_COUNT, &self.read)? {
                Some(bytes) => {
                    let (count, limit) = bytes
                        .get(..8)
                        .and_then(decode_u64)
                        .zip(bytes.get(8..).and_then(decode_u64))
                        .ok_or(StorageError::CorruptKey("requests/count"))?;
                    RequestCount { stored: Some(count), count, limit }
                }
                // The first id: the window is fixed now, for good.
                None => RequestCount { stored: None, count: 0, limit: self.store.requests_remembered },
            };
            self.count = Some(state);
        }
        // Set just above.
        Ok(self.count.as_mut().expect("request count loaded"))
    }

    fn write_version(
        &mut self,
        registry: &RegistryName,
        record: &[u8],
        version: RecordVersion,
    ) -> Result<(), StorageError> {
        let key = record_key(registry, record);
        let bytes = encode(&version).map_err(StorageError::corrupt("record"))?;
        self.batch.put_cf(self.store.cf(CF_HISTORY), history_key(registry, record, version.revision), &bytes);
        if version.is_tombstone() {
            self.batch.delete_cf(self.store.cf(CF_RECORDS), &key);
            self.records.insert(key, None);
        } else {
            let head = RecordHead { revision: version.revision, create_revision: version.create_revision };
            self.batch.put_cf(self.store.cf(CF_RECORDS), &key, head.encode());
            self.records.insert(key, Some(head));
        }
        Ok(())
    }

    /// Applies the command of the entry at log `index`, proposed by node
    /// `proposer`, and returns its result. A batch applies its writes in
    /// order, each at its own revision.
    pub(crate) fn apply_entry(
        &mut self,
        index: u64,
        proposer: u64,
        command: &Command,
    ) -> Result<CommandResult, StorageError> {
        if let Some(write) = command.as_write() {
            return self.apply_write(revision_of(index, 0), proposer, write);
        }
        let Command::Batch { writes } = command else {
            return self.apply_key_command(index, command);
        };
        // More writes than the revision layout can number: never proposed
        // by a node; refused whole rather than half applied.
        if writes.len() > WRITE_BATCH_COMMANDS_MAX {
            return Ok(CommandResult::Batch(vec![CommandResult::None; writes.len()]));
        }
        let mut results = Vec::with_capacity(writes.len());
        for (position, write) in (0u32..).zip(writes) {
            results.push(self.apply_write(revision_of(index, position), proposer, write.as_write())?);
        }
        Ok(CommandResult::Batch(results))
    }

    /// Applies one client write at `revision`.
    fn apply_write(
        &mut self,
        revision: Revision,
        proposer: u64,
        write: WriteRef<'_>,
    ) -> Result<CommandResult, StorageError> {
        let WriteRef { registry, record, value, if_revision, meta } = write;
        if !meta.request_id.is_empty() {
            if let Some(first) = self.remembered(&meta.request_id)? {
                return Ok(CommandResult::Duplicate(Box::new(first)));
            }
        }
        let current = self.latest(&record_key(registry, record))?;
        let result = match (value, current) {
            // Deleting what does not exist writes nothing.
            (None, None) => CommandResult::NotFound,
            (value, current) => match check_condition(current.as_ref(), if_revision) {
                Some(conflict) => conflict,
                None => {
                    let create_revision = current.map_or(revision, |c| c.create_revision);
                    let stored = version(revision, value.map(<[u8]>::to_vec), create_revision, meta, proposer);
                    self.write_version(registry, record, stored)?;
                    CommandResult::Written { revision }
                }
            },
        };
        self.audit_refused_write(revision, proposer, write, &result)?;
        self.remember(&meta.request_id, &result)?;
        Ok(result)
    }

    /// The audit event of a write that was refused (a condition failed, or
    /// a delete found nothing), in the same batch: no write applies without
    /// its trace, and it costs no Raft entry of its own. A successful
    /// write's event is its history version (actor, commit time, proposing
    /// node, revision), which the trail reader merges in; storing it twice
    /// would cost every replica a memtable insert per write. The identity
    /// is the stored actor (the authenticated identity on a TLS node); the
    /// serving node is the leader that proposed the entry.
    fn audit_refused_write(
        &mut self,
        revision: Revision,
        proposer: u64,
        write: WriteRef<'_>,
        result: &CommandResult,
    ) -> Result<(), StorageError> {
        let op = if write.value.is_some() { AuditOp::Put } else { AuditOp::Delete };
        let (revision_seen, outcome) = match result {
            CommandResult::Conflict { current } => (*current, AuditOutcome::Conflict),
            CommandResult::NotFound => (0, AuditOutcome::NotFound),
            CommandResult::Written { .. }
            | CommandResult::None
            | CommandResult::Duplicate(_)
            | CommandResult::Batch(_) => return Ok(()),
        };
        let event = AuditEvent {
            time_ms: write.meta.commit_time_ms,
            identity: write.meta.actor.clone(),
            registry: write.registry.clone(),
            record: write.record.to_vec(),
            op,
            revision: revision_seen,
            outcome,
            node: proposer,
        };
        let bytes = encode(&event).map_err(StorageError::corrupt("audit event"))?;
        self.batch.put_cf(self.store.cf(CF_AUDIT), audit_key(write.registry, write.record, revision, 0), bytes);
        Ok(())
    }

    /// Whether an access or audit change was applied in this batch.
    pub(crate) fn access_changed(&self) -> bool {
        !self.access.is_empty()
    }

    fn grant_of(&self, key: &[u8]) -> Result<BTreeSet<Permission>, StorageError> {
        if let Some(pending) = self.access.get(key) {
            return Ok(pending.clone().unwrap_or_default());
        }
        match self.store.db.get_cf_opt(self.store.cf(CF_ACCESS), key, &self.read)? {
            Some(bytes) => Ok(decode(&bytes).map_err(StorageError::corrupt("grant"))?),
            None => Ok(BTreeSet::new()),
        }
    }

    fn set_grant(&mut self, key: Vec<u8>, set: BTreeSet<Permission>) -> Result<(), StorageError> {
        let cf = self.store.cf(CF_ACCESS);
        if set.is_empty() {
            self.batch.delete_cf(cf, &key);
            self.access.insert(key, None);
        } else {
            self.batch.put_cf(cf, &key, encode(&set).map_err(StorageError::corrupt("grant"))?);
            self.access.insert(key, Some(set));
        }
        Ok(())
    }

    /// Key management: the keyring and re-sealing of stored revisions; and
    /// the access policy and audit trail.
    fn apply_key_command(&mut self, index: u64, command: &Command) -> Result<CommandResult, StorageError> {
        let revision = revision_of(index, 0);
        let keys = self.store.cf(CF_KEYS);
        match command {
            Command::AddDataKey { key_id, wrapped } => {
                // Two leaders may both propose a first key; the first applied wins.
                if self.store.db.get_cf_opt(keys, key_id.to_be_bytes(), &self.read)?.is_some()
                    || self.keys_changed.contains(key_id)
                {
                    return Ok(CommandResult::Conflict { current: 0 });
                }
                self.batch.put_cf(keys, key_id.to_be_bytes(), wrapped);
                self.batch.put_cf(keys, KEYS_CURRENT, key_id.to_be_bytes());
                self.keys_changed.push(*key_id);
                Ok(CommandResult::Written { revision })
            }
            Command::RetireKey { key_id } => {
                let current = self.store.db.get_cf_opt(keys, KEYS_CURRENT, &self.read)?;
                if current.as_deref() == Some(&key_id.to_be_bytes()[..]) {
                    return Ok(CommandResult::Conflict { current: 0 });
                }
                self.batch.delete_cf(keys, key_id.to_be_bytes());
                self.keys_changed.push(*key_id);
                Ok(CommandResult::Written { revision })
            }
            Command::Reseal { registry, record, revision: target, value, expected_sha256 } => {
                let history_cf = self.store.cf(CF_HISTORY);
                let hkey = history_key(registry, record, *target);
                let Some(bytes) = self.store.db.get_cf_opt(history_cf, &hkey, &self.read)? else {
                    return Ok(CommandResult::NotFound);
                };
                let mut version: RecordVersion = decode(&bytes).map_err(StorageError::corrupt("record"))?;
                let matches = version.value.as_deref().map(|v| Sha256::digest(v).as_slice() == expected_sha256);
                if matches != Some(true) {
                    return Ok(CommandResult::Conflict { current: version.revision });
                }
                version.value = Some(value.clone());
                let encoded = encode(&version).map_err(StorageError::corrupt("record"))?;
                // A record's head names its latest version by revision, not
                // by its bytes: resealing rewrites `history` alone.
                self.batch.put_cf(history_cf, &hkey, &encoded);
                Ok(CommandResult::Written { revision: *target })
            }
            Command::Grant { identity, scope, permissions } => {
                let key = access_key(identity, scope);
                let mut set = self.grant_of(&key)?;
                set.extend(permissions.iter().copied());
                self.set_grant(key, set)?;
                Ok(CommandResult::Written { revision })
            }
            Command::Revoke { identity, scope, permissions } => {
                let key = access_key(identity, scope);
                let mut set = self.grant_of(&key)?;
                let before = set.len();
                set.retain(|p| !permissions.contains(p));
                if set.len() == before {
                    return Ok(CommandResult::NotFound);
                }
                self.set_grant(key, set)?;
                Ok(CommandResult::Written { revision })
            }
            Command::Audit { events } => {
                let cf = self.store.cf(CF_AUDIT);
                for (position, event) in events.iter().enumerate() {
                    let key = audit_key(&event.registry, &event.record, revision, position as u32);
                    self.batch.put_cf(cf, key, encode(event).map_err(StorageError::corrupt("audit event"))?);
                }
                Ok(audit_result(index))
            }
            Command::Put { .. } | Command::Delete { .. } | Command::Batch { .. } => Ok(CommandResult::None),
        }
    }

    /// Stores how many request ids were ever remembered, if this batch
    /// changed it, and returns the sequence numbers that compaction may now
    /// drop (those below it).
    pub(crate) fn finish_requests(&mut self) -> Option<u64> {
        let state = self.count.as_ref()?;
        if state.stored != Some(state.count) {
            let value = [state.count.to_be_bytes(), state.limit.to_be_bytes()].concat();
            self.batch.put_cf(self.store.cf(CF_REQUESTS), REQUEST_COUNT, value);
        }
        Some(state.count.saturating_sub(state.limit))
    }
}

/// What applying the `Command::Audit` entry at `index` answers: fixed by
/// the index alone, whatever the state (see [`answer_before_apply`]).
fn audit_result(index: u64) -> CommandResult {
    CommandResult::Written { revision: revision_of(index, 0) }
}

/// The answer of an entry whose proposer may have it as soon as the entry
/// is committed, before it is applied: an audit entry, which reads and
/// changes nothing its answer depends on (its events only add to the
/// trail), and whose events a quorum's synced logs already hold. `None` for
/// every other entry; those are answered once applied (see
/// `answers_before_sync` in `state_machine.rs`).
pub(crate) fn answer_before_apply(index: u64, command: &Command) -> Option<CommandResult> {
    matches!(command, Command::Audit { .. }).then(|| audit_result(index))
}

/// How many request ids were ever remembered (on disk when the batch began,
/// and now) and how many of the latest are remembered. The limit is stored
/// with the count: were it to change, ids outside the old window that one
/// replica has compacted away and another has not would come back on one
/// only.
struct RequestCount {
    stored: Option<u64>,
    count: u64,
    limit: u64,
}

/// Whether the id remembered as number `seq` is one of the last `limit` of
/// the `count` remembered so far.
fn still_remembered(seq: u64, count: u64, limit: u64) -> bool {
    count.saturating_sub(seq) <= limit
}

/// A remembered request: its sequence number (u64 BE, first, so compaction
/// reads it without decoding) and its first result.
fn encode_remembered(seq: u64, result: &CommandResult) -> Result<Vec<u8>, StorageError> {
    let mut bytes = seq.to_be_bytes().to_vec();
    bytes.extend(encode(result).map_err(StorageError::corrupt("request result"))?);
    Ok(bytes)
}

fn decode_remembered(bytes: &[u8]) -> Result<(u64, CommandResult), StorageError> {
    let seq = remembered_seq(bytes).ok_or(StorageError::CorruptKey("requests"))?;
    Ok((seq, decode(&bytes[8..]).map_err(StorageError::corrupt("request result"))?))
}

/// The sequence number of a stored request, `None` if the value is too
/// short to hold one.
pub(crate) fn remembered_seq(bytes: &[u8]) -> Option<u64> {
    decode_u64(bytes.get(..8)?)
}

/// `None` when the write may proceed, else the conflict to report.
fn check_condition(current: Option<&RecordHead>, if_revision: Option<Revision>) -> Option<CommandResult> {
    let current_revision = current.map_or(0, |c| c.revision);
    match if_revision {
        Some(expected) if expected != current_revision => Some(CommandResult::Conflict { current: current_revision }),
        _ => None,
    }
}

fn version(
    revision: Revision,
    value: Option<Vec<u8>>,
    create_revision: Revision,
    meta: &WriteMeta,
    node: u64,
) -> RecordVersion {
    RecordVersion {
        revision,
        value,
        create_revision,
        commit_time_ms: meta.commit_time_ms,
        actor: meta.actor.clone(),
        reason: meta.reason.clone(),
        node,
    }
}
