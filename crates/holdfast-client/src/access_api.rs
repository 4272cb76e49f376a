//! Access control and audit calls: grant, revoke, list, who-am-i, and a
//! record's access trail.

use holdfast_proto::v1 as pb;
use holdfast_proto::v1::access_client::AccessClient;
use holdfast_proto::v1::audit_client::AuditClient;
use tonic::Response;

use crate::client::Client;
use crate::error::ClientError;
use crate::retry::Route;

/// Permissions of one identity on one scope (a registry, or `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub identity: String,
    pub scope: String,
    pub permissions: Vec<String>,
}

impl From<pb::AccessGrant> for Grant {
    fn from(g: pb::AccessGrant) -> Self {
        Self { identity: g.identity, scope: g.scope, permissions: g.permissions }
    }
}

/// The whole policy, as the leader has applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessList {
    pub grants: Vec<Grant>,
    /// Cluster administrators by node configuration.
    pub configured_admins: Vec<String>,
}

/// Who this client is to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhoAmI {
    /// Empty on a plaintext connection.
    pub identity: String,
    pub authenticated: bool,
    pub grants: Vec<Grant>,
    pub cluster_admin: bool,
}

/// One audited access to a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub time_ms: u64,
    pub identity: String,
    /// `get`, `history`, `scan`, `put`, `delete`, `read-audit`.
    pub op: String,
    pub revision: u64,
    /// `ok`, `denied`, `not-found`, `conflict`, `failed`.
    pub outcome: String,
    /// The node that served the request.
    pub node: u64,
}

/// One page of a record's trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass back to get the next page; `None` at the end.
    pub next_page_token: Option<Vec<u8>>,
}

impl Client {
    /// Adds `permissions` (`read`, `write`, `audit`, `admin`) for `identity`
    /// on `scope` (a registry name or `*`). Returns the revision it was
    /// applied at. Granting twice is harmless, so an unknown outcome is
    /// retried.
    pub async fn grant(&self, identity: &str, scope: &str, permissions: &[&str]) -> Result<u64, ClientError> {
        let request = pb::GrantRequest {
            identity: identity.to_string(),
            scope: scope.to_string(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
        };
        let response = self
            .call(self.idempotent_policy(Route::Leader), |channel| {
                let request = request.clone();
                async move { AccessClient::new(channel).grant(request).await.map(Response::into_inner) }
            })
            .await?;
        Ok(response.revision)
    }

    /// Removes `permissions` of `identity` on `scope`.
    pub async fn revoke(&self, identity: &str, scope: &str, permissions: &[&str]) -> Result<u64, ClientError> {
        let request = pb::RevokeRequest {
            identity: identity.to_string(),
            scope: scope.to_string(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
        };
        let response = self
            .call(self.membership_policy(), |channel| {
                let request = request.clone();
                async move { AccessClient::new(channel).revoke(request).await.map(Response::into_inner) }
            })
            .await?;
        Ok(response.revision)
    }

    /// Every grant (needs `admin` on `*`).
    pub async fn list_access(&self) -> Result<AccessList, ClientError> {
        let response = self
            .call(self.idempotent_policy(Route::Leader), |channel| async move {
                AccessClient::new(channel).list(pb::ListAccessRequest {}).await.map(Response::into_inner)
            })
            .await?;
        Ok(AccessList {
            grants: response.grants.into_iter().map(Grant::from).collect(),
            configured_admins: response.configured_admins,
        })
    }

    /// The identity the cluster sees for this client, and its grants.
    pub async fn who_am_i(&self) -> Result<WhoAmI, ClientError> {
        let response = self
            .call(self.idempotent_policy(Route::Any), |channel| async move {
                AccessClient::new(channel).who_am_i(pb::WhoAmIRequest {}).await.map(Response::into_inner)
            })
            .await?;
        Ok(WhoAmI {
            identity: response.identity,
            authenticated: response.authenticated,
            grants: response.grants.into_iter().map(Grant::from).collect(),
            cluster_admin: response.cluster_admin,
        })
    }

    /// One page of the access trail of a record, oldest first (needs `audit`
    /// on the registry; the query itself is recorded). `reads_only` keeps
    /// only reads: who looked at the record.
    pub async fn audit_trail(
        &self,
        registry: &str,
        record_id: impl AsRef<[u8]>,
        reads_only: bool,
        page_token: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<AuditPage, ClientError> {
        let request = pb::TrailRequest {
            registry: registry.to_string(),
            record_id: record_id.as_ref().to_vec(),
            reads_only,
            page_token: page_token.unwrap_or_default(),
            limit,
        };
        let response = self
            .call(self.idempotent_policy(Route::Leader), |channel| {
                let request = request.clone();
                async move { AuditClient::new(channel).trail(request).await.map(Response::into_inner) }
            })
            .await?;
        Ok(AuditPage {
            entries: response
                .entries
                .into_iter()
                .map(|e| AuditEntry {
                    time_ms: e.time_ms,
                    identity: e.identity,
                    op: e.op,
                    revision: e.revision,
                    outcome: e.outcome,
                    node: e.node,
                })
                .collect(),
            next_page_token: (!response.next_page_token.is_empty()).then_some(response.next_page_token),
        })
    }

    /// Every entry of a record's trail, following pages.
    pub async fn audit_trail_all(
        &self,
        registry: &str,
        record_id: impl AsRef<[u8]>,
        reads_only: bool,
    ) -> Result<Vec<AuditEntry>, ClientError> {
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let page = self.audit_trail(registry, record_id.as_ref(), reads_only, token, 1000).await?;
            all.extend(page.entries);
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }
}
