//! holdfast-bench: a load generator for holdfast and etcd, and `compare`,
//! which runs both side by side on loopback and prints the ratios.

mod compare;
mod load;
mod report;
mod servers;
mod target;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use holdfast_client::ClientTls;

use crate::compare::CompareSpec;
use crate::load::LoadSpec;
use crate::servers::ServerProbe;
use crate::target::Kind;
use crate::workload::Workload;

#[derive(Parser)]
#[command(name = "holdfast-bench", about = "Load generator comparing holdfast and etcd")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one workload against a running cluster.
    Run(RunArgs),
    /// Start 3-node holdfast and etcd clusters on loopback and compare them.
    Compare(CompareArgs),
}

/// Flags shared by `run` and `compare`.
#[derive(Args)]
struct LoadArgs {
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    /// Measured seconds per run.
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds of load before measuring starts.
    #[arg(long)]
    warmup: Option<f64>,
    /// gRPC connections the clients share (default: one per 16 clients).
    #[arg(long)]
    connections: Option<usize>,
    /// Distinct keys `put` writes before it wraps around.
    #[arg(long, default_value_t = 1_000_000)]
    key_space: u64,
    /// Keys written before `get` and `mixed` runs, and read by them.
    #[arg(long, default_value_t = 1_000)]
    preload_keys: u64,
    /// Also write the results as JSON to this file (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    /// `holdfast` or `etcd`.
    #[arg(long)]
    target: Kind,
    /// `host:port` of the cluster's members, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Server pids whose CPU time to charge to the run.
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// `put`, `get` or `mixed` (80 % reads).
    #[arg(long, default_value = "put")]
    workload: Workload,
    /// Concurrent closed-loop clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Over mutual TLS: the CA bundle (with --cert and --key).
    #[arg(long, env = "HOLDFAST_CACERT")]
    cacert: Option<PathBuf>,
    /// Over mutual TLS: the client certificate.
    #[arg(long, env = "HOLDFAST_CERT")]
    cert: Option<PathBuf>,
    /// Over mutual TLS: the client key.
    #[arg(long, env = "HOLDFAST_KEY")]
    key: Option<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args)]
struct CompareArgs {
    /// Workloads to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "put,get")]
    workloads: Vec<Workload>,
    /// Client counts to run each workload with, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256")]
    clients: Vec<usize>,
    /// Runs of every case on each target; the report shows the median.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// A short run (2 s measured after 1 s warm-up) to check the setup.
    #[arg(long)]
    quick: bool,
    /// The `holdfast` binary (default: the one next to this program).
    #[arg(long)]
    holdfast_bin: Option<PathBuf>,
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// Run holdfast without encryption (insecure_plaintext), to measure what
    /// sealing costs. Users never run it this way.
    #[arg(long)]
    insecure_plaintext: bool,
    /// Run both clusters over plaintext gRPC instead of mutual TLS, to
    /// measure what TLS costs. Users never run holdfast this way.
    #[arg(long)]
    insecure_transport: bool,
    /// Run etcd alone over plaintext (its fastest setting; holdfast keeps
    /// mutual TLS), the setting of the runs before run 6.
    #[arg(long)]
    etcd_plaintext: bool,
    /// The access audit mode of the holdfast nodes: strict (the default,
    /// as users run it), best-effort or off — to measure what auditing
    /// every read and write costs.
    #[arg(long, value_parser = ["strict", "best-effort", "off"])]
    audit: Option<String>,
    #[command(flatten)]
    load: LoadArgs,
}

/// Measured seconds and warm-up seconds, full run and `--quick`.
const FULL_RUN_SECS: (f64, f64) = (10.0, 2.0);
const QUICK_RUN_SECS: (f64, f64) = (2.0, 1.0);

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("--{flag} must be a non-negative number of seconds"))
}

fn write_json(path: &PathBuf, json: &str) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        println!("{json}");
        return Ok(());
    }
    std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("results written to {}", path.display());
    Ok(())
}

/// The `holdfast` binary built next to this one (target/<profile>/).
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("this program's path has no parent directory")?;
    Ok(dir.join(name))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => {
            let (duration, warmup) = FULL_RUN_SECS;
            let spec = LoadSpec {
                workload: args.workload,
                value_bytes: args.load.value_bytes,
                clients: args.clients.max(1),
                connections: args.load.connections.unwrap_or_else(|| LoadSpec::default_connections(args.clients)),
                duration: seconds(args.load.duration.unwrap_or(duration), "duration")?,
                warmup: seconds(args.load.warmup.unwrap_or(warmup), "warmup")?,
                key_space: args.load.key_space,
                preload_keys: args.load.preload_keys,
                // Unique per run, so a second run writes fresh keys too.
                key_prefix: format!("run{}-", std::process::id()),
                tls: ClientTls::from_optional_files(args.cacert.as_deref(), args.cert.as_deref(), args.key.as_deref())?,
            };
            let servers = ServerProbe { pids: args.pids, ..ServerProbe::default() };
            let measurement = load::run(args.target, &args.endpoints, &servers, &spec).await?;
            print!("{}", report::table_of_runs(std::slice::from_ref(&measurement)));
            if let Some(path) = &args.load.json {
                write_json(path, &serde_json::to_string_pretty(&measurement)?)?;
            }
        }
        Command::Compare(args) => {
            let (duration, warmup) = if args.quick { QUICK_RUN_SECS } else { FULL_RUN_SECS };
            let spec = CompareSpec {
                workloads: args.workloads,
                clients: args.clients.into_iter().map(|c| c.max(1)).collect(),
                connections: args.load.connections,
                value_bytes: args.load.value_bytes,
                duration: seconds(args.load.duration.unwrap_or(duration), "duration")?,
                warmup: seconds(args.load.warmup.unwrap_or(warmup), "warmup")?,
                rounds: args.rounds.max(1),
                key_space: args.load.key_space,
                preload_keys: args.load.preload_keys,
                holdfast_bin: match args.holdfast_bin {
                    Some(path) => path,
                    None => sibling_binary("holdfast")?,
                },
                etcd_bin: args.etcd_bin,
                insecure_plaintext: args.insecure_plaintext,
                insecure_transport: args.insecure_transport,
                etcd_plaintext: args.etcd_plaintext,
                audit: args.audit,
            };
            let report = compare::run(&spec).await?;
            print!("{}", report.table());
            if let Some(path) = &args.load.json {
                write_json(path, &report.json()?)?;
            }
        }
    }
    Ok(())
}
