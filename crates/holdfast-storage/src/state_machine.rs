//! The replicated state machine on RocksDB (openraft `RaftStateMachine`) and
//! its snapshot builder.

use std::path::PathBuf;
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::SnapshotOf;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use rocksdb::WriteBatch;
use tokio::sync::watch;

use holdfast_types::codec::{decode, encode};
use holdfast_types::{
    AccessPolicy, Command, CommandResult, Entry, KeyringState, LogId, SnapshotMeta, StoredMembership, TypeConfig,
};

use crate::apply::{answer_before_apply, ApplyBatch};
use crate::db::Store;
use crate::error::{blocking, RaftStorageError, StorageError};
use crate::keys::*;
use crate::reader::ReadView;
use crate::snapshot;

/// The state machine. Reads for clients go through [`ReadView`].
pub struct StateMachineStore {
    store: Store,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// Publishes the last applied index, for readers that wait on it.
    applied_tx: Arc<watch::Sender<u64>>,
    /// Publishes the replicated keyring whenever it changes.
    keyring_tx: Arc<watch::Sender<KeyringState>>,
    /// Publishes the replicated access policy whenever it changes.
    access_tx: Arc<watch::Sender<AccessPolicy>>,
    /// [`APPLY_SYNC_HOLD`], longer in tests.
    sync_hold: std::time::Duration,
}

impl std::fmt::Debug for StateMachineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore").field("last_applied", &self.last_applied).finish()
    }
}

/// Reads the replicated keyring (wrapped keys and the current id).
pub(crate) fn read_keyring(store: &Store) -> Result<KeyringState, StorageError> {
    let mut state = KeyringState::default();
    for item in store.db.iterator_cf(store.cf(CF_KEYS), rocksdb::IteratorMode::Start) {
        let (key, value) = item?;
        if &key[..] == KEYS_CURRENT {
            let id: [u8; 4] = value[..].try_into().map_err(|_| StorageError::CorruptKey("keys/current"))?;
            state.current = Some(u32::from_be_bytes(id));
        } else {
            let id: [u8; 4] = key[..].try_into().map_err(|_| StorageError::CorruptKey("keys"))?;
            state.wrapped.insert(u32::from_be_bytes(id), value.to_vec());
        }
    }
    Ok(state)
}

/// Reads the replicated access policy.
pub(crate) fn read_access(store: &Store) -> Result<AccessPolicy, StorageError> {
    let mut policy = AccessPolicy::default();
    for item in store.db.iterator_cf(store.cf(CF_ACCESS), rocksdb::IteratorMode::Start) {
        let (key, value) = item?;
        let (identity, scope) = split_access_key(&key).ok_or(StorageError::CorruptKey("access"))?;
        let set = decode(&value).map_err(StorageError::corrupt("grant"))?;
        policy.grants.insert((identity, scope), set);
    }
    Ok(policy)
}

fn read_sm_meta(store: &Store) -> Result<(Option<LogId>, StoredMembership), StorageError> {
    let cf = store.cf(CF_SM_META);
    let last_applied = match store.db.get_cf(cf, META_LAST_APPLIED)? {
        Some(b) => decode(&b).map_err(StorageError::corrupt("last applied"))?,
        None => None,
    };
    let membership = match store.db.get_cf(cf, META_MEMBERSHIP)? {
        Some(b) => decode(&b).map_err(StorageError::corrupt("membership"))?,
        None => StoredMembership::default(),
    };
    Ok((last_applied, membership))
}

impl StateMachineStore {
    pub(crate) async fn open(store: Store) -> Result<Self, StorageError> {
        let s = store.clone();
        let (last_applied, membership, keyring, access) = blocking(move || {
            // Finish a snapshot install that a crash interrupted.
            if let Some(name) = s.db.get_cf(s.cf(CF_SM_META), META_INSTALLING)? {
                let path = s.snapshot_dir().join(String::from_utf8_lossy(&name).into_owned());
                tracing::warn!(path = %path.display(), "resuming interrupted snapshot install");
                snapshot::install(&s, &path)?;
            }
            let (last_applied, membership) = read_sm_meta(&s)?;
            Ok((last_applied, membership, read_keyring(&s)?, read_access(&s)?))
        })
        .await?;
        let (applied_tx, _) = watch::channel(last_applied.map_or(0, |l| l.index));
        let (keyring_tx, _) = watch::channel(keyring);
        let (access_tx, _) = watch::channel(access);
        Ok(Self {
            store,
            last_applied,
            membership,
            applied_tx: Arc::new(applied_tx),
            keyring_tx: Arc::new(keyring_tx),
            access_tx: Arc::new(access_tx),
            sync_hold: APPLY_SYNC_HOLD,
        })
    }

