//! The receiving side of Raft traffic: the internal `holdfast.v1.Raft` gRPC
//! service handing peer messages to openraft. Over TLS, only members'
//! node certificates may speak Raft.

use holdfast_proto::v1::raft_server::Raft as RaftRpc;
use holdfast_proto::v1::RaftMessage;
use holdfast_types::audit::AUDIT_BATCH_EVENTS_MAX;
use holdfast_types::codec::{decode, encode};
use holdfast_types::{AuditEvent, Command, NodeId, Raft};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::identity::{node_id_of, peer_identity};
use crate::network::TARGET_NODE_METADATA;

/// Serves Raft RPCs for one node.
pub struct RaftService {
    id: NodeId,
    raft: Raft,
    /// Whether callers present certificates, whose identity is then checked.
    tls: bool,
}

impl RaftService {
    pub fn new(id: NodeId, raft: Raft, tls: bool) -> Self {
        Self { id, raft, tls }
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
            self.raft.metrics().borrow().membership_config.membership().nodes().map(|(id, _)| *id).collect();
        if members.is_empty() || members.contains(&caller) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!("{identity} is not a member of this node's cluster")))
        }
    }

    /// Decodes a peer message, refusing one from a non-member or one
    /// addressed to another node id.
    fn open<T: DeserializeOwned>(&self, request: Request<RaftMessage>) -> Result<T, Status> {
        self.check_caller(&request)?;
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
        decode(&request.into_inner().payload)
            .map_err(|e| Status::invalid_argument(format!("malformed raft message: {e}")))
    }
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    let payload = encode(result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage { payload }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = self.open(request)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = self.open(request)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = self.open(request)?;
        reply(&self.raft.install_snapshot(rpc).await)
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
