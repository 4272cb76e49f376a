//! A cluster of real `holdfast serve` processes on loopback: config files,
//! data dirs and logs under one root, with kill -9, SIGTERM, SIGSTOP/SIGCONT
//! and restart. Used by `holdfast demo`, the chaos harness and binary tests.
//!
//! Nodes run mutual TLS unless a node's options opt out: the cluster makes a
//! CA and certificates under `<root>/pki` (reused if present) and hands out
//! client certificates for any identity.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use holdfast_client::{Client, ClientBuilder, ClientTls};
use holdfast_proto::v1::cluster_client::ClusterClient;
use holdfast_proto::v1::StatusRequest;
use holdfast_types::{Jurisdiction, NodeId, Placement};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::certs::{ClusterPki, ADMIN_IDENTITY};
use crate::wait::wait_until;

/// One node of a process cluster: its id and placement.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: NodeId,
    pub placement: Placement,
}

fn spec(id: NodeId, region: &str, zone: &str, provider: &str, jurisdiction: Jurisdiction) -> NodeSpec {
    NodeSpec {
        id,
        placement: Placement { region: region.into(), zone: zone.into(), provider: provider.into(), jurisdiction },
    }
}

/// The reference topology: 5 voters in 4 regions; no region holds half.
pub fn reference_topology() -> Vec<NodeSpec> {
    use Jurisdiction::*;
    vec![
        spec(1, "ua-kyiv", "kyiv-a", "ua-dc-1", Domestic),
        spec(2, "ua-kyiv", "kyiv-b", "ua-dc-2", Domestic),
        spec(3, "ua-lviv", "lviv-a", "ua-dc-3", Domestic),
        spec(4, "eu-frankfurt", "fra-1", "cloud-a", Foreign),
        spec(5, "eu-amsterdam", "ams-1", "cloud-b", Foreign),
    ]
}

/// Per-node settings beyond placement, for harnesses.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Dial peer id at this address (a fault proxy) instead of its own.
    pub peer_addr_overrides: BTreeMap<NodeId, String>,
    /// UNSAFE control for the chaos checker; never set outside it.
    pub unsafe_local_reads: bool,
    /// Extra raw TOML appended to the config (e.g. a `[raft]` table).
    pub extra_toml: String,
    /// Serve Prometheus `/metrics` on a loopback port of the node's own
    /// (see [`ProcessNode::metrics_addr`]).
    pub serve_metrics: bool,
    /// Store plaintext instead of sealing (controls only).
    pub insecure_plaintext: bool,
    /// Serve and dial plaintext gRPC instead of mutual TLS (to measure what
    /// TLS costs, or to test plaintext behaviour).
    pub insecure_transport: bool,
    /// `[access] audit` mode (`strict` when `None`), to measure what the
    /// audit trail costs.
    pub audit: Option<String>,
    /// `[storage] wal_file_mb`. The default is 1 (cheap to create, WAL
    /// files turn over often), for tests; `None` keeps the node's own
    /// default, as users run it (the chaos harness and the benchmark).
    pub wal_file_mb: Option<u64>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            peer_addr_overrides: BTreeMap::new(),
            unsafe_local_reads: false,
            extra_toml: String::new(),
            serve_metrics: false,
            insecure_plaintext: false,
            insecure_transport: false,
            audit: None,
            wal_file_mb: Some(1),
        }
    }
}

