//! openraft's storage conformance suite against the RocksDB log store and
//! state machine, each run on a fresh temp dir.

use holdfast_storage::{LogStore, StateMachineStore, Store};
use holdfast_types::TypeConfig;
use openraft::testing::{StoreBuilder, Suite};

struct TempStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), openraft::StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
        let store = Store::open(dir.path()).map_err(|e| openraft::StorageIOError::write(&e))?;
        let sm = store.state_machine().await.map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, store.log_store(), sm))
    }
}

#[test]
fn openraft_suite_passes() {
    if let Err(e) = Suite::test_all(TempStoreBuilder) {
        panic!("storage conformance failed: {e}");
    }
}
