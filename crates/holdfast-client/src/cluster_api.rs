//! Cluster calls on the client: node status, membership, and membership changes.

use holdfast_proto::v1 as pb;
use pb::cluster_client::ClusterClient;
use tonic::{Code, Response};

use crate::client::Client;
use crate::error::ClientError;
use crate::member::{members_from_pb, Member, Members, NodeStatus, Placement};
use crate::retry::{Policy, Route};

/// One endpoint's answer to a status call.
#[derive(Debug)]
pub struct EndpointStatus {
    /// The endpoint asked (`http://host:port`).
    pub endpoint: String,
    pub status: Result<NodeStatus, ClientError>,
}

impl Client {
    /// The status of the node at `endpoint`, in one attempt: status is for
    /// observing the cluster, and a retry would hide a flaky node.
    pub async fn status(&self, endpoint: &str) -> Result<NodeStatus, ClientError> {
        let pinned = self.on_endpoint(endpoint)?;
        let policy = Policy { max_retries: 0, ..pinned.idempotent_policy(Route::Any) };
        let response = pinned
            .call(policy, |channel| async move {
                ClusterClient::new(channel)
                    .status(pb::StatusRequest { include_digest: true })
                    .await
                    .map(Response::into_inner)
            })
            .await?;
        Ok(NodeStatus::from(response))
    }

    /// The status of every known endpoint, asked concurrently, in endpoint
    /// order. An unreachable endpoint yields an error entry, not a failure.
    pub async fn status_all(&self) -> Vec<EndpointStatus> {
        let handles: Vec<_> = self
            .endpoints()
            .into_iter()
            .map(|endpoint| {
                let client = self.clone();
                let task_endpoint = endpoint.clone();
                let handle = tokio::spawn(async move { client.status(&task_endpoint).await });
                (endpoint, handle)
            })
            .collect();
        let mut statuses = Vec::with_capacity(handles.len());
        for (endpoint, handle) in handles {
            let status = handle.await.unwrap_or_else(|join_error| {
                Err(ClientError::Status { code: Code::Unknown, message: format!("status task failed: {join_error}") })
            });
            statuses.push(EndpointStatus { endpoint, status });
        }
        statuses
    }

    /// The membership and the failures it survives, as the leader sees it.
    pub async fn members(&self) -> Result<Members, ClientError> {
        let policy = self.idempotent_policy(Route::Leader);
        let response = self
            .call(policy, |channel| async move {
                ClusterClient::new(channel).members(pb::MembersRequest {}).await.map(Response::into_inner)
            })
            .await?;
        Ok(Members::from(response))
    }

    /// Adds node `id` at `addr` (`host:port`) as a learner; returns the new
    /// membership once it has caught up.
    pub async fn add_learner(&self, id: u64, addr: &str, placement: Placement) -> Result<Vec<Member>, ClientError> {
        let request = pb::AddLearnerRequest { id, addr: addr.to_owned(), placement: Some(placement.into()) };
        let response = self
            .call(self.membership_policy(), |channel| {
                let request = request.clone();
                async move { ClusterClient::new(channel).add_learner(request).await.map(Response::into_inner) }
            })
            .await?;
        Ok(members_from_pb(response))
    }

    /// Makes learner `id` a voter. Refused when the new voter set would break
    /// the placement rule, unless `force`.
    pub async fn promote(&self, id: u64, force: bool) -> Result<Vec<Member>, ClientError> {
        let request = pb::PromoteRequest { id, force };
        let response = self
            .call(self.membership_policy(), |channel| async move {
                ClusterClient::new(channel).promote(request).await.map(Response::into_inner)
            })
            .await?;
        Ok(members_from_pb(response))
    }

    /// Removes node `id`. Refused when the remaining voters would break the
    /// placement rule, unless `force`.
    pub async fn remove(&self, id: u64, force: bool) -> Result<Vec<Member>, ClientError> {
        let request = pb::RemoveRequest { id, force };
        let response = self
            .call(self.membership_policy(), |channel| async move {
                ClusterClient::new(channel).remove(request).await.map(Response::into_inner)
            })
            .await?;
        Ok(members_from_pb(response))
    }
}
