//! Snapshot files: built by streaming a RocksDB snapshot to disk, verified
//! and loaded in bounded batches, never held whole in memory.
//!
//! File format (do not change; bump `SNAPSHOT_FORMAT` for a new one):
//! `MAGIC | format u8 | u32 BE header length | header (codec SnapshotMeta) |
//! records (tag u8, u32 BE key length, key, u32 BE value length, value)* |
//! tag 0 | SHA-256 of everything before`. Tag n is `SNAPSHOT_CFS[n - 1]`.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rocksdb::{IteratorMode, WriteBatch};
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

/// A new file name for a snapshot: sorts by last applied index, then by
/// when it was written (built here or received).
fn file_name(meta: &SnapshotMeta) -> String {
    let index = meta.last_log_id.map_or(0, |l| l.index);
    let term = meta.last_log_id.map_or(0, |l| l.leader_id.term);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("snap-{index:020}-{term:010}-{nanos:024}.snap")
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

/// Streams the current state machine into a new snapshot file and returns
/// its metadata and path. Older snapshot files are removed afterwards.
pub(crate) fn build(store: &Store) -> Result<(SnapshotMeta, PathBuf), StorageError> {
    // Before the RocksDB snapshot: compaction must keep every request id the
    // snapshot's state still remembers until the file is written.
    let _keep_request_ids = store.forget_floor.pin();
    let view = store.db.snapshot();
    let last_applied: Option<LogId> = match view.get_cf(store.cf(CF_SM_META), META_LAST_APPLIED)? {
        Some(b) => decode(&b).map_err(StorageError::corrupt("last applied"))?,
        None => None,
    };
    let membership: StoredMembership = match view.get_cf(store.cf(CF_SM_META), META_MEMBERSHIP)? {
        Some(b) => decode(&b).map_err(StorageError::corrupt("membership"))?,
        None => StoredMembership::default(),
    };
    let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership };

    let dir = store.snapshot_dir();
    let final_path = dir.join(file_name(&meta));
    let tmp_path = final_path.with_extension("tmp");
    let file = File::create(&tmp_path)?;
    let mut out = HashingWriter { inner: BufWriter::with_capacity(BUFFER_BYTES, file), hasher: Sha256::new() };
    out.write_all(MAGIC)?;
    out.write_all(&[SNAPSHOT_FORMAT])?;
    let header = encode(&meta).map_err(StorageError::corrupt("snapshot meta"))?;
    out.write_all(&(header.len() as u32).to_be_bytes())?;
    out.write_all(&header)?;
    for name in SNAPSHOT_WRITE_ORDER {
        let tag = snapshot_tag(name)?;
        for item in view.iterator_cf_opt(store.cf(name), total_order(), IteratorMode::Start) {
            let (key, value) = item?;
            write_item(&mut out, tag, &key, &value)?;
        }
    }
    out.write_all(&[END_TAG])?;
    let HashingWriter { inner, hasher } = out;
    let mut file = inner.into_inner().map_err(|e| StorageError::Io(e.into_error()))?;
    file.write_all(&hasher.finalize())?;
    file.sync_all()?;
    fs::rename(&tmp_path, &final_path)?;
    fsync_dir(&dir)?;
    remove_other_snapshots(&dir, &final_path)?;
    Ok((meta, final_path))
}

fn remove_other_snapshots(dir: &Path, keep: &Path) -> Result<(), StorageError> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path != keep && path.extension().is_some_and(|e| e == "snap" || e == "tmp") {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The newest complete snapshot file, if any.
pub(crate) fn current(store: &Store) -> Result<Option<(SnapshotMeta, PathBuf)>, StorageError> {
    let mut newest: Option<PathBuf> = None;
    for entry in fs::read_dir(store.snapshot_dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "snap") && newest.as_ref().is_none_or(|n| path > *n) {
            newest = Some(path);
        }
    }
    match newest {
        Some(path) => Ok(Some((read_header(&mut BufReader::new(File::open(&path)?), &path)?, path))),
        None => Ok(None),
    }
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

/// Copies a received snapshot into the snapshot directory under its final
/// name, checking its checksum on the way, and returns the path.
pub(crate) fn accept_received(store: &Store, meta: &SnapshotMeta, mut received: File) -> Result<PathBuf, StorageError> {
    use std::io::Seek;
    received.seek(std::io::SeekFrom::Start(0))?;
    let dir = store.snapshot_dir();
    let final_path = dir.join(file_name(meta));
    let tmp_path = final_path.with_extension("tmp");
    let mut out = BufWriter::with_capacity(BUFFER_BYTES, File::create(&tmp_path)?);
    std::io::copy(&mut BufReader::with_capacity(BUFFER_BYTES, received), &mut out)?;
    let file = out.into_inner().map_err(|e| StorageError::Io(e.into_error()))?;
    file.sync_all()?;
    verify_checksum(&tmp_path)?;
    fs::rename(&tmp_path, &final_path)?;
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
    remove_other_snapshots(&store.snapshot_dir(), path)?;
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
        let (_, path) = build(&store).unwrap();
        let mut input = BufReader::new(File::open(&path).unwrap());
        read_header(&mut input, &path).unwrap();
        let mut tags = Vec::new();
        while let Some((name, _, _)) = read_item(&mut input, &path).unwrap() {
            tags.push(name);
        }
        let first = |name| tags.iter().position(|t| *t == name).unwrap_or_else(|| panic!("no {name} in {tags:?}"));
        let last_history = tags.iter().rposition(|t| *t == CF_HISTORY).unwrap();
        assert!(last_history < first(CF_RECORDS), "{tags:?}");
    }
}
