//! openraft's storage conformance suite against the RocksDB log store and
//! state machine, each run on a fresh temp dir.

use holdfast_storage::{LogStore, StateMachineStore, Store, StoreOptions};
use holdfast_types::TypeConfig;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};

struct TempStoreBuilder;

fn store_error(e: impl std::fmt::Display) -> StorageError<TypeConfig> {
    StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, std::io::Error::other(e.to_string()))
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(store_error)?;
        let store = Store::open(dir.path(), &StoreOptions::small()).map_err(store_error)?;
        let sm = store.state_machine().await.map_err(store_error)?;
        Ok((dir, store.log_store(), sm))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn openraft_suite_passes() {
    if let Err(e) = Suite::test_all(TempStoreBuilder).await {
        panic!("storage conformance failed: {e}");
    }
}
