//! Raft traffic to peers: openraft's `RaftNetwork` over the internal
//! `holdfast.v1.Raft` gRPC service, one cached channel per peer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use holdfast_proto::v1::raft_client::RaftClient;
use holdfast_proto::v1::RaftMessage;
use holdfast_types::codec::{decode, encode};
use holdfast_types::{AuditEvent, NodeId, NodeInfo, TypeConfig};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::pki::node_identity;
use crate::tls::{TlsMaterial, TlsState};

/// Metadata naming the node a Raft RPC is meant for; a node refuses RPCs
/// addressed to another id (a stale address now used by someone else).
pub const TARGET_NODE_METADATA: &str = "holdfast-target-node";

/// Largest Raft message: a batch of max-size entries or a snapshot chunk.
const RAFT_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Creates per-peer clients; channels are cached by peer and address and
/// shared, and made anew after the node's TLS files are reloaded.
#[derive(Clone)]
pub struct Network {
    channels: Arc<Mutex<Channels>>,
    overrides: Arc<BTreeMap<NodeId, String>>,
    connect_timeout: Duration,
    tls: Option<Arc<TlsState>>,
}

#[derive(Default)]
struct Channels {
    /// The TLS generation the cached channels were made with.
    generation: u64,
    by_peer: BTreeMap<(NodeId, String), Channel>,
}

impl Network {
    pub fn new(overrides: BTreeMap<NodeId, String>, connect_timeout: Duration, tls: Option<Arc<TlsState>>) -> Self {
        Self { channels: Arc::default(), overrides: Arc::new(overrides), connect_timeout, tls }
    }

    fn tls_generation(&self) -> u64 {
        self.tls.as_ref().map_or(0, |t| t.generation())
    }

    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, String> {
        let material = self.tls.as_ref().map(|t| t.material());
        let generation = material.as_ref().map_or(0, |(_, g)| *g);
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if channels.generation != generation {
            // Connections already open stay open; these channels would
            // reconnect with the old certificates.
            channels.by_peer.clear();
            channels.generation = generation;
        }
        let key = (target, addr.to_string());
        if let Some(ch) = channels.by_peer.get(&key) {
            return Ok(ch.clone());
        }
        let endpoint = peer_endpoint(addr, target, material.as_ref().map(|(m, _)| &**m), self.connect_timeout)?
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_lazy();
        channels.by_peer.insert(key, channel.clone());
        Ok(channel)
    }

    fn client(&self, target: NodeId, addr: &str) -> Result<RaftClient<Channel>, String> {
        self.channel(target, addr).map(|ch| {
            RaftClient::new(ch)
                .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        })
    }
}

/// An endpoint for peer `target` at `addr`. With TLS the node dials with
/// its own certificate and accepts only a server certificate for
/// `node-<target>`, whatever address (a proxy, an override) it dials.
pub(crate) fn peer_endpoint(
    addr: &str,
    target: NodeId,
    tls: Option<&TlsMaterial>,
    connect_timeout: Duration,
) -> Result<Endpoint, String> {
    let authority = addr.split_once("://").map_or(addr, |(_, rest)| rest);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{authority}"))
        .map_err(|e| format!("bad peer address {addr}: {e}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    if let Some(material) = tls {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&material.ca_pem))
            .identity(Identity::from_pem(&material.cert_pem, &material.key_pem))
            .domain_name(node_identity(target));
        endpoint = endpoint.tls_config(config).map_err(|e| format!("TLS for peer {target} at {addr}: {e}"))?;
    }
    Ok(endpoint)
}

/// The connection to one peer.
pub struct PeerClient {
    network: Network,
    target: NodeId,
    addr: String,
    /// The TLS generation `client` was made with.
    generation: u64,
    client: Result<RaftClient<Channel>, String>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        let addr = self.overrides.get(&target).cloned().unwrap_or_else(|| node.addr.clone());
        let generation = self.tls_generation();
        let client = self.client(target, &addr);
        PeerClient { network: self.clone(), target, addr, generation, client }
    }
}

/// The internal node-to-node calls.
#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
    Audit,
}

impl std::fmt::Display for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rpc::Append => "append-entries",
            Rpc::Vote => "vote",
            Rpc::Snapshot => "install-snapshot",
            Rpc::Audit => "forward-audit",
        })
    }
}

/// What a remote call produced before its reply was decoded.
enum CallError {
    /// Could not reach the peer: openraft backs off.
    Unreachable(String),
    /// Reached it (or timed out) but the exchange failed.
    Network(String),
}

#[derive(Debug)]
struct Message(String);
impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Message {}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: Rpc,
        req: &Req,
        timeout: Duration,
    ) -> Result<Result<Resp, E>, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned,
    {
        let generation = self.network.tls_generation();
        if generation != self.generation {
            self.client = self.network.client(self.target, &self.addr);
            self.generation = generation;
        }
        let mut client = self.client.clone().map_err(CallError::Unreachable)?;
        let payload = encode(req).map_err(|e| CallError::Network(e.to_string()))?;
        let mut request = tonic::Request::new(RaftMessage { payload });
        request.set_timeout(timeout);
        if let Ok(v) = self.target.to_string().parse() {
            request.metadata_mut().insert(TARGET_NODE_METADATA, v);
        }
        let fut = async {
            match kind {
                Rpc::Append => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::Snapshot => client.install_snapshot(request).await,
                Rpc::Audit => client.forward_audit(request).await,
            }
        };
        let reply = match tokio::time::timeout(timeout, fut).await {
            Err(_) => return Err(CallError::Network(format!("{kind} to {} timed out after {timeout:?}", self.addr))),
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return Err(CallError::Unreachable(format!("{kind} to {}: {}", self.addr, status.message())))
            }
            Ok(Err(status)) => return Err(CallError::Network(format!("{kind} to {}: {status}", self.addr))),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        decode::<Result<Resp, E>>(&reply.payload)
            .map_err(|e| CallError::Network(format!("bad reply from {}: {e}", self.addr)))
    }
}

impl PeerClient {
    /// Hands a batch of audit events to this peer (the leader) to append to
    /// the replicated trail; returns once it is committed there.
    pub(crate) async fn forward_audit(&mut self, events: &Vec<AuditEvent>, timeout: Duration) -> Result<(), String> {
        match self.call::<_, (), String>(Rpc::Audit, events, timeout).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(remote)) => Err(format!("node {} refused the audit batch: {remote}", self.target)),
            Err(CallError::Unreachable(m) | CallError::Network(m)) => Err(m),
        }
    }
}

fn to_rpc_error<E: std::error::Error>(e: CallError) -> RPCError<NodeId, NodeInfo, E> {
    match e {
        CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&Message(m))),
        CallError::Network(m) => RPCError::Network(NetworkError::new(&Message(m))),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        let target = self.target;
        match self.call::<_, _, RaftError<NodeId>>(Rpc::Append, &rpc, option.hard_ttl()).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(target, remote))),
            Err(e) => Err(to_rpc_error(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>>
    {
        let target = self.target;
        match self.call::<_, _, RaftError<NodeId, InstallSnapshotError>>(Rpc::Snapshot, &rpc, option.hard_ttl()).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(target, remote))),
            Err(e) => Err(to_rpc_error(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        let target = self.target;
        match self.call::<_, _, RaftError<NodeId>>(Rpc::Vote, &rpc, option.hard_ttl()).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(target, remote))),
            Err(e) => Err(to_rpc_error(e)),
        }
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // Peers in another region may be briefly unreachable; retry soon but
        // without hammering a dead address.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
