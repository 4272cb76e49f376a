//! A scripted fake holdfast node: real gRPC on loopback, canned answers, and a log of what it was sent.
//!
//! It checks the client's side of the protocol (routing, leader hints,
//! request-id reuse, error classification over a real connection) before a
//! real server exists; it knows nothing of Raft.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use holdfast_client::LEADER_METADATA;
use holdfast_proto::v1 as pb;
use pb::cluster_server::{Cluster, ClusterServer};
use pb::registry_server::{Registry, RegistryServer};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::MetadataMap;
use tonic::transport::Server;
use tonic::{Code, Request, Response, Status};

/// The record id that `get` finds; every other id is NOT_FOUND.
pub const PRESENT_ID: &[u8] = b"present";

/// How a fake node answers.
#[derive(Debug, Default)]
pub struct Script {
    /// When set, the node is a follower: leader-only calls are refused with
    /// this hint (`Some("")` refuses without naming a leader).
    pub follower_of: Option<String>,
    /// Answers to the next writes, in order, before writes succeed.
    pub write_failures: VecDeque<Status>,
    /// Every write takes this long before answering.
    pub write_delay: Option<Duration>,
}

#[derive(Debug, Default)]
struct State {
    script: Script,
    write_request_ids: Vec<String>,
    calls: usize,
    next_revision: u64,
}

#[derive(Debug, Clone)]
pub struct FakeNode {
    /// `127.0.0.1:port`, as a leader hint would name it.
    pub addr: String,
    id: u64,
    state: Arc<Mutex<State>>,
}

impl FakeNode {
    /// Starts a node on a free loopback port; it runs until the test's runtime ends.
    pub async fn start(id: u64, script: Script) -> FakeNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("bound address").to_string();
        let node =
            FakeNode { addr, id, state: Arc::new(Mutex::new(State { script, next_revision: 1, ..State::default() })) };
        let server = Server::builder()
            .add_service(RegistryServer::new(node.clone()))
            .add_service(ClusterServer::new(node.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(server);
        node
    }

    /// Request ids of every write this node received (refused ones too), in order.
    pub fn write_request_ids(&self) -> Vec<String> {
        self.lock().write_request_ids.clone()
    }

    /// How many calls of any kind reached this node.
    pub fn calls(&self) -> usize {
        self.lock().calls
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the call, and refuses it if this node is a follower.
    fn admit(&self, leader_only: bool) -> Result<(), Status> {
        let mut state = self.lock();
        state.calls += 1;
        match &state.script.follower_of {
            Some(leader) if leader_only => Err(not_leader(leader)),
            _ => Ok(()),
        }
    }

    async fn write(&self, options: Option<pb::WriteOptions>) -> Result<u64, Status> {
        // Logged before admission, so a test sees what a follower was sent too.
        let request_id = options.map(|o| o.request_id).unwrap_or_default();
        self.lock().write_request_ids.push(request_id);
        self.admit(true)?;
        let delay = self.lock().script.write_delay;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.lock();
        if let Some(failure) = state.script.write_failures.pop_front() {
            return Err(failure);
        }
        let revision = state.next_revision;
        state.next_revision += 1;
        Ok(revision)
    }
}

fn not_leader(leader: &str) -> Status {
    let mut metadata = MetadataMap::new();
    if !leader.is_empty() {
        metadata.insert(LEADER_METADATA, leader.parse().expect("ASCII address"));
    }
    Status::with_metadata(Code::Unavailable, "not the leader", metadata)
}

fn record(revision: u64, value: &[u8]) -> pb::RecordRevision {
    pb::RecordRevision {
        revision,
        value: value.to_vec(),
        create_revision: revision,
        actor: "tester".to_owned(),
        ..pb::RecordRevision::default()
    }
}

#[tonic::async_trait]
impl Registry for FakeNode {
    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let revision = self.write(request.into_inner().options).await?;
        Ok(Response::new(pb::PutResponse { revision, duplicate: false }))
    }

    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        let revision = self.write(request.into_inner().options).await?;
        Ok(Response::new(pb::DeleteResponse { revision, duplicate: false }))
    }

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let request = request.into_inner();
        self.admit(request.consistency == pb::Consistency::Linearizable as i32)?;
        if request.record_id != PRESENT_ID {
            return Err(Status::not_found("no such record"));
        }
        // The node's id as the value shows which node answered.
        Ok(Response::new(pb::GetResponse {
            record: Some(record(3, self.id.to_string().as_bytes())),
            applied_revision: 3,
        }))
    }

    async fn history(&self, request: Request<pb::HistoryRequest>) -> Result<Response<pb::HistoryResponse>, Status> {
        self.admit(true)?;
        let after = request.into_inner().after_revision;
        // Two pages: revisions 1-2, then 3 as a tombstone.
        let (revisions, next) = if after < 2 {
            (vec![record(1, b"one"), record(2, &[0xff, 0x00])], 2)
        } else {
            let mut tombstone = record(3, b"");
            tombstone.deleted = true;
            (vec![tombstone], 0)
        };
        Ok(Response::new(pb::HistoryResponse { revisions, next_after_revision: next, applied_revision: 3 }))
    }

    async fn scan(&self, _request: Request<pb::ScanRequest>) -> Result<Response<pb::ScanResponse>, Status> {
        self.admit(true)?;
        Ok(Response::new(pb::ScanResponse {
            entries: vec![pb::ScanEntry { record_id: PRESENT_ID.to_vec(), record: Some(record(3, b"v")) }],
            next_page_token: Vec::new(),
            applied_revision: 3,
        }))
    }
}

#[tonic::async_trait]
impl Cluster for FakeNode {
    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        self.admit(false)?;
        let follower = self.lock().script.follower_of.is_some();
        Ok(Response::new(pb::StatusResponse {
            id: self.id,
            addr: self.addr.clone(),
            role: if follower { "follower" } else { "leader" }.to_owned(),
            term: 2,
            applied_revision: 3,
            ..pb::StatusResponse::default()
        }))
    }

    async fn members(&self, _request: Request<pb::MembersRequest>) -> Result<Response<pb::MembersResponse>, Status> {
        self.admit(true)?;
        Ok(Response::new(pb::MembersResponse {
            members: vec![pb::Member { id: self.id, addr: self.addr.clone(), placement: None, voter: true }],
            leader_id: self.id,
            survives_any_region: false,
            fatal_regions: vec!["ua-kyiv".to_owned()],
            ..pb::MembersResponse::default()
        }))
    }

    async fn add_learner(
        &self,
        _request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.admit(true)?;
        Err(Status::deadline_exceeded("learner did not catch up"))
    }

    async fn promote(&self, _request: Request<pb::PromoteRequest>) -> Result<Response<pb::MembershipResponse>, Status> {
        self.admit(true)?;
        Err(Status::failed_precondition("placement rule"))
    }

    async fn remove(&self, _request: Request<pb::RemoveRequest>) -> Result<Response<pb::MembershipResponse>, Status> {
        self.admit(true)?;
        Ok(Response::new(pb::MembershipResponse::default()))
    }

    async fn rotate_key(
        &self,
        _request: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::KeyStatusResponse>, Status> {
        self.admit(true)?;
        Ok(Response::new(pb::KeyStatusResponse { encrypted: true, current_key_id: 2, ..Default::default() }))
    }

    async fn key_status(
        &self,
        _request: Request<pb::KeyStatusRequest>,
    ) -> Result<Response<pb::KeyStatusResponse>, Status> {
        self.admit(false)?;
        Ok(Response::new(pb::KeyStatusResponse { encrypted: true, current_key_id: 1, ..Default::default() }))
    }
}
