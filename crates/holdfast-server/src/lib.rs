//! One holdfast node as a library: `Node::start(config, listener)` runs Raft
//! over RocksDB and serves the registry, cluster and Raft gRPC services on
//! one listener; `Node::shutdown` drains and stops it.

mod access_service;
mod audit;
mod auth;
mod bootstrap;
mod cluster_service;
pub mod config;
mod crypto;
pub mod error;
mod health;
mod http;
mod key_manager;
mod metrics;
mod network;
mod node;
mod raft_service;
mod read_barrier;
mod records;
mod registry_service;
mod request_metrics;
mod tls;

pub use config::{AuditMode, ConfigError, NodeConfig, RaftTimings};
pub use error::ServerError;
pub use node::Node;
