//! `holdfast probe`: asks a node's standard gRPC health service whether a
//! service is SERVING, exiting 0 if so. Container health checks and systemd
//! use it, so the image needs no grpcurl.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use holdfast_client::ClientTls;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A probe that hangs is worse than one that fails: health checkers kill it
/// anyway, and without a bound it would outlive their own timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Args)]
pub struct ProbeArgs {
    /// The node's gRPC address.
    #[arg(long, env = "HOLDFAST_PROBE_ADDR", default_value = "127.0.0.1:7000")]
    addr: String,
    /// `holdfast.v1.Registry` asks readiness (a leader, caught up); `""`
    /// asks liveness only.
    #[arg(long, default_value = "holdfast.v1.Registry")]
    service: String,
    /// CA bundle to verify the node with; with --cert and --key, probes over TLS.
    #[arg(long, env = "HOLDFAST_CACERT")]
    cacert: Option<PathBuf>,
    /// Certificate to present (a node's own certificate will do).
    #[arg(long, env = "HOLDFAST_CERT")]
    cert: Option<PathBuf>,
    /// Key of --cert.
    #[arg(long, env = "HOLDFAST_KEY")]
    key: Option<PathBuf>,
}

pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let tls = ClientTls::from_optional_files(args.cacert.as_deref(), args.cert.as_deref(), args.key.as_deref())?;
    let endpoint = match tls {
        Some(tls) => tls.endpoint(&args.addr)?,
        None => tonic::transport::Endpoint::from_shared(format!("http://{}", args.addr))
            .with_context(|| format!("bad address {:?}", args.addr))?,
    };
    let endpoint = endpoint.connect_timeout(PROBE_TIMEOUT).timeout(PROBE_TIMEOUT);
    let channel = endpoint.connect().await.with_context(|| format!("cannot reach {}", args.addr))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest { service: args.service.clone() })
        .await
        .with_context(|| format!("health check of {:?} at {} failed", args.service, args.addr))?;
    let status = response.into_inner().status();
    anyhow::ensure!(
        status == ServingStatus::Serving,
        "{:?} at {} is {}",
        args.service,
        args.addr,
        status.as_str_name()
    );
    println!("{} at {}: SERVING", if args.service.is_empty() { "node" } else { &args.service }, args.addr);
    Ok(())
}
