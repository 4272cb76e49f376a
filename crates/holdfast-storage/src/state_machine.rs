//! The replicated state machine on RocksDB (openraft `RaftStateMachine`) and
//! its snapshot builder.

use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::SnapshotOf;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
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
        let store = self.store.clone();
        let mut membership = self.membership.clone();
        let (results, last, membership, keyring, access, answer) = blocking(move || {
            let mut answer = answer;
            let early = answers_before_sync(&entries);
            let mut batch = ApplyBatch::new(&store);
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
            // Records, history, request ids, last_applied and membership of
            // every entry land together (one WAL record), or not at all, and
            // the apply returns only once a WAL sync covers them: the sync
            // log appends wait for, shared.
            store.write_unsynced(write)?;
            if early {
                if let Some(answer) = answer.take() {
                    answer(&results);
                }
            }
            store.wait_for_sync()?;
            if let Some(below) = forget_below {
                store.forget_floor.raise(below);
            }
            let keyring = if batch.keys_changed.is_empty() { None } else { Some(read_keyring(&store)?) };
            let access = if batch.access_changed() { Some(read_access(&store)?) } else { None };
            Ok((results, last, membership, keyring, access, answer))
        })
        .await?;
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

    fn set_applied(&mut self, last_applied: Option<LogId>, membership: StoredMembership) {
        self.last_applied = last_applied;
        self.membership = membership;
        self.applied_tx.send_replace(last_applied.map_or(0, |l| l.index));
    }
}

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

/// Builds snapshot files from a consistent RocksDB view.
pub struct SnapshotBuilder {
    store: Store,
}

/// A snapshot as openraft hands it around: its metadata and the open file.
pub type Snapshot = SnapshotOf<TypeConfig, tokio::fs::File>;

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = tokio::fs::File;

    async fn build_snapshot(&mut self) -> Result<Snapshot, RaftStorageError> {
        let store = self.store.clone();
        let (meta, path) = blocking(move || snapshot::build(&store)).await?;
        tracing::info!(snapshot = %path.display(), "built snapshot");
        let file = tokio::fs::File::open(&path).await?;
        Ok(Snapshot { meta, snapshot: file })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = tokio::fs::File;
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
        // The rest once the batch is applied (see `apply_then_answer`).
        let answer: Answer = Box::new(move |results| {
            for (responder, result) in responders.into_iter().zip(results) {
                if let Some(responder) = responder {
                    responder.send(result.clone());
                }
            }
        });
        self.apply_then_answer(entries, Some(answer)).await?;
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { store: self.store.clone() }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: tokio::fs::File,
    ) -> Result<(), RaftStorageError> {
        let store = self.store.clone();
        let received = snapshot.into_std().await;
        let meta_in = meta.clone();
        let installed = blocking(move || {
            let path = snapshot::accept_received(&store, &meta_in, received)?;
            let installed = snapshot::install(&store, &path)?;
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
            Some((meta, path)) => {
                let file = tokio::fs::File::open(&path).await?;
                Ok(Some(Snapshot { meta, snapshot: file }))
            }
            None => Ok(None),
        }
    }
}
