//! Raft traffic to peers: openraft's `RaftNetworkV2` over the internal
//! `holdfast.v1.Raft` gRPC service, one cached channel per peer.
//! Replication streams: AppendEntries requests go out on one gRPC stream
//! without waiting for each answer, and the answers come back in order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use holdfast_proto::v1::raft_client::RaftClient;
use holdfast_proto::v1::RaftMessage;
use holdfast_storage::Snapshot;
use holdfast_types::codec::{decode, encode};
use holdfast_types::{AuditEvent, NodeId, NodeInfo, SnapshotOffer, TypeConfig, Vote};
use openraft::errors::{Fatal, NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::pki::node_identity;
use crate::tls::{TlsMaterial, TlsState};

/// Metadata naming the node a Raft RPC is meant for; a node refuses RPCs
/// addressed to another id (a stale address now used by someone else).
pub const TARGET_NODE_METADATA: &str = "holdfast-target-node";

/// Largest Raft message: a batch of max-size entries or a snapshot chunk.
pub(crate) const RAFT_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Bytes of a snapshot file per message of a snapshot transfer.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

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
    Audit,
}

impl std::fmt::Display for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rpc::Append => "append-entries",
            Rpc::Vote => "vote",
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
    /// The client for this peer, made anew after the node's TLS files were
    /// reloaded.
    fn current_client(&mut self) -> Result<RaftClient<Channel>, CallError> {
        let generation = self.network.tls_generation();
        if generation != self.generation {
            self.client = self.network.client(self.target, &self.addr);
            self.generation = generation;
        }
        self.client.clone().map_err(CallError::Unreachable)
    }

    /// Attaches the target node id, which the receiver checks.
    fn addressed<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Ok(v) = self.target.to_string().parse() {
            request.metadata_mut().insert(TARGET_NODE_METADATA, v);
        }
        request
    }

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
        let mut client = self.current_client()?;
        let payload = encode(req).map_err(|e| CallError::Network(e.to_string()))?;
        let mut request = self.addressed(RaftMessage { payload });
        request.set_timeout(timeout);
        let fut = async {
            match kind {
                Rpc::Append => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
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

fn to_rpc_error(e: CallError) -> RPCError<TypeConfig> {
    match e {
        CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&Message(m))),
        CallError::Network(m) => RPCError::Network(NetworkError::new(&Message(m))),
    }
}

/// A peer's Raft answered with an error: it has stopped (the only error
/// these calls return). Unreachable, so openraft backs off.
fn stopped(target: NodeId, e: &RaftError<TypeConfig>) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&Message(format!("node {target}: {e}"))))
}

fn network_error(message: String) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(&Message(message)))
}

/// A gRPC failure of a stream: unreachable if the peer could not be
/// reached, otherwise a network error.
fn status_error(target: NodeId, what: &str, status: &tonic::Status) -> RPCError<TypeConfig> {
    let message = format!("{what} to node {target}: {}", status.message());
    if status.code() == tonic::Code::Unavailable {
        RPCError::Unreachable(Unreachable::new(&Message(message)))
    } else {
        network_error(message)
    }
}

/// When each unanswered request of a replication stream was sent, oldest
/// first: tells a stalled peer from an idle stream.
#[derive(Default)]
struct InFlight(Mutex<std::collections::VecDeque<tokio::time::Instant>>);

impl InFlight {
    fn sent(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push_back(tokio::time::Instant::now());
    }
    fn answered(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
    }
    fn oldest(&self) -> Option<tokio::time::Instant> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).front().copied()
    }
}

