//! The receiving side of Raft traffic: the internal `holdfast.v1.Raft` gRPC
//! service handing peer messages to openraft. Over TLS, only members'
//! node certificates may speak Raft.

use futures::stream::BoxStream;
use futures::StreamExt;
use holdfast_proto::v1::raft_server::Raft as RaftRpc;
use holdfast_proto::v1::RaftMessage;
use holdfast_storage::{Raft, Snapshot, Store};
use holdfast_types::audit::AUDIT_BATCH_EVENTS_MAX;
use holdfast_types::codec::{decode, encode};
use holdfast_types::{AuditEvent, Command, NodeId, SnapshotOffer, TypeConfig};
use openraft::async_runtime::WatchReceiver;
use openraft::raft::AppendEntriesRequest;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::identity::{node_id_of, peer_identity};
use crate::network::TARGET_NODE_METADATA;

/// Serves Raft RPCs for one node.
pub struct RaftService {
    id: NodeId,
    raft: Raft,
    /// Where received snapshots are written before they are installed.
    store: Store,
    /// Whether callers present certificates, whose identity is then checked.
    tls: bool,
    /// Replication streams end when this turns true: the server drains
    /// connections on shutdown, and a leader's stream would never end.
    shutdown: watch::Receiver<bool>,
}

impl RaftService {
    pub fn new(id: NodeId, raft: Raft, store: Store, tls: bool, shutdown: watch::Receiver<bool>) -> Self {
        Self { id, raft, store, tls, shutdown }
    }

    /// Refuses a caller that is not a node of this node's membership
    /// (voter or learner). A node with no membership yet (fresh, or not yet
    /// added as a learner) cannot know its peers and accepts any node.
    fn check_caller<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if !self.tls {
            return Ok(());
        }
        let Some(identity) = peer_identity(request) else {
            return Err(Status::permission_denied("raft calls need a node certificate; the caller presented none"));
        };
        let Some(caller) = node_id_of(&identity) else {
            return Err(Status::permission_denied(format!("identity '{identity}' is not a node certificate")));
        };
        let members: Vec<NodeId> =
            self.raft.metrics().borrow_watched().membership_config.membership().nodes().map(|(id, _)| *id).collect();
        if members.is_empty() || members.contains(&caller) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!("{identity} is not a member of this node's cluster")))
        }
    }

    /// Refuses a call from a non-member or one addressed to another node id.
    fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.check_caller(request)?;
        if let Some(target) = request.metadata().get(TARGET_NODE_METADATA) {
            let target = target.to_str().ok().and_then(|t| t.parse::<NodeId>().ok());
            if target != Some(self.id) {
                return Err(Status::failed_precondition(format!(
                    "this is node {}, not node {}",
                    self.id,
                    target.map_or("?".to_string(), |t| t.to_string())
                )));
            }
        }
        Ok(())
    }

    /// Decodes a peer message, refusing one from a non-member or one
    /// addressed to another node id.
    fn open<T: DeserializeOwned>(&self, request: Request<RaftMessage>) -> Result<T, Status> {
        self.check(&request)?;
        decode(&request.into_inner().payload)
            .map_err(|e| Status::invalid_argument(format!("malformed raft message: {e}")))
    }

    /// Receives the file an offer announced into an unnamed file. A transfer
    /// that ends short of (or goes past) the offered length is refused, so
    /// nothing is installed unless every offered byte arrived.
    async fn receive_snapshot(
        &self,
        offer: SnapshotOffer,
        mut input: Streaming<RaftMessage>,
    ) -> Result<Snapshot, Status> {
        let mut file = self.store.snapshot_receiving_file().await.map_err(|e| Status::internal(e.to_string()))?;
        let mut received = 0u64;
        while let Some(chunk) = input.message().await? {
            received += chunk.payload.len() as u64;
            if received > offer.len {
                return Err(Status::invalid_argument(format!("snapshot longer than the {} bytes offered", offer.len)));
            }
            file.write_all(&chunk.payload).await.map_err(|e| Status::internal(e.to_string()))?;
        }
        if received != offer.len {
            return Err(Status::invalid_argument(format!(
                "snapshot transfer ended after {received} of {} bytes",
                offer.len
            )));
        }
        file.flush().await.map_err(|e| Status::internal(e.to_string()))?;
        Ok(Snapshot { meta: offer.meta, snapshot: file.into() })
    }
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    let payload = encode(result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage { payload }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    type StreamAppendStream = BoxStream<'static, Result<RaftMessage, Status>>;

    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = self.open(request)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn stream_append(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        self.check(&request)?;
        // A message that does not decode (or a broken stream) ends the
        // requests there; openraft answers those before it, in order.
        let requests = futures::stream::unfold(request.into_inner(), |mut input| async move {
            match input.message().await {
                Ok(Some(message)) => match decode::<AppendEntriesRequest<TypeConfig>>(&message.payload) {
                    Ok(request) => Some((request, input)),
                    Err(e) => {
                        tracing::warn!(error = %e, "malformed AppendEntries on a replication stream");
                        None
                    }
                },
                Ok(None) => None,
                Err(status) => {
                    tracing::debug!(%status, "replication stream closed");
                    None
                }
            }
        });
        // openraft reads the requests on a task of its own, which holds the
        // gRPC stream until the requests end: end them at shutdown too, or
        // the stream stays open and the server never finishes draining.
        let stopping = |mut shutdown: watch::Receiver<bool>| async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        let requests = requests.take_until(stopping(self.shutdown.clone()));
        let answers = self
            .raft
            .stream_append(requests)
            .map(|answer| {
                encode(&answer).map(|payload| RaftMessage { payload }).map_err(|e| Status::internal(e.to_string()))
            })
            .take_until(stopping(self.shutdown.clone()));
        Ok(Response::new(answers.boxed()))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = self.open(request)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.check(&request)?;
        let mut input = request.into_inner();
        let first = input.message().await?.ok_or_else(|| Status::invalid_argument("empty snapshot transfer"))?;
        let offer: SnapshotOffer =
            decode(&first.payload).map_err(|e| Status::invalid_argument(format!("malformed snapshot offer: {e}")))?;
        let vote = offer.vote;
        let snapshot = self.receive_snapshot(offer, input).await?;
        let result = self.raft.install_full_snapshot(vote, snapshot).await.map_err(|fatal| fatal.to_string());
        reply(&result)
    }

    async fn forward_audit(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let events: Vec<AuditEvent> = self.open(request)?;
        if events.is_empty() || events.len() > AUDIT_BATCH_EVENTS_MAX {
            return Err(Status::invalid_argument(format!(
                "an audit batch holds 1 to AUDIT_BATCH_EVENTS_MAX = {AUDIT_BATCH_EVENTS_MAX} events, not {}",
                events.len()
            )));
        }
        let result: Result<(), String> =
            self.raft.client_write(Command::Audit { events }).await.map(|_| ()).map_err(|e| e.to_string());
        reply(&result)
    }
}
