//! Key management calls: rotate the data key, and see which keys seal how
//! many stored revisions.

use holdfast_proto::v1 as pb;
use holdfast_proto::v1::cluster_client::ClusterClient;
use tonic::Response;

use crate::client::Client;
use crate::error::ClientError;
use crate::retry::Route;

/// One data key and how many stored revisions it seals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: u32,
    pub current: bool,
    pub revisions: u64,
}

/// The cluster's keyring as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// False when the cluster stores plaintext (insecure test setups).
    pub encrypted: bool,
    pub current_key_id: u32,
    pub keys: Vec<KeyInfo>,
    /// Revisions still sealed under an older key; 0 when re-sealing is done.
    pub revisions_to_reseal: u64,
    pub applied_revision: u64,
}

impl From<pb::KeyStatusResponse> for KeyStatus {
    fn from(r: pb::KeyStatusResponse) -> Self {
        Self {
            encrypted: r.encrypted,
            current_key_id: r.current_key_id,
            keys: r
                .keys
                .into_iter()
                .map(|k| KeyInfo { id: k.id, current: k.current, revisions: k.revisions })
                .collect(),
            revisions_to_reseal: r.revisions_to_reseal,
            applied_revision: r.applied_revision,
        }
    }
}

impl Client {
    /// Makes a new data key current; older revisions are re-sealed in the
    /// background. Not retried after an unknown outcome (it has no request
    /// id): a second rotation would be harmless but surprising.
    pub async fn rotate_key(&self) -> Result<KeyStatus, ClientError> {
        let response = self
            .call(self.membership_policy(), |channel| async move {
                ClusterClient::new(channel).rotate_key(pb::RotateKeyRequest {}).await.map(Response::into_inner)
            })
            .await?;
        Ok(KeyStatus::from(response))
    }

    /// The keyring and re-sealing progress, as the leader sees it.
    pub async fn key_status(&self) -> Result<KeyStatus, ClientError> {
        let policy = self.idempotent_policy(Route::Leader);
        let response = self
            .call(policy, |channel| async move {
                ClusterClient::new(channel).key_status(pb::KeyStatusRequest {}).await.map(Response::into_inner)
            })
            .await?;
        Ok(KeyStatus::from(response))
    }
}
