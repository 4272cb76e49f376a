//! Cluster integration tests: real nodes (in-process, each with its own
//! RocksDB and gRPC listener on port 0) driven through the public client.

mod t10_replication;
mod t20_failures;
mod t30_requests;
mod t40_topology;
mod t50_health;
mod t60_keys;
mod t70_tls;
mod t80_audit;
mod t90_access;

use std::time::Duration;

use holdfast_client::{Client, WriteOptions};

/// Generous: elections on a loaded 2-core machine can take a few seconds.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(20);

pub fn client(endpoints: Vec<String>) -> Client {
    Client::builder(endpoints).timeout(Duration::from_secs(5)).build().expect("valid endpoints")
}

pub fn opts(reason: &str) -> WriteOptions {
    WriteOptions { reason: reason.into(), actor: "test".into(), ..Default::default() }
}