/// A running or stopped node process.
#[derive(Debug)]
pub struct ProcessNode {
    pub spec: NodeSpec,
    pub addr: String,
    /// Where the node serves `/metrics`, if its options asked for it.
    pub metrics_addr: Option<String>,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl ProcessNode {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

/// `holdfast serve` settings that belong to one node: the cluster's nodes
/// take them from their own config files, never from an environment they
/// all inherit (one `HOLDFAST_METRICS_LISTEN` would send every node to the
/// same port).
const PER_NODE_ENV: [&str; 8] = [
    "HOLDFAST_ID",
    "HOLDFAST_LISTEN",
    "HOLDFAST_ADVERTISE",
    "HOLDFAST_DATA_DIR",
    "HOLDFAST_METRICS_LISTEN",
    "HOLDFAST_TLS_CA_FILE",
    "HOLDFAST_TLS_CERT_FILE",
    "HOLDFAST_TLS_KEY_FILE",
];

/// Node processes sharing one root directory.
#[derive(Debug)]
pub struct ProcessCluster {
    binary: PathBuf,
    root: PathBuf,
    nodes: BTreeMap<NodeId, ProcessNode>,
    /// The cluster's certificates; `None` when it runs plaintext.
    pki: Option<ClusterPki>,
    /// The `admin` client's TLS material, when the cluster runs TLS.
    client_tls: Option<ClientTls>,
}

/// Picks `n` distinct free loopback ports: every listener is held until all
/// are picked, so the kernel cannot hand the same port out twice (which
/// binding port 0 `n` times one after another may do, leaving two servers
/// to fight over one port).
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

fn placement_toml(p: &Placement) -> String {
    format!(
        "{{ region = {:?}, zone = {:?}, provider = {:?}, jurisdiction = {:?} }}",
        p.region,
        p.zone,
        p.provider,
        p.jurisdiction.to_string()
    )
}

impl ProcessCluster {
    /// Writes a config per node under `root`: node `i` listens on
    /// `base_port + i` (and serves metrics, if asked to, on
    /// `base_port + n + i`), or on free ports, all picked at once so no two
    /// coincide, when `None`. Nothing is started yet.
    pub fn configure(
        binary: &Path,
        root: &Path,
        specs: &[NodeSpec],
        base_port: Option<u16>,
        options: impl Fn(NodeId) -> NodeOptions,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)?;
        // Each node's listen port, then each node's metrics port.
        let ports: Vec<u16> = match base_port {
            Some(base) => (0..2 * specs.len()).map(|i| base + i as u16).collect(),
            None => free_ports(2 * specs.len())?,
        };
        let loopback = |port: &u16| format!("127.0.0.1:{port}");
        let addrs: BTreeMap<_, _> = specs.iter().zip(&ports).map(|(s, port)| (s.id, loopback(port))).collect();
        let metrics_addrs: BTreeMap<_, _> =
            specs.iter().zip(&ports[specs.len()..]).map(|(s, port)| (s.id, loopback(port))).collect();
        // One master key for the cluster, readable by its owner only.
        let key_path = root.join("master.key");
        if !key_path.exists() {
            let key = holdfast_crypto::MasterKey::generate();
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&key_path)?;
            std::io::Write::write_all(&mut file, key.to_key_file().as_bytes())?;
        }
        let mut members = String::new();
        for s in specs {
            writeln!(
                members,
                "\n[[initial_members]]\nid = {}\naddr = {:?}\nplacement = {}",
                s.id,
                addrs[&s.id],
                placement_toml(&s.placement)
            )?;
        }
        let tls = specs.iter().any(|s| !options(s.id).insecure_transport);
        let pki = if tls { Some(ClusterPki::open_or_create(&root.join("pki"))?) } else { None };
        let client_tls = pki.as_ref().map(|p| p.client_tls(ADMIN_IDENTITY)).transpose()?;
        let mut cluster =
            Self { binary: binary.to_path_buf(), root: root.to_path_buf(), nodes: BTreeMap::new(), pki, client_tls };
        for s in specs {
            cluster.write_node(s, &addrs[&s.id], &metrics_addrs[&s.id], &options(s.id), &members)?;
        }
        Ok(cluster)
    }

    /// Configures (does not start) a node with a new id that joins the
    /// running cluster through the cluster service. Its config has no
    /// `initial_members`, so it never bootstraps; it shares the cluster's
    /// master key. Returns its listen address.
    pub fn add_node(&mut self, spec: &NodeSpec, options: &NodeOptions) -> anyhow::Result<String> {
        anyhow::ensure!(!self.nodes.contains_key(&spec.id), "node {} already exists", spec.id);
        let ports = free_ports(2)?;
        let addr = format!("127.0.0.1:{}", ports[0]);
        self.write_node(spec, &addr, &format!("127.0.0.1:{}", ports[1]), options, "")?;
        Ok(addr)
    }

