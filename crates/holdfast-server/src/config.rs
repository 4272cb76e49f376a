//! The validated configuration of one node. Binaries parse files, env and
//! flags into this; the library never reads them itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use std::sync::Arc;

use holdfast_crypto::MasterKey;
use holdfast_types::{NodeId, NodeInfo, Placement};

pub use crate::audit::AuditMode;
pub use holdfast_storage::StoreOptions;

/// Everything a node needs to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Address other nodes and clients use to reach this node (`host:port`).
    /// The listener is bound by the caller; this is what is advertised.
    pub advertise_addr: String,
    pub placement: Placement,
    /// Holds the RocksDB directory and snapshots.
    pub data_dir: PathBuf,
    /// The voters of a fresh cluster (this node included). When this node has
    /// no Raft state yet and is the lowest id listed, it initialises the
    /// cluster with them; the others wait to be contacted. Empty: join later
    /// as a learner through the cluster service.
    pub initial_members: BTreeMap<NodeId, NodeInfo>,
    /// Initialise even if the voter set breaks the placement rule.
    pub force_topology: bool,
    /// Peer address overrides: dial peer `id` at this address instead of the
    /// one in the membership (used to route peer links through proxies).
    pub peer_addr_overrides: BTreeMap<NodeId, String>,
    pub raft: RaftTimings,
    /// UNSAFE, for testing the chaos checker only: serve LINEARIZABLE reads
    /// from local state without confirming leadership. Off by default.
    pub unsafe_local_reads: bool,
    /// Where to serve Prometheus `GET /metrics` over plain HTTP (`host:port`,
    /// port 0 picks one; see `Node::metrics_addr`). `None`: no metrics endpoint.
    pub metrics_listen: Option<String>,
    /// The cluster's master key. `None` stores ids and values in plaintext,
    /// which only tests and explicit `insecure_plaintext` configs may do.
    pub master_key: Option<Arc<MasterKey>>,
    /// Identities that are cluster administrators whatever the replicated
    /// policy says: how the first grants get made. Give every node the same
    /// list.
    pub admins: BTreeSet<String>,
    /// How reads wait for their access audit event.
    pub audit: AuditMode,
    /// Mutual TLS for every gRPC connection, in and out. `None` serves and
    /// dials plaintext, which only tests and explicit `insecure_transport`
    /// configs may do.
    pub tls: Option<TlsFiles>,
    /// How often the TLS files are checked for changes (a changed file set
    /// is loaded without a restart).
    pub tls_reload_interval_ms: u64,
    /// How the node's RocksDB uses its disk.
    pub storage: StoreOptions,
}

/// Default for [`NodeConfig::tls_reload_interval_ms`]: certificates are
/// rotated by replacing files; five seconds is soon enough and costs three
/// `stat` calls.
pub const TLS_RELOAD_INTERVAL_MS_DEFAULT: u64 = 5_000;

/// The PEM files of a node's TLS identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates trusted for peers and clients. A bundle: during a
    /// root rotation it holds the old and the new CA.
    pub ca: PathBuf,
    /// This node's certificate (chain), `CN=node-<id>`, serving and dialling.
    pub cert: PathBuf,
    /// The certificate's private key.
    pub key: PathBuf,
}

/// Raft timing and log-compaction settings.
#[derive(Debug, Clone)]
pub struct RaftTimings {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Take a snapshot after this many applied entries since the last one.
    pub snapshot_every_entries: u64,
    /// Keep this many applied entries in the log after a snapshot, so briefly
    /// lagging followers catch up from the log instead of a snapshot.
    pub logs_kept_after_snapshot: u64,
    /// Per-RPC timeout for node-to-node calls.
    pub rpc_timeout_ms: u64,
}

impl Default for RaftTimings {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_every_entries: 20_000,
            logs_kept_after_snapshot: 5_000,
            rpc_timeout_ms: 2_000,
        }
    }
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("node id must be non-zero")]
    ZeroId,
    #[error("advertise_addr is empty")]
    NoAddr,
    #[error("placement.region is empty: every node must say which region it runs in")]
    NoRegion,
    #[error("initial_members does not include this node ({0})")]
    SelfNotMember(NodeId),
    #[error("election timeout must exceed the heartbeat interval and min < max")]
    Timings,
    #[error("tls_reload_interval_ms must be non-zero")]
    TlsReloadInterval,
}

impl NodeConfig {
    /// Checks the rules a running node relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        if self.advertise_addr.is_empty() {
            return Err(ConfigError::NoAddr);
        }
        if self.placement.region.is_empty() {
            return Err(ConfigError::NoRegion);
        }
        if !self.initial_members.is_empty() && !self.initial_members.contains_key(&self.id) {
            return Err(ConfigError::SelfNotMember(self.id));
        }
        let t = &self.raft;
        if t.election_timeout_min_ms <= t.heartbeat_interval_ms
            || t.election_timeout_min_ms >= t.election_timeout_max_ms
        {
            return Err(ConfigError::Timings);
        }
        if self.tls.is_some() && self.tls_reload_interval_ms == 0 {
            return Err(ConfigError::TlsReloadInterval);
        }
        Ok(())
    }

    /// This node as the membership records it.
    pub fn node_info(&self) -> NodeInfo {
        NodeInfo { addr: self.advertise_addr.clone(), placement: self.placement.clone() }
    }
}
