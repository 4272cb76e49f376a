//! The admin API: `holdfast.v1.Cluster` — node status, members, and
//! membership changes that keep the placement rule.

use std::collections::BTreeSet;
use std::time::Duration;

use holdfast_proto::v1 as pb;
use holdfast_proto::v1::cluster_server::Cluster;
use holdfast_storage::{Raft, ReadView};
use holdfast_types::topology::{check_voters, survival};
use holdfast_types::{Command, NodeId, NodeInfo, Permission, Placement};
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use tonic::{Request, Response, Status};

use crate::auth::Authorizer;
use crate::crypto::Crypto;
use crate::error::{ensure_leading, known_leader, to_status, ServerError};
use crate::records::RecordCodec;

/// How long AddLearner waits for the learner to catch up before answering.
const ADD_LEARNER_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves the admin API of one node.
pub struct ClusterService {
    id: NodeId,
    info: NodeInfo,
    raft: Raft,
    view: ReadView,
    codec: RecordCodec,
    auth: Authorizer,
}

impl ClusterService {
    pub fn new(id: NodeId, info: NodeInfo, raft: Raft, view: ReadView, codec: RecordCodec, auth: Authorizer) -> Self {
        Self { id, info, raft, view, codec, auth }
    }

    /// Membership changes and key rotation need `admin` on `*`.
    fn check_admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let caller = self.auth.caller(request);
        self.auth.check(&caller, None, Permission::Admin).map_err(to_status)
    }

    /// Counts stored revisions by the key sealing them (a full scan).
    async fn key_status(&self) -> Result<pb::KeyStatusResponse, ServerError> {
        let RecordCodec::Sealed(_) = &self.codec else {
            return Ok(pb::KeyStatusResponse { encrypted: false, ..Default::default() });
        };
        let state = self.view.keyring().borrow().clone();
        let current = state.current.unwrap_or(0);
        let mut counts: std::collections::BTreeMap<u32, u64> = state.wrapped.keys().map(|id| (*id, 0)).collect();
        let mut cursor = None;
        loop {
            let batch = self.view.versions(cursor.take(), 1024).await?;
            for stored in &batch.versions {
                if let Some(id) = stored.version.value.as_deref().and_then(Crypto::key_id_of) {
                    *counts.entry(id).or_insert(0) += 1;
                }
            }
            match batch.resume {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let revisions_to_reseal = counts.iter().filter(|(id, _)| **id != current).map(|(_, n)| n).sum();
        Ok(pb::KeyStatusResponse {
            encrypted: true,
            current_key_id: current,
            keys: counts
                .into_iter()
                .map(|(id, revisions)| pb::KeyInfo { id, current: id == current, revisions })
                .collect(),
            revisions_to_reseal,
            applied_revision: self.view.applied_revision(),
        })
    }

    /// Changes the voters or nodes. A change takes two Raft steps (joint,
    /// then uniform), so once this node has proposed the first, a refusal
    /// may leave the change made in part: only a node that does not lead
    /// answers "not the leader" (nothing proposed); after that any failure
    /// says the outcome is unknown and to look at the members.
    async fn change_membership(&self, change: ChangeMembers<NodeId, NodeInfo>) -> Result<(), ServerError> {
        ensure_leading(&self.raft)?;
        match self.raft.change_membership(change, false).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(ServerError::InvalidArgument(e.to_string()))
            }
            Err(e) => Err(ServerError::Raft(format!(
                "the membership change may or may not have been made ({e}); list the members to see"
            ))),
        }
    }

    fn members(&self) -> Vec<pb::Member> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| pb::Member {
                id: *id,
                addr: node.addr.clone(),
                placement: Some(placement_to_pb(&node.placement)),
                voter: voters.contains(id),
            })
            .collect()
    }

    /// Voters (with placement) after a change, for the placement check.
    fn voters_with(
        &self,
        add: Option<NodeId>,
        remove: Option<NodeId>,
    ) -> Result<Vec<(NodeId, Placement)>, ServerError> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let mut ids: BTreeSet<NodeId> = membership.voter_ids().collect();
        if let Some(a) = add {
            ids.insert(a);
        }
        if let Some(r) = remove {
            ids.remove(&r);
        }
        ids.into_iter()
            .map(|id| {
                membership
                    .get_node(&id)
                    .map(|n| (id, n.placement.clone()))
                    .ok_or_else(|| ServerError::NotFound(format!("node {id} is not a member")))
            })
            .collect()
    }
}

pub(crate) fn placement_to_pb(p: &Placement) -> pb::Placement {
    pb::Placement {
        region: p.region.clone(),
        zone: p.zone.clone(),
        provider: p.provider.clone(),
        jurisdiction: p.jurisdiction.to_string(),
    }
}