    /// A read handle that sees what this state machine has applied.
    pub fn read_view(&self) -> ReadView {
        ReadView::new(
            self.store.clone(),
            self.applied_tx.subscribe(),
            self.keyring_tx.subscribe(),
            self.access_tx.subscribe(),
        )
    }

    /// Applies committed entries in one synced batch and returns each
    /// entry's result, in order (what openraft's `apply` does, without the
    /// responders).
    pub async fn apply_batch(&mut self, entries: Vec<Entry>) -> Result<Vec<CommandResult>, StorageError> {
        self.apply_then_answer(entries, None).await
    }

    /// [`Self::apply_batch`], calling `answer` with the results once the
    /// batch is written: before its sync when the batch changes only
    /// records (see [`answers_before_sync`]), after it and after the node
    /// has taken the change in otherwise. Never when the write fails; an
    /// answer given before the sync stands if the sync then fails (the
    /// entries are committed; the error stops Raft on this node).
    ///
    /// A small batch of that kind whose answer someone waits for (the
    /// leader's) is built and written on the calling runtime thread and
    /// answered from there (see [`applies_in_place`]). Everything else is
    /// built and written on the blocking pool. Either way the apply returns
    /// only once a WAL sync covers the batch. A batch that may be answered
    /// before its sync ([`answers_before_sync`]), whether or not anyone
    /// waits for the answer, waits up to [`APPLY_SYNC_HOLD`] for another
    /// sync (under traffic, a log append's) to cover it (see
    /// [`Store::sync_soon`]); any other batch is synced on the pool at
    /// once, before its answer.
    pub(crate) async fn apply_then_answer(
        &mut self,
        entries: Vec<Entry>,
        answer: Option<Answer>,
    ) -> Result<Vec<CommandResult>, StorageError> {
        if entries.is_empty() {
            if let Some(answer) = answer {
                answer(&[]);
            }
            return Ok(Vec::new());
        }
        let early = answers_before_sync(&entries);
        if early && answer.is_some() && applies_in_place(&entries) {
            match build(&self.store, &entries, self.membership.clone(), true) {
                Ok(built) => return self.finish_in_place(built, answer).await,
                // A read would have touched the disk: nothing was written;
                // the blocking pool builds the batch again, from the disk.
                Err(e) if e.is_incomplete() => {}
                Err(e) => return Err(e),
            }
        }
        let store = self.store.clone();
        let membership = self.membership.clone();
        let (built, answer) = blocking(move || {
            let mut answer = answer;
            let Built { write, results, last, membership, forget_below, keys_changed, access_changed } =
                build(&store, &entries, membership, false)?;
            store.write_unsynced(write)?;
            if early {
                if let Some(answer) = answer.take() {
                    answer(&results);
                }
            } else {
                store.wait_for_sync()?;
            }
            // A batch that changes keys or grants is never answered early:
            // these reads follow its sync above.
            let keyring = if keys_changed { Some(read_keyring(&store)?) } else { None };
            let access = if access_changed { Some(read_access(&store)?) } else { None };
            Ok(((results, last, membership, forget_below, keyring, access), answer))
        })
        .await?;
        let (results, last, membership, forget_below, keyring, access) = built;
        if early {
            self.store.sync_soon(self.sync_hold).await?;
        }
        if let Some(below) = forget_below {
            self.store.forget_floor.raise(below);
        }
        self.set_applied(last, membership);
        if let Some(keyring) = keyring {
            self.keyring_tx.send_replace(keyring);
        }
        if let Some(access) = access {
            self.access_tx.send_replace(access);
        }
        if let Some(answer) = answer {
            answer(&results);
        }
        Ok(results)
    }

