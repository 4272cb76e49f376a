//! One holdfast node as a library: `Node::start(config, listener)` runs Raft
//! over RocksDB and serves the registry, cluster and Raft gRPC services on
//! one listener; `Node::shutdown` drains and stops it. With `NodeConfig::tls`
//! every connection, in and out, is mutual TLS ([`peer_identity`] names the
//! caller); [`pki`] issues the certificates.

mod access_service;
mod audit;
mod auth;
mod batching;
mod bootstrap;
mod cluster_service;
pub mod config;
mod crypto;
pub mod error;
mod health;
mod http;
mod identity;
mod key_manager;
mod metrics;
mod network;
mod node;
pub mod pki;
mod raft_service;
mod read_barrier;
mod records;
mod registry_service;
mod request_metrics;
pub mod tls;
mod tls_accept;
mod writes;

pub use config::{
    AuditMode, ConfigError, NodeConfig, RaftTimings, StoreOptions, TlsFiles, TLS_RELOAD_INTERVAL_MS_DEFAULT,
};
pub use error::ServerError;
pub use identity::{node_id_of, peer_identity};
pub use node::Node;
