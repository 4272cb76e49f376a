//! Local holdfast clusters for tests: real nodes on port-0 listeners, each
//! with its own RocksDB in a temp dir, and waits on conditions instead of
//! sleeps.

pub mod certs;
mod cluster;
pub mod process;
mod wait;

pub use certs::{ClusterPki, ADMIN_IDENTITY};
pub use cluster::{placement, TestCluster};

pub use wait::wait_until;

/// Installs a test log subscriber once (honours `RUST_LOG`).
pub fn init_logging() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
    });
}
