//! RocksDB storage for one holdfast node: the Raft log and vote, the state
//! machine (live records, full history, remembered request ids) and its
//! snapshots. The only crate that links RocksDB.
//!
//! Durability contract: log entries are reported flushed only after a WAL
//! sync that covers them; each `apply` writes records, history,
//! `last_applied` and membership in one `WriteBatch` and returns only
//! after a WAL sync covers it (its own, or one it shares with log
//! appends). Record ids and values are opaque bytes here: storage never
//! knows whether they are sealed.

mod apply;
mod db;
mod error;
mod keys;
mod log_store;
mod reader;
mod snapshot;
mod state_machine;
mod timings;

pub use db::{PromptApplySyncs, Store, StoreOptions};
pub use error::StorageError;
pub use log_store::LogStore;
pub use reader::{AuditPage, HistoryPage, ReadView, ScanPage, StoredVersion, VersionBatch};
pub use state_machine::{Snapshot, SnapshotData, StateMachineStore};
pub use timings::{HistogramSnapshot, LatencyHistogram, LATENCY_BUCKETS_SECONDS};

/// The Raft handle of a holdfast node (openraft 0.10 names the state
/// machine type in it).
pub type Raft = openraft::Raft<holdfast_types::TypeConfig, StateMachineStore>;
