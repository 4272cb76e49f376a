//! `holdfast demo`: the reference topology (5 voters in 4 regions) as child
//! processes on loopback over mutual TLS, with sample records and client
//! certificates for a few service identities, until Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use holdfast_testkit::process::{reference_topology, NodeOptions, ProcessCluster};
use serde::Serialize;

/// How long the demo waits for the cluster to elect its first leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// Client certificates the demo issues, one per kind of caller.
const CLIENT_IDENTITIES: &[&str] = &["admin", "population-service", "passport-service", "auditor"];

const SAMPLES: &[(&str, &str, &str)] = &[
    ("population", "UA-0000001", r#"{"name":"Olena Kovalenko","born":"1987-03-14","oblast":"Kyiv"}"#),
    ("population", "UA-0000002", r#"{"name":"Taras Shevchuk","born":"1979-11-02","oblast":"Kharkiv"}"#),
    ("population", "UA-0000003", r#"{"name":"Iryna Bondar","born":"2001-06-30","oblast":"Odesa"}"#),
    ("passports", "FX123456", r#"{"holder":"UA-0000001","issued":"2019-05-20","expires":"2029-05-20"}"#),
    ("passports", "FX654321", r#"{"holder":"UA-0000002","issued":"2021-01-11","expires":"2031-01-11"}"#),
];

#[derive(Serialize)]
struct ClusterFile {
    data_dir: String,
    nodes: Vec<NodeEntry>,
}

#[derive(Serialize)]
struct NodeEntry {
    id: u64,
    region: String,
    jurisdiction: String,
    pid: Option<u32>,
    endpoint: String,
    config: String,
    log: String,
}

pub async fn run(data_dir: Option<PathBuf>, base_port: u16) -> anyhow::Result<()> {
    let root = match data_dir {
        Some(dir) => dir,
        None => tempfile::Builder::new().prefix("holdfast-demo-").tempdir()?.keep(),
    };
    let binary = std::env::current_exe().context("cannot locate the holdfast binary")?;
    let specs = reference_topology();
    let mut cluster = ProcessCluster::configure(&binary, &root, &specs, Some(base_port), |_| NodeOptions::default())?;
    for identity in CLIENT_IDENTITIES {
        cluster.client_cert(identity)?;
    }
    cluster.start_all()?;
    println!("holdfast demo: starting 5 nodes in 4 regions; data, configs and logs in {}", root.display());
    let leader = match cluster.wait_for_leader(LEADER_TIMEOUT).await {
        Ok(leader) => leader,
        Err(e) => {
            cluster.stop_all().await.ok();
            anyhow::bail!("{e}; see the node logs in {}", root.display());
        }
    };
    let endpoints = cluster.endpoints();
    load_samples(cluster.client_builder()).await.context("loading sample records")?;

    let nodes: Vec<NodeEntry> = cluster
        .nodes()
        .map(|n| NodeEntry {
            id: n.spec.id,
            region: n.spec.placement.region.clone(),
            jurisdiction: n.spec.placement.jurisdiction.to_string(),
            pid: n.pid(),
            endpoint: n.addr.clone(),
            config: n.config_path.display().to_string(),
            log: n.log_path.display().to_string(),
        })
        .collect();
    print_table(&nodes, leader);
    let file = ClusterFile { data_dir: root.display().to_string(), nodes };
    std::fs::write(root.join("cluster.json"), serde_json::to_string_pretty(&file)?)?;
    print_tour(&endpoints, &file);

    tokio::signal::ctrl_c().await?;
    println!("\nstopping the cluster...");
    for id in specs.iter().map(|s| s.id) {
        if cluster.is_running(id) {
            match cluster.stop(id).await {
                Ok(code) => println!("  node {id} exited with {}", code.map_or("a signal".into(), |c| c.to_string())),
                Err(e) => println!("  node {id}: {e}"),
            }
        }
    }
    println!("data kept in {}", root.display());
    Ok(())
}

/// Who may do what in the demo: each service its own registry, the auditor
/// the trail of both; `admin` administers the cluster by node config.
const DEMO_GRANTS: &[(&str, &str, &[&str])] = &[
    ("population-service", "population", &["read", "write"]),
    ("passport-service", "passports", &["read", "write"]),
    ("passport-service", "population", &["read"]),
    ("auditor", "population", &["audit"]),
    ("auditor", "passports", &["audit"]),
];

async fn load_samples(builder: holdfast_client::ClientBuilder) -> anyhow::Result<()> {
    let client = builder.build()?;
    for (identity, registry, permissions) in DEMO_GRANTS {
        client.grant(identity, registry, permissions).await?;
    }
    for (registry, id, value) in SAMPLES {
        let options = holdfast_client::WriteOptions {
            actor: "demo-loader".into(),
            reason: "sample data".into(),
            ..Default::default()
        };
        client.put(registry, id.as_bytes(), value.as_bytes(), options).await?;
    }
    Ok(())
}

fn print_table(nodes: &[NodeEntry], leader: u64) {
    println!();
    println!("  {:<4} {:<14} {:<13} {:<8} {:<18} ROLE", "ID", "REGION", "JURISDICTION", "PID", "ENDPOINT");
    for n in nodes {
        let pid = n.pid.map_or("-".into(), |p| p.to_string());
        let role = if n.id == leader { "leader" } else { "" };
        println!("  {:<4} {:<14} {:<13} {:<8} {:<18} {role}", n.id, n.region, n.jurisdiction, pid, n.endpoint);
    }
}

fn print_tour(endpoints: &[String], file: &ClusterFile) {
    let pid =
        |id: u64| file.nodes.iter().find(|n| n.id == id).and_then(|n| n.pid).map_or("?".into(), |p| p.to_string());
    println!();
    println!("Loaded {} sample records into 'population' and 'passports'. Try:", SAMPLES.len());
    println!();
    let pki = format!("{}/pki", file.data_dir);
    println!("  export HOLDFAST_ENDPOINTS={}", endpoints.join(","));
    println!("  export HOLDFAST_CACERT={pki}/ca.pem HOLDFAST_CERT={pki}/admin.pem HOLDFAST_KEY={pki}/admin.key");
    println!("  holdfastctl endpoint status");
    println!("  holdfastctl member list");
    println!("  holdfastctl get population UA-0000001");
    println!("  holdfastctl put population UA-0000004 '{{\"name\":\"Mykola Hnatiuk\"}}' --reason 'birth registered'");
    println!("  holdfastctl history population UA-0000001");
    println!("  holdfastctl scan passports");
    println!("  holdfastctl access list");
    println!("  holdfastctl audit who-read population UA-0000001");
    println!();
    println!("  kill -9 {}          # kill a node: the others keep serving", pid(3));
    println!("  kill -9 {} {}   # lose the whole ua-kyiv region: still writable", pid(1), pid(2));
    println!();
    println!("Records are sealed under the master key in {}/master.key (generated for this demo).", file.data_dir);
    println!("All traffic is mutual TLS. Certificates for {} are in {pki};", CLIENT_IDENTITIES.join(", "));
    println!("  as another identity (refused: the auditor may read the trail, not the record):");
    println!("    holdfastctl --cert {pki}/auditor.pem --key {pki}/auditor.key get population UA-0000001");
    println!("    holdfastctl --cert {pki}/auditor.pem --key {pki}/auditor.key audit who-read population UA-0000001");
    println!("cluster.json is in {}. Press Ctrl-C to stop the cluster.", file.data_dir);
}
