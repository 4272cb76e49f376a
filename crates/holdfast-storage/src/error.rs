//! Errors of the storage layer, and their mapping into openraft's.

use holdfast_types::codec::CodecError;

/// What went wrong under the storage API.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes on disk that do not decode: corruption or a newer format.
    #[error("corrupt {what}: {source}")]
    Corrupt { what: &'static str, source: CodecError },
    #[error("corrupt key in {0}")]
    CorruptKey(&'static str),
    /// A value of the wrong shape, or one that points at nothing.
    #[error("corrupt value in {0}")]
    CorruptValue(&'static str),
    #[error("data directory {path}: {reason}")]
    Format { path: String, reason: String },
    #[error("snapshot {path} is invalid: {reason}")]
    BadSnapshot { path: String, reason: String },
    #[error("storage task failed: {0}")]
    Task(String),
    #[error("WAL sync failed: {0}")]
    Sync(String),
}

impl StorageError {
    /// A memory-only read that would have needed the disk, or a write
    /// that must not wait that RocksDB would have made wait.
    pub(crate) fn is_incomplete(&self) -> bool {
        matches!(self, StorageError::Rocks(e) if e.kind() == rocksdb::ErrorKind::Incomplete)
    }

    pub(crate) fn corrupt(what: &'static str) -> impl FnOnce(CodecError) -> StorageError {
        move |source| StorageError::Corrupt { what, source }
    }
}

/// What openraft's storage traits return: an IO error that keeps ours as
/// its source (openraft records which operation failed).
pub(crate) type RaftStorageError = std::io::Error;

impl From<StorageError> for std::io::Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Io(e) => e,
            other => std::io::Error::other(other),
        }
    }
}

/// Runs blocking RocksDB work off the async runtime (one seam for it all).
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StorageError>
where
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| StorageError::Task(e.to_string()))?
}
