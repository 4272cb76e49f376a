//! Snapshots: RocksDB checkpoints, and the files a checkpoint is streamed
//! into when a node needs it; verified and loaded in bounded batches,
//! never held whole in memory.
//!
//! Building a snapshot costs a memtable flush and hard links, not a copy
//! of the state: a checkpoint (`snap-<index>-<term>-<nanos>.ckpt/db`) is
//! the state machine's files as they were, immutable, beside a `meta` file
//! (its codec `SnapshotMeta`). Only when a lagging node must be sent a
//! snapshot is the checkpoint streamed into a file (kept as
//! `snapshot.snap` inside it); received snapshots are kept as such files
//! (`snap-<index>-<term>-<nanos>.snap`). Entries ending `.tmp` are
//! unfinished: a snapshot being built, streamed or received, or a
//! checkpoint being removed.
//!
//! File format (do not change; bump `SNAPSHOT_FORMAT` for a new one):
//! `MAGIC | format u8 | u32 BE header length | header (codec SnapshotMeta) |
//! records (tag u8, u32 BE key length, key, u32 BE value length, value)* |
//! tag 0 | SHA-256 of everything before`. Tag n is `SNAPSHOT_CFS[n - 1]`.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{IteratorMode, Options, WriteBatch, DB};
use sha2::{Digest, Sha256};

use holdfast_types::codec::{decode, encode};
use holdfast_types::{LogId, SnapshotMeta, StoredMembership};

use crate::db::{total_order, Store};
use crate::error::StorageError;
use crate::keys::*;

const MAGIC: &[u8; 6] = b"HFSNAP";
/// Snapshot files carry it. 2: request ids carry their sequence number and
/// the `request_order` family is gone (format 1 had it as tag 4). 3: record
/// versions name their proposing node; successful writes have no `audit`
/// event of their own (data directory format 3). 4: the header is openraft
/// 0.10's snapshot metadata, without a snapshot id (files are named by
/// their last log id and when they were written). 5: `records` values are
/// record heads (data directory format 5).
const SNAPSHOT_FORMAT: u8 = 5;
/// The order families are written in, and so loaded: `history` before
/// `records`, so that while a snapshot is being installed every record
/// head a read finds already has its version.
const SNAPSHOT_WRITE_ORDER: [&str; 6] = [CF_HISTORY, CF_RECORDS, CF_REQUESTS, CF_KEYS, CF_ACCESS, CF_AUDIT];
const END_TAG: u8 = 0;
/// Largest key or value a snapshot may hold; bounds allocations when a
/// corrupt file claims a huge length.
const SNAPSHOT_ITEM_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Bytes buffered into one RocksDB batch while loading a snapshot.
const LOAD_BATCH_BYTES: usize = 4 * 1024 * 1024;
const BUFFER_BYTES: usize = 256 * 1024;
/// A checkpoint snapshot's directory ends so; a snapshot file, `.snap`.
const CHECKPOINT_EXTENSION: &str = "ckpt";
/// The RocksDB checkpoint inside a checkpoint snapshot's directory.
const CHECKPOINT_DB: &str = "db";
/// The file a checkpoint is streamed into, inside its directory.
const CHECKPOINT_FILE: &str = "snapshot.snap";
/// The checkpoint's metadata (codec `SnapshotMeta`), inside its directory.
const CHECKPOINT_META: &str = "meta";
/// Table files a checkpoint opened to read its metadata keeps open.
const CHECKPOINT_FILES_OPEN: i32 = 32;

fn bad(path: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::BadSnapshot { path: path.display().to_string(), reason: reason.into() }
}

/// A writer that hashes what passes through it.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_item(out: &mut impl Write, tag: u8, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    out.write_all(&[tag])?;
    out.write_all(&(key.len() as u32).to_be_bytes())?;
    out.write_all(key)?;
    out.write_all(&(value.len() as u32).to_be_bytes())?;
    out.write_all(value)
}

