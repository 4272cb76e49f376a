//! Group commit for the Raft log: appends are written to RocksDB without
//! waiting, and one thread syncs the WAL for everything written so far and
//! only then reports those entries flushed to openraft.
//!
//! While one fsync runs, further appends queue up; the next fsync covers them
//! all. Under load this turns one fsync per append into one per batch, while
//! keeping the contract: an entry is reported flushed only after it is on
//! stable storage.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::LogFlushed;
use rocksdb::DB;

use holdfast_types::TypeConfig;

use crate::timings::LatencyHistogram;

/// Hands flush callbacks to the syncing thread.
#[derive(Clone)]
pub(crate) struct Flusher {
    tx: mpsc::Sender<LogFlushed<TypeConfig>>,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Flusher")
    }
}

impl Flusher {
    /// Starts the syncing thread; it ends when every `Flusher` is dropped.
    pub(crate) fn start(db: Arc<DB>, sync_latency: Arc<LatencyHistogram>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        // Weak: the thread must not keep the database open (and its lock
        // held) after the node has dropped everything else.
        let db = Arc::downgrade(&db);
        std::thread::Builder::new().name("holdfast-log-sync".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                // Everything queued now was written before this sync starts,
                // so one sync makes all of it durable.
                let mut waiting = vec![first];
                waiting.extend(rx.try_iter());
                let started = Instant::now();
                let synced = match db.upgrade() {
                    Some(db) => db.flush_wal(true).map_err(|e| e.to_string()),
                    None => Err("the database is closed".to_string()),
                };
                sync_latency.observe(started.elapsed());
                for callback in waiting {
                    let result = match &synced {
                        Ok(()) => Ok(()),
                        Err(e) => Err(std::io::Error::other(format!("syncing the Raft log: {e}"))),
                    };
                    callback.log_io_completed(result);
                }
                if let Err(e) = synced {
                    // openraft stops this node on the error above; do not
                    // report anything later as durable either.
                    tracing::error!(error = %e, "syncing the Raft log failed; no further entries are reported flushed");
                    return;
                }
            }
        })?;
        Ok(Self { tx })
    }

    /// Reports `callback` flushed after the next sync. Entries written
    /// before this call are covered by that sync.
    pub(crate) fn after_next_sync(&self, callback: LogFlushed<TypeConfig>) -> Result<(), std::io::Error> {
        self.tx.send(callback).map_err(|e| {
            let callback = e.0;
            let err = std::io::Error::other("the log sync thread has stopped");
            callback.log_io_completed(Err(std::io::Error::other("the log sync thread has stopped")));
            err
        })
    }
}
