//! An in-process cluster of real nodes: each has its own RocksDB directory
//! and its own gRPC listener on 127.0.0.1 port 0; nodes can be stopped and
//! started again on the same address and data. With TLS on, the cluster
//! makes a CA and node certificates in its temp dir and nodes speak mutual
//! TLS to each other and to clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use holdfast_client::{Client, ClientBuilder, ClientTls};
use holdfast_crypto::MasterKey;
use holdfast_server::{Node, NodeConfig, RaftTimings, StoreOptions, TLS_RELOAD_INTERVAL_MS_DEFAULT};
use holdfast_types::{Jurisdiction, NodeId, NodeInfo, Placement};
use openraft::async_runtime::WatchReceiver;
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::certs::{ClusterPki, ADMIN_IDENTITY};
use crate::wait::wait_until;

/// A placement in `region`, domestic unless the region starts with `eu-`.
pub fn placement(region: &str) -> Placement {
    let jurisdiction = if region.starts_with("eu-") { Jurisdiction::Foreign } else { Jurisdiction::Domestic };
    Placement { region: region.into(), zone: format!("{region}-a"), provider: format!("dc-{region}"), jurisdiction }
}

/// Timings fast enough for tests yet safe on a loaded 2-core machine.
fn test_timings() -> RaftTimings {
    RaftTimings {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        snapshot_every_entries: 500,
        logs_kept_after_snapshot: 50,
        rpc_timeout_ms: 1000,
    }
}

struct Slot {
    config: NodeConfig,
    addr: SocketAddr,
    node: Option<Node>,
}

/// A running test cluster. Its data lives in a temp dir removed on drop.
pub struct TestCluster {
    dir: TempDir,
    slots: BTreeMap<NodeId, Slot>,
    pki: Option<ClusterPki>,
}

impl TestCluster {
    /// Starts one node per region given (ids 1..=n), all initial voters.
    pub async fn start(regions: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(regions, |_| {}).await
    }

    /// Like [`TestCluster::start`], letting the caller adjust each config.
    pub async fn start_with(regions: &[&str], adjust: impl Fn(&mut NodeConfig)) -> anyhow::Result<Self> {
        Self::start_inner(regions, false, adjust).await
    }

    /// Like [`TestCluster::start_with`], with mutual TLS: certificates are
    /// made under `<root>/pki` and every node gets its own.
    pub async fn start_tls_with(regions: &[&str], adjust: impl Fn(&mut NodeConfig)) -> anyhow::Result<Self> {
        Self::start_inner(regions, true, adjust).await
    }

    async fn start_inner(regions: &[&str], tls: bool, adjust: impl Fn(&mut NodeConfig)) -> anyhow::Result<Self> {
        crate::init_logging();
        let dir = tempfile::tempdir()?;
        let pki = if tls { Some(ClusterPki::open_or_create(&dir.path().join("pki"))?) } else { None };
        let mut listeners = BTreeMap::new();
        let mut members = BTreeMap::new();
        for (i, region) in regions.iter().enumerate() {
            let id = i as NodeId + 1;
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            members.insert(id, NodeInfo { addr: addr.to_string(), placement: placement(region) });
            listeners.insert(id, listener);
        }
        // One master key per cluster, as operators distribute one key file.
        let master_key = Some(Arc::new(MasterKey::generate()));
        let mut slots = BTreeMap::new();
        for (id, listener) in listeners {
            let info = &members[&id];
            let mut config = NodeConfig {
                id,
                advertise_addr: info.addr.clone(),
                placement: info.placement.clone(),
                data_dir: dir.path().join(format!("n{id}")),
                initial_members: members.clone(),
                force_topology: true,
                peer_addr_overrides: BTreeMap::new(),
                raft: test_timings(),
                unsafe_local_reads: false,
                metrics_listen: None,
                // The harness's `admin` certificate administers a TLS cluster.
                admins: if tls { [ADMIN_IDENTITY.to_string()].into() } else { Default::default() },
                audit: Default::default(),
                master_key: master_key.clone(),
                tls: pki.as_ref().map(|p| p.node_files(id)).transpose()?,
                tls_reload_interval_ms: TLS_RELOAD_INTERVAL_MS_DEFAULT,
                storage: StoreOptions::small(),
            };
            adjust(&mut config);
            let addr = listener.local_addr()?;
            let node = Node::start(config.clone(), listener).await?;
            slots.insert(id, Slot { config, addr, node: Some(node) });
        }
        Ok(Self { dir, slots, pki })
    }