/// A new name for a snapshot (file or checkpoint directory): names sort
/// by last applied index, then by when the snapshot was made (built here
/// or received), whatever the extension.
fn snapshot_name(meta: &SnapshotMeta, extension: &str) -> String {
    let index = meta.last_log_id.map_or(0, |l| l.index);
    let term = meta.last_log_id.map_or(0, |l| l.leader_id.term);
    format!("snap-{index:020}-{term:010}-{:024}.{extension}", now_nanos())
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// The tag of a snapshot family in files: its position in
/// [`SNAPSHOT_CFS`] plus one.
fn snapshot_tag(name: &str) -> Result<u8, StorageError> {
    let position = SNAPSHOT_CFS.iter().position(|n| *n == name);
    position
        .and_then(|i| u8::try_from(i + 1).ok())
        .ok_or_else(|| StorageError::Task(format!("{name} is not in snapshots")))
}

/// Makes a checkpoint of the state machine and returns its metadata and
/// directory: RocksDB flushes the memtables, hard-links the table files
/// (the `log` family's too; nothing reads them) and copies the live part
/// of the WAL. Older snapshots are removed afterwards. The checkpoint is
/// immutable, so compaction of the live database (request ids it forgets,
/// versions it drops) never changes it.
///
/// Installs, removals and the choice of the current snapshot take the
/// store's snapshot lock (openraft builds in a task of its own, beside
/// installs and sends); a build takes it only before and after its
/// checkpoint (about a second under load, most of it the flush), so that
/// Raft asking for the current snapshot meanwhile (to send it), and the
/// state machine worker that asks, wait only for the short steps around
/// it (the rename, and the removal of older snapshots). An install that
/// began meanwhile wins: the checkpoint may hold part of it, and the
/// installed snapshot is at least as new as any state the checkpoint is
/// known to be consistent with, so the checkpoint is dropped and the
/// installed snapshot returned. Sends take no lock (see
/// [`checkpoint_file`]).
pub(crate) fn build(store: &Store) -> Result<(SnapshotMeta, Stored), StorageError> {
    build_with(store, || {})
}

/// [`build`], calling `checkpointed` once the checkpoint is taken, before
/// the lock is taken again (tests run installs there).
fn build_with(store: &Store, checkpointed: impl FnOnce()) -> Result<(SnapshotMeta, Stored), StorageError> {
    let installs_before = {
        let installs = store.snapshot_lock.lock().unwrap_or_else(|e| e.into_inner());
        if store.db.get_cf(store.cf(CF_SM_META), META_INSTALLING)?.is_some() {
            // An install failed half way: the state is neither the old nor
            // the new one, and the file it resumes from at the next start
            // must stay.
            return Err(StorageError::Task("a snapshot install is unfinished; no snapshot is built".into()));
        }
        *installs
    };
    let dir = store.snapshot_dir();
    let staging_dir = dir.join(format!("building-{}.tmp", now_nanos()));
    fs::create_dir(&staging_dir)?;
    // Armed only once the directory is this build's own.
    let staging = Written(Some(staging_dir));
    // RocksDB syncs the checkpoint's files and its directory; the entry
    // naming it is synced below.
    Checkpoint::new(&store.db)?.create_checkpoint(staging.path().join(CHECKPOINT_DB))?;
    let meta = applied_meta(&open_checkpoint(staging.path(), false)?)?;
    let mut meta_file = File::create(staging.path().join(CHECKPOINT_META))?;
    meta_file.write_all(&encode(&meta).map_err(StorageError::corrupt("snapshot meta"))?)?;
    meta_file.sync_all()?;
    fsync_dir(staging.path())?;
    checkpointed();

    let installs = store.snapshot_lock.lock().unwrap_or_else(|e| e.into_inner());
    if *installs != installs_before {
        drop(staging);
        let installed = newest(store)?;
        tracing::info!("a snapshot was installed while one was built; the installed one stands");
        return installed.ok_or_else(|| StorageError::Task("a snapshot was installed, and none is found".into()));
    }
    let final_dir = dir.join(snapshot_name(&meta, CHECKPOINT_EXTENSION));
    fs::rename(staging.path(), &final_dir)?;
    staging.kept();
    fsync_dir(&dir)?;
    remove_other_snapshots(&dir, &final_dir);
    Ok((meta, Stored::Checkpoint(final_dir)))
}

/// Opens a checkpoint snapshot's database, read-only. With `pin_files`
/// every table file is opened at once (so the read goes on if a newer
/// snapshot removes the directory meanwhile); otherwise files are opened
/// as they are read, a few at a time.
fn open_checkpoint(checkpoint: &Path, pin_files: bool) -> Result<DB, StorageError> {
    let db_dir = checkpoint.join(CHECKPOINT_DB);
    let mut options = Options::default();
    if !pin_files {
        options.set_max_open_files(CHECKPOINT_FILES_OPEN);
    }
    // The state machine's families only: the `log` family's files are in
    // the checkpoint too, and nothing reads them.
    let families = DB::list_cf(&options, &db_dir)?
        .into_iter()
        .filter(|name| name == "default" || name == CF_SM_META || SNAPSHOT_CFS.contains(&name.as_str()));
    Ok(DB::open_cf_for_read_only(&options, &db_dir, families, false)?)
}

fn family<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, StorageError> {
    db.cf_handle(name).ok_or_else(|| StorageError::Task(format!("the checkpoint has no {name} family")))
}

/// The last applied log id and membership a checkpoint's database holds.
fn applied_meta(db: &DB) -> Result<SnapshotMeta, StorageError> {
    let sm_meta = family(db, CF_SM_META)?;
    let last_applied: Option<LogId> = match db.get_cf(sm_meta, META_LAST_APPLIED)? {
        Some(b) => decode(&b).map_err(StorageError::corrupt("last applied"))?,
        None => None,
    };
    let membership: StoredMembership = match db.get_cf(sm_meta, META_MEMBERSHIP)? {
        Some(b) => decode(&b).map_err(StorageError::corrupt("membership"))?,
        None => StoredMembership::default(),
    };
    Ok(SnapshotMeta { last_log_id: last_applied, last_membership: membership })
}

/// The metadata a checkpoint snapshot's directory records.
fn read_checkpoint_meta(checkpoint: &Path) -> Result<SnapshotMeta, StorageError> {
    let path = checkpoint.join(CHECKPOINT_META);
    decode(&fs::read(&path)?).map_err(|e| bad(&path, format!("metadata: {e}")))
}

/// A checkpoint snapshot as a snapshot file, open at its start. Streamed
/// from the checkpoint the first time it is asked for, then kept in the
/// checkpoint's directory (synced before it takes its name there, so a
/// crash never leaves a torn one) for the next send; two sends at once
/// each stream it. A newer snapshot that removes the checkpoint meanwhile
/// takes away only the kept copy, not what this send reads: the
/// checkpoint's table files are all opened before streaming starts, and
/// the send reads the file it wrote through its open handle.
pub(crate) fn checkpoint_file(checkpoint: &Path) -> Result<File, StorageError> {
    let path = checkpoint.join(CHECKPOINT_FILE);
    match File::open(&path) {
        // Kept by a holdfast writing the same format, and intact.
        Ok(file) if read_header(&mut BufReader::new(&file), &path).is_ok() && verify_checksum(&path).is_ok() => {
            let mut file = file;
            file.seek(std::io::SeekFrom::Start(0))?;
            return Ok(file);
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let db = open_checkpoint(checkpoint, true)?;
    let dir = checkpoint.parent().ok_or_else(|| bad(checkpoint, "not in a snapshot directory"))?;
    let (mut file, written) = stream(&db, dir)?;
    if fs::rename(written.path(), &path).is_ok() {
        written.kept();
        let _ = fsync_dir(checkpoint);
    }
    // Otherwise the checkpoint is gone (a newer snapshot replaced it):
    // this send still has the open file, and the guard removes its name.
    file.seek(std::io::SeekFrom::Start(0))?;
    Ok(file)
}

/// A file or directory being written under a temporary name, removed
/// when dropped unless [`Written::kept`]: an error half way leaves nothing
/// behind (or, if the removal fails, a `.tmp` entry for the next start).
struct Written(Option<PathBuf>);

impl Written {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    /// It took another name: nothing to remove.
    fn kept(mut self) {
        self.0 = None;
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let removed = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            if let Err(e) = removed {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an unfinished snapshot");
            }
        }
    }
}

/// Streams a checkpoint's state into a new synced snapshot file under a
/// temporary name in `dir`, and returns it open (read and write) with the
/// guard of its name.
fn stream(db: &DB, dir: &Path) -> Result<(File, Written), StorageError> {
    let meta = applied_meta(db)?;
    let tmp_path = dir.join(format!("sending-{}-{:016x}.tmp", now_nanos(), rand::random::<u64>()));
    let file = fs::OpenOptions::new().read(true).write(true).create_new(true).open(&tmp_path)?;
    let written = Written(Some(tmp_path));
    let mut out = HashingWriter { inner: BufWriter::with_capacity(BUFFER_BYTES, file), hasher: Sha256::new() };
    out.write_all(MAGIC)?;
    out.write_all(&[SNAPSHOT_FORMAT])?;
    let header = encode(&meta).map_err(StorageError::corrupt("snapshot meta"))?;
    out.write_all(&(header.len() as u32).to_be_bytes())?;
    out.write_all(&header)?;
    for name in SNAPSHOT_WRITE_ORDER {
        let tag = snapshot_tag(name)?;
        for item in db.iterator_cf_opt(family(db, name)?, total_order(), IteratorMode::Start) {
            let (key, value) = item?;
            write_item(&mut out, tag, &key, &value)?;
        }
    }
    out.write_all(&[END_TAG])?;
    let HashingWriter { inner, hasher } = out;
    let mut file = inner.into_inner().map_err(|e| StorageError::Io(e.into_error()))?;
    file.write_all(&hasher.finalize())?;
    file.sync_all()?;
    Ok((file, written))
}

/// Whether `path` ends in one of `extensions`.
fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension().is_some_and(|e| extensions.iter().any(|x| e == *x))
}

/// Removes every snapshot and leftover in `dir` except `keep`, any file a
/// send is streaming into (`sending-*.tmp`) and any checkpoint a build is
/// taking (`building-*.tmp`; both remove their own, and
/// [`remove_leftovers`] what a crash left). Best effort: what cannot be
/// removed now is logged; the next snapshot tries again (and the next
/// start, for `.tmp` entries).
fn remove_other_snapshots(dir: &Path, keep: &Path) {
    remove_entries(dir, "an old snapshot", |path| {
        let busy = path.file_name().is_some_and(|n| {
            let name = n.to_string_lossy();
            name.starts_with("sending-") || name.starts_with("building-")
        });
        path != keep && !busy && has_extension(path, &["snap", "tmp", CHECKPOINT_EXTENSION])
    });
}

/// Removes what a crash left of unfinished snapshots (`.tmp` entries):
/// a half-built checkpoint, a file half-streamed or half-received.
pub(crate) fn remove_leftovers(dir: &Path) {
    remove_entries(dir, "an unfinished snapshot", |path| has_extension(path, &["tmp"]));
}

/// Removes the entries of `dir` that `chosen` picks (see
/// [`remove_snapshot`]), logging what cannot be listed or removed.
fn remove_entries(dir: &Path, what: &str, chosen: impl Fn(&Path) -> bool) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return tracing::warn!(dir = %dir.display(), error = %e, "cannot list snapshots"),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if chosen(&path) {
            if let Err(e) = remove_snapshot(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove {what}");
            }
        }
    }
}

