//! The cluster under test: the reference topology as processes, every peer
//! link routed through its own fault proxy with a WAN delay per region
//! pair, and the status queries the harness needs (leader, convergence).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use holdfast_client::{Client, ClientBuilder};
use holdfast_testkit::process::{reference_topology, status_of, status_with_digest, NodeOptions, ProcessCluster};
use serde::Serialize;

use crate::proxy::{LinkMode, LinkProxy};

pub type NodeId = u64;

/// Modelled round trip between two regions. Kept well under the election
/// timeout (500–1000 ms) so that delay alone never costs a leader.
pub(crate) fn round_trip(a: &str, b: &str) -> Duration {
    let ms = if a == b {
        1
    } else {
        match (a.starts_with("ua-"), b.starts_with("ua-")) {
            // Kyiv–Lviv over domestic links.
            (true, true) => 12,
            // Frankfurt–Amsterdam.
            (false, false) => 10,
            // Ukraine to the EU clouds.
            _ => 40,
        }
    };
    Duration::from_millis(ms)
}

/// The running cluster and its link proxies.
#[derive(Debug)]
pub struct ChaosCluster {
    pub processes: ProcessCluster,
    /// Proxy for the link `(from, to)`: `from` dials `to` through it.
    pub links: BTreeMap<(NodeId, NodeId), Arc<LinkProxy>>,
    /// Current members and their regions; replaced nodes leave, new ones join.
    pub regions: BTreeMap<NodeId, String>,
    /// Proxy in front of a node that joined later: existing nodes' configs
    /// cannot change at runtime, so they dial it at its membership address,
    /// which is this proxy. One proxy for all senders, so faults and delays
    /// on links into such a node are per node, not per link.
    pub inbound: BTreeMap<NodeId, Arc<LinkProxy>>,
    pub unsafe_local_reads: bool,
}

/// One node's answer to a status call.
#[derive(Debug, Clone, Serialize)]
pub struct NodeState {
    pub id: NodeId,
    pub leader_id: u64,
    pub applied_revision: u64,
    pub state_digest: String,
}

impl ChaosCluster {
    /// Configures and starts the reference topology under `root`.
    pub async fn start(binary: &Path, root: &Path, unsafe_local_reads: bool) -> anyhow::Result<Self> {
        let specs = reference_topology();
        let regions: BTreeMap<NodeId, String> = specs.iter().map(|s| (s.id, s.placement.region.clone())).collect();
        // Proxies are bound first: their addresses go into the configs,
        // and their targets (the nodes' ports) are known only after.
        let mut pending = BTreeMap::new();
        for from in regions.keys() {
            for to in regions.keys().filter(|to| *to != from) {
                pending.insert((*from, *to), LinkProxy::bind().await?);
            }
        }
        let processes = ProcessCluster::configure(binary, root, &specs, None, |id| NodeOptions {
            peer_addr_overrides: pending
                .iter()
                .filter(|((from, _), _)| *from == id)
                .map(|((_, to), (addr, _))| (*to, addr.to_string()))
                .collect(),
            unsafe_local_reads,
            // As users run it.
            wal_file_mb: None,
            ..NodeOptions::default()
        })?;
        let mut links = BTreeMap::new();
        for ((from, to), (_, proxy)) in pending {
            let target = processes.node(to).map(|n| n.addr.clone()).ok_or_else(|| anyhow::anyhow!("no node {to}"))?;
            let delay = round_trip(&regions[&from], &regions[&to]) / 2;
            links.insert((from, to), Arc::new(proxy.serve(target, delay)?));
        }
        let mut cluster = Self { processes, links, regions, inbound: BTreeMap::new(), unsafe_local_reads };
        cluster.processes.start_all()?;
        Ok(cluster)
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.regions.keys().copied().collect()
    }

    pub fn region_of(&self, id: NodeId) -> &str {
        self.regions.get(&id).map(String::as_str).unwrap_or("")
    }

    /// Nodes of one region.
    pub fn region_nodes(&self, region: &str) -> Vec<NodeId> {
        self.regions.iter().filter(|(_, r)| *r == region).map(|(id, _)| *id).collect()
    }

    pub fn region_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.regions.values().cloned().collect();
        // Nodes that joined later sort after the rest; dedup needs order.
        names.sort();
        names.dedup();
        names
    }

    /// Client endpoints of the current members (direct, not through proxies).
    pub fn endpoints(&self) -> Vec<String> {
        self.processes.nodes().filter(|n| self.regions.contains_key(&n.spec.id)).map(|n| n.addr.clone()).collect()
    }

    /// A client builder for the current members, with the cluster's
    /// `admin` certificate.
    pub fn client_builder(&self) -> ClientBuilder {
        let builder = Client::builder(self.endpoints());
        match self.processes.client_tls() {
            Some(tls) => builder.tls(tls.clone()),
            None => builder,
        }
    }

    /// Sets every link from a node in `a` to a node in `b` to `mode`.
    pub fn set_links(&self, a: &[NodeId], b: &[NodeId], mode: LinkMode) {
        for from in a {
            for to in b {
                if let Some(link) = self.links.get(&(*from, *to)) {
                    link.set_mode(mode);
                }
            }
        }
    }

    /// Cuts `group` off from everyone else, both ways.
    pub fn isolate(&self, group: &[NodeId]) {
        let rest: Vec<NodeId> = self.ids().into_iter().filter(|id| !group.contains(id)).collect();
        self.set_links(group, &rest, LinkMode::Blackhole);
        self.set_links(&rest, group, LinkMode::Blackhole);
    }

    pub fn heal_links(&self) {
        for link in self.links.values().chain(self.inbound.values()) {
            link.set_mode(LinkMode::Pass);
        }
    }

    /// Status of every running member that answers, with state digests.
    pub async fn states(&self) -> Vec<NodeState> {
        self.collect_states(true).await
    }

    /// `with_digest` costs each node a full scan; leader polls go without.
    async fn collect_states(&self, with_digest: bool) -> Vec<NodeState> {
        let mut states = Vec::new();
        let members = self.processes.nodes().filter(|n| self.regions.contains_key(&n.spec.id));
        for node in members.filter(|n| self.processes.is_running(n.spec.id)) {
            let tls = self.processes.client_tls();
            let status =
                if with_digest { status_with_digest(&node.addr, tls).await } else { status_of(&node.addr, tls).await };
            if let Some(s) = status {
                states.push(NodeState {
                    id: node.spec.id,
                    leader_id: s.leader_id,
                    applied_revision: s.applied_revision,
                    state_digest: s.state_digest,
                });
            }
        }
        states
    }

    /// The leader most running nodes name, if any names one.
    pub async fn leader(&self) -> Option<NodeId> {
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for s in self.collect_states(false).await {
            if s.leader_id != 0 {
                *votes.entry(s.leader_id).or_default() += 1;
            }
        }
        votes.into_iter().max_by_key(|(_, n)| *n).map(|(id, _)| id)
    }

    /// Waits until every node runs and reports the same applied revision and
    /// state digest; returns how long that took.
    pub async fn wait_converged(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let expected = self.ids().len();
        loop {
            let states = self.states().await;
            let same = states.len() == expected
                && states
                    .windows(2)
                    .all(|w| w[0].applied_revision == w[1].applied_revision && w[0].state_digest == w[1].state_digest);
            if same {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                let seen: Vec<String> =
                    states.iter().map(|s| format!("n{}@{}:{:.8}", s.id, s.applied_revision, s.state_digest)).collect();
                anyhow::bail!("replicas did not converge within {timeout:?}: {}", seen.join(" "));
            }
            // Polling a status endpoint; a short pause keeps it cheap.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
