//! The Raft log and vote on RocksDB (openraft `RaftLogStorage`).
//!
//! Entries are acknowledged to openraft (`LogFlushed`) only after the batch
//! that holds them is synced.

use std::fmt::Debug;
use std::ops::RangeBounds;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use holdfast_types::codec::{decode, encode};
use holdfast_types::{Entry, LogId, NodeId, TypeConfig};

use crate::db::{read_options, Store};
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
        if let Some(entries) = self.entries_in(start, end, true).map_err(|e| StorageIOError::read_logs(&e))? {
            return Ok(entries);
        }
        let this = self.clone();
        let read = blocking(move || this.entries_in(start, end, false)).await;
        read.map(Option::unwrap_or_default).map_err(|e| StorageIOError::read_logs(&e).into())
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
        .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), RaftStorageError> {
        let this = self.clone();
        let vote = *vote;
        blocking(move || {
            let bytes = encode(&vote).map_err(StorageError::corrupt("vote"))?;
            let mut batch = WriteBatch::default();
            batch.put_cf(this.store.cf(CF_RAFT_META), META_VOTE, bytes);
            this.store.write_synced(batch)
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, RaftStorageError> {
        let this = self.clone();
        blocking(move || this.read_meta(META_VOTE, "vote")).await.map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), RaftStorageError> {
        let this = self.clone();
        blocking(move || {
            let bytes = encode(&committed).map_err(StorageError::corrupt("committed log id"))?;
            let mut batch = WriteBatch::default();
            batch.put_cf(this.store.cf(CF_RAFT_META), META_COMMITTED, bytes);
            // A stale committed id only makes a restarted node re-apply less
            // eagerly; the state machine's own last_applied is synced.
            this.store.write_unsynced(batch)
        })
        .await
        .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, RaftStorageError> {
        let this = self.clone();
        blocking(move || Ok(this.read_meta::<Option<LogId>>(META_COMMITTED, "committed log id")?.flatten()))
            .await
            .map_err(|e| StorageIOError::read(&e).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = encode(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            batch.put_cf(self.store.cf(CF_LOG), log_key(entry.log_id.index), bytes);
        }
        let this = self.clone();
        // The write completes (and is synced) before append returns, so the
        // entries are readable then and the callback reports real durability.
        // Reporting the flush later from a sync thread shared by many appends
        // (group commit) buys nothing with openraft 0.9: its core awaits each
        // append's callback before it handles the next client write, so there
        // is never a second append to share a sync with. Batching has to
        // happen above Raft, many client writes per entry.
        let result = blocking(move || this.store.write_synced(batch)).await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        let this = self.clone();
        blocking(move || {
            let mut batch = WriteBatch::default();
            let cf = this.store.cf(CF_LOG);
            batch.delete_range_cf(cf, log_key(log_id.index), log_key(u64::MAX));
            batch.delete_cf(cf, log_key(u64::MAX));
            this.store.write_synced(batch)
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
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
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::put;

    /// After a restart the block cache is cold: the in-place read cannot
    /// answer and the entries still come back, from disk.
    #[tokio::test]
    async fn log_reads_that_need_the_disk_are_answered_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<Entry> = (1..=3).map(|i| put(i, &format!("q{i}"))).collect();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut batch = WriteBatch::default();
            for entry in &entries {
                batch.put_cf(store.cf(CF_LOG), log_key(entry.log_id.index), encode(entry).unwrap());
            }
            store.write_synced(batch).unwrap();
            store.db.flush_cf(store.cf(CF_LOG)).unwrap();
        }
        let mut log = Store::open(dir.path()).unwrap().log_store();
        assert!(log.entries_in(1, 4, true).unwrap().is_none(), "a cold block cannot be read in place");
        let read = log.try_get_log_entries(1..4).await.unwrap();
        assert_eq!(
            read.iter().map(|e| e.log_id).collect::<Vec<_>>(),
            entries.iter().map(|e| e.log_id).collect::<Vec<_>>()
        );
    }
}