    /// The cluster's certificates, when it runs TLS.
    pub fn pki(&self) -> Option<&ClusterPki> {
        self.pki.as_ref()
    }

    /// TLS material for client `identity`, issued on first use; `None`
    /// when the cluster runs plaintext.
    pub fn client_tls(&self, identity: &str) -> anyhow::Result<Option<ClientTls>> {
        self.pki.as_ref().map(|p| p.client_tls(identity)).transpose()
    }

    /// A client builder for every endpoint, with the `admin` certificate
    /// when the cluster runs TLS.
    pub fn client_builder(&self) -> anyhow::Result<ClientBuilder> {
        let builder = Client::builder(self.endpoints()).timeout(Duration::from_secs(5));
        Ok(match self.client_tls(ADMIN_IDENTITY)? {
            Some(tls) => builder.tls(tls),
            None => builder,
        })
    }

    /// Client endpoints of every node, running or not.
    pub fn endpoints(&self) -> Vec<String> {
        self.slots.values().map(|s| s.addr.to_string()).collect()
    }

    pub fn endpoint(&self, id: NodeId) -> String {
        self.slots[&id].addr.to_string()
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.slots.keys().copied().collect()
    }

    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.slots[&id].config.data_dir.clone()
    }

    pub fn root_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.slots.get(&id).and_then(|s| s.node.as_ref())
    }

    pub fn running(&self) -> Vec<NodeId> {
        self.slots.iter().filter(|(_, s)| s.node.is_some()).map(|(id, _)| *id).collect()
    }

    /// Waits until every running node agrees on one leader, and returns it.
    pub async fn wait_for_leader(&self, timeout: Duration) -> anyhow::Result<NodeId> {
        wait_until("a leader all running nodes agree on", timeout, || async {
            let mut leaders = self
                .slots
                .values()
                .filter_map(|s| s.node.as_ref())
                .map(|n| n.raft().metrics().borrow_watched().current_leader);
            let first = leaders.next()??;
            let running = self.running();
            (running.contains(&first) && leaders.all(|l| l == Some(first))).then_some(first)
        })
        .await
    }

    /// Waits until every running node has applied at least `revision`.
    pub async fn wait_applied(&self, revision: u64, timeout: Duration) -> anyhow::Result<()> {
        wait_until(&format!("all running nodes to apply revision {revision}"), timeout, || async {
            self.slots
                .values()
                .filter_map(|s| s.node.as_ref())
                .all(|n| n.read_view().applied_revision() >= revision)
                .then_some(())
        })
        .await
    }

    /// Waits until every running node has applied the same revision with the
    /// same state digest (audit events keep arriving after the last client
    /// call, so digests must be compared at one revision), and returns them.
    pub async fn wait_converged(&self, timeout: Duration) -> anyhow::Result<(u64, String)> {
        wait_until("all running nodes to converge on one applied revision and digest", timeout, || async {
            let mut seen = Vec::new();
            for node in self.slots.values().filter_map(|s| s.node.as_ref()) {
                seen.push(node.read_view().digest().await.ok()?);
            }
            let first = seen.first()?.clone();
            seen.iter().all(|d| *d == first).then_some(first)
        })
        .await
    }

    /// Stops a node (drains and shuts down Raft); its data stays.
    pub async fn stop(&mut self, id: NodeId) -> anyhow::Result<()> {
        if let Some(node) = self.slots.get_mut(&id).and_then(|s| s.node.take()) {
            node.shutdown().await?;
        }
        Ok(())
    }

    /// Starts a stopped node again on the same address and data.
    pub async fn restart(&mut self, id: NodeId) -> anyhow::Result<()> {
        let slot = self.slots.get_mut(&id).ok_or_else(|| anyhow::anyhow!("no node {id}"))?;
        anyhow::ensure!(slot.node.is_none(), "node {id} is running");
        let listener = bind_again(slot.addr).await?;
        slot.node = Some(Node::start(slot.config.clone(), listener).await?);
        Ok(())
    }

    /// Stops every node.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        for id in self.ids() {
            self.stop(id).await?;
        }
        Ok(())
    }
}

/// Binds the same address a stopped node used. The port was just released;
/// it can briefly be held by the kernel, so retry for a moment.
async fn bind_again(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    wait_until(&format!("{addr} to be free again"), Duration::from_secs(10), || async {
        TcpListener::bind(addr).await.ok()
    })
    .await
}
