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
use tonic::transport::{Channel, Endpoint};

/// Metadata naming the node a Raft RPC is meant for; a node refuses RPCs
/// addressed to another id (a stale address now used by someone else).
pub const TARGET_NODE_METADATA: &str = "holdfast-target-node";

/// Largest Raft message: a batch of max-size entries or a snapshot chunk.
const RAFT_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Creates per-peer clients; channels are cached by address and shared.
#[derive(Clone)]
pub struct Network {
    channels: Arc<Mutex<BTreeMap<String, Channel>>>,
    overrides: Arc<BTreeMap<NodeId, String>>,
    connect_timeout: Duration,
}

impl Network {
    pub fn new(overrides: BTreeMap<NodeId, String>, connect_timeout: Duration) -> Self {
        Self { channels: Arc::default(), overrides: Arc::new(overrides), connect_timeout }
    }

    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = channels.get(addr) {
            return Ok(ch.clone());
        }
        let uri = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| format!("bad peer address {addr}: {e}"))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}

/// The connection to one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    client: Result<RaftClient<Channel>, String>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        let addr = self.overrides.get(&target).cloned().unwrap_or_else(|| node.addr.clone());
        let client = self.channel(&addr).map(|ch| {
            RaftClient::new(ch)
                .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        });
        PeerClient { target, addr, client }
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
