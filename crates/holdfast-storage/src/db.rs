//! Opening the node's RocksDB and sharing it between the log store, the state
//! machine and readers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, IteratorMode, MemtableFactory, Options, ReadOptions,
    ReadTier, SliceTransform, WriteBatch, WriteOptions, DB,
};

use holdfast_types::limits::REQUEST_IDS_REMEMBERED;

use crate::apply::remembered_seq;
use crate::error::{blocking, StorageError};
use crate::keys::*;
use crate::log_store::LogStore;
use crate::state_machine::StateMachineStore;
use crate::timings::LatencyHistogram;

/// The shared RocksDB handle and the node's data directory.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Arc<DB>,
    pub(crate) dir: PathBuf,
    /// How long WAL syncs take: the disk's fsync latency as Raft feels it.
    sync_latency: Arc<LatencyHistogram>,
    /// How many request ids the state machine remembers.
    pub(crate) requests_remembered: u64,
    /// Which forgotten request ids compaction may drop.
    pub(crate) forget_floor: Arc<ForgetFloor>,
    /// Writes waiting for a WAL sync.
    syncs: Arc<Mutex<Syncs>>,
    /// Live [`PromptApplySyncs`] guards: while any live, applies sync at
    /// once (see [`Store::sync_soon`]).
    prompt_apply_syncs: Arc<AtomicUsize>,
    /// Taken by installs, by the removal of old snapshots and the choice
    /// of the current one, and by a build before and after its
    /// checkpoint (see `snapshot.rs`; a build or a send removes its own
    /// unfinished entry without it); it guards the number of installs of
    /// received snapshots begun since the store opened.
    pub(crate) snapshot_lock: Arc<Mutex<u64>>,
}

/// While it lives, applies sync at once rather than hold their syncs for
/// a log append's (see [`crate::ReadView::prompt_apply_syncs`]).
#[must_use = "applies hold their syncs again once this is dropped"]
pub struct PromptApplySyncs {
    store: Store,
}

impl PromptApplySyncs {
    pub(crate) fn new(store: &Store) -> Self {
        store.prompt_apply_syncs.fetch_add(1, Ordering::SeqCst);
        // An apply that queued before the count rose syncs now.
        store.sync_waiting_now();
        Self { store: store.clone() }
    }
}

impl Drop for PromptApplySyncs {
    fn drop(&mut self) {
        self.store.prompt_apply_syncs.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a [`SyncWaiter`] passes on: the sync's outcome, as text.
type SyncOutcome = Result<(), String>;

fn sync_outcome(synced: &Result<(), StorageError>) -> SyncOutcome {
    synced.as_ref().map(|_| ()).map_err(|e| e.to_string())
}

/// The outcome a waiter received, or that it never will (its sender was
/// dropped unsent).
fn received_outcome<E>(received: Result<SyncOutcome, E>) -> Result<(), StorageError> {
    match received {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StorageError::Sync(e)),
        Err(_) => Err(StorageError::Sync("the WAL sync was abandoned".into())),
    }
}

/// Runs sync rounds until nothing waits; dropped unrun, it fails the
/// waiters (see [`Store::start_syncer`]).
struct SyncerGuard {
    store: Store,
    done: bool,
}

impl SyncerGuard {
    fn new(store: &Store) -> Self {
        Self { store: store.clone(), done: false }
    }

    fn run(mut self) {
        while self.store.sync_round() {}
        self.done = true;
    }
}

impl Drop for SyncerGuard {
    fn drop(&mut self) {
        if !self.done {
            self.store.abandon_syncs();
        }
    }
}

/// Called once a WAL sync that covers a write has returned, with its outcome.
pub(crate) type SyncWaiter = Box<dyn FnOnce(&Result<(), StorageError>) + Send>;

/// Writes waiting for a WAL sync (group commit): one sync runs at a time
/// and serves every write made before it started.
#[derive(Default)]
struct Syncs {
    /// While no sync runs, only applies that hold their sync for the next
    /// one ([`Store::sync_soon`]) wait here.
    waiting: Vec<SyncWaiter>,
    /// Whether a thread is syncing; it takes `waiting` until it is empty.
    running: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

/// Which remembered request ids compaction may drop: those numbered below
/// every apply's window ([`ForgetFloor::raise`]). A snapshot is a
/// checkpoint, immutable files that compaction of the live database never
/// touches, so it keeps every id its own state remembers.
#[derive(Debug, Default)]
pub(crate) struct ForgetFloor {
    /// What the compaction filter reads: ids numbered below it may go.
    drop_below: AtomicU64,
}

impl ForgetFloor {
    /// After an apply: ids numbered below `below` are forgotten for good.
    pub(crate) fn raise(&self, below: u64) {
        self.drop_below.fetch_max(below, Ordering::AcqRel);
    }