    /// Writes one node's config and records the node; `metrics_addr` is
    /// used if `opts` asks for metrics; `members` is the rendered
    /// `[[initial_members]]` tables (empty for a joining node).
    fn write_node(
        &mut self,
        s: &NodeSpec,
        addr: &str,
        metrics_addr: &str,
        opts: &NodeOptions,
        members: &str,
    ) -> anyhow::Result<()> {
        let key_path = self.root.join("master.key");
        let data_dir = self.root.join(format!("n{}", s.id));
        let config_path = self.root.join(format!("n{}.toml", s.id));
        let mut text = format!(
            "id = {}\nlisten = {:?}\ndata_dir = {:?}\nunsafe_local_reads = {}\nplacement = {}\n",
            s.id,
            addr,
            data_dir.display().to_string(),
            opts.unsafe_local_reads,
            placement_toml(&s.placement),
        );
        let metrics_addr = opts.serve_metrics.then(|| metrics_addr.to_owned());
        if let Some(addr) = &metrics_addr {
            text.push_str(&format!("metrics_listen = {addr:?}\n"));
        }
        if !opts.peer_addr_overrides.is_empty() {
            text.push_str("peer_addr_overrides = { ");
            let pairs: Vec<String> =
                opts.peer_addr_overrides.iter().map(|(id, a)| format!("\"{id}\" = {a:?}")).collect();
            text.push_str(&pairs.join(", "));
            text.push_str(" }\n");
        }
        if opts.insecure_plaintext {
            text.push_str("insecure_plaintext = true\n");
        } else {
            text.push_str(&format!("key_file = {:?}\n", key_path.display().to_string()));
        }
        let tls = match (&self.pki, opts.insecure_transport) {
            (Some(pki), false) => Some(pki.node_files(s.id)?),
            _ => {
                text.push_str("insecure_transport = true\n");
                None
            }
        };
        text.push_str(&opts.extra_toml);
        if let Some(mb) = opts.wal_file_mb {
            text.push_str(&format!("\n[storage]\nwal_file_mb = {mb}\n"));
        }
        if let Some(files) = tls {
            write!(
                text,
                "\n[tls]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
                files.ca.display().to_string(),
                files.cert.display().to_string(),
                files.key.display().to_string()
            )?;
        }
        // The harness's own `admin` certificate administers the cluster.
        write!(text, "\n[access]\nadmins = [{:?}]\n", crate::certs::ADMIN_IDENTITY)?;
        if let Some(audit) = &opts.audit {
            writeln!(text, "audit = {audit:?}")?;
        }
        text.push_str(members);
        std::fs::write(&config_path, text)?;
        let log_path = self.root.join(format!("n{}.log", s.id));
        let node = ProcessNode {
            spec: s.clone(),
            addr: addr.to_owned(),
            metrics_addr,
            config_path,
            data_dir,
            log_path,
            child: None,
        };
        self.nodes.insert(s.id, node);
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn nodes(&self) -> impl Iterator<Item = &ProcessNode> {
        self.nodes.values()
    }

    pub fn node(&self, id: NodeId) -> Option<&ProcessNode> {
        self.nodes.get(&id)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.values().map(|n| n.addr.clone()).collect()
    }

    /// The `admin` client's TLS material; `None` when the cluster runs
    /// plaintext.
    pub fn client_tls(&self) -> Option<&ClientTls> {
        self.client_tls.as_ref()
    }

    /// TLS material for a client with certificate identity `identity`
    /// (`CN=<identity>`), issued by the cluster's CA on first use and kept
    /// in `<root>/pki/<identity>.pem/.key`.
    pub fn client_cert(&self, identity: &str) -> anyhow::Result<ClientTls> {
        let pki = self.pki.as_ref().ok_or_else(|| anyhow::anyhow!("this cluster runs without TLS"))?;
        pki.client_tls(identity)
    }

    /// The certificate directory (CA, nodes, clients), when TLS is on.
    pub fn pki(&self) -> Option<&ClusterPki> {
        self.pki.as_ref()
    }

    /// A client builder for every endpoint, with the `admin` certificate
    /// when the cluster runs TLS.
    pub fn client_builder(&self) -> ClientBuilder {
        let builder = Client::builder(self.endpoints());
        match &self.client_tls {
            Some(tls) => builder.tls(tls.clone()),
            None => builder,
        }
    }

    /// Starts a node's process (its output goes to its log file).
    pub fn start(&mut self, id: NodeId) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(&id).ok_or_else(|| anyhow::anyhow!("no node {id}"))?;
        anyhow::ensure!(node.child.is_none(), "node {id} is already running");
        let log = File::options().create(true).append(true).open(&node.log_path)?;
        let mut command = Command::new(&self.binary);
        for name in PER_NODE_ENV {
            command.env_remove(name);
        }
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&node.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", self.binary.display()))?;
        node.child = Some(child);
        Ok(())
    }

