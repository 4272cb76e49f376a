//! Starting and stopping one node: storage, Raft, bootstrap, and the gRPC
//! server on a listener the caller bound.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use holdfast_proto::coalesce::Coalesced;
use holdfast_proto::v1::access_server::AccessServer;
use holdfast_proto::v1::audit_server::AuditServer;
use holdfast_proto::v1::cluster_server::ClusterServer;
use holdfast_proto::v1::raft_server::RaftServer;
use holdfast_proto::v1::registry_server::RegistryServer;
use holdfast_storage::{Raft, ReadView, Store};
use holdfast_types::limits::GRPC_MESSAGE_BYTES_MAX;
use holdfast_types::topology::check_voters;
use openraft::SnapshotPolicy;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::access_service::{AccessService, AuditService};
use crate::audit::Auditor;
use crate::auth::Authorizer;
use crate::bootstrap;
use crate::cluster_service::ClusterService;
use crate::config::NodeConfig;
use crate::crypto::Crypto;
use crate::error::ServerError;
use crate::health;
use crate::http;
use crate::key_manager;
use crate::metrics::NodeMetrics;
use crate::network::{Network, RAFT_MESSAGE_BYTES_MAX};
use crate::raft_service::RaftService;
use crate::records::RecordCodec;
use crate::registry_service::{RegistryParts, RegistryService};
use crate::request_metrics::RequestMetricsLayer;
use crate::tls::TlsState;
use crate::tls_accept::{self, HandshakeStats};
use crate::writes::WriteBatcher;

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
pub struct Node {
    config: NodeConfig,
    raft: Raft,
    view: ReadView,
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    tls: Option<Arc<TlsState>>,
    shutdown_tx: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    background: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.config.id).field("addr", &self.local_addr).finish()
    }
}

fn raft_config(config: &NodeConfig) -> Result<Arc<openraft::Config>, ServerError> {
    let t = &config.raft;
    let raft_config = openraft::Config {
        cluster_name: "holdfast".into(),
        heartbeat_interval: t.heartbeat_interval_ms,
        election_timeout_min: t.election_timeout_min_ms,
        election_timeout_max: t.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(t.snapshot_every_entries),
        max_in_snapshot_log_to_keep: t.logs_kept_after_snapshot,
        install_snapshot_timeout: t.rpc_timeout_ms.max(10_000),
        // Batches of entries per AppendEntries; bounded so one message stays
        // well under the Raft message size limit with max-size values.
        max_payload_entries: 256,
        snapshot_max_chunk_size: 1024 * 1024,
        ..Default::default()
    };
    Ok(Arc::new(raft_config.validate().map_err(|e| ServerError::InvalidArgument(e.to_string()))?))
}