impl PeerClient {
    /// A unary Raft call whose answer is openraft's `Result<Resp, RaftError>`.
    async fn raft_call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        kind: Rpc,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        match self.call::<_, _, RaftError<TypeConfig>>(kind, req, timeout).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(stopped(self.target, &remote)),
            Err(e) => Err(to_rpc_error(e)),
        }
    }

    /// Opens a replication stream: requests are encoded and sent as
    /// openraft yields them; each answer is decoded in order. A request
    /// unanswered `timeout` after it was sent ends the stream with an
    /// error; so does a stream that cannot be opened within `timeout`.
    async fn open_append_stream<S>(
        &mut self,
        input: S,
        timeout: Duration,
    ) -> Result<BoxStream<'static, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>, RPCError<TypeConfig>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        let target = self.target;
        // Wait for the first request before dialling: openraft's backoff
        // after errors is a delay in yielding requests, so a peer that is
        // down is not redialled in a tight loop.
        let mut input = input;
        let Some(first) = input.next().await else {
            return Ok(futures::stream::empty().boxed());
        };
        // The requests end when the answers do (or are dropped): the HTTP/2
        // client keeps pulling a request body after its response is gone,
        // and an abandoned stream must not take requests meant for the next.
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        let input = futures::stream::once(std::future::ready(first)).chain(input).take_until(closed);
        let mut client = self.current_client().map_err(to_rpc_error)?;
        let in_flight = Arc::new(InFlight::default());
        let counting = in_flight.clone();
        // A request that does not encode ends the stream there: the peer
        // answers what it was sent, in order, and openraft starts anew.
        let requests = input
            .map(|request| encode(&request))
            .take_while(|encoded| {
                if let Err(e) = encoded {
                    tracing::error!(error = %e, "an AppendEntries request did not encode");
                }
                std::future::ready(encoded.is_ok())
            })
            .filter_map(move |encoded| {
                counting.sent();
                std::future::ready(encoded.ok().map(|payload| RaftMessage { payload }))
            });
        let answers = match tokio::time::timeout(timeout, client.stream_append(self.addressed(requests))).await {
            Ok(Ok(answers)) => answers.into_inner(),
            Ok(Err(status)) => return Err(status_error(target, "append stream", &status)),
            Err(_) => return Err(network_error(format!("append stream to node {target}: no answer in {timeout:?}"))),
        };
        let answers = futures::stream::unfold(Some((answers, close)), move |state| {
            let in_flight = in_flight.clone();
            async move {
                let (mut answers, close) = state?;
                let next = loop {
                    // Idle: wait a while and look again. Busy: until the
                    // oldest unanswered request is `timeout` old.
                    let now = tokio::time::Instant::now();
                    let wait =
                        in_flight.oldest().map_or(timeout, |sent| (sent + timeout).saturating_duration_since(now));
                    match tokio::time::timeout(wait, answers.message()).await {
                        Ok(next) => break next,
                        Err(_) => match in_flight.oldest() {
                            Some(sent) if sent.elapsed() >= timeout => {
                                let e = network_error(format!(
                                    "node {target} did not answer AppendEntries within {timeout:?}"
                                ));
                                return Some((Err(e), None));
                            }
                            _ => continue,
                        },
                    }
                };
                let answer = match next {
                    Ok(Some(message)) => message,
                    Ok(None) => return None,
                    Err(status) => return Some((Err(status_error(target, "append stream", &status)), None)),
                };
                in_flight.answered();
                match decode::<Result<StreamAppendResult<TypeConfig>, Fatal<TypeConfig>>>(&answer.payload) {
                    Ok(Ok(result)) => Some((Ok(result), Some((answers, close)))),
                    Ok(Err(fatal)) => Some((Err(stopped(target, &RaftError::Fatal(fatal))), None)),
                    Err(e) => Some((Err(network_error(format!("bad append answer from node {target}: {e}"))), None)),
                }
            }
        });
        Ok(answers.boxed())
    }

    /// Sends a whole snapshot on one stream: the offer (vote, metadata,
    /// length), then the file in chunks; the peer installs it and answers.
    async fn send_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        timeout: Duration,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let target = self.target;
        let Snapshot { meta, snapshot } = snapshot;
        let io = |e: std::io::Error| StreamingError::from(network_error(format!("snapshot for node {target}: {e}")));
        // A checkpoint is streamed into its file here, the first time.
        let mut file = snapshot.into_file().await.map_err(|e| io(e.into()))?;
        let len = file.seek(std::io::SeekFrom::End(0)).await.map_err(io)?;
        file.seek(std::io::SeekFrom::Start(0)).await.map_err(io)?;
        let offer = encode(&SnapshotOffer { vote, meta, len })
            .map_err(|e| StreamingError::from(network_error(format!("snapshot offer: {e}"))))?;
        // A read error ends the body early; the peer sees fewer bytes than
        // offered and installs nothing.
        let chunks = futures::stream::unfold(Some(file), |file| async move {
            let mut file = file?;
            let mut chunk = vec![0u8; SNAPSHOT_CHUNK_BYTES];
            let mut filled = 0;
            while filled < chunk.len() {
                match file.read(&mut chunk[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        tracing::error!(error = %e, "reading a snapshot to send failed");
                        return None;
                    }
                }
            }
            if filled == 0 {
                return None;
            }
            chunk.truncate(filled);
            Some((RaftMessage { payload: chunk }, Some(file)))
        });
        let body = futures::stream::once(std::future::ready(RaftMessage { payload: offer })).chain(chunks);
        let mut client = self.current_client().map_err(|e| StreamingError::from(to_rpc_error(e)))?;
        // Each chunk may take `timeout`; the whole transfer as many times.
        let chunks_total = u32::try_from(len / SNAPSHOT_CHUNK_BYTES as u64 + 2).unwrap_or(u32::MAX);
        let reply = match tokio::time::timeout(
            timeout.saturating_mul(chunks_total),
            client.install_snapshot(self.addressed(body)),
        )
        .await
        {
            Err(_) => return Err(network_error(format!("snapshot to node {target} timed out")).into()),
            Ok(Err(status)) => return Err(status_error(target, "snapshot", &status).into()),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        match decode::<Result<SnapshotResponse<TypeConfig>, String>>(&reply.payload) {
            Ok(Ok(response)) => Ok(response),
            // Its Raft has stopped: back off as from an unreachable node,
            // rather than send the whole file again at once.
            Ok(Err(stopped)) => Err(RPCError::<TypeConfig>::Unreachable(Unreachable::new(&Message(format!(
                "node {target} cannot install the snapshot: {stopped}"
            ))))
            .into()),
            Err(e) => Err(network_error(format!("bad snapshot answer from node {target}: {e}")).into()),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = holdfast_storage::SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(Rpc::Append, &rpc, option.hard_ttl()).await
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>, RPCError<TypeConfig>>,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        // openraft's option carries a heartbeat-sized deadline; a follower
        // under load may take longer to sync a batch.
        let timeout = option.hard_ttl().max(self.network.connect_timeout);
        async move { self.open_append_stream(input, timeout).await }.boxed()
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            sent = self.send_snapshot(vote, snapshot, option.hard_ttl()) => sent,
        }
    }

    fn backoff(&self) -> Option<Backoff> {
        // Peers in another region may be briefly unreachable; retry soon but
        // without hammering a dead address.
        Some(Backoff::new(std::iter::repeat(Duration::from_millis(200))))
    }
}
