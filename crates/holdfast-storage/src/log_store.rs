//! The Raft log and vote on RocksDB (openraft `RaftLogStorage`).
//!
//! Entries are reported flushed to openraft (`IOFlushed`) only after a WAL
//! sync that covers them: appends are written at once (readable, so the
//! leader replicates them while its own copy syncs) and one sync reports
//! every append written before it (group commit).

use std::fmt::Debug;
use std::ops::RangeBounds;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use holdfast_types::codec::{decode, encode};
use holdfast_types::{Entry, LogId, TypeConfig, Vote};

use crate::db::{read_options, Store, SyncWaiter};
use crate::error::{blocking, RaftStorageError, StorageError};
use crate::keys::*;

/// The Raft log store. Cheap to clone: it shares the database.
#[derive(Clone, Debug)]
pub struct LogStore {
    store: Store,
}

impl LogStore {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StorageError> {
        match self.store.db.get_cf(self.store.cf(CF_RAFT_META), key)? {
            Some(bytes) => Ok(Some(decode(&bytes).map_err(StorageError::corrupt(what))?)),
            None => Ok(None),
        }
    }

    /// [`Self::read_meta`] from memory only: `Ok(None)` when that needs the
    /// disk.
    fn read_meta_in_place<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<Option<T>>, StorageError> {
        match self.store.db.get_cf_opt(self.store.cf(CF_RAFT_META), key, &read_options(true)) {
            Ok(Some(bytes)) => Ok(Some(Some(decode(&bytes).map_err(StorageError::corrupt(what))?))),
            Ok(None) => Ok(Some(None)),
            Err(e) => {
                let e = StorageError::from(e);
                if e.is_incomplete() {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let mut iter = self.store.db.iterator_cf(self.store.cf(CF_LOG), IteratorMode::End);
        match iter.next() {
            Some(item) => {
                let (_, value) = item?;
                let entry: Entry = decode(&value).map_err(StorageError::corrupt("log entry"))?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
    }

    /// Entries in `start..end_exclusive`. In place (`in_place`), only from
    /// memory and up to [`IN_PLACE_BYTES_MAX`]: `None` when that cannot
    /// answer (a block not cached, or too many bytes for a runtime thread).
    fn entries_in(&self, start: u64, end_exclusive: u64, in_place: bool) -> Result<Option<Vec<Entry>>, StorageError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mode = IteratorMode::From(&log_key(start), Direction::Forward);
        for item in self.store.db.iterator_cf_opt(self.store.cf(CF_LOG), read_options(in_place), mode) {
            let (key, value) = match item.map_err(StorageError::from) {
                Ok(item) => item,
                Err(e) if e.is_incomplete() => return Ok(None),
                Err(e) => return Err(e),
            };
            let index = decode_u64(&key).ok_or(StorageError::CorruptKey("log"))?;
            if index >= end_exclusive {
                break;
            }
            bytes += value.len();
            if in_place && bytes > IN_PLACE_BYTES_MAX {
                return Ok(None);
            }
            out.push(decode(&value).map_err(StorageError::corrupt("log entry"))?);
        }
        Ok(Some(out))
    }
}

/// A log read in place stops past this many bytes and goes to the blocking
/// pool: decoding more would hold a runtime thread too long.
const IN_PLACE_BYTES_MAX: usize = 512 * 1024;

fn range_to_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    use std::ops::Bound::*;
    let start = match range.start_bound() {
        Included(&s) => s,
        Excluded(&s) => s.saturating_add(1),
        Unbounded => 0,
    };
    let end = match range.end_bound() {
        Included(&e) => e.saturating_add(1),
        Excluded(&e) => e,
        Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        let (start, end) = range_to_bounds(&range);
        // Replication reads entries just appended, still in the memtable:
        // read them in place. A read that needs the disk (a follower far
        // behind) or many bytes goes to the blocking pool.
        if let Some(entries) = self.entries_in(start, end, true)? {
            return Ok(entries);
        }
        let this = self.clone();
        let read = blocking(move || this.entries_in(start, end, false)).await?;
        Ok(read.unwrap_or_default())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, RaftStorageError> {
        // Replication reads the vote before and after each read of entries:
        // in place first (the vote is in the memtable or cached).
        match self.read_meta_in_place(META_VOTE, "vote") {
            Ok(Some(vote)) => return Ok(vote),
            Ok(None) => {}
            Err(e) => return Err(e.into()),
        }
        let this = self.clone();
        Ok(blocking(move || this.read_meta(META_VOTE, "vote")).await?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        let this = self.clone();
        blocking(move || {
            let last_purged: Option<LogId> = this.read_meta(META_LAST_PURGED, "last purged log id")?;
            let last = this.last_log_id()?.or(last_purged);
            Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
        })
        .await
        .map_err(Into::into)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), RaftStorageError> {
        let this = self.clone();
        let vote = *vote;
        blocking(move || {
            let bytes = encode(&vote).map_err(StorageError::corrupt("vote"))?;
            let mut batch = WriteBatch::default();
            batch.put_cf(this.store.cf(CF_RAFT_META), META_VOTE, bytes);
            this.store.write_synced(batch)
        })
        .await
        .map_err(Into::into)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), RaftStorageError> {
        let bytes = encode(&committed).map_err(StorageError::corrupt("committed log id"))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(self.store.cf(CF_RAFT_META), META_COMMITTED, bytes);
        // A stale committed id only makes a restarted node re-apply less
        // eagerly; the state machine's own last_applied is synced. Raft
        // applies nothing until this returns: no handoff to another thread.
        self.store.write_small_unsynced(batch).await.map_err(Into::into)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, RaftStorageError> {
        let this = self.clone();
        blocking(move || Ok(this.read_meta::<Option<LogId>>(META_COMMITTED, "committed log id")?.flatten()))
            .await
            .map_err(Into::into)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = encode(&entry).map_err(StorageError::corrupt("log entry"))?;
            batch.put_cf(self.store.cf(CF_LOG), log_key(entry.log_id.index), bytes);
        }
        // Written before append returns, so the entries are readable and
        // the leader sends them to followers while its own copy syncs.
        // Without sync, but off the runtime: an append can be large (a
        // follower catching up) and can stall on a full memtable. The thread
        // that wrote it then syncs, unless a sync is running already (one
        // thread handoff per append, not two), and durability is reported by
        // the callback after a sync that covers this write (the WAL is one
        // file written in order).
        let store = self.store.clone();
        let (written_tx, written) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let flushed: SyncWaiter = Box::new(move |synced| {
                callback.io_completed(synced.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
            });
            store.write_then_after_sync(batch, |outcome| drop(written_tx.send(outcome)), flushed);
        });
        written.await.map_err(|e| StorageError::Task(e.to_string()))??;
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), RaftStorageError> {
        let this = self.clone();
        let from = last_log_id.map_or(0, |l| l.index + 1);
        blocking(move || {
            let mut batch = WriteBatch::default();
            let cf = this.store.cf(CF_LOG);
            batch.delete_range_cf(cf, log_key(from), log_key(u64::MAX));
            batch.delete_cf(cf, log_key(u64::MAX));
            this.store.write_synced(batch)
        })
        .await
        .map_err(Into::into)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        let this = self.clone();
        blocking(move || {
            let bytes = encode(&log_id).map_err(StorageError::corrupt("last purged log id"))?;
            let mut batch = WriteBatch::default();
            // The purge marker and the deletion land together, so the log
            // never shows a hole without the marker explaining it.
            batch.put_cf(this.store.cf(CF_RAFT_META), META_LAST_PURGED, bytes);
            batch.delete_range_cf(this.store.cf(CF_LOG), log_key(0), log_key(log_id.index.saturating_add(1)));
            this.store.write_synced(batch)
        })
        .await
        .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::put;
    use crate::db::StoreOptions;
    use openraft::type_config::TypeConfigExt;

    /// After a restart the block cache is cold: the in-place read cannot
    /// answer and the entries still come back, from disk.
    #[tokio::test]
    async fn log_reads_that_need_the_disk_are_answered_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<Entry> = (1..=3).map(|i| put(i, &format!("q{i}"))).collect();
        {
            let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
            let mut batch = WriteBatch::default();
            for entry in &entries {
                batch.put_cf(store.cf(CF_LOG), log_key(entry.log_id.index), encode(entry).unwrap());
            }
            store.write_synced(batch).unwrap();
            store.db.flush_cf(store.cf(CF_LOG)).unwrap();
        }
        let mut log = Store::open(dir.path(), &StoreOptions::small()).unwrap().log_store();
        assert!(log.entries_in(1, 4, true).unwrap().is_none(), "a cold block cannot be read in place");
        let read = log.try_get_log_entries(1..4).await.unwrap();
        assert_eq!(
            read.iter().map(|e| e.log_id).collect::<Vec<_>>(),
            entries.iter().map(|e| e.log_id).collect::<Vec<_>>()
        );
    }

    /// Appends are readable when `append` returns, and each is reported
    /// flushed, in order, after a sync; many appends share few syncs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_are_readable_at_once_and_reported_after_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let mut log = store.log_store();
        let mut flushed = Vec::new();
        for i in 1..=50 {
            let (tx, rx) = TypeConfig::oneshot();
            log.append(vec![put(i, &format!("q{i}"))], IOFlushed::signal(tx)).await.unwrap();
            let read = log.try_get_log_entries(i..=i).await.unwrap();
            assert_eq!(read.len(), 1, "entry {i} is readable when append returns");
            flushed.push(rx);
        }
        for (i, rx) in flushed.into_iter().enumerate() {
            let reported = tokio::time::timeout(std::time::Duration::from_secs(10), rx).await;
            assert!(matches!(reported, Ok(Ok(Ok(())))), "append {} reported flushed: {reported:?}", i + 1);
        }
        let syncs = store.sync_latency().snapshot().count;
        assert!((1..=50).contains(&syncs), "{syncs} syncs for 50 appends");
        drop(log);
        drop(store);
        // The sync task drops its handle on the database just after its
        // last report: wait for the lock rather than guess how long.
        let started = std::time::Instant::now();
        let reopened = loop {
            match Store::open(dir.path(), &StoreOptions::small()) {
                Ok(store) => break store,
                Err(e) if started.elapsed() < std::time::Duration::from_secs(10) => {
                    tracing::debug!(error = %e, "database still open");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(e) => panic!("reopen: {e}"),
            }
        };
        let mut log = reopened.log_store();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(50));
    }
}