impl Node {
    /// Opens the node's storage, starts Raft and serves gRPC on `listener`.
    /// A fresh cluster is initialised by the lowest-id initial member.
    pub async fn start(config: NodeConfig, listener: TcpListener) -> Result<Node, ServerError> {
        config.validate()?;
        if !config.initial_members.is_empty() && !config.force_topology {
            let voters: Vec<_> = config.initial_members.iter().map(|(id, n)| (*id, n.placement.clone())).collect();
            check_voters(&voters).map_err(|e| ServerError::Topology(e.to_string()))?;
        }
        // Loaded before the data dir is touched: a node whose TLS files are
        // unusable does not start, says which file is wrong, and changes nothing.
        let tls = match &config.tls {
            Some(files) => Some(TlsState::load(files.clone()).map_err(|e| ServerError::Tls(e.to_string()))?),
            None => None,
        };
        // Checked before the data dir is touched: a node given the wrong key
        // refuses to start and changes nothing on disk.
        if let Some(master) = &config.master_key {
            check_key(&config.data_dir, master)?;
        }
        let dir = config.data_dir.clone();
        let storage = config.storage.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&dir, &storage))
            .await
            .map_err(|e| ServerError::Raft(e.to_string()))??;
        let state_machine = store.state_machine().await?;
        let view = state_machine.read_view();
        let network = Network::new(
            config.peer_addr_overrides.clone(),
            Duration::from_millis(config.raft.rpc_timeout_ms),
            tls.clone(),
        );
        let raft = Raft::new(config.id, raft_config(&config)?, network.clone(), store.log_store(), state_machine)
            .await
            .map_err(|e| ServerError::Raft(e.to_string()))?;

        let local_addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let handshakes = Arc::new(HandshakeStats::default());
        let metrics =
            NodeMetrics::new(raft.clone(), store.sync_latency(), tls.clone().map(|t| (t, handshakes.clone())));
        let metrics_listener = match &config.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                ServerError::Io(std::io::Error::new(e.kind(), format!("cannot listen for metrics on {addr}: {e}")))
            })?),
            None => None,
        };
        let metrics_addr = metrics_listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let codec = match &config.master_key {
            Some(master) => RecordCodec::Sealed(Arc::new(Crypto::new((**master).clone(), view.keyring()))),
            None => RecordCodec::Plain,
        };
        let transport = match &tls {
            Some(tls) => Transport::Tls(tls.clone(), handshakes),
            None => Transport::Plain,
        };
        let mut background = Vec::new();
        let (auditor, audit_task) =
            Auditor::start(config.id, config.audit, raft.clone(), network, metrics.clone(), shutdown_rx.clone());
        background.extend(audit_task);
        let (writes, writes_task) = WriteBatcher::start(raft.clone(), shutdown_rx.clone());
        background.push(writes_task);
        let services = Services {
            raft: raft.clone(),
            store: store.clone(),
            view: view.clone(),
            codec: codec.clone(),
            auditor,
            writes,
        };
        let server = tokio::spawn(serve(&config, services, listener, transport, &metrics, shutdown_rx.clone()).await?);
        if let Some(tls) = &tls {
            let interval = Duration::from_millis(config.tls_reload_interval_ms);
            background.push(tokio::spawn(crate::tls::watch_files(tls.clone(), interval, shutdown_rx.clone())));
        }
        background.push(tokio::spawn(metrics.clone().count_leader_changes(shutdown_rx.clone())));
        if let Some(listener) = metrics_listener {
            background.push(tokio::spawn(http::serve_metrics(listener, metrics.clone(), shutdown_rx.clone())));
        }
        if let RecordCodec::Sealed(crypto) = &codec {
            background.push(tokio::spawn(key_manager::run(
                raft.clone(),
                view.clone(),
                crypto.clone(),
                shutdown_rx.clone(),
            )));
        }
        if !config.initial_members.is_empty() {
            background.push(tokio::spawn(bootstrap::run(
                config.clone(),
                raft.clone(),
                tls.clone(),
                shutdown_rx.clone(),
            )));
        }
        tracing::info!(id = config.id, addr = %local_addr, region = %config.placement.region, "node started");
        Ok(Node { config, raft, view, local_addr, metrics_addr, tls, shutdown_tx, server, background })
    }

    /// Loads the TLS files now, whether or not they look changed (what
    /// SIGHUP does). `Ok(false)` on a plaintext node. On an unusable file
    /// set the current certificates stay and the error names the file.
    pub async fn reload_tls(&self) -> Result<bool, ServerError> {
        let Some(tls) = self.tls.clone() else { return Ok(false) };
        tokio::task::spawn_blocking(move || tls.reload(true))
            .await
            .map_err(|e| ServerError::Tls(e.to_string()))?
            .map_err(|e| ServerError::Tls(e.to_string()))
    }

    pub fn id(&self) -> u64 {
        self.config.id
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn read_view(&self) -> &ReadView {
        &self.view
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address `/metrics` is served on, if `metrics_listen` was set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops accepting requests, drains those in flight, stops Raft.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.shutdown_tx.send(true);
        for task in self.background {
            task.abort();
        }
        let served = self.server.await;
        // No append will come to cover an apply that holds its sync for
        // one: applies sync at once rather than hold for up to 2 ms.
        let _prompt = self.view.prompt_apply_syncs();
        self.raft.shutdown().await.map_err(|e| ServerError::Raft(e.to_string()))?;
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServerError::Raft(format!("grpc server: {e}"))),
            Err(e) => Err(ServerError::Raft(format!("grpc server task: {e}"))),
        }
    }
}

/// How the listener's connections are secured.
enum Transport {
    Plain,
    Tls(Arc<TlsState>, Arc<HandshakeStats>),
}