/// Removes a snapshot file, or a checkpoint after renaming it out of the
/// way (so a send cannot keep its file in it, and no half-removed
/// checkpoint is ever taken for a snapshot).
fn remove_snapshot(path: &Path) -> std::io::Result<()> {
    if !path.is_dir() {
        return fs::remove_file(path);
    }
    let trash = if has_extension(path, &["tmp"]) {
        path.to_path_buf()
    } else {
        let trash = path.with_extension("removing.tmp");
        fs::rename(path, &trash)?;
        if let Some(parent) = path.parent() {
            File::open(parent)?.sync_all()?;
        }
        trash
    };
    fs::remove_dir_all(trash)
}

/// Where a snapshot's content is: a file (opened while the snapshot lock
/// was held, so a build cannot remove it first), or a checkpoint directory
/// (a build or an install may remove it before a send opens it: that send fails, and
/// Raft asks again for the newer one).
#[derive(Debug)]
pub(crate) enum Stored {
    File(File),
    Checkpoint(PathBuf),
}

/// Whether an error reading a snapshot's metadata means that snapshot is
/// damaged or gone (pass it over), not that the disk is failing.
fn unreadable(e: &StorageError) -> bool {
    match e {
        StorageError::BadSnapshot { .. } => true,
        StorageError::Io(io) => io.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// The newest snapshot, file or checkpoint, whose metadata reads, if any;
/// one that is damaged or gone is logged and passed over.
pub(crate) fn current(store: &Store) -> Result<Option<(SnapshotMeta, Stored)>, StorageError> {
    let _only = store.snapshot_lock.lock().unwrap_or_else(|e| e.into_inner());
    newest(store)
}

/// [`current`], for callers that hold the snapshot lock.
fn newest(store: &Store) -> Result<Option<(SnapshotMeta, Stored)>, StorageError> {
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for entry in fs::read_dir(store.snapshot_dir())? {
        let path = entry?.path();
        let complete = has_extension(&path, &["snap", CHECKPOINT_EXTENSION]);
        if let (true, Some(stem)) = (complete, path.file_stem()) {
            found.push((stem.to_string_lossy().into_owned(), path));
        }
    }
    // Names sort by index, then term, then when the snapshot was made.
    found.sort_unstable_by(|a, b| b.0.cmp(&a.0));
    for (_, path) in found {
        let read = if has_extension(&path, &[CHECKPOINT_EXTENSION]) {
            read_checkpoint_meta(&path).map(|meta| (meta, Stored::Checkpoint(path.clone())))
        } else {
            // Read past its header: whoever reads it rewinds it first.
            File::open(&path).map_err(StorageError::from).and_then(|file| {
                let meta = read_header(&mut BufReader::new(&file), &path)?;
                Ok((meta, Stored::File(file)))
            })
        };
        match read {
            Ok(current) => return Ok(Some(current)),
            Err(e) if unreadable(&e) => {
                tracing::warn!(snapshot = %path.display(), error = %e, "passing over an unreadable snapshot")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

fn read_header(input: &mut impl Read, path: &Path) -> Result<SnapshotMeta, StorageError> {
    let mut magic = [0u8; 7];
    input.read_exact(&mut magic).map_err(|_| bad(path, "too short for a header"))?;
    if &magic[..6] != MAGIC {
        return Err(bad(path, "not a holdfast snapshot (bad magic)"));
    }
    if magic[6] != SNAPSHOT_FORMAT {
        return Err(bad(path, format!("snapshot format {}; this holdfast reads format {SNAPSHOT_FORMAT}", magic[6])));
    }
    let header = read_chunk(input, path, "header")?;
    decode(&header).map_err(|e| bad(path, format!("header: {e}")))
}

fn read_u32(input: &mut impl Read, path: &Path, what: &str) -> Result<usize, StorageError> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).map_err(|_| bad(path, format!("truncated {what} length")))?;
    Ok(u32::from_be_bytes(len) as usize)
}

fn read_chunk(input: &mut impl Read, path: &Path, what: &str) -> Result<Vec<u8>, StorageError> {
    let len = read_u32(input, path, what)?;
    if len > SNAPSHOT_ITEM_BYTES_MAX {
        return Err(bad(path, format!("{what} claims {len} bytes, over SNAPSHOT_ITEM_BYTES_MAX")));
    }
    let mut buf = vec![0u8; len];
    input.read_exact(&mut buf).map_err(|_| bad(path, format!("truncated {what}")))?;
    Ok(buf)
}

/// One item of a snapshot file: the family its tag names, its key, its value.
type Item = (&'static str, Vec<u8>, Vec<u8>);

/// The next item of a snapshot file after its header; `None` at the end tag.
fn read_item(input: &mut impl Read, path: &Path) -> Result<Option<Item>, StorageError> {
    let mut tag = [0u8; 1];
    input.read_exact(&mut tag).map_err(|_| bad(path, "truncated record tag"))?;
    if tag[0] == END_TAG {
        return Ok(None);
    }
    let name = SNAPSHOT_CFS.get(tag[0] as usize - 1).ok_or_else(|| bad(path, format!("unknown tag {}", tag[0])))?;
    let key = read_chunk(input, path, "key")?;
    let value = read_chunk(input, path, "value")?;
    Ok(Some((name, key, value)))
}

/// Installs a snapshot received from a leader (see [`accept_received`] and
/// [`install`]) under the store's snapshot lock, and returns the metadata
/// its file names and the file's path.
pub(crate) fn install_received(
    store: &Store,
    meta: &SnapshotMeta,
    received: File,
) -> Result<(SnapshotMeta, PathBuf), StorageError> {
    let mut installs = store.snapshot_lock.lock().unwrap_or_else(|e| e.into_inner());
    // Counted before anything changes: a build whose checkpoint overlaps
    // this install drops it.
    *installs += 1;
    let path = accept_received(store, meta, received)?;
    Ok((install(store, &path)?, path))
}

/// Copies a received snapshot into the snapshot directory under its final
/// name, checking its checksum on the way, and returns the path; a copy
/// that fails is removed. Callers hold the store's snapshot lock (a
/// build's cleanup would take the copy's temporary name).
pub(crate) fn accept_received(store: &Store, meta: &SnapshotMeta, mut received: File) -> Result<PathBuf, StorageError> {
    received.seek(std::io::SeekFrom::Start(0))?;
    let dir = store.snapshot_dir();
    let final_path = dir.join(snapshot_name(meta, "snap"));
    let written = Written(Some(final_path.with_extension("tmp")));
    let mut out = BufWriter::with_capacity(BUFFER_BYTES, File::create(written.path())?);
    std::io::copy(&mut BufReader::with_capacity(BUFFER_BYTES, received), &mut out)?;
    let file = out.into_inner().map_err(|e| StorageError::Io(e.into_error()))?;
    file.sync_all()?;
    verify_checksum(written.path())?;
    fs::rename(written.path(), &final_path)?;
    written.kept();
    fsync_dir(&dir)?;
    Ok(final_path)
}

/// Checks the trailing SHA-256 of a snapshot file.
pub(crate) fn verify_checksum(path: &Path) -> Result<(), StorageError> {
    let len = fs::metadata(path)?.len();
    if len < 32 {
        return Err(bad(path, "shorter than its checksum"));
    }
    let mut input = BufReader::with_capacity(BUFFER_BYTES, File::open(path)?);
    let mut hasher = Sha256::new();
    std::io::copy(&mut (&mut input).take(len - 32), &mut hasher)?;
    let mut stored = [0u8; 32];
    input.read_exact(&mut stored)?;
    if hasher.finalize().as_slice() != stored {
        return Err(bad(path, "checksum mismatch"));
    }
    Ok(())
}

/// Replaces the state machine with the content of a verified snapshot file.
/// Callers hold the store's snapshot lock (but at start, when nothing else
/// runs).
///
/// Crash safety: the first synced batch clears the state machine and records
/// the file being installed; the last synced batch sets `last_applied` and
/// membership and clears the marker. A crash in between leaves the marker,
/// and opening the store installs the same file again.
pub(crate) fn install(store: &Store, path: &Path) -> Result<SnapshotMeta, StorageError> {
    let mut input = BufReader::with_capacity(BUFFER_BYTES, File::open(path)?);
    let meta = read_header(&mut input, path)?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();

    let mut batch = WriteBatch::default();
    batch.put_cf(store.cf(CF_SM_META), META_INSTALLING, file_name.as_bytes());
    for name in SNAPSHOT_CFS {
        clear_family(store, name, &mut batch)?;
    }
    store.write_synced(batch)?;

    let mut batch = WriteBatch::default();
    while let Some((name, key, value)) = read_item(&mut input, path)? {
        batch.put_cf(store.cf(name), key, value);
        if batch.size_in_bytes() >= LOAD_BATCH_BYTES {
            // Not synced: the final synced batch below makes every earlier
            // write of this install durable (one WAL, written in order).
            store.write_unsynced(std::mem::take(&mut batch))?;
        }
    }
    let sm_meta = store.cf(CF_SM_META);
    batch.put_cf(sm_meta, META_LAST_APPLIED, encode(&meta.last_log_id).map_err(StorageError::corrupt("last applied"))?);
    batch.put_cf(sm_meta, META_MEMBERSHIP, encode(&meta.last_membership).map_err(StorageError::corrupt("membership"))?);
    batch.delete_cf(sm_meta, META_INSTALLING);
    store.write_synced(batch)?;
    remove_other_snapshots(&store.snapshot_dir(), path);
    Ok(meta)
}

/// Adds to `batch` the deletion of every key in a column family.
fn clear_family(store: &Store, name: &str, batch: &mut WriteBatch) -> Result<(), StorageError> {
    let cf = store.cf(name);
    // One iterator for both ends: a total-order read of a hashed memtable
    // sorts it first.
    let mut iter = store.db.raw_iterator_cf_opt(cf, total_order());
    iter.seek_to_first();
    iter.status()?;
    let first = iter.key().map(<[u8]>::to_vec);
    iter.seek_to_last();
    let last = iter.key().map(<[u8]>::to_vec);
    iter.status()?;
    if let (Some(first), Some(last)) = (first, last) {
        // delete_range's end is exclusive; last + 0x00 is the next key after last.
        let mut end = last;
        end.push(0);
        batch.delete_range_cf(cf, &first[..], &end[..]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::put;
    use crate::db::StoreOptions;
    use std::os::unix::fs::MetadataExt;

    /// What the snapshot directory holds, by name, sorted.
    fn listed(store: &Store) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(store.snapshot_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn name_of(path: &Path) -> String {
        path.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// The families and keys of a snapshot file, in order.
    fn items_of(file: File, path: &Path) -> Vec<(&'static str, Vec<u8>)> {
        let mut input = BufReader::new(file);
        read_header(&mut input, path).unwrap();
        let mut items = Vec::new();
        while let Some((name, key, _)) = read_item(&mut input, path).unwrap() {
            items.push((name, key));
        }
        items
    }

    /// Builds a snapshot, which must be a checkpoint.
    fn built(store: &Store) -> (SnapshotMeta, PathBuf) {
        checkpoint_of(build(store).unwrap())
    }

    fn checkpoint_of(built: (SnapshotMeta, Stored)) -> (SnapshotMeta, PathBuf) {
        match built {
            (meta, Stored::Checkpoint(dir)) => (meta, dir),
            other => panic!("not a checkpoint: {other:?}"),
        }
    }

    /// Every snapshot family is written once, and `history` before
    /// `records`, so an install never shows a record head before its version.
    #[tokio::test]
    async fn a_snapshot_holds_every_family_and_history_before_records() {
        let mut order: Vec<&str> = SNAPSHOT_WRITE_ORDER.to_vec();
        order.sort_unstable();
        let mut families = SNAPSHOT_CFS.to_vec();
        families.sort_unstable();
        assert_eq!(order, families, "the write order is the snapshot families, each once");

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        store.state_machine().await.unwrap().apply_batch(vec![put(1, "a"), put(2, "b")]).await.unwrap();
        let (_, checkpoint) = built(&store);
        let path = checkpoint.join(CHECKPOINT_FILE);
        let tags: Vec<&str> = items_of(checkpoint_file(&checkpoint).unwrap(), &path).into_iter().map(|i| i.0).collect();
        let first = |name| tags.iter().position(|t| *t == name).unwrap_or_else(|| panic!("no {name} in {tags:?}"));
        let last_history = tags.iter().rposition(|t| *t == CF_HISTORY).unwrap();
        assert!(last_history < first(CF_RECORDS), "{tags:?}");
        verify_checksum(&path).unwrap();
    }

    /// Building a snapshot writes no copy of the state: a checkpoint, whose
    /// file is written once, when first asked for. A newer snapshot
    /// replaces it.
    #[tokio::test]
    async fn a_snapshot_is_a_checkpoint_until_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let mut sm = store.state_machine().await.unwrap();
        sm.apply_batch(vec![put(1, "a")]).await.unwrap();
        let (meta, checkpoint) = built(&store);
        assert_eq!(meta.last_log_id.map(|l| l.index), Some(1));
        assert_eq!(listed(&store), [name_of(&checkpoint)]);
        let path = checkpoint.join(CHECKPOINT_FILE);
        assert!(!path.exists(), "no file before anyone reads it");
        assert!(
            matches!(current(&store).unwrap(), Some((m, Stored::Checkpoint(c))) if m == meta && c == checkpoint),
            "the checkpoint is the current snapshot"
        );

        let file = checkpoint_file(&checkpoint).unwrap();
        let written = fs::metadata(&path).unwrap().ino();
        assert_eq!(file.metadata().unwrap().ino(), written, "the send reads the file kept");
        assert_eq!(checkpoint_file(&checkpoint).unwrap().metadata().unwrap().ino(), written, "written once");
        assert_eq!(read_header(&mut BufReader::new(file), &path).unwrap(), meta);

        sm.apply_batch(vec![put(2, "b")]).await.unwrap();
        let (newer, newer_dir) = built(&store);
        assert_eq!(newer.last_log_id.map(|l| l.index), Some(2));
        assert_eq!(listed(&store), [name_of(&newer_dir)]);
        assert_eq!(current(&store).unwrap().map(|(m, _)| m), Some(newer));
    }

    /// A send that streams a checkpoint a newer snapshot removes meanwhile
    /// still streams all of it, from table files opened before.
    #[tokio::test]
    async fn a_checkpoint_removed_while_it_is_streamed_is_still_sent_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let mut sm = store.state_machine().await.unwrap();
        // Table files of their own for each batch: more than RocksDB opens
        // by itself when it opens a database.
        for index in 1..=8 {
            sm.apply_batch(vec![put(index, &format!("q{index}"))]).await.unwrap();
            for name in [CF_RECORDS, CF_HISTORY, CF_REQUESTS] {
                store.db.flush_cf(store.cf(name)).unwrap();
            }
        }
        let (meta, checkpoint) = built(&store);
        let db = open_checkpoint(&checkpoint, true).unwrap();
        // As a newer build does, while the send has it open.
        remove_snapshot(&checkpoint).unwrap();
        assert!(!checkpoint.exists());
        let (mut file, written) = stream(&db, &store.snapshot_dir()).unwrap();
        verify_checksum(written.path()).unwrap();
        let path = written.path().to_path_buf();
        assert_eq!(read_header(&mut BufReader::new(File::open(&path).unwrap()), &path).unwrap(), meta);
        file.seek(std::io::SeekFrom::Start(0)).unwrap();
        let items = items_of(file, &path);
        for name in [CF_RECORDS, CF_HISTORY] {
            assert_eq!(items.iter().filter(|i| i.0 == name).count(), 8, "{name}: {items:?}");
        }
        for index in 1..=8 {
            let id = format!("q{index}").into_bytes();
            assert!(items.iter().any(|i| i.0 == CF_REQUESTS && i.1 == id), "request id {index}: {items:?}");
        }
        drop(written);
        assert!(!path.exists(), "the temporary name goes with its guard");
        // A send that finds the checkpoint gone fails; it falls back to
        // nothing else.
        assert!(checkpoint_file(&checkpoint).is_err());
    }

    /// A build waits for whoever holds the snapshot lock (an install, the
    /// choice of the current snapshot).
    #[tokio::test]
    async fn a_build_waits_for_the_snapshot_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        store.state_machine().await.unwrap().apply_batch(vec![put(1, "a")]).await.unwrap();
        let held = store.snapshot_lock.lock().unwrap();
        let (started, start) = std::sync::mpsc::channel();
        let building = {
            let store = store.clone();
            std::thread::spawn(move || {
                started.send(()).unwrap();
                build(&store).map(|(meta, _)| meta)
            })
        };
        start.recv().unwrap();
        // Not a timing claim: however long the build is given, it must not
        // finish, nor write anything, while the lock is held.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!building.is_finished(), "a build finished under a held lock");
        assert!(listed(&store).is_empty(), "built under a held lock: {:?}", listed(&store));
        drop(held);
        let built = building.join().unwrap().unwrap();
        assert_eq!(built.last_log_id.map(|l| l.index), Some(1));
    }

    /// A build holds the snapshot lock only around its checkpoint: the
    /// current snapshot is there for a send while the checkpoint is taken.
    #[tokio::test]
    async fn the_current_snapshot_is_there_while_a_build_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let mut sm = store.state_machine().await.unwrap();
        sm.apply_batch(vec![put(1, "a")]).await.unwrap();
        let (first, _) = built(&store);
        sm.apply_batch(vec![put(2, "b")]).await.unwrap();
        let (answered, answer) = std::sync::mpsc::channel();
        let built = build_with(&store, || {
            let store = store.clone();
            std::thread::spawn(move || answered.send(current(&store).map(|c| c.map(|(m, _)| m))));
            let asked = answer.recv_timeout(std::time::Duration::from_secs(10));
            assert_eq!(asked.expect("current() waited for a build's checkpoint").unwrap(), Some(first));
        });
        let (newer, _) = checkpoint_of(built.unwrap());
        assert_eq!(newer.last_log_id.map(|l| l.index), Some(2));
    }

    /// An install that runs while a build takes its checkpoint wins: the
    /// checkpoint (which may hold part of the install) is dropped, and the
    /// build answers with the installed snapshot.
    #[tokio::test]
    async fn an_install_during_a_build_wins() {
        let source_dir = tempfile::tempdir().unwrap();
        let source = Store::open(source_dir.path(), &StoreOptions::small()).unwrap();
        source.state_machine().await.unwrap().apply_batch(vec![put(1, "a"), put(2, "b"), put(3, "c")]).await.unwrap();
        let (sent, sent_dir) = built(&source);

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        store.state_machine().await.unwrap().apply_batch(vec![put(1, "z")]).await.unwrap();
        let mut received = None;
        let (meta, stored) = build_with(&store, || {
            let (installed, path) = install_received(&store, &sent, checkpoint_file(&sent_dir).unwrap()).unwrap();
            assert_eq!(installed, sent);
            assert!(
                listed(&store).iter().any(|n| n.starts_with("building-")),
                "an install spares a build's checkpoint"
            );
            received = Some(path);
        })
        .unwrap();
        let received = received.unwrap();
        assert_eq!(meta, sent, "the installed snapshot stands");
        assert!(matches!(stored, Stored::File(_)), "{stored:?}");
        assert_eq!(listed(&store), [name_of(&received)], "the build's checkpoint is gone, the installed file stays");
        assert_eq!(current(&store).unwrap().map(|(m, _)| m), Some(sent));
    }

    /// An installed snapshot replaces the checkpoints, and what a crash
    /// left of unfinished snapshots goes at the next start; a snapshot
    /// whose metadata does not read is passed over.
    #[tokio::test]
    async fn installs_replace_checkpoints_and_leftovers_go_at_start() {
        let source_dir = tempfile::tempdir().unwrap();
        let source = Store::open(source_dir.path(), &StoreOptions::small()).unwrap();
        source.state_machine().await.unwrap().apply_batch(vec![put(1, "a"), put(2, "b")]).await.unwrap();
        let (sent, checkpoint) = built(&source);

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        store.state_machine().await.unwrap().apply_batch(vec![put(1, "z")]).await.unwrap();
        built(&store);
        let received = accept_received(&store, &sent, checkpoint_file(&checkpoint).unwrap()).unwrap();
        assert_eq!(install(&store, &received).unwrap(), sent);
        assert_eq!(listed(&store), [name_of(&received)], "the checkpoint is gone");
        let file = match current(&store).unwrap() {
            Some((m, Stored::File(file))) if m == sent => file,
            other => panic!("the installed file is the current snapshot: {other:?}"),
        };
        assert_eq!(file.metadata().unwrap().ino(), fs::metadata(&received).unwrap().ino());

        // A newer checkpoint whose metadata is damaged, and leftovers.
        let damaged = store.snapshot_dir().join("snap-99999999999999999999-0000000001-000000000000000000000000.ckpt");
        fs::create_dir_all(damaged.join(CHECKPOINT_DB)).unwrap();
        fs::write(damaged.join(CHECKPOINT_META), b"garbage").unwrap();
        fs::create_dir_all(store.snapshot_dir().join("building-1.tmp").join(CHECKPOINT_DB)).unwrap();
        fs::write(store.snapshot_dir().join("sending-1-0.tmp"), b"half").unwrap();
        fs::create_dir_all(store.snapshot_dir().join("snap-1.removing.tmp").join(CHECKPOINT_DB)).unwrap();
        assert_eq!(current(&store).unwrap().map(|(m, _)| m), Some(sent.clone()), "the damaged one is passed over");
        drop(store);
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        assert_eq!(listed(&store), [name_of(&received), name_of(&damaged)], "only the leftovers go");
    }

    /// No snapshot is built while an install is unfinished (its file must
    /// stay for the next start), and a build spares the file a send is
    /// streaming into.
    #[tokio::test]
    async fn builds_spare_unfinished_installs_and_sends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        store.state_machine().await.unwrap().apply_batch(vec![put(1, "a")]).await.unwrap();
        let sending = store.snapshot_dir().join("sending-1-0.tmp");
        fs::write(&sending, b"half").unwrap();
        let mut batch = WriteBatch::default();
        batch.put_cf(store.cf(CF_SM_META), META_INSTALLING, b"snap-x.snap");
        store.write_synced(batch).unwrap();
        let refused = build(&store).unwrap_err().to_string();
        assert!(refused.contains("install is unfinished"), "{refused}");
        assert_eq!(listed(&store), [name_of(&sending)]);

        let mut batch = WriteBatch::default();
        batch.delete_cf(store.cf(CF_SM_META), META_INSTALLING);
        store.write_synced(batch).unwrap();
        let (_, checkpoint) = built(&store);
        assert_eq!(listed(&store), [name_of(&sending), name_of(&checkpoint)]);
    }

    /// A kept snapshot file that no longer checks out is streamed again.
    #[tokio::test]
    async fn a_damaged_kept_file_is_streamed_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        store.state_machine().await.unwrap().apply_batch(vec![put(1, "a")]).await.unwrap();
        let (_, checkpoint) = built(&store);
        drop(checkpoint_file(&checkpoint).unwrap());
        let path = checkpoint.join(CHECKPOINT_FILE);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(verify_checksum(&path).is_err());
        let damaged = fs::metadata(&path).unwrap().ino();
        drop(checkpoint_file(&checkpoint).unwrap());
        assert_ne!(fs::metadata(&path).unwrap().ino(), damaged, "streamed again");
        verify_checksum(&path).unwrap();
    }

    /// Compaction of the live database forgets request ids after a
    /// snapshot; the snapshot keeps every one its state remembers.
    #[tokio::test]
    async fn a_snapshot_keeps_the_request_ids_compaction_forgets_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap().remember_requests(2);
        let mut sm = store.state_machine().await.unwrap();
        sm.apply_batch(vec![put(1, "q1"), put(2, "q2")]).await.unwrap();
        let (_, checkpoint) = built(&store);
        sm.apply_batch(vec![put(3, "q3"), put(4, "q4"), put(5, "q5")]).await.unwrap();
        let cf = store.cf(CF_REQUESTS);
        store.db.flush_cf(cf).unwrap();
        store.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        let stored = |key: &[u8]| store.db.get_cf(cf, key).unwrap().is_some();
        assert!(!stored(b"q1") && !stored(b"q2") && !stored(b"q3"), "forgotten ids go");
        assert!(stored(b"q4") && stored(b"q5"));

        let path = checkpoint.join(CHECKPOINT_FILE);
        let items = items_of(checkpoint_file(&checkpoint).unwrap(), &path);
        let requests: Vec<&Vec<u8>> = items.iter().filter(|i| i.0 == CF_REQUESTS).map(|i| &i.1).collect();
        assert!(requests.contains(&&b"q1".to_vec()) && requests.contains(&&b"q2".to_vec()), "{requests:?}");
    }
}
