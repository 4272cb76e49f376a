//! `holdfast serve`: load the config, bind, run the node until SIGTERM or
//! Ctrl-C, then drain and exit 0.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use holdfast_server::Node;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::FileConfig;

#[derive(Args)]
pub struct ServeArgs {
    /// The node's TOML config file.
    #[arg(long, env = "HOLDFAST_CONFIG")]
    config: PathBuf,
    /// Override the node id.
    #[arg(long, env = "HOLDFAST_ID")]
    id: Option<u64>,
    /// Override the listen address.
    #[arg(long, env = "HOLDFAST_LISTEN")]
    listen: Option<String>,
    /// Override the advertised address.
    #[arg(long, env = "HOLDFAST_ADVERTISE")]
    advertise: Option<String>,
    /// Override the data directory.
    #[arg(long, env = "HOLDFAST_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Override where `/metrics` is served, e.g. `0.0.0.0:9100`.
    #[arg(long, env = "HOLDFAST_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// `human` or `json`.
    #[arg(long, env = "HOLDFAST_LOG_FORMAT")]
    log_format: Option<String>,
    /// Tracing filter, e.g. `info`.
    #[arg(long, env = "HOLDFAST_LOG_LEVEL")]
    log_level: Option<String>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut file = FileConfig::load(&args.config)?;
    if let Some(id) = args.id {
        file.id = id;
    }
    if let Some(listen) = args.listen {
        file.listen = listen;
    }
    if let Some(advertise) = args.advertise {
        file.advertise = Some(advertise);
    }
    if let Some(dir) = args.data_dir {
        file.data_dir = dir;
    }
    if let Some(addr) = args.metrics_listen {
        file.metrics_listen = Some(addr);
    }
    if let Some(format) = args.log_format {
        file.log.format = format;
    }
    if let Some(level) = args.log_level {
        file.log.level = level;
    }
    crate::logging::init(&file.log.format, &file.log.level)?;
    let config = file.to_node_config()?;
    let listener =
        TcpListener::bind(&file.listen).await.with_context(|| format!("cannot listen on {}", file.listen))?;
    let mut term = signal(SignalKind::terminate())?;
    let node = Node::start(config, listener).await?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: draining"),
    }
    node.shutdown().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}
