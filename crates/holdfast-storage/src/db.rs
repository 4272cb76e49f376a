//! Opening the node's RocksDB and sharing it between the log store, the state
//! machine and readers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};

use holdfast_types::limits::REQUEST_IDS_REMEMBERED;

use crate::error::StorageError;
use crate::keys::ALL_CFS;
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
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

impl Store {
    /// Opens (or creates) the store under `dir`: RocksDB in `dir/db`,
    /// snapshot files in `dir/snapshots`.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir.join("snapshots"))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Every write that matters is synced explicitly; the WAL must never be
        // disabled or its recovery relaxed.
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        opts.set_max_background_jobs(2);
        let cfs = ALL_CFS.iter().map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir.join("db"), cfs)?;
        Ok(Self {
            db: Arc::new(db),
            dir: dir.to_path_buf(),
            sync_latency: Arc::default(),
            requests_remembered: REQUEST_IDS_REMEMBERED,
        })
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