    /// Writes a batch built on this runtime thread, answers its entries,
    /// and returns once a WAL sync covers it (see [`Store::sync_soon`]). The
    /// write stays here unless RocksDB would make it wait
    /// ([`Store::write_small_unsynced`]); the answer leaves from this
    /// thread, so a waiting handler wakes on the runtime rather than from
    /// a blocking-pool thread. The batch changes only records (the callers
    /// check [`answers_before_sync`]): no keyring or access policy to
    /// reload.
    async fn finish_in_place(
        &mut self,
        built: Built,
        answer: Option<Answer>,
    ) -> Result<Vec<CommandResult>, StorageError> {
        let Built { write, results, last, membership, forget_below, keys_changed, access_changed } = built;
        debug_assert!(!keys_changed && !access_changed, "only record changes are applied in place");
        self.store.write_small_unsynced(write).await?;
        if let Some(answer) = answer {
            answer(&results);
        }
        self.store.sync_soon(self.sync_hold).await?;
        if let Some(below) = forget_below {
            self.store.forget_floor.raise(below);
        }
        self.set_applied(last, membership);
        Ok(results)
    }

    fn set_applied(&mut self, last_applied: Option<LogId>, membership: StoredMembership) {
        self.last_applied = last_applied;
        self.membership = membership;
        self.applied_tx.send_replace(last_applied.map_or(0, |l| l.index));
    }
}

/// What applying a run of entries writes, and what it returns.
struct Built {
    /// Records, history, request ids, last_applied and membership of every
    /// entry: written together (one WAL record), or not at all.
    write: WriteBatch,
    results: Vec<CommandResult>,
    last: Option<LogId>,
    membership: StoredMembership,
    /// Request sequence numbers that compaction may drop once the write
    /// is synced.
    forget_below: Option<u64>,
    keys_changed: bool,
    access_changed: bool,
}

/// Builds the write that applies `entries` on top of what the store holds,
/// reading nothing from the disk if `memory_only` (a read that would need
/// it fails with `Incomplete`). Writes nothing.
fn build(
    store: &Store,
    entries: &[Entry],
    mut membership: StoredMembership,
    memory_only: bool,
) -> Result<Built, StorageError> {
    let mut batch = ApplyBatch::new(store, memory_only);
    let mut results = Vec::with_capacity(entries.len());
    let mut last = None;
    for entry in entries {
        last = Some(entry.log_id);
        let result = match &entry.payload {
            EntryPayload::Blank => CommandResult::None,
            EntryPayload::Normal(command) => {
                batch.apply_entry(entry.log_id.index, entry.log_id.leader_id.node_id, command)?
            }
            EntryPayload::Membership(m) => {
                membership = StoredMembership::new(Some(entry.log_id), m.clone());
                CommandResult::None
            }
        };
        results.push(result);
    }
    let forget_below = batch.finish_requests();
    let sm_meta = store.cf(CF_SM_META);
    let mut write = std::mem::take(&mut batch.batch);
    write.put_cf(sm_meta, META_LAST_APPLIED, encode(&last).map_err(StorageError::corrupt("last applied"))?);
    write.put_cf(sm_meta, META_MEMBERSHIP, encode(&membership).map_err(StorageError::corrupt("membership"))?);
    Ok(Built {
        write,
        results,
        last,
        membership,
        forget_below,
        keys_changed: !batch.keys_changed.is_empty(),
        access_changed: batch.access_changed(),
    })
}

/// How many entries, record writes and audit events an apply batch built
/// on a runtime thread may hold.
const IN_PLACE_ITEMS_MAX: usize = 16;
/// How many value bytes it may carry.
const IN_PLACE_VALUE_BYTES_MAX: usize = 64 * 1024;

/// Whether `entries` are few and small enough to be built and written on a
/// runtime thread: a lone client's write, or a few that were committed
/// together (tens of microseconds of memtable inserts and one WAL `write`,
/// no sync). Larger batches go to the blocking pool. Only the size is
/// judged here; the caller also asks [`answers_before_sync`] and whether
/// anyone waits for the answer.
pub(crate) fn applies_in_place(entries: &[Entry]) -> bool {
    let (mut items, mut bytes) = (0usize, 0usize);
    for entry in entries {
        items += 1;
        if let EntryPayload::Normal(command) = &entry.payload {
            match command {
                Command::Put { value, .. } | Command::Reseal { value, .. } => bytes += value.len(),
                Command::Batch { writes } => {
                    items += writes.len();
                    bytes += writes.iter().filter_map(|w| w.as_write().value).map(<[u8]>::len).sum::<usize>();
                }
                Command::Audit { events } => items += events.len(),
                Command::Delete { .. }
                | Command::AddDataKey { .. }
                | Command::RetireKey { .. }
                | Command::Grant { .. }
                | Command::Revoke { .. } => {}
            }
        }
        if items > IN_PLACE_ITEMS_MAX || bytes > IN_PLACE_VALUE_BYTES_MAX {
            return false;
        }
    }
    true
}