    pub fn start_all(&mut self) -> anyhow::Result<()> {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        ids.into_iter().try_for_each(|id| self.start(id))
    }

    fn signal(&self, id: NodeId, sig: Signal) -> anyhow::Result<()> {
        let pid =
            self.nodes.get(&id).and_then(|n| n.pid()).ok_or_else(|| anyhow::anyhow!("node {id} is not running"))?;
        kill(Pid::from_raw(pid as i32), sig)?;
        Ok(())
    }

    /// kill -9: no chance to flush or drain.
    pub fn kill(&mut self, id: NodeId) -> anyhow::Result<()> {
        self.signal(id, Signal::SIGKILL)?;
        if let Some(mut child) = self.nodes.get_mut(&id).and_then(|n| n.child.take()) {
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then wait for a clean exit; returns the exit code.
    pub async fn stop(&mut self, id: NodeId) -> anyhow::Result<Option<i32>> {
        self.signal(id, Signal::SIGCONT).ok();
        self.signal(id, Signal::SIGTERM)?;
        let mut child = self
            .nodes
            .get_mut(&id)
            .and_then(|n| n.child.take())
            .ok_or_else(|| anyhow::anyhow!("node {id} not running"))?;
        let status = tokio::task::spawn_blocking(move || child.wait()).await??;
        Ok(status.code())
    }

    /// SIGSTOP: the process freezes with its sockets open.
    pub fn pause(&self, id: NodeId) -> anyhow::Result<()> {
        self.signal(id, Signal::SIGSTOP)
    }

    /// SIGCONT after [`ProcessCluster::pause`].
    pub fn resume(&self, id: NodeId) -> anyhow::Result<()> {
        self.signal(id, Signal::SIGCONT)
    }

    /// Removes a stopped node's data dir (a lost disk).
    pub fn wipe(&self, id: NodeId) -> anyhow::Result<()> {
        let node = self.nodes.get(&id).ok_or_else(|| anyhow::anyhow!("no node {id}"))?;
        anyhow::ensure!(node.child.is_none(), "stop node {id} before wiping its disk");
        if node.data_dir.exists() {
            std::fs::remove_dir_all(&node.data_dir)?;
        }
        Ok(())
    }

    pub fn is_running(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.child.is_some())
    }

    /// Waits until a running node reports a leader that it agrees with, and
    /// returns the leader's id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> anyhow::Result<NodeId> {
        let running: BTreeMap<NodeId, String> =
            self.nodes.iter().filter(|(_, n)| n.child.is_some()).map(|(id, n)| (*id, n.addr.clone())).collect();
        wait_until("a running leader all running nodes agree on", timeout, || async {
            let mut leader = None;
            for addr in running.values() {
                let status = status_of(addr, self.client_tls.as_ref()).await?;
                if status.leader_id == 0 || leader.is_some_and(|l| l != status.leader_id) {
                    return None;
                }
                leader = Some(status.leader_id);
            }
            // Followers keep naming a killed leader until they elect anew.
            leader.filter(|l| running.contains_key(l))
        })
        .await
    }

