//! `holdfast certs`: makes a cluster's CA and issues node and client
//! certificates as PEM files (keys readable by their owner only), never
//! overwriting a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use holdfast_server::pki::{self, Ca, Validity};
use holdfast_types::NodeId;

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Make a new CA and the certificates of the given nodes and clients.
    Init(InitArgs),
    /// Issue a node certificate (`CN=node-<id>`) under an existing CA.
    Node(NodeArgs),
    /// Issue a client certificate (`CN=<name>`) under an existing CA.
    Client(ClientArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// Directory for ca.pem, ca.key and the issued files (made if missing).
    #[arg(long)]
    out: PathBuf,
    /// Nodes as id=host pairs, comma-separated (`1=kyiv-1.internal,2=10.0.0.2`);
    /// repeat an id to give it several hosts. `localhost` and 127.0.0.1 are always included.
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<String>,
    /// Client identities, comma-separated (`admin,population-service,auditor`).
    #[arg(long, value_delimiter = ',')]
    clients: Vec<String>,
    /// Common name of the new CA.
    #[arg(long, default_value = "holdfast cluster CA")]
    ca_name: String,
    /// Validity of node and client certificates, in days.
    #[arg(long, default_value_t = pki::LEAF_VALID_DAYS_DEFAULT)]
    valid_days: u64,
}

#[derive(Args)]
pub struct NodeArgs {
    /// Directory holding ca.pem and ca.key; the new files go there too unless --out.
    #[arg(long)]
    ca_dir: PathBuf,
    /// The node id.
    #[arg(long)]
    id: NodeId,
    /// Hosts (DNS names or IPs) clients and peers reach the node by, comma-separated.
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<String>,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = pki::LEAF_VALID_DAYS_DEFAULT)]
    valid_days: u64,
}

#[derive(Args)]
pub struct ClientArgs {
    /// Directory holding ca.pem and ca.key; the new files go there too unless --out.
    #[arg(long)]
    ca_dir: PathBuf,
    /// The client identity (the certificate's common name).
    name: String,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = pki::LEAF_VALID_DAYS_DEFAULT)]
    valid_days: u64,
}

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init(args) => init(args),
        CertsCommand::Node(args) => {
            let ca = load_ca(&args.ca_dir)?;
            let out = args.out.unwrap_or(args.ca_dir);
            let hosts: Vec<String> = args.hosts.iter().map(|h| host_of(h).to_owned()).collect();
            issue_node(&ca, &out, args.id, &hosts, args.valid_days)
        }
        CertsCommand::Client(args) => {
            let ca = load_ca(&args.ca_dir)?;
            let out = args.out.unwrap_or(args.ca_dir);
            issue_client(&ca, &out, &args.name, args.valid_days)
        }
    }
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    let nodes = parse_nodes(&args.nodes)?;
    let (ca_cert, ca_key) = (args.out.join("ca.pem"), args.out.join("ca.key"));
    // Check every target before writing anything, so a refused run leaves
    // no half-made directory behind.
    let mut targets = vec![ca_cert.clone(), ca_key.clone()];
    let names = nodes.keys().map(|id| pki::node_identity(*id)).chain(args.clients.iter().cloned());
    for name in names {
        targets.push(args.out.join(format!("{name}.pem")));
        targets.push(args.out.join(format!("{name}.key")));
    }
    if let Some(existing) = targets.iter().find(|p| p.exists()) {
        anyhow::bail!("{} already exists; refusing to overwrite it", existing.display());
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let ca = Ca::generate(&args.ca_name)?;
    pki::write_new(&ca_key, ca.key_pem().as_bytes(), 0o600)?;
    pki::write_new(&ca_cert, ca.cert_pem().as_bytes(), 0o644)?;
    println!("wrote {} and {}", ca_cert.display(), ca_key.display());
    for (id, hosts) in &nodes {
        issue_node(&ca, &args.out, *id, hosts, args.valid_days)?;
    }
    for name in &args.clients {
        issue_client(&ca, &args.out, name, args.valid_days)?;
    }
    println!("keep ca.key offline once every certificate is issued; nodes and clients need only ca.pem");
    Ok(())
}

fn load_ca(dir: &Path) -> anyhow::Result<Ca> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    Ok(Ca::from_pem(&read("ca.pem")?, &read("ca.key")?)?)
}

fn issue_node(ca: &Ca, out: &Path, id: NodeId, hosts: &[String], days: u64) -> anyhow::Result<()> {
    anyhow::ensure!(id > 0, "node ids start at 1");
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let issued = ca.issue_node(id, hosts, Validity::days(days))?;
    let (cert, key) = pki::write_issued(out, &pki::node_identity(id), &issued)?;
    println!("wrote {} and {} (node {id}; hosts: {})", cert.display(), key.display(), hosts.join(", "));
    Ok(())
}

fn issue_client(ca: &Ca, out: &Path, name: &str, days: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        holdfast_server::node_id_of(name).is_none(),
        "{name:?} is a node identity; use `holdfast certs node`"
    );
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let issued = ca.issue_client(name, Validity::days(days))?;
    let (cert, key) = pki::write_issued(out, name, &issued)?;
    println!("wrote {} and {} (client {name})", cert.display(), key.display());
    Ok(())
}

/// `1=host1,2=host2,1=other` → {1: [host1, other], 2: [host2]}.
fn parse_nodes(entries: &[String]) -> anyhow::Result<BTreeMap<NodeId, Vec<String>>> {
    let mut nodes: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let (id, host) = entry.split_once('=').unwrap_or((entry, ""));
        let id: NodeId = id.trim().parse().with_context(|| format!("--nodes entry {entry:?}: expected id=host"))?;
        anyhow::ensure!(id > 0, "--nodes entry {entry:?}: node ids start at 1");
        let hosts = nodes.entry(id).or_default();
        if !host.trim().is_empty() {
            hosts.push(host_of(host.trim()).to_owned());
        }
    }
    Ok(nodes)
}

/// The host of `host` or `host:port` (IPv6 addresses in brackets).
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists_parse() {
        let entries: Vec<String> =
            ["1=kyiv-1:7001", "2=10.0.0.2", "1=10.0.0.1", "3"].iter().map(|s| s.to_string()).collect();
        let nodes = parse_nodes(&entries).unwrap();
        assert_eq!(nodes[&1], ["kyiv-1", "10.0.0.1"]);
        assert_eq!(nodes[&2], ["10.0.0.2"]);
        assert!(nodes[&3].is_empty());
        assert!(parse_nodes(&["x=host".to_string()]).is_err());
        assert_eq!(host_of("[::1]:7001"), "::1");
        assert_eq!(host_of("::1"), "::1");
    }
}