/// What the gRPC services share.
struct Services {
    raft: Raft,
    store: Store,
    view: ReadView,
    codec: RecordCodec,
    auditor: Auditor,
    writes: WriteBatcher,
}

/// Builds the gRPC server (registry, cluster, access, audit, raft, health,
/// reflection) and returns the future that serves until shutdown.
async fn serve(
    config: &NodeConfig,
    services: Services,
    listener: TcpListener,
    transport: Transport,
    metrics: &Arc<NodeMetrics>,
    mut shutdown_rx: watch::Receiver<bool>,
) -> Result<BoxFuture<'static, Result<(), tonic::transport::Error>>, ServerError> {
    let shutdown_accept = shutdown_rx.clone();
    let Services { raft, store, view, codec, auditor, writes } = services;
    // Only a TLS node knows who calls; a plaintext node checks nothing.
    let auth = Authorizer::new(view.access(), config.admins.clone(), matches!(transport, Transport::Tls(..)));
    let registry = RegistryService::new(RegistryParts {
        raft: raft.clone(),
        view: view.clone(),
        codec: codec.clone(),
        unsafe_local_reads: config.unsafe_local_reads,
        auth: auth.clone(),
        auditor: auditor.clone(),
        writes,
        metrics: metrics.clone(),
    });
    let cluster =
        ClusterService::new(config.id, config.node_info(), raft.clone(), view.clone(), codec.clone(), auth.clone());
    let access = AccessService::new(raft.clone(), view.clone(), auth.clone());
    let audit = AuditService::new(raft.clone(), view.clone(), codec.clone(), auth, auditor);
    let raft_rpc =
        RaftService::new(config.id, raft.clone(), store, matches!(transport, Transport::Tls(..)), shutdown_rx.clone());

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // Not ready until the readiness task sees a leader and a caught-up node.
    health_reporter.set_not_serving::<RegistryServer<RegistryService>>().await;
    // A leader unacknowledged by its quorum for two election timeouts has
    // almost surely been replaced or cut off.
    let quorum_ack_stale_ms = config.raft.election_timeout_max_ms * 2;
    tokio::spawn(health::report_readiness(
        raft.clone(),
        health_reporter,
        metrics.clone(),
        quorum_ack_stale_ms,
        shutdown_rx.clone(),
    ));
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(holdfast_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::InvalidArgument(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(holdfast_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServerError::InvalidArgument(e.to_string()))?;

    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .layer(RequestMetricsLayer::new(metrics.requests()))
        .add_service(
            RegistryServer::new(registry)
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
        )
        .add_service(ClusterServer::new(cluster))
        .add_service(AccessServer::new(access))
        .add_service(AuditServer::new(audit))
        .add_service(
            RaftServer::new(raft_rpc)
                .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let stop = async move {
        let _ = shutdown_rx.wait_for(|stop| *stop).await;
    };
    Ok(match transport {
        Transport::Plain => {
            // tonic applies `tcp_nodelay` only to listeners it binds itself; with a
            // listener handed in, Nagle stays on and replies stall ~40 ms on delayed
            // ACKs (measured: 20 → 960 linearizable gets/s with one client).
            let incoming = tonic::transport::server::TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .map(|accepted| accepted.map(Coalesced::new));
            router.serve_with_incoming_shutdown(incoming, stop).boxed()
        }
        Transport::Tls(tls, handshakes) => {
            let incoming = tls_accept::incoming(listener, tls, handshakes, shutdown_accept);
            router.serve_with_incoming_shutdown(incoming, stop).boxed()
        }
    })
}

/// Name of the file in the data dir holding the master key's check value.
const KEY_CHECK_FILE: &str = "KEYCHECK";

/// Compares the master key with the check value recorded in the data dir
/// (never by trying to decrypt data), recording it on first start.
fn check_key(data_dir: &std::path::Path, master: &holdfast_crypto::MasterKey) -> Result<(), ServerError> {
    let path = data_dir.join(KEY_CHECK_FILE);
    let expected = hex::encode(master.key_check_value());
    match std::fs::read_to_string(&path) {
        Ok(found) if found.trim() == expected => Ok(()),
        Ok(_) => Err(ServerError::Crypto(format!(
            "the master key does not match this node's data ({} differs); refusing to start",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, format!("{expected}\n"))?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
