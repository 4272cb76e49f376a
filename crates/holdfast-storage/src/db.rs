//! Opening the node's RocksDB and sharing it between the log store, the state
//! machine and readers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};

use holdfast_types::limits::REQUEST_IDS_REMEMBERED;

use crate::apply::remembered_seq;
use crate::error::StorageError;
use crate::keys::*;
use crate::log_store::LogStore;
use crate::state_machine::StateMachineStore;
use crate::timings::LatencyHistogram;

/// The shared RocksDB handle and the node's data directory.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Arc<DB>,
    pub(crate) dir: PathBuf,
    /// How long synced writes take: the disk's fsync latency as Raft feels it.
    sync_latency: Arc<LatencyHistogram>,
    /// How many request ids the state machine remembers.
    pub(crate) requests_remembered: u64,
    /// Request ids remembered with a lower sequence number are forgotten;
    /// compaction drops them. Raised after each apply.
    pub(crate) forget_below: Arc<AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

/// Options of one column family. Every write looks up its record and its
/// request id before writing them, and a new record or a fresh request id
/// is a miss: whole-key bloom filters in the memtable and in table files
/// answer a miss without walking the memtable's skiplist or reading a
/// table block.
fn cf_options(name: &str, forget_below: &Arc<AtomicU64>) -> Options {
    let mut opts = Options::default();
    if name == CF_REQUESTS {
        // Forgotten request ids are never deleted one by one (that would
        // cost a tombstone per write); compaction drops them. Dropping one
        // changes nothing a reader can see: lookups already treat it as
        // forgotten, and the threshold only ever rises.
        let forget_below = forget_below.clone();
        opts.set_compaction_filter("forgotten_request_ids", move |_level: u32, key: &[u8], value: &[u8]| {
            match remembered_seq(value) {
                Some(seq) if key != REQUEST_COUNT && seq < forget_below.load(Ordering::Acquire) => Decision::Remove,
                _ => Decision::Keep,
            }
        });
    }
    if POINT_LOOKUP_CFS.contains(&name) {
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO);
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
        table.set_whole_key_filtering(true);
        opts.set_block_based_table_factory(&table);
    }
    opts
}

/// The layout of the data directory. 2: request ids carry a sequence
/// number and the `request_order` family is gone. Stamped at creation;
/// a directory in another format is refused, never reinterpreted.
pub const STORE_FORMAT: u32 = 2;

/// Column families read by exact key on the write path.
const POINT_LOOKUP_CFS: [&str; 2] = [CF_RECORDS, CF_REQUESTS];
/// Memtable bloom filter size, as a fraction of the memtable's size.
const MEMTABLE_BLOOM_RATIO: f64 = 0.05;
/// About a 1 % false-positive rate.
const BLOOM_BITS_PER_KEY: f64 = 10.0;

