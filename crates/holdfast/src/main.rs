//! The holdfast node binary: `holdfast serve` runs one node from a config
//! file; `holdfast demo` runs the reference multi-region cluster locally;
//! `holdfast certs` makes the cluster's certificates.

mod certs;
mod config;
mod demo;
mod logging;
mod probe;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc for the whole process (on Linux RocksDB's C++ allocations too):
/// measured cheaper per request than glibc's malloc under load. It asks
/// for transparent huge pages, an option built into it
/// (`.cargo/config.toml`, checked by `tests/it/t50_allocator.rs`).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "holdfast",
    version,
    about = "A Raft-replicated, encrypted registry that survives the loss of any region"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node from a config file (env and flags override the file).
    Serve(serve::ServeArgs),
    /// Make a cluster CA and issue node and client certificates.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Exit 0 if a node reports a service SERVING on the gRPC health service
    /// (for container health checks).
    Probe(probe::ProbeArgs),
    /// Start the reference 5-node, 4-region cluster on loopback as child
    /// processes and keep it running until Ctrl-C.
    Demo {
        /// Where node data, configs, logs and cluster.json go (default: a new temp dir).
        #[arg(long, env = "HOLDFAST_DEMO_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// First port; nodes use base-port .. base-port+4.
        #[arg(long, env = "HOLDFAST_DEMO_BASE_PORT", default_value_t = 7001)]
        base_port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Cmd::Serve(args) => serve::run(args).await,
            Cmd::Probe(args) => probe::run(args).await,
            Cmd::Certs(command) => certs::run(command),
            Cmd::Demo { data_dir, base_port } => demo::run(data_dir, base_port).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the error chain holds, so a failed start
            // reads as one log entry (containers, systemd).
            let message = format!("{e:#}");
            eprintln!("Error: {}", message.split_whitespace().collect::<Vec<_>>().join(" "));
            ExitCode::FAILURE
        }
    }
}