    fn drop_below(&self) -> u64 {
        self.drop_below.load(Ordering::Acquire)
    }
}

/// Options of one column family. Every write looks up its record and its
/// request id before writing them, and a new record or a fresh request id
/// is a miss: whole-key bloom filters in the memtable and in table files
/// answer a miss without walking the memtable's skiplist or reading a
/// table block.
fn cf_options(name: &str, forget_floor: &Arc<ForgetFloor>) -> Options {
    let mut opts = Options::default();
    if name == CF_REQUESTS {
        // Forgotten request ids are never deleted one by one (that would
        // cost a tombstone per write); compaction drops them. Dropping one
        // changes nothing a lookup can see (see `ForgetFloor`), and the
        // floor of later applies only rises.
        let floor = forget_floor.clone();
        opts.set_compaction_filter("forgotten_request_ids", move |_level: u32, key: &[u8], value: &[u8]| {
            match remembered_seq(value) {
                Some(seq) if key != REQUEST_COUNT && seq < floor.drop_below() => Decision::Remove,
                _ => Decision::Keep,
            }
        });
        // Read by exact key only (besides whole-family reads in total
        // order): a hashed memtable makes each write's random request id an
        // insert into a bucket of its own instead of a search of one big
        // skiplist.
        hash_memtable(&mut opts, SliceTransform::create_noop(), REQUESTS_MEMTABLE_BUCKETS);
    }
    if name == CF_AUDIT {
        // Events are keyed by record, so each lands at a random place, and
        // a strict-audit get adds one on every replica: inserting it into
        // one big skiplist memtable was the top symbol of a follower's
        // profile (about 15 % of its CPU). A hashed memtable puts each
        // record's events in a small skiplist of their own, and a trail
        // read (one record's events) seeks in that list alone. Iterating
        // the whole family needs `total_order` read options (see there).
        hash_memtable(&mut opts, SliceTransform::create("audit_record", audit_record_of, None), AUDIT_MEMTABLE_BUCKETS);
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

/// Gives a family RocksDB's hashed memtable: `buckets` small skiplists,
/// one per key prefix that `prefix` extracts.
fn hash_memtable(opts: &mut Options, prefix: SliceTransform, buckets: usize) {
    opts.set_prefix_extractor(prefix);
    opts.set_memtable_factory(MemtableFactory::HashSkipList { bucket_count: buckets, height: 4, branching_factor: 4 });
}

/// The layout of the data directory. 2: request ids carry a sequence
/// number and the `request_order` family is gone. 3: a record version names
/// the node that proposed it, and `audit` holds no event of a successful
/// write (its history version is that event). 4: votes, log ids, entries
/// and memberships as openraft 0.10 encodes them. 5: `records` holds where
/// each live record's latest version is (a `RecordHead`), not a second copy
/// of it. Stamped at creation; a directory in another format is refused,
/// never reinterpreted.
pub const STORE_FORMAT: u32 = 5;

/// Buckets of the `audit` family's hashed memtable (8 bytes each).
const AUDIT_MEMTABLE_BUCKETS: usize = 1 << 17;
/// Buckets of the `requests` family's hashed memtable: about as many as
/// the request ids a full memtable holds.
const REQUESTS_MEMTABLE_BUCKETS: usize = 1 << 19;

/// Read options for iterating a whole column family, in key order. The
/// `audit` and `requests` families have prefix extractors: without these
/// an iterator there would see only the memtable entries of the prefix it
/// was positioned at.
pub(crate) fn total_order() -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.set_total_order_seek(true);
    opts
}

/// Column families read by exact key on the write path.
const POINT_LOOKUP_CFS: [&str; 2] = [CF_RECORDS, CF_REQUESTS];
/// Memtable bloom filter size, as a fraction of the memtable's size.
const MEMTABLE_BLOOM_RATIO: f64 = 0.05;
/// About a 1 % false-positive rate.
const BLOOM_BITS_PER_KEY: f64 = 10.0;

/// How a store uses its disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The size of a WAL file. RocksDB starts a new file (flushing every
    /// memtable with data in the old one) when the WAL reaches it, and
    /// writes the next files into spent ones instead of growing new ones:
    /// a sync of a write into blocks a file already has is a data flush,
    /// while a sync that grows a file must also commit the file system's
    /// journal (its size changed), which costs about twice as much on an
    /// idle disk and far more on a busy one. RocksDB reuses only files spent
    /// by the running process, so every open writes (and syncs) two spent
    /// files of this size before the store is used, as etcd preallocates
    /// its WAL segments. The bound is approximate: a file grows past it
    /// while the memtables of the one before are still being flushed. 0:
    /// one growing file, flushed only when a memtable fills.
    pub wal_file_bytes: u64,
    /// How many bytes per second memtable flushes and compactions may
    /// write, 0 for no limit. A flush writes a whole memtable at once, and
    /// the sync that ends it queues every WAL sync behind tens of MB on a
    /// disk the log shares; a limit spreads those writes out, at the price
    /// of compaction falling behind if writes stay above it for long. With
    /// a limit RocksDB also syncs table files as it writes them, every
    /// 1 MiB, instead of all at the end.
    pub background_write_bytes_per_sec: u64,
}

/// Default for [`StoreOptions::wal_file_bytes`]: the size of a memtable.
const WAL_FILE_BYTES_DEFAULT: u64 = 64 << 20;

impl Default for StoreOptions {
    fn default() -> Self {
        Self { wal_file_bytes: WAL_FILE_BYTES_DEFAULT, background_write_bytes_per_sec: 0 }
    }
}

impl StoreOptions {
    /// 1 MiB WAL files: a store that costs little to create (tests, small
    /// machines), whose WAL files turn over and are recycled often.
    pub fn small() -> Self {
        Self { wal_file_bytes: 1 << 20, background_write_bytes_per_sec: 0 }
    }
}

/// How old a table file must be before RocksDB rewrites it only because it
/// is the bottommost copy of its keys (compaction reason `BottommostFiles`):
/// by default it does so as soon as a snapshot is released and none older
/// than the file's newest write remains, and every get reads through a
/// snapshot. Nearly every file `log` flushes is such a file (its keys only
/// grow, so nothing below overlaps a new file; a purge's range tombstone is
/// the exception), and so are the oldest files of the other families in a
/// young store: each was written twice. Measured: 195 MiB of such rewrites
/// on 308 MiB flushed in a run of puts and gets. The rewrite zeroes
/// sequence numbers and drops what it may (versions and tombstones no
/// snapshot needs, request ids the compaction filter forgets); with the
/// delay that happens at the family's first flush or compaction after the
/// file is a day old (or at the next open), and a file compacted or purged
/// before then is not rewritten by it at all. Until then such leftovers
/// take disk space and travel in Raft snapshots; nothing reads them.
const BOTTOMMOST_REWRITE_DELAY_SECS: &str = "86400";

/// How often the background write limit refills its allowance (RocksDB's
/// default, 100 ms).
const BACKGROUND_WRITE_REFILL_US: i64 = 100_000;
/// How often the limit serves a low-priority (compaction) request before a
/// high-priority (flush) one, one in this many (RocksDB's default).
const BACKGROUND_WRITE_FAIRNESS: i32 = 10;

/// How many spent WAL files RocksDB keeps to write the next ones into (one
/// is enough while a memtable flush takes less time than filling a file).
const WAL_FILES_RECYCLED: usize = 2;

/// Leaves the WAL in a file that RocksDB recycled, with one more spent file
/// ready for the next, both about `file_bytes` (at least 1 MiB). Each flush
/// starts a new WAL file; the one before is spent once its memtables are on
/// disk. The filler lives in the default column family, which nothing else
/// uses, and is deleted and compacted away at the end; a crash halfway
/// leaves a filler that the next open overwrites and removes.
fn prepare_wal_files(db: &DB, file_bytes: u64) -> Result<(), StorageError> {
    const KEY: &[u8] = b"wal-filler";
    const CHUNK: usize = 1 << 20;
    let filler = vec![0u8; CHUNK];
    // Just under the size that starts a new file by itself.
    let chunks = (file_bytes / CHUNK as u64).saturating_sub(1).max(1);
    for round in 0..2 {
        for _ in 0..chunks {
            db.put(KEY, &filler)?;
        }
        if round == 1 {
            // In the last file, so that no spent file is a short one.
            db.delete(KEY)?;
        }
        // On disk now, rather than written back while the node serves (the
        // first sync of a recycled file would otherwise flush all of it).
        db.flush_wal(true)?;
        db.flush()?;
    }
    db.compact_range::<&[u8], &[u8]>(None, None);
    Ok(())
}

/// Read options; `memory_only` reads (memtables and cached blocks) fail
/// with `Incomplete` ([`StorageError::is_incomplete`]) rather than touch the
/// disk, so they may run on a runtime thread.
pub(crate) fn read_options(memory_only: bool) -> ReadOptions {
    let mut opts = ReadOptions::default();
    if memory_only {
        opts.set_read_tier(ReadTier::BlockCache);
    }
    opts
}

/// What a data directory's format stamp says.
enum Stamp {
    Current,
    /// Nothing written yet: stamp it.
    Fresh,
    Refused(String),
}

fn read_stamp(db: &DB) -> Result<Stamp, StorageError> {
    let stored = match db.cf_handle(CF_SM_META) {
        Some(meta) => db.get_cf(meta, META_FORMAT)?,
        None => None,
    };
    Ok(match stored {
        Some(bytes) if bytes.as_slice() == STORE_FORMAT.to_be_bytes() => Stamp::Current,
        Some(bytes) => Stamp::Refused(format!(
            "written in format {}, this holdfast reads format {STORE_FORMAT}",
            decode_u32(&bytes).map_or_else(|| format!("{bytes:?}"), |v| v.to_string())
        )),
        None => {
            let used = [CF_LOG, CF_RAFT_META, CF_SM_META]
                .iter()
                .filter_map(|name| db.cf_handle(name))
                .any(|cf| db.iterator_cf(cf, IteratorMode::Start).next().is_some());
            if used {
                Stamp::Refused(format!(
                    "written by a holdfast from before data formats were stamped; this one reads format \
                     {STORE_FORMAT}"
                ))
            } else {
                Stamp::Fresh
            }
        }
    })
}

impl Store {
    /// Opens (or creates) the store under `dir`: RocksDB in `dir/db`,
    /// snapshots in `dir/snapshots` (where what a crash left of an
    /// unfinished one is removed).
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Self, StorageError> {
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
        // Hashed memtables take one writer at a time.
        opts.set_allow_concurrent_memtable_write(false);
        if options.background_write_bytes_per_sec > 0 {
            let rate = i64::try_from(options.background_write_bytes_per_sec).unwrap_or(i64::MAX);
            opts.set_ratelimiter(rate, BACKGROUND_WRITE_REFILL_US, BACKGROUND_WRITE_FAIRNESS);
        }
        if options.wal_file_bytes > 0 {
            opts.set_recycle_log_file_num(WAL_FILES_RECYCLED);
            opts.set_max_total_wal_size(options.wal_file_bytes);
        }
        // An existing directory is checked read-only first, so one in
        // another format is refused exactly as it was found (a read-write
        // open would add missing families and rewrite RocksDB's own files).
        let mut stamp = Stamp::Fresh;
        if let Ok(existing) = DB::list_cf(&opts, &db_dir) {
            // RocksDB would refuse an unknown family with a less helpful message.
            if let Some(unknown) = existing.iter().find(|name| *name != "default" && !ALL_CFS.contains(&name.as_str()))
            {
                return Err(format_error(format!(
                    "column family {unknown:?} is unknown to this holdfast (format {STORE_FORMAT}): the directory \
                     was written by another version"
                )));
            }
            let found = DB::open_cf_for_read_only(&Options::default(), &db_dir, &existing, false)?;
            stamp = read_stamp(&found)?;
            if let Stamp::Refused(reason) = stamp {
                return Err(format_error(reason));
            }
        }
        let forget_floor = Arc::new(ForgetFloor::default());
        let cfs = ALL_CFS.iter().map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name, &forget_floor)));
        let db = DB::open_cf_descriptors(&opts, &db_dir, cfs)?;
        // Only now: RocksDB's lock shows no other process uses the directory.
        crate::snapshot::remove_leftovers(&dir.join("snapshots"));
        let store = Self {
            db: Arc::new(db),
            dir: dir.to_path_buf(),
            sync_latency: Arc::default(),
            requests_remembered: REQUEST_IDS_REMEMBERED,
            forget_floor,
            syncs: Arc::default(),
            prompt_apply_syncs: Arc::default(),
            snapshot_lock: Arc::default(),
        };
        for name in ALL_CFS {
            // Not among the options the C API sets before an open.
            store.db.set_options_cf(
                store.cf(name),
                &[("bottommost_file_compaction_delay", BOTTOMMOST_REWRITE_DELAY_SECS)],
            )?;
        }
        if options.wal_file_bytes > 0 {
            // RocksDB reuses only the files of the session that spent them.
            prepare_wal_files(&store.db, options.wal_file_bytes)?;
        }
        if matches!(stamp, Stamp::Fresh) {
            let mut batch = WriteBatch::default();
            batch.put_cf(store.cf(CF_SM_META), META_FORMAT, STORE_FORMAT.to_be_bytes());
            store.write_synced(batch)?;
        }
        Ok(store)
    }

    /// Remembers at most `count` request ids instead of
    /// [`REQUEST_IDS_REMEMBERED`] (tests of forgetting use a small number).
    /// The count is fixed when a state machine remembers its first id (it is
    /// stored, and travels in snapshots); later this setting is ignored.
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

    /// A new, unlinked file to receive a snapshot from the leader into. It
    /// has no name: nothing is left behind if the transfer is abandoned or
    /// the node crashes. Installing it copies it into the snapshot
    /// directory after checking its checksum.
    pub async fn snapshot_receiving_file(&self) -> Result<tokio::fs::File, StorageError> {
        let dir = self.snapshot_dir();
        let file = crate::error::blocking(move || {
            let path = dir.join(format!("recv-{}.part", rand::random::<u64>()));
            let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(file)
        })
        .await?;
        Ok(tokio::fs::File::from_std(file))
    }

    /// The latency of every WAL sync this store has made (for metrics).
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
    /// The write and the sync are separate calls, so that no RocksDB write
    /// group waits for a sync (see [`Store::write_small_unsynced`]); the
    /// sync is shared with the writes waiting for one meanwhile. If the
    /// sync fails the batch is readable but not durable: callers treat the
    /// error as fatal (Raft stops), as they did when RocksDB synced inside
    /// the write.
    pub(crate) fn write_synced(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.write_unsynced(batch)?;
        self.wait_for_sync()
    }

    /// Writes `batch` without waiting for a sync, hands the write's outcome
    /// to `written`, and calls `waiter` once a WAL sync that started after
    /// the write has returned (the WAL is one file, written in order, so
    /// the write is then on stable storage). Call it on a thread that may
    /// block: when no sync is running, this thread runs the sync rounds
    /// itself, until nothing waits, after `written` (rather than wake
    /// another thread to sync). `waiter` is queued before `written` runs,
    /// so writes made one after another, each waiting for the `written` of
    /// the one before, have their waiters called in the order written, and
    /// Raft hears of its appends' flushes in order. A failed write calls
    /// `written` only.
    pub(crate) fn write_then_after_sync(
        &self,
        batch: WriteBatch,
        written: impl FnOnce(Result<(), StorageError>),
        waiter: SyncWaiter,
    ) {
        if let Err(e) = self.write_unsynced(batch) {
            return written(Err(e));
        }
        let sync_here = self.enqueue_for_sync(waiter);
        written(Ok(()));
        if sync_here {
            SyncerGuard::new(self).run();
        }
    }

    /// Runs sync rounds on a blocking-pool thread until nothing waits (the
    /// caller has set `running`). Without a runtime they run here. If the
    /// runtime is shutting down, tokio drops the task unrun: the guard then
    /// fails every waiter rather than leave them waiting forever.
    fn start_syncer(&self) {
        let guard = SyncerGuard::new(self);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || guard.run());
            }
            Err(_) => guard.run(),
        }
    }

    /// Blocks until a WAL sync that started after this call has returned
    /// (see [`Store::write_then_after_sync`]), sharing it with every write
    /// waiting meanwhile. When no sync is running this thread runs one
    /// itself, so a lone write waits for no other thread.
    pub(crate) fn wait_for_sync(&self) -> Result<(), StorageError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let waiter: SyncWaiter = Box::new(move |synced| {
            let _ = tx.send(sync_outcome(synced));
        });
        if self.enqueue_for_sync(waiter) && self.sync_round() && self.more_to_sync() {
            // Writes that arrived during this round go to a thread of their
            // own; this one has its answer.
            self.start_syncer();
        }
        received_outcome(rx.recv())
    }

    /// Returns once a WAL sync that started after this call has returned,
    /// as [`Store::wait_for_sync`] does, but starts none itself for `hold`:
    /// under traffic the next log append's sync, which Raft waits for
    /// anyway, serves this write too, rather than a sync of its own running
    /// first on the same WAL and making the append's sync queue behind it.
    /// While a [`PromptApplySyncs`] lives (a linearizable read's ReadIndex
    /// round, a node shutting down) it syncs at once. Awaited on the
    /// runtime; no thread waits.
    pub(crate) async fn sync_soon(&self, hold: Duration) -> Result<(), StorageError> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let waiter: SyncWaiter = Box::new(move |synced| {
            let _ = tx.send(sync_outcome(synced));
        });
        // Queued, not started: a running sync's next round, or whoever
        // syncs next, takes it.
        self.syncs.lock().unwrap_or_else(|e| e.into_inner()).waiting.push(waiter);
        // Queued first, counted after: a guard taken in between finds
        // this waiter queued and starts the sync itself.
        if self.prompt_apply_syncs.load(Ordering::SeqCst) > 0 {
            self.sync_waiting_now();
        }
        let synced = match tokio::time::timeout(hold, &mut rx).await {
            Ok(synced) => synced,
            Err(_) => {
                self.sync_waiting_now();
                rx.await
            }
        };
        received_outcome(synced)
    }

    /// Starts a sync on the blocking pool for the writes that wait for one
    /// ([`Store::sync_soon`]), unless one is running (it serves them next)
    /// or nothing waits.
    fn sync_waiting_now(&self) {
        let start = {
            let mut syncs = self.syncs.lock().unwrap_or_else(|e| e.into_inner());
            !syncs.waiting.is_empty() && !std::mem::replace(&mut syncs.running, true)
        };
        if start {
            self.start_syncer();
        }
    }

    /// Queues `waiter`; true when the caller must start syncing.
    fn enqueue_for_sync(&self, waiter: SyncWaiter) -> bool {
        let mut syncs = self.syncs.lock().unwrap_or_else(|e| e.into_inner());
        syncs.waiting.push(waiter);
        !std::mem::replace(&mut syncs.running, true)
    }

    /// One sync for everything waiting. False (and the syncer stops) when
    /// nothing was.
    fn sync_round(&self) -> bool {
        let waiting = {
            let mut syncs = self.syncs.lock().unwrap_or_else(|e| e.into_inner());
            if syncs.waiting.is_empty() {
                syncs.running = false;
                return false;
            }
            std::mem::take(&mut syncs.waiting)
        };
        let synced = self.sync_wal();
        for waiter in waiting {
            waiter(&synced);
        }
        true
    }

    /// Fails every waiting write and stops the syncer: its thread never
    /// ran.
    fn abandon_syncs(&self) {
        let waiting = {
            let mut syncs = self.syncs.lock().unwrap_or_else(|e| e.into_inner());
            syncs.running = false;
            std::mem::take(&mut syncs.waiting)
        };
        let abandoned = Err(StorageError::Sync("the node is shutting down".into()));
        for waiter in waiting {
            waiter(&abandoned);
        }
    }

    /// Whether writes are waiting; when none are, the syncer stops.
    fn more_to_sync(&self) -> bool {
        let mut syncs = self.syncs.lock().unwrap_or_else(|e| e.into_inner());
        if syncs.waiting.is_empty() {
            syncs.running = false;
        }
        syncs.running
    }

    /// Syncs the WAL: every write that returned before this call is on
    /// stable storage when it returns.
    pub(crate) fn sync_wal(&self) -> Result<(), StorageError> {
        let started = Instant::now();
        self.db.flush_wal(true)?;
        self.sync_latency.observe(started.elapsed());
        Ok(())
    }

    /// Writes a batch without waiting for fsync: for data whose loss a
    /// crash makes harmless (it is rewritten or re-derived), and for log
    /// appends, reported durable only after [`Store::sync_wal`].
    pub(crate) fn write_unsynced(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.db.write(batch)?;
        Ok(())
    }

    /// [`Store::write_unsynced`] of a small batch from async code: on the
    /// calling runtime thread when RocksDB takes it at once (cheaper than a
    /// handoff to the blocking pool and back), on the blocking pool when
    /// RocksDB would make it wait (a write stall or slowdown, or a soft stop
    /// while it recovers from a background error; a hard background error
    /// fails the write at once). On the runtime thread it is usually
    /// a memtable insert and a WAL `write`; it may also wait in RocksDB's
    /// write group while the writes ahead of it are inserted (a log
    /// append, an apply batch, a snapshot chunk), and about once per WAL
    /// file it switches files (renaming a recycled one). Never a sync: no
    /// write of this store syncs inside the group ([`Store::write_synced`]
    /// syncs after its write).
    pub(crate) async fn write_small_unsynced(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut opts = WriteOptions::default();
        opts.set_no_slowdown(true);
        let retry = WriteBatch::from_data(batch.data());
        match self.db.write_opt(batch, &opts).map_err(StorageError::from) {
            Err(e) if e.is_incomplete() => {
                let this = self.clone();
                blocking(move || this.write_unsynced(retry)).await
            }
            done => done,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use holdfast_types::{Command, CommandResult, Entry, RegistryName, WriteMeta};
    use holdfast_types::{CommittedLeaderId, LogId, TypeConfig};
    use openraft::type_config::alias::EntryPayloadOf;
    use openraft::EntryPayload;

    /// A put of record `id` with request id `id`, as the entry at `index`.
    pub(crate) fn put(index: u64, id: &str) -> Entry {
        put_as(index, id, id, b"v")
    }

    /// A put of `value` to record `record` with request id `request_id`, as
    /// the entry at `index`.
    pub(crate) fn put_as(index: u64, record: &str, request_id: &str, value: &[u8]) -> Entry {
        let command = Command::Put {
            registry: RegistryName::parse("population").expect("valid name"),
            record: record.as_bytes().to_vec(),
            value: value.to_vec(),
            if_revision: None,
            meta: WriteMeta {
                request_id: request_id.into(),
                actor: "clerk".into(),
                reason: String::new(),
                commit_time_ms: 1,
            },
        };
        entry(index, EntryPayload::Normal(command))
    }

    /// A get of record `r1` by `clerk`, as an audit event.
    pub(crate) fn audit_event() -> holdfast_types::AuditEvent {
        holdfast_types::AuditEvent {
            time_ms: 7,
            identity: "clerk".into(),
            registry: RegistryName::parse("population").expect("valid name"),
            record: b"r1".to_vec(),
            op: holdfast_types::AuditOp::Get,
            revision: 1,
            outcome: holdfast_types::AuditOutcome::Ok,
            node: 1,
        }
    }

    /// The entry at `index` of term 1, proposed by node 1.
    pub(crate) fn entry(index: u64, payload: EntryPayloadOf<TypeConfig>) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId { term: 1, node_id: 1 }, index), payload }
    }

    #[tokio::test]
    async fn compaction_drops_forgotten_request_ids_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap().remember_requests(2);
        let mut sm = store.state_machine().await.unwrap();
        for i in 1..=5 {
            sm.apply_batch(vec![put(i, &format!("q{i}"))]).await.unwrap();
        }
        let cf = store.cf(CF_REQUESTS);
        store.db.flush_cf(cf).unwrap();
        store.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        let stored = |key: &[u8]| store.db.get_cf(cf, key).unwrap().is_some();
        assert!(!stored(b"q1") && !stored(b"q2") && !stored(b"q3"), "forgotten ids are dropped");
        assert!(stored(b"q4") && stored(b"q5") && stored(REQUEST_COUNT), "remembered ids and the count stay");
        // What a retry does is unchanged: q5 is still a duplicate, q3 (dropped)
        // and q4 (pushed out by q3 coming back) write again.
        let results = sm.apply_batch(vec![put(6, "q5"), put(7, "q3"), put(8, "q4")]).await.unwrap();
        assert!(matches!(results[0], CommandResult::Duplicate(_)), "{:?}", results[0]);
        assert!(matches!(results[1], CommandResult::Written { .. }), "{:?}", results[1]);
        assert!(matches!(results[2], CommandResult::Written { .. }), "{:?}", results[2]);
    }

    /// An audit entry is answered as soon as it is committed, before its
    /// apply: that early answer must be what applying it returns, at its
    /// own index. Nothing else is answered early.
    #[tokio::test]
    async fn only_audit_entries_are_answered_before_the_apply_and_with_what_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let mut sm = store.state_machine().await.unwrap();
        let event = audit_event();
        let audit = || EntryPayload::Normal(Command::Audit { events: vec![event.clone(), event.clone()] });
        let members =
            openraft::Membership::new_with_defaults(vec![std::collections::BTreeSet::from([1])], Vec::<u64>::new());
        let entries = vec![
            entry(1, EntryPayload::Blank),
            put(2, "q2"),
            entry(3, audit()),
            entry(4, EntryPayload::Membership(members)),
            entry(5, audit()),
            put(6, "q6"),
        ];
        let early = crate::state_machine::early_answers(&entries);
        let applied = sm.apply_batch(entries).await.unwrap();
        assert_eq!(early.len(), applied.len());
        for (index, (early, applied)) in early.iter().zip(&applied).enumerate() {
            match index {
                2 | 4 => assert_eq!(early.as_ref(), Some(applied), "entry {}", index + 1),
                _ => assert_eq!(early, &None, "entry {} waits for the apply", index + 1),
            }
        }
        assert_ne!(applied[2], applied[4], "each audit entry's answer names its own revision");
    }

    /// Keeps every WAL sync waiting until released: the store believes a
    /// syncer is running. A drop without a release (a failed assertion)
    /// runs one on a thread of its own, so a failing test ends instead of
    /// leaving a write waiting forever.
    struct BusySyncer(Option<Store>);

    impl BusySyncer {
        fn new(store: &Store) -> Self {
            store.syncs.lock().unwrap().running = true;
            Self(Some(store.clone()))
        }

        /// Runs sync rounds until nothing waits; returns once the store
        /// has stopped syncing.
        async fn release(mut self) {
            let store = self.0.take().expect("not released yet");
            tokio::task::spawn_blocking(move || SyncerGuard::new(&store).run()).await.unwrap();
        }
    }

    impl Drop for BusySyncer {
        fn drop(&mut self) {
            if let Some(store) = self.0.take() {
                std::thread::spawn(move || SyncerGuard::new(&store).run());
            }
        }
    }

    /// Waits (10 s at most) until `done` holds of the store's syncs.
    async fn until_syncs(store: &Store, what: &str, done: impl Fn(&Syncs) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done(&store.syncs.lock().unwrap()) {
            assert!(tokio::time::Instant::now() < deadline, "{what} never happened");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits until no thread is syncing.
    pub(crate) async fn syncer_stopped(store: &Store) {
        until_syncs(store, "the syncer stopping", |syncs| !syncs.running).await;
    }

    /// Waits until `count` writes wait for a WAL sync.
    pub(crate) async fn syncs_awaited(store: &Store, count: usize) {
        until_syncs(store, "writes waiting for a sync", |syncs| syncs.waiting.len() >= count).await;
    }

    /// Whether a thread is syncing.
    pub(crate) fn syncing(store: &Store) -> bool {
        store.syncs.lock().unwrap().running
    }

    /// Awaits `f` for 10 s at most.
    pub(crate) async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), f).await.expect("no answer within 10 s")
    }

    /// Appends a log entry at `index` as the log store does (written, then
    /// synced by this thread unless a sync is running), on the blocking
    /// pool; returns once it is written, with the receiver of whether its
    /// sync succeeded.
    pub(crate) async fn append(store: &Store, index: u64) -> std::sync::mpsc::Receiver<bool> {
        let store = store.clone();
        let (synced_tx, synced_rx) = std::sync::mpsc::channel();
        within(tokio::task::spawn_blocking(move || {
            let mut batch = WriteBatch::default();
            batch.put_cf(store.cf(CF_LOG), log_key(index), b"append");
            let waiter: SyncWaiter = Box::new(move |synced| {
                let _ = synced_tx.send(synced.is_ok());
            });
            store.write_then_after_sync(batch, |written| written.unwrap(), waiter);
        }))
        .await
        .unwrap();
        synced_rx
    }

    /// A batch of client writes is answered once it is written (and
    /// readable), while its WAL sync is still awaited, whether it is small
    /// enough to be written on the runtime thread or not; a batch that
    /// changes the keyring only after its sync, with the change taken in.
    /// Every apply call returns only after its sync.
    #[tokio::test]
    async fn writes_are_answered_before_their_apply_syncs_and_key_changes_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let mut sm = store.state_machine().await.unwrap();
        let view = sm.read_view();
        let key = entry(35, EntryPayload::Normal(Command::AddDataKey { key_id: 7, wrapped: vec![1; 40] }));
        let small = vec![put(1, "q1"), put(2, "q2")];
        let large: Vec<Entry> = (10..=30).map(|i| put(i, &format!("q{i}"))).collect();
        assert!(crate::state_machine::applies_in_place(&small) && !crate::state_machine::applies_in_place(&large));
        // (entries, whether answered before the sync, a record they write)
        let cases = [(small, true, "q2"), (large, true, "q30"), (vec![key, put(40, "q40")], false, "q40")];
        // The test's runtime has one thread: an answer from any other came
        // from the blocking pool.
        let runtime_thread = std::thread::current().id();
        for (entries, before_sync, written) in cases {
            let busy = BusySyncer::new(&store);
            let (answer_tx, mut answered) = tokio::sync::mpsc::unbounded_channel();
            let (thread_tx, mut answered_on) = tokio::sync::mpsc::unbounded_channel();
            let keyring = view.keyring();
            let answer: crate::state_machine::Answer = Box::new(move |results| {
                let key_in_use = keyring.borrow().current;
                let _ = thread_tx.send(std::thread::current().id());
                drop(answer_tx.send((results.to_vec(), key_in_use)));
            });
            let expect_in_place = crate::state_machine::applies_in_place(&entries) && before_sync;
            let applied_before = view.applied_index();
            let applying = tokio::spawn(async move {
                let applied = sm.apply_then_answer(entries, Some(answer)).await;
                (sm, applied)
            });
            syncs_awaited(&store, 1).await;
            if before_sync {
                let (results, _) = answered.try_recv().expect("answered before the sync");
                assert!(results.iter().all(|r| matches!(r, CommandResult::Written { .. })), "{results:?}");
                let population = RegistryName::parse("population").expect("valid name");
                let (read, _) = view.get(population, written.as_bytes().to_vec(), None).await.unwrap();
                assert!(read.is_some(), "what the writer was told, a reader sees");
                let thread = answered_on.try_recv().expect("answered");
                assert_eq!(
                    thread == runtime_thread,
                    expect_in_place,
                    "a small batch is answered from the runtime thread"
                );
                assert_eq!(view.applied_index(), applied_before, "the applied index waits for the sync");
            } else {
                assert!(answered.try_recv().is_err(), "a keyring change is answered only after its sync");
            }
            assert!(!applying.is_finished(), "the apply returns only after its sync");
            busy.release().await;
            let (returned, applied) = applying.await.unwrap();
            sm = returned;
            let applied = applied.unwrap();
            if !before_sync {
                let answer = answered.recv().await;
                assert_eq!(answer, Some((applied, Some(7))), "answered after the sync, with the new key in use");
            }
        }
    }

    #[tokio::test]
    async fn the_request_window_is_fixed_by_the_first_id_remembered() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &StoreOptions::small()).unwrap().remember_requests(2);
            store
                .state_machine()
                .await
                .unwrap()
                .apply_batch(vec![put(1, "q1"), put(2, "q2"), put(3, "q3")])
                .await
                .unwrap();
        }
        // A larger window later must not bring q1 back.
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap().remember_requests(10);
        let results = store.state_machine().await.unwrap().apply_batch(vec![put(4, "q1"), put(5, "q3")]).await.unwrap();
        assert!(matches!(results[0], CommandResult::Written { .. }), "{:?}", results[0]);
        assert!(matches!(results[1], CommandResult::Duplicate(_)), "{:?}", results[1]);
    }

    fn open_error(dir: &Path) -> String {
        match Store::open(dir, &StoreOptions::small()) {
            Ok(_) => panic!("the store opened"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn a_directory_in_another_format_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
            store.state_machine().await.unwrap().apply_batch(vec![put(1, "q1")]).await.unwrap();
        }
        // Reopening the same format works.
        drop(Store::open(dir.path(), &StoreOptions::small()).unwrap());

        // The stamp another version would have left.
        let raw = DB::open_cf(&Options::default(), dir.path().join("db"), ALL_CFS).unwrap();
        raw.put_cf(raw.cf_handle(CF_SM_META).unwrap(), META_FORMAT, 1u32.to_be_bytes()).unwrap();
        drop(raw);
        let error = open_error(dir.path());
        assert!(
            error.contains("written in format 1") && error.contains(&format!("reads format {STORE_FORMAT}")),
            "{error}"
        );
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
        drop(Store::open(dir.path(), &StoreOptions::small()).unwrap());
        let mut opts = Options::default();
        opts.create_missing_column_families(true);
        let families = ALL_CFS.iter().copied().chain(["request_order"]);
        drop(DB::open_cf(&opts, dir.path().join("db"), families).unwrap());
        let error = open_error(dir.path());
        assert!(error.contains("\"request_order\" is unknown"), "{error}");
    }

    /// A small write from async code is readable as soon as it returns; a
    /// synced write makes one WAL sync, and both are there after a reopen.
    #[tokio::test]
    async fn a_small_write_is_readable_at_once_and_a_synced_write_syncs_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
            let mut batch = WriteBatch::default();
            batch.put_cf(store.cf(CF_RAFT_META), b"small", b"1");
            store.write_small_unsynced(batch).await.unwrap();
            let found = store.db.get_cf(store.cf(CF_RAFT_META), b"small").unwrap();
            assert_eq!(found.as_deref(), Some(&b"1"[..]));
            let syncs = || store.sync_latency().snapshot().count;
            let before = syncs();
            let mut batch = WriteBatch::default();
            batch.put_cf(store.cf(CF_RAFT_META), b"synced", b"2");
            store.write_synced(batch).unwrap();
            assert_eq!(syncs(), before + 1, "a synced write syncs the WAL once");
        }
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        for (key, value) in [(&b"small"[..], &b"1"[..]), (b"synced", b"2")] {
            let found = store.db.get_cf(store.cf(CF_RAFT_META), key).unwrap();
            assert_eq!(found.as_deref(), Some(value), "{key:?} after reopening");
        }
    }

    /// The WAL turns over into recycled files (overwritten in place, not
    /// grown), and everything written through them is there after a reopen.
    #[test]
    fn wal_files_are_recycled_and_what_they_held_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let value = vec![7u8; 4096];
        let written = 2048u64; // 8 MiB through 1 MiB files
        {
            let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
            for index in 1..=written {
                let mut batch = WriteBatch::default();
                batch.put_cf(store.cf(CF_LOG), log_key(index), &value);
                store.write_unsynced(batch).unwrap();
                if index % 64 == 0 {
                    store.sync_wal().unwrap();
                }
            }
            store.sync_wal().unwrap();
        }
        let info_log = std::fs::read_to_string(dir.path().join("db").join("LOG")).unwrap();
        let reused = info_log.matches("reusing log").count();
        assert!(reused >= 2, "8 MiB through 1 MiB files reused only {reused} spent files");
        let wal_files = std::fs::read_dir(dir.path().join("db"))
            .unwrap()
            .filter(|f| f.as_ref().unwrap().file_name().to_string_lossy().ends_with(".log"))
            .count();
        // A few: the live file, one or two whose memtables are being
        // flushed, and the spent ones kept for reuse.
        assert!(wal_files <= 4 + WAL_FILES_RECYCLED, "{wal_files} WAL files kept");
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        for index in 1..=written {
            let found = store.db.get_cf(store.cf(CF_LOG), log_key(index)).unwrap();
            assert_eq!(found.as_deref(), Some(&value[..]), "entry {index} after reopening");
        }
    }

    /// A background write limit reaches RocksDB (its info log prints the
    /// rate limiter's address when one is set, `(nil)` when not), and a
    /// store under it still flushes and reopens with its data.
    #[test]
    fn a_background_write_limit_is_set_only_when_asked_for() {
        let limited = tempfile::tempdir().unwrap();
        let options = StoreOptions { background_write_bytes_per_sec: 8 << 20, ..StoreOptions::small() };
        {
            let store = Store::open(limited.path(), &options).unwrap();
            let mut batch = WriteBatch::default();
            batch.put_cf(store.cf(CF_LOG), log_key(1), vec![7u8; 1 << 20]);
            store.write_synced(batch).unwrap();
            store.db.flush_cf(store.cf(CF_LOG)).unwrap();
        }
        let store = Store::open(limited.path(), &options).unwrap();
        assert_eq!(store.db.get_cf(store.cf(CF_LOG), log_key(1)).unwrap(), Some(vec![7u8; 1 << 20]));
        let info_log = |dir: &Path| std::fs::read_to_string(dir.join("db").join("LOG")).unwrap();
        let limiter_line = |log: String| {
            log.lines().find(|l| l.contains("Options.rate_limiter:")).map(str::to_owned).unwrap_or_default()
        };
        let line = limiter_line(info_log(limited.path()));
        assert!(line.contains("0x"), "a limiter when asked: {line:?}");
        let unlimited = tempfile::tempdir().unwrap();
        drop(Store::open(unlimited.path(), &StoreOptions::small()).unwrap());
        let line = limiter_line(info_log(unlimited.path()));
        assert!(line.ends_with("(nil)"), "no limiter unless asked: {line:?}");
    }

    /// A flushed file at the bottom of its family stays as it was written
    /// when a snapshot is released after a later write, instead of being
    /// rewritten at once; with RocksDB's default delay (none) the same
    /// steps get it rewritten.
    #[test]
    fn released_snapshots_do_not_get_bottommost_files_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let cf = store.cf(CF_LOG);
        let log_files = || {
            let mut names: Vec<String> = store
                .db
                .live_files()
                .unwrap()
                .into_iter()
                .filter(|f| f.column_family_name == CF_LOG)
                .map(|f| f.name)
                .collect();
            names.sort();
            names
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, log_key(1), b"entry");
        store.write_synced(batch).unwrap();
        store.db.flush_cf(cf).unwrap();
        let flushed = log_files();
        assert_eq!(flushed.len(), 1, "one file: {flushed:?}");
        // A later write, then a snapshot released: nothing needs the file's
        // sequence numbers now, which is what marks it for the rewrite.
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, log_key(2), b"entry");
        store.write_synced(batch).unwrap();
        drop(store.db.snapshot());
        store.db.wait_for_compact(&rocksdb::WaitForCompactOptions::default()).unwrap();
        assert_eq!(log_files(), flushed, "the file was rewritten");
        // The control: without the delay the file is due, and goes.
        store.db.set_options_cf(&cf, &[("bottommost_file_compaction_delay", "0")]).unwrap();
        store.db.wait_for_compact(&rocksdb::WaitForCompactOptions::default()).unwrap();
        assert_ne!(log_files(), flushed, "without the delay the file is rewritten");
    }

    /// With WAL files of 0 bytes nothing is prepared or recycled.
    #[test]
    fn a_store_without_wal_file_size_grows_one_file() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), &StoreOptions { wal_file_bytes: 0, ..StoreOptions::small() }).unwrap());
        let info_log = std::fs::read_to_string(dir.path().join("db").join("LOG")).unwrap();
        assert_eq!(info_log.matches("reusing log").count(), 0);
    }

    /// Writers that queue while a sync is running are all served by the
    /// next single sync, each only after it; a lone writer runs its sync
    /// itself; and nothing is left running afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_waiting_for_a_sync_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let syncs = || store.sync_latency().snapshot().count;
        let before = syncs();
        let lone = store.clone();
        within(tokio::task::spawn_blocking(move || lone.wait_for_sync())).await.unwrap().unwrap();
        assert_eq!(syncs() - before, 1, "a lone writer syncs once, itself");

        // A sync is running elsewhere: writers queue behind it.
        store.syncs.lock().unwrap().running = true;
        let writers: Vec<_> = (1..=40u64)
            .map(|index| {
                let store = store.clone();
                tokio::task::spawn_blocking(move || {
                    let mut batch = WriteBatch::default();
                    batch.put_cf(store.cf(CF_LOG), log_key(index), b"queued");
                    store.write_unsynced(batch).unwrap();
                    store.wait_for_sync()
                })
            })
            .collect();
        syncs_awaited(&store, 40).await;
        assert_eq!(syncs() - before, 1, "nobody synced while the other sync ran");
        // That sync ends; its thread runs the next round for all of them.
        let syncer = store.clone();
        within(tokio::task::spawn_blocking(move || while syncer.sync_round() {})).await.unwrap();
        for writer in writers {
            within(writer).await.unwrap().unwrap();
        }
        assert_eq!(syncs() - before, 2, "one sync served the 40 queued writers");
        assert!(!syncing(&store), "the syncer stopped");
    }

    /// An apply's sync held for an append's starts no sync while it holds:
    /// the next log append's sync serves it; a [`PromptApplySyncs`] guard
    /// (a reader waiting for the applied index) cuts the hold short, and
    /// while one lives an apply syncs at once; a hold that runs out syncs
    /// by itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_held_sync_waits_for_an_append_or_a_prompt() {
        const LONG: Duration = Duration::from_secs(600);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let syncs = || store.sync_latency().snapshot().count;
        // Each hold starts once the syncer of the step before has stopped,
        // so that only what the step does can sync it.
        async fn hold(store: &Store, hold: Duration) -> tokio::task::JoinHandle<Result<(), StorageError>> {
            syncer_stopped(store).await;
            let store = store.clone();
            tokio::spawn(async move { store.sync_soon(hold).await })
        }
        let before = syncs();

        let held = hold(&store, LONG).await;
        syncs_awaited(&store, 1).await;
        assert!(!syncing(&store) && syncs() == before, "a held sync starts none");
        let synced = append(&store, 1).await;
        within(held).await.unwrap().unwrap();
        assert!(synced.recv().unwrap(), "the append synced");
        assert_eq!(syncs() - before, 1, "the append's sync served the held one too");

        let held = hold(&store, LONG).await;
        syncs_awaited(&store, 1).await;
        let prompt = PromptApplySyncs::new(&store);
        within(held).await.unwrap().unwrap();
        assert_eq!(syncs() - before, 2, "the guard started a sync");
        within(hold(&store, LONG).await).await.unwrap().unwrap();
        assert_eq!(syncs() - before, 3, "while the guard lives, a held sync runs at once");
        drop(prompt);

        within(hold(&store, Duration::from_millis(1)).await).await.unwrap().unwrap();
        assert_eq!(syncs() - before, 4, "a hold that runs out syncs");
    }

    /// An append made as soon as the one before it is written (as Raft
    /// makes them) has its flush reported after that one's, even when
    /// both wait for the same sync.
    #[test]
    fn writes_made_one_after_another_hear_of_their_sync_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        // A sync is running: neither write below syncs by itself.
        store.syncs.lock().unwrap().running = true;
        let heard = Arc::new(Mutex::new(Vec::new()));
        let waiter = |name: &'static str| -> SyncWaiter {
            let heard = heard.clone();
            Box::new(move |synced| {
                assert!(synced.is_ok());
                heard.lock().unwrap().push(name);
            })
        };
        let batch = |index: u64| {
            let mut batch = WriteBatch::default();
            batch.put_cf(store.cf(CF_LOG), log_key(index), b"entry");
            batch
        };
        store.write_then_after_sync(
            batch(1),
            |first| {
                first.unwrap();
                store.write_then_after_sync(batch(2), |second| second.unwrap(), waiter("second"));
            },
            waiter("first"),
        );
        while store.sync_round() {}
        assert_eq!(*heard.lock().unwrap(), ["first", "second"]);
        for index in [1, 2] {
            assert!(store.db.get_cf(store.cf(CF_LOG), log_key(index)).unwrap().is_some());
        }
    }

    /// When the runtime is shutting down, a write waiting for a sync is
    /// told it failed instead of waiting forever, and later syncs still run.
    #[test]
    fn waiting_writes_fail_when_no_thread_can_sync_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let handle = runtime.handle().clone();
        runtime.shutdown_background();
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let _entered = handle.enter();
            assert!(store.enqueue_for_sync(Box::new(move |synced| tx.send(synced.is_ok()).unwrap())));
            store.start_syncer();
        }
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)), Ok(false));
        // Outside any runtime the caller syncs itself.
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(store.enqueue_for_sync(Box::new(move |synced| tx.send(synced.is_ok()).unwrap())));
        store.start_syncer();
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)), Ok(true));
    }
}