impl Store {
    /// Opens (or creates) the store under `dir`: RocksDB in `dir/db`,
    /// snapshot files in `dir/snapshots`.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir.join("snapshots"))?;
        let db_dir = dir.join("db");
        let format_error = |reason: String| StorageError::Format { path: db_dir.display().to_string(), reason };
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Every write that matters is synced explicitly; the WAL must never be
        // disabled or its recovery relaxed.
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        opts.set_max_background_jobs(2);
        // A family this build does not know means another format; RocksDB
        // would refuse to open it with a less helpful message.
        if let Ok(existing) = DB::list_cf(&opts, &db_dir) {
            if let Some(unknown) = existing.iter().find(|name| *name != "default" && !ALL_CFS.contains(&name.as_str()))
            {
                return Err(format_error(format!(
                    "column family {unknown:?} is unknown to this holdfast (format {STORE_FORMAT}): the directory \
                     was written by another version"
                )));
            }
        }
        let forget_below = Arc::new(AtomicU64::new(0));
        let cfs = ALL_CFS.iter().map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name, &forget_below)));
        let db = DB::open_cf_descriptors(&opts, &db_dir, cfs)?;
        let store = Self {
            db: Arc::new(db),
            dir: dir.to_path_buf(),
            sync_latency: Arc::default(),
            requests_remembered: REQUEST_IDS_REMEMBERED,
            forget_below,
        };
        store.check_format().map_err(format_error)?;
        Ok(store)
    }

    /// Stamps a new directory with [`STORE_FORMAT`]; refuses one written in
    /// another format, or before formats were stamped.
    fn check_format(&self) -> Result<(), String> {
        let meta = self.cf(CF_SM_META);
        let stored = self.db.get_cf(meta, META_FORMAT).map_err(|e| e.to_string())?;
        match stored {
            Some(bytes) if bytes.as_slice() == STORE_FORMAT.to_be_bytes() => Ok(()),
            Some(bytes) => Err(format!(
                "written in format {}, this holdfast reads format {STORE_FORMAT}",
                decode_u32(&bytes).map_or_else(|| format!("{bytes:?}"), |v| v.to_string())
            )),
            None => {
                let used = [CF_LOG, CF_RAFT_META, CF_SM_META]
                    .iter()
                    .any(|name| self.db.iterator_cf(self.cf(name), IteratorMode::Start).next().is_some());
                if used {
                    return Err(format!(
                        "written by a holdfast from before data formats were stamped; this one reads format \
                         {STORE_FORMAT}"
                    ));
                }
                let mut batch = WriteBatch::default();
                batch.put_cf(meta, META_FORMAT, STORE_FORMAT.to_be_bytes());
                self.write_synced(batch).map_err(|e| e.to_string())
            }
        }
    }

    /// Remembers at most `count` request ids instead of
    /// [`REQUEST_IDS_REMEMBERED`] (tests of forgetting use a small number).
    /// Every replica of a cluster must use the same count.
    pub fn remember_requests(mut self, count: u64) -> Self {
        self.requests_remembered = count;
        self
    }

    /// The Raft log store over this database.
    pub fn log_store(&self) -> LogStore {
        LogStore::new(self.clone())
    }

    /// The state machine over this database. Finishes a snapshot install
    /// that a crash interrupted.
    pub async fn state_machine(&self) -> Result<StateMachineStore, StorageError> {
        StateMachineStore::open(self.clone()).await
    }

    /// The latency of every synced write this store has made (for metrics).
    pub fn sync_latency(&self) -> Arc<LatencyHistogram> {
        self.sync_latency.clone()
    }

    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        // Every family in ALL_CFS is opened (or created) in `open`.
        self.db.cf_handle(name).expect("column family opened at start")
    }

    pub(crate) fn snapshot_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    /// Writes a batch and waits until it is on stable storage (WAL fsync).
    pub(crate) fn write_synced(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        let started = Instant::now();
        self.db.write_opt(batch, &opts)?;
        self.sync_latency.observe(started.elapsed());
        Ok(())
    }

    /// Writes a batch without waiting for fsync; used only for data whose
    /// loss a crash makes harmless (it is rewritten or re-derived).
    pub(crate) fn write_unsynced(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.db.write(batch)?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use holdfast_types::{Command, CommandResult, Entry, RegistryName, WriteMeta};
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    /// A put of record `id` with request id `id`, as the entry at `index`.
    pub(crate) fn put(index: u64, id: &str) -> Entry {
        let command = Command::Put {
            registry: RegistryName::parse("population").expect("valid name"),
            record: id.as_bytes().to_vec(),
            value: b"v".to_vec(),
            if_revision: None,
            meta: WriteMeta { request_id: id.into(), actor: "clerk".into(), reason: String::new(), commit_time_ms: 1 },
        };
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(command) }
    }

    #[tokio::test]
    async fn compaction_drops_forgotten_request_ids_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().remember_requests(2);
        let mut sm = store.state_machine().await.unwrap();
        for i in 1..=5 {
            sm.apply(vec![put(i, &format!("q{i}"))]).await.unwrap();
        }
        let cf = store.cf(CF_REQUESTS);
        store.db.flush_cf(cf).unwrap();
        store.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        let stored = |key: &[u8]| store.db.get_cf(cf, key).unwrap().is_some();
        assert!(!stored(b"q1") && !stored(b"q2") && !stored(b"q3"), "forgotten ids are dropped");
        assert!(stored(b"q4") && stored(b"q5") && stored(REQUEST_COUNT), "remembered ids and the count stay");
        // What a retry does is unchanged: q5 is still a duplicate, q3 (dropped)
        // and q4 (pushed out by q3 coming back) write again.
        let results = sm.apply(vec![put(6, "q5"), put(7, "q3"), put(8, "q4")]).await.unwrap();
        assert!(matches!(results[0], CommandResult::Duplicate(_)), "{:?}", results[0]);
        assert!(matches!(results[1], CommandResult::Written { .. }), "{:?}", results[1]);
        assert!(matches!(results[2], CommandResult::Written { .. }), "{:?}", results[2]);
    }

    fn open_error(dir: &Path) -> String {
        match Store::open(dir) {
            Ok(_) => panic!("the store opened"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn a_directory_in_another_format_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.state_machine().await.unwrap().apply(vec![put(1, "q1")]).await.unwrap();
        }
        // Reopening the same format works.
        drop(Store::open(dir.path()).unwrap());

        // The stamp another version would have left.
        let raw = DB::open_cf(&Options::default(), dir.path().join("db"), ALL_CFS).unwrap();
        raw.put_cf(raw.cf_handle(CF_SM_META).unwrap(), META_FORMAT, 1u32.to_be_bytes()).unwrap();
        drop(raw);
        let error = open_error(dir.path());
        assert!(error.contains("written in format 1") && error.contains("reads format 2"), "{error}");
        let still = DB::open_cf_for_read_only(&Options::default(), dir.path().join("db"), ALL_CFS, false).unwrap();
        let stamp = still.get_cf(still.cf_handle(CF_SM_META).unwrap(), META_FORMAT).unwrap();
        assert_eq!(stamp.as_deref(), Some(&1u32.to_be_bytes()[..]), "a refused directory is not restamped");
        drop(still);

        // A used directory without a stamp predates format stamps.
        let raw = DB::open_cf(&Options::default(), dir.path().join("db"), ALL_CFS).unwrap();
        raw.delete_cf(raw.cf_handle(CF_SM_META).unwrap(), META_FORMAT).unwrap();
        drop(raw);
        let error = open_error(dir.path());
        assert!(error.contains("before data formats were stamped"), "{error}");
    }

    #[test]
    fn a_directory_with_an_unknown_column_family_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let mut opts = Options::default();
        opts.create_missing_column_families(true);
        let families = ALL_CFS.iter().copied().chain(["request_order"]);
        drop(DB::open_cf(&opts, dir.path().join("db"), families).unwrap());
        let error = open_error(dir.path());
        assert!(error.contains("\"request_order\" is unknown"), "{error}");
    }
}