    /// Stops every running node with SIGTERM.
    pub async fn stop_all(&mut self) -> anyhow::Result<()> {
        let ids: Vec<NodeId> = self.nodes.iter().filter(|(_, n)| n.child.is_some()).map(|(id, _)| *id).collect();
        for id in ids {
            self.stop(id).await?;
        }
        Ok(())
    }
}

impl Drop for ProcessCluster {
    /// Never leaves processes behind, even when a test fails.
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A node's status over gRPC (without the state digest), or `None` if it
/// does not answer in time. `tls`: the client material when nodes run TLS.
pub async fn status_of(addr: &str, tls: Option<&ClientTls>) -> Option<holdfast_proto::v1::StatusResponse> {
    fetch_status(addr, tls, false).await
}

/// Like [`status_of`], with the state digest (a full scan on the node), for
/// convergence checks.
pub async fn status_with_digest(addr: &str, tls: Option<&ClientTls>) -> Option<holdfast_proto::v1::StatusResponse> {
    fetch_status(addr, tls, true).await
}

/// A tonic endpoint for one node, over TLS when `tls` is given.
pub fn node_endpoint(addr: &str, tls: Option<&ClientTls>) -> anyhow::Result<tonic::transport::Endpoint> {
    Ok(match tls {
        Some(tls) => tls.endpoint(addr)?,
        None => tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?,
    })
}

async fn fetch_status(
    addr: &str,
    tls: Option<&ClientTls>,
    include_digest: bool,
) -> Option<holdfast_proto::v1::StatusResponse> {
    let endpoint = node_endpoint(addr, tls).ok()?.connect_timeout(Duration::from_millis(500));
    let channel = endpoint.connect().await.ok()?;
    let mut request = tonic::Request::new(StatusRequest { include_digest });
    request.set_timeout(Duration::from_secs(2));
    Some(ClusterClient::new(channel).status(request).await.ok()?.into_inner())
}

/// Path of a workspace binary (`holdfast`, `holdfastctl`) built next to the
/// running test executable (`target/<profile>/deps/..` → `target/<profile>/`).
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| anyhow::anyhow!("unexpected test executable path {}", exe.display()))?;
    let path = profile_dir.join(name);
    anyhow::ensure!(path.exists(), "{} not built; run `cargo build --workspace --bins` first", path.display());
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joining_node_has_no_initial_members_but_the_cluster_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("cluster");
        let specs = reference_topology();
        let mut cluster =
            ProcessCluster::configure(Path::new("/nonexistent"), &root, &specs, None, |_| NodeOptions::default())
                .expect("configure");
        let joiner = NodeSpec { id: 6, placement: specs[0].placement.clone() };
        cluster.add_node(&joiner, &NodeOptions::default()).expect("add node");
        assert!(cluster.add_node(&joiner, &NodeOptions::default()).is_err(), "ids are unique");
        let original = std::fs::read_to_string(root.join("n1.toml")).expect("n1 config");
        let joined = std::fs::read_to_string(root.join("n6.toml")).expect("n6 config");
        assert!(original.contains("[[initial_members]]"));
        assert!(!joined.contains("initial_members"), "a joining node must not bootstrap:\n{joined}");
        assert!(joined.contains("master.key"));
        assert!(joined.contains("[tls]") && joined.contains("node-6.pem"), "TLS by default:\n{joined}");
        assert_eq!(cluster.endpoints().len(), 6);
        assert!(cluster.client_tls().is_some());
        let auditor = cluster.client_cert("auditor").expect("auditor cert");
        assert_ne!(Some(&auditor), cluster.client_tls());
        assert!(root.join("pki/auditor.key").exists());
    }
}
