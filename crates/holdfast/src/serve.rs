//! `holdfast serve`: load the config, bind, run the node until SIGTERM or
//! Ctrl-C, then drain and exit 0. SIGHUP reloads the TLS files at once.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use holdfast_server::Node;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{FileConfig, FileTls};

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
    /// Override `[tls] ca_file` (with the other two, stands in for the table).
    #[arg(long, env = "HOLDFAST_TLS_CA_FILE")]
    tls_ca_file: Option<PathBuf>,
    /// Override `[tls] cert_file`.
    #[arg(long, env = "HOLDFAST_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// Override `[tls] key_file`.
    #[arg(long, env = "HOLDFAST_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
}

/// Applies the TLS file flags to the `[tls]` table, making one when all
/// three are given.
fn override_tls(file: &mut FileConfig, args: &ServeArgs) -> anyhow::Result<()> {
    let (ca, cert, key) = (args.tls_ca_file.clone(), args.tls_cert_file.clone(), args.tls_key_file.clone());
    match &mut file.tls {
        Some(tls) => {
            tls.ca_file = ca.unwrap_or_else(|| tls.ca_file.clone());
            tls.cert_file = cert.unwrap_or_else(|| tls.cert_file.clone());
            tls.key_file = key.unwrap_or_else(|| tls.key_file.clone());
        }
        None => match (ca, cert, key) {
            (None, None, None) => {}
            (Some(ca_file), Some(cert_file), Some(key_file)) => {
                file.tls = Some(FileTls {
                    ca_file,
                    cert_file,
                    key_file,
                    reload_interval_ms: holdfast_server::TLS_RELOAD_INTERVAL_MS_DEFAULT,
                });
            }
            _ => anyhow::bail!("without a [tls] table, give all of --tls-ca-file, --tls-cert-file and --tls-key-file"),
        },
    }
    Ok(())
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut file = FileConfig::load(&args.config)?;
    override_tls(&mut file, &args)?;
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
    let mut hangup = signal(SignalKind::hangup())?;
    let node = Node::start(config, listener).await?;
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: draining");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupt: draining");
                break;
            }
            _ = hangup.recv() => match node.reload_tls().await {
                Ok(true) => tracing::info!("SIGHUP: TLS files reloaded; new connections use them"),
                Ok(false) => tracing::info!("SIGHUP: this node runs without TLS; nothing to reload"),
                Err(e) => tracing::error!("SIGHUP: {e}; keeping the current certificates"),
            },
        }
    }
    node.shutdown().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}