/// How long the sync of an apply that may be answered before it (see
/// [`answers_before_sync`]) waits for another sync to cover it too before
/// it runs one of its own. Meant to exceed the gap between a client's
/// answer and its next write, so that a steady writer's next log append
/// carries it: a sync of its own right after the write would run just
/// ahead of that append's, on the same WAL, and could make it wait. Only
/// the applied index and the next apply wait for the hold; a
/// linearizable read cuts it short
/// ([`crate::ReadView::prompt_apply_syncs`]).
pub(crate) const APPLY_SYNC_HOLD: std::time::Duration = std::time::Duration::from_millis(2);

/// Answers an apply call's entries, given their results in order.
pub(crate) type Answer = Box<dyn FnOnce(&[CommandResult]) + Send>;

/// Whether the proposers of `entries` may have their answers once the batch
/// is written, before its WAL sync returns: when it holds client writes,
/// audit events and blank entries only. Each of them is committed, so a
/// quorum's synced logs hold it, and applying it again from the log after
/// a crash gives the same results (the apply reads only the state earlier
/// entries left). Once written, the batch is what every read on this node
/// sees (until a crash takes back what was not synced, and the entries are
/// applied again), so a reader could already have what its writer is told.
/// The sync is still awaited before openraft hears the batch is applied:
/// the applied index that readers wait for moves only then. A batch
/// that changes the membership, the keyring or the access policy is
/// answered after its sync and once the node has taken the change in.
fn answers_before_sync(entries: &[Entry]) -> bool {
    entries.iter().all(|entry| match &entry.payload {
        EntryPayload::Blank => true,
        EntryPayload::Normal(command) => changes_only_records(command),
        EntryPayload::Membership(_) => false,
    })
}

/// Whether applying `command` changes records and the audit trail only, not
/// what the node runs with (keys, grants).
fn changes_only_records(command: &Command) -> bool {
    match command {
        Command::Put { .. } | Command::Delete { .. } | Command::Batch { .. } => true,
        Command::Reseal { .. } | Command::Audit { .. } => true,
        Command::AddDataKey { .. } | Command::RetireKey { .. } | Command::Grant { .. } | Command::Revoke { .. } => {
            false
        }
    }
}

/// For each entry of an apply call, its answer if its proposer may have it
/// before the call writes and syncs anything (see [`answer_before_apply`]).
pub(crate) fn early_answers(entries: &[Entry]) -> Vec<Option<CommandResult>> {
    entries
        .iter()
        .map(|entry| match &entry.payload {
            EntryPayload::Normal(command) => answer_before_apply(entry.log_id.index, command),
            EntryPayload::Blank | EntryPayload::Membership(_) => None,
        })
        .collect()
}

/// Builds snapshots: checkpoints of the state machine.
pub struct SnapshotBuilder {
    store: Store,
}

/// A snapshot as openraft hands it around: its metadata and its content.
pub type Snapshot = SnapshotOf<TypeConfig, SnapshotData>;

/// A snapshot's content: a snapshot file (received from a leader), or a
/// checkpoint of this node's state, streamed into a file only when it is
/// read ([`SnapshotData::into_file`]) — a snapshot built for log compaction
/// alone costs no copy of the state.
#[derive(Debug)]
pub struct SnapshotData(Content);

#[derive(Debug)]
enum Content {
    File(tokio::fs::File),
    Checkpoint(PathBuf),
}

impl SnapshotData {
    /// The snapshot in the snapshot file format, read from its start.
    pub async fn into_file(self) -> Result<tokio::fs::File, StorageError> {
        match self.0 {
            Content::File(mut file) => {
                use tokio::io::AsyncSeekExt;
                file.seek(std::io::SeekFrom::Start(0)).await?;
                Ok(file)
            }
            Content::Checkpoint(dir) => Ok(blocking(move || snapshot::checkpoint_file(&dir)).await?.into()),
        }
    }

