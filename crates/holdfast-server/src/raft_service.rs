//! The receiving side of Raft traffic: the internal `holdfast.v1.Raft` gRPC
//! service handing peer messages to openraft.

use holdfast_proto::v1::raft_server::Raft as RaftRpc;
use holdfast_proto::v1::RaftMessage;
use holdfast_types::audit::AUDIT_BATCH_EVENTS_MAX;
use holdfast_types::codec::{decode, encode};
use holdfast_types::{AuditEvent, Command, NodeId, Raft};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::network::TARGET_NODE_METADATA;

/// Serves Raft RPCs for one node.
pub struct RaftService {
    id: NodeId,
    raft: Raft,
}

impl RaftService {
    pub fn new(id: NodeId, raft: Raft) -> Self {
        Self { id, raft }
    }

    /// Decodes a peer message, refusing one addressed to another node id.
    fn open<T: DeserializeOwned>(&self, request: Request<RaftMessage>) -> Result<T, Status> {
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
