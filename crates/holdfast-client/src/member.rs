//! Cluster vocabulary of the client API (placement, members, node status) and its proto conversions.

use std::fmt;

use holdfast_proto::v1 as pb;

/// Where a node runs; the placement rule keeps every region below half the voters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub region: String,
    pub zone: String,
    pub provider: String,
    /// `domestic` or `foreign`.
    pub jurisdiction: String,
}

/// A node in the cluster's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub addr: String,
    pub placement: Placement,
    /// False for a learner.
    pub voter: bool,
}

/// Which failures the current voter set survives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survival {
    pub any_region: bool,
    pub any_provider: bool,
    pub all_domestic_lost: bool,
    /// Regions whose loss alone would lose quorum.
    pub fatal_regions: Vec<String>,
}

/// The membership as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    pub members: Vec<Member>,
    pub leader_id: Option<u64>,
    pub survival: Survival,
}

/// A node's Raft role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
    /// A role this client version does not know.
    Other(String),
}

/// One node's view of itself and of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: u64,
    pub addr: String,
    pub placement: Placement,
    pub role: Role,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub leader_addr: Option<String>,
    pub applied_revision: u64,
    pub last_log_index: u64,
    pub committed_index: u64,
    /// SHA-256 over the applied state, equal on replicas that converged.
    pub state_digest: String,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Leader => "leader",
            Self::Follower => "follower",
            Self::Candidate => "candidate",
            Self::Learner => "learner",
            Self::Shutdown => "shutdown",
            Self::Other(name) => name,
        };
        f.write_str(name)
    }
}

impl From<&str> for Role {
    fn from(name: &str) -> Self {
        match name {
            "leader" => Self::Leader,
            "follower" => Self::Follower,
            "candidate" => Self::Candidate,
            "learner" => Self::Learner,
            "shutdown" => Self::Shutdown,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// Proto3 has no "unset" for numbers: id 0 means "none".
fn nonzero(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}

impl From<pb::Placement> for Placement {
    fn from(placement: pb::Placement) -> Self {
        Self {
            region: placement.region,
            zone: placement.zone,
            provider: placement.provider,
            jurisdiction: placement.jurisdiction,
        }
    }
}

impl From<Placement> for pb::Placement {
    fn from(placement: Placement) -> Self {
        Self {
            region: placement.region,
            zone: placement.zone,
            provider: placement.provider,
            jurisdiction: placement.jurisdiction,
        }
    }
}

impl From<pb::Member> for Member {
    fn from(member: pb::Member) -> Self {
        Self {
            id: member.id,
            addr: member.addr,
            placement: member.placement.map(Placement::from).unwrap_or_default(),
            voter: member.voter,
        }
    }
}

impl From<pb::MembersResponse> for Members {
    fn from(response: pb::MembersResponse) -> Self {
        Self {
            members: response.members.into_iter().map(Member::from).collect(),
            leader_id: nonzero(response.leader_id),
            survival: Survival {
                any_region: response.survives_any_region,
                any_provider: response.survives_any_provider,
                all_domestic_lost: response.survives_all_domestic_lost,
                fatal_regions: response.fatal_regions,
            },
        }
    }
}

impl From<pb::StatusResponse> for NodeStatus {
    fn from(status: pb::StatusResponse) -> Self {
        Self {
            id: status.id,
            addr: status.addr,
            placement: status.placement.map(Placement::from).unwrap_or_default(),
            role: Role::from(status.role.as_str()),
            term: status.term,
            leader_id: nonzero(status.leader_id),
            leader_addr: (!status.leader_addr.is_empty()).then_some(status.leader_addr),
            applied_revision: status.applied_revision,
            last_log_index: status.last_log_index,
            committed_index: status.committed_index,
            state_digest: status.state_digest,
        }
    }
}

pub(crate) fn members_from_pb(response: pb::MembershipResponse) -> Vec<Member> {
    response.members.into_iter().map(Member::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_round_trips_and_keeps_unknown_names() {
        for name in ["leader", "follower", "candidate", "learner", "shutdown", "witness"] {
            assert_eq!(Role::from(name).to_string(), name);
        }
        assert_eq!(Role::from("witness"), Role::Other("witness".to_owned()));
    }

    #[test]
    fn zero_leader_means_none() {
        let status = NodeStatus::from(pb::StatusResponse::default());
        assert_eq!(status.leader_id, None);
        assert_eq!(status.leader_addr, None);
        let members = Members::from(pb::MembersResponse::default());
        assert_eq!(members.leader_id, None);
    }
}