    fn stored(stored: snapshot::Stored) -> Self {
        Self(match stored {
            snapshot::Stored::File(file) => Content::File(file.into()),
            snapshot::Stored::Checkpoint(dir) => Content::Checkpoint(dir),
        })
    }
}

impl From<tokio::fs::File> for SnapshotData {
    fn from(file: tokio::fs::File) -> Self {
        Self(Content::File(file))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, RaftStorageError> {
        let store = self.store.clone();
        let (meta, stored) = blocking(move || snapshot::build(&store)).await?;
        if let snapshot::Stored::Checkpoint(dir) = &stored {
            tracing::info!(snapshot = %dir.display(), "built snapshot (a checkpoint)");
        }
        Ok(Snapshot { meta, snapshot: SnapshotData::stored(stored) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), RaftStorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), RaftStorageError>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, std::io::Error>> + Unpin + OptionalSend,
    {
        let (entries, mut responders): (Vec<Entry>, Vec<_>) =
            entries.try_collect::<Vec<_>>().await?.into_iter().unzip();
        // Committed audit entries are answered now (openraft applies only
        // committed entries): a strict-audited read waits for its event's
        // commit, not for this batch's write and sync, and the next audit
        // batch can leave while this one is applied.
        for (answer, responder) in early_answers(&entries).into_iter().zip(responders.iter_mut()) {
            let Some(answer) = answer else { continue };
            if let Some(responder) = responder.take() {
                responder.send(answer);
            }
        }
        // The rest once the batch is applied (see `apply_then_answer`), if
        // anyone waits: on a follower no one does.
        let answer = responders.iter().any(Option::is_some).then(|| -> Answer {
            Box::new(move |results| {
                for (responder, result) in responders.into_iter().zip(results) {
                    if let Some(responder) = responder {
                        responder.send(result.clone());
                    }
                }
            })
        });
        self.apply_then_answer(entries, answer).await?;
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { store: self.store.clone() }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotData) -> Result<(), RaftStorageError> {
        let store = self.store.clone();
        let received = snapshot.into_file().await?.into_std().await;
        let meta_in = meta.clone();
        let installed = blocking(move || {
            let (installed, path) = snapshot::install_received(&store, &meta_in, received)?;
            if installed != meta_in {
                return Err(StorageError::BadSnapshot {
                    path: path.display().to_string(),
                    reason: format!("header says {installed}, leader sent {meta_in}"),
                });
            }
            Ok((installed, read_keyring(&store)?, read_access(&store)?))
        })
        .await?;
        let (installed, keyring, access) = installed;
        tracing::info!(snapshot = %installed, "installed snapshot");
        self.set_applied(installed.last_log_id, installed.last_membership);
        self.keyring_tx.send_replace(keyring);
        self.access_tx.send_replace(access);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, RaftStorageError> {
        let store = self.store.clone();
        let current = blocking(move || snapshot::current(&store)).await?;
        match current {
            Some((meta, stored)) => Ok(Some(Snapshot { meta, snapshot: SnapshotData::stored(stored) })),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::{append, audit_event, entry, put, put_as, syncer_stopped, syncing, syncs_awaited, within};
    use crate::db::StoreOptions;
    use holdfast_types::record::revision_of;
    use holdfast_types::RegistryName;

    /// An apply answered before its sync, in place or on the pool, runs no
    /// sync of its own while it holds: the next log append's sync covers
    /// it, and only then does the applied index move.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_apply_answered_before_its_sync_shares_the_next_appends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let mut sm = store.state_machine().await.unwrap();
        sm.sync_hold = std::time::Duration::from_secs(600);
        let view = sm.read_view();
        let syncs = || store.sync_latency().snapshot().count;
        let small = vec![put(1, "q1")];
        let large: Vec<Entry> = (10..=30).map(|i| put(i, &format!("q{i}"))).collect();
        for (entries, in_place) in [(small, true), (large, false)] {
            assert_eq!(applies_in_place(&entries), in_place);
            let last = entries.last().unwrap().log_id.index;
            syncer_stopped(&store).await;
            let before = syncs();
            let (answer_tx, answered) = std::sync::mpsc::channel();
            let answer: Answer = Box::new(move |_| {
                let _ = answer_tx.send(());
            });
            let applying = tokio::spawn(async move {
                sm.apply_then_answer(entries, Some(answer)).await.unwrap();
                sm
            });
            syncs_awaited(&store, 1).await;
            assert!(answered.try_recv().is_ok(), "answered before the sync");
            assert!(!syncing(&store) && syncs() == before, "the apply runs no sync while it holds");
            assert!(view.applied_index() < last, "not applied before a sync covers it");

            let synced = append(&store, last + 1).await;
            sm = within(applying).await.unwrap();
            assert!(synced.recv().unwrap(), "the append synced");
            assert_eq!(syncs() - before, 1, "one sync served the append and the apply");
            assert_eq!(view.applied_index(), last);
        }
    }

    /// After a restart the block cache is cold: a small batch cannot be
    /// built from memory, and the apply builds it again from the disk,
    /// finding what the first put left there.
    #[tokio::test]
    async fn a_small_apply_that_needs_the_disk_is_built_from_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
            store.state_machine().await.unwrap().apply_batch(vec![put(1, "on-disk")]).await.unwrap();
            for cf in [CF_RECORDS, CF_HISTORY, CF_REQUESTS, CF_SM_META] {
                store.db.flush_cf(store.cf(cf)).unwrap();
            }
        }
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let mut sm = store.state_machine().await.unwrap();
        let entries = vec![put_as(2, "on-disk", "second", b"again")];
        assert!(applies_in_place(&entries), "a lone put is built in place when it can be");
        let cold = build(&store, &entries, sm.membership.clone(), true);
        assert!(
            matches!(&cold, Err(e) if e.is_incomplete()),
            "a memory-only build over cold blocks reports Incomplete: {:?}",
            cold.map(|b| b.results)
        );
        let (answer_tx, answered) = std::sync::mpsc::channel();
        let answer: Answer = Box::new(move |results| drop(answer_tx.send(results.to_vec())));
        let applied = sm.apply_then_answer(entries, Some(answer)).await.unwrap();
        assert_eq!(applied, vec![CommandResult::Written { revision: revision_of(2, 0) }]);
        assert_eq!(answered.try_recv().ok(), Some(applied), "the waiting proposer has the same answer");
        let registry = RegistryName::parse("population").unwrap();
        let (version, _) = sm.read_view().get(registry, b"on-disk".to_vec(), None).await.unwrap();
        let version = version.expect("the record is live");
        assert_eq!(version.create_revision, revision_of(1, 0), "the second put read the first from the disk");
        assert_eq!(version.value, Some(b"again".to_vec()));
    }

    /// Batches up to the limits are built in place; past either on the
    /// blocking pool. A batched write and an audit event count as one item
    /// each, besides their entry.
    #[test]
    fn only_small_batches_are_built_in_place() {
        let puts = |n: u64| (1..=n).map(|i| put(i, &format!("q{i}"))).collect::<Vec<_>>();
        assert!(applies_in_place(&puts(IN_PLACE_ITEMS_MAX as u64)));
        assert!(!applies_in_place(&puts(IN_PLACE_ITEMS_MAX as u64 + 1)));
        let batch = |n: usize| {
            let writes = puts(n as u64)
                .into_iter()
                .map(|e| match e.payload {
                    EntryPayload::Normal(command) => command.try_into().expect("a put batches"),
                    _ => unreachable!("puts are normal entries"),
                })
                .collect();
            vec![entry(1, EntryPayload::Normal(Command::Batch { writes }))]
        };
        assert!(applies_in_place(&batch(IN_PLACE_ITEMS_MAX - 1)));
        assert!(!applies_in_place(&batch(IN_PLACE_ITEMS_MAX)));
        let audit = |n: usize| vec![entry(1, EntryPayload::Normal(Command::Audit { events: vec![audit_event(); n] }))];
        assert!(applies_in_place(&audit(IN_PLACE_ITEMS_MAX - 1)));
        assert!(!applies_in_place(&audit(IN_PLACE_ITEMS_MAX)));
        let big = |bytes: usize| {
            let mut e = put(1, "big");
            if let EntryPayload::Normal(Command::Put { value, .. }) = &mut e.payload {
                *value = vec![0; bytes];
            }
            vec![e]
        };
        assert!(applies_in_place(&big(IN_PLACE_VALUE_BYTES_MAX)));
        assert!(!applies_in_place(&big(IN_PLACE_VALUE_BYTES_MAX + 1)));
    }
}