fn placement_from_pb(p: Option<pb::Placement>) -> Result<Placement, ServerError> {
    let p = p.ok_or_else(|| ServerError::InvalidArgument("placement is required".into()))?;
    if p.region.is_empty() {
        return Err(ServerError::InvalidArgument("placement.region is required".into()));
    }
    let jurisdiction = if p.jurisdiction.is_empty() {
        Default::default()
    } else {
        p.jurisdiction.parse().map_err(ServerError::InvalidArgument)?
    };
    Ok(Placement { region: p.region, zone: p.zone, provider: p.provider, jurisdiction })
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(&self, request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let leader_addr = known_leader(&metrics).map(|(_, addr)| addr).unwrap_or_default();
        // The digest scans the whole state machine: only when asked, since
        // leader waits and bootstrap checks poll status often.
        let (applied, digest) = if request.into_inner().include_digest {
            self.view.digest().await.map_err(|e| to_status(e.into()))?
        } else {
            (self.view.applied_revision(), String::new())
        };
        Ok(Response::new(pb::StatusResponse {
            id: self.id,
            addr: self.info.addr.clone(),
            placement: Some(placement_to_pb(&self.info.placement)),
            role: role(metrics.state).to_string(),
            term: metrics.current_term,
            leader_id: metrics.current_leader.unwrap_or(0),
            leader_addr,
            applied_revision: applied,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            committed_index: metrics.last_applied.map_or(0, |l| l.index),
            state_digest: digest,
        }))
    }

    async fn members(&self, _request: Request<pb::MembersRequest>) -> Result<Response<pb::MembersResponse>, Status> {
        let voters = self.voters_with(None, None).map_err(to_status)?;
        let s = survival(&voters);
        Ok(Response::new(pb::MembersResponse {
            members: self.members(),
            leader_id: self.raft.metrics().borrow_watched().current_leader.unwrap_or(0),
            survives_any_region: s.survives_any_region,
            survives_any_provider: s.survives_any_provider,
            survives_all_domestic_lost: s.survives_all_domestic_lost,
            fatal_regions: s.fatal_regions,
        }))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.check_admin(&request)?;
        let req = request.into_inner();
        let run = async {
            if req.id == 0 || req.addr.is_empty() {
                return Err(ServerError::InvalidArgument("id must be non-zero and addr non-empty".into()));
            }
            let node = NodeInfo { addr: req.addr, placement: placement_from_pb(req.placement)? };
            match tokio::time::timeout(ADD_LEARNER_TIMEOUT, self.raft.add_learner(req.id, node, true)).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(ServerError::Timeout("the learner did not catch up in time; it stays a learner".into()))
                }
            };
            Ok(pb::MembershipResponse { members: self.members() })
        };
        run.await.map(Response::new).map_err(to_status)
    }

    async fn promote(&self, request: Request<pb::PromoteRequest>) -> Result<Response<pb::MembershipResponse>, Status> {
        self.check_admin(&request)?;
        let req = request.into_inner();
        let run = async {
            let voters = self.voters_with(Some(req.id), None)?;
            if !req.force {
                check_voters(&voters).map_err(|e| ServerError::Topology(e.to_string()))?;
            }
            self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([req.id]))).await?;
            Ok(pb::MembershipResponse { members: self.members() })
        };
        run.await.map(Response::new).map_err(to_status)
    }

    async fn rotate_key(
        &self,
        request: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::KeyStatusResponse>, Status> {
        self.check_admin(&request)?;
        let run = async {
            let RecordCodec::Sealed(crypto) = &self.codec else {
                return Err(ServerError::InvalidArgument(
                    "this node stores plaintext; there is no key to rotate".into(),
                ));
            };
            // Only the leader proposes; a follower answers with the leader hint.
            crate::read_barrier::ensure_linearizable(&self.raft, &self.view).await?;
            let next = self.view.keyring().borrow().wrapped.keys().max().map_or(1, |id| id + 1);
            let wrapped = crypto.new_wrapped_key(next)?;
            crate::writes::propose_as_leader(&self.raft, Command::AddDataKey { key_id: next, wrapped }).await?;
            tracing::info!(key_id = next, "rotated the data key");
            self.key_status().await
        };
        run.await.map(Response::new).map_err(to_status)
    }

    async fn key_status(
        &self,
        _request: Request<pb::KeyStatusRequest>,
    ) -> Result<Response<pb::KeyStatusResponse>, Status> {
        ClusterService::key_status(self).await.map(Response::new).map_err(to_status)
    }

    async fn remove(&self, request: Request<pb::RemoveRequest>) -> Result<Response<pb::MembershipResponse>, Status> {
        self.check_admin(&request)?;
        let req = request.into_inner();
        let run = async {
            let is_voter = self.members().iter().any(|m| m.id == req.id && m.voter);
            if is_voter {
                let voters = self.voters_with(None, Some(req.id))?;
                if !req.force {
                    check_voters(&voters).map_err(|e| ServerError::Topology(e.to_string()))?;
                }
                // retain = false: the removed voter leaves the cluster entirely.
                self.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([req.id]))).await?;
            } else {
                self.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([req.id]))).await?;
            }
            Ok(pb::MembershipResponse { members: self.members() })
        };
        run.await.map(Response::new).map_err(to_status)
    }
}
