//! `holdfast.v1.Access` (grants, revokes, listing, who-am-i) and
//! `holdfast.v1.Audit` (a record's access trail).
//!
//! Policy changes are Raft commands like writes, so every node enforces the
//! same policy once it has applied them.

use holdfast_proto::v1 as pb;
use holdfast_proto::v1::access_server::Access;
use holdfast_proto::v1::audit_server::Audit;
use holdfast_storage::{Raft, ReadView};
use holdfast_types::access::{validate_identity, AccessError};
use holdfast_types::record::{page_limit, validate_record_id};
use holdfast_types::{AccessPolicy, AuditOp, AuditOutcome, Command, CommandResult, Permission, RegistryName, Scope};
use tonic::{Request, Response, Status};

use crate::audit::Auditor;
use crate::auth::{Authorizer, Caller};
use crate::error::{to_status, ServerError};
use crate::records::RecordCodec;

/// Length of an audit page token: log index (8) and position (4).
const TRAIL_TOKEN_BYTES: usize = 12;

impl From<AccessError> for ServerError {
    fn from(e: AccessError) -> Self {
        ServerError::InvalidArgument(e.to_string())
    }
}

/// Serves access control for one node.
pub struct AccessService {
    raft: Raft,
    view: ReadView,
    auth: Authorizer,
}

impl AccessService {
    pub fn new(raft: Raft, view: ReadView, auth: Authorizer) -> Self {
        Self { raft, view, auth }
    }

    /// Validates a grant or revoke and checks that the caller administers
    /// its scope: `admin` on the registry, or on `*` for a `*` grant.
    fn prepare(
        &self,
        caller: &Caller,
        identity: &str,
        scope: &str,
        permissions: &[String],
    ) -> Result<(Scope, Vec<Permission>), ServerError> {
        validate_identity(identity)?;
        let scope = Scope::parse(scope)?;
        if permissions.is_empty() {
            return Err(AccessError::NoPermissions.into());
        }
        let mut parsed = permissions.iter().map(|p| Permission::parse(p)).collect::<Result<Vec<_>, _>>()?;
        parsed.sort();
        parsed.dedup();
        match &scope {
            Scope::All => self.auth.check(caller, None, Permission::Admin)?,
            Scope::Registry(registry) => self.auth.check(caller, Some(registry), Permission::Admin)?,
        }
        Ok((scope, parsed))
    }

    /// A grant or revoke: validated, checked, proposed, logged.
    async fn change(
        &self,
        caller: &Caller,
        identity: String,
        scope: &str,
        permissions: &[String],
        grant: bool,
    ) -> Result<pb::AccessResponse, ServerError> {
        let (parsed_scope, permissions) = self.prepare(caller, &identity, scope, permissions)?;
        let command = if grant {
            Command::Grant { identity: identity.clone(), scope: parsed_scope, permissions }
        } else {
            Command::Revoke { identity: identity.clone(), scope: parsed_scope, permissions }
        };
        let revision = self.propose(command).await?;
        let verb = if grant { "granted access" } else { "revoked access" };
        tracing::info!(by = caller.name(), identity = %identity, scope = %scope, "{verb}");
        Ok(pb::AccessResponse { revision })
    }

    async fn propose(&self, command: Command) -> Result<u64, ServerError> {
        match crate::writes::propose_as_leader(&self.raft, command).await? {
            CommandResult::Written { revision } => Ok(revision),
            CommandResult::NotFound => {
                Err(ServerError::NotFound("the identity holds none of those permissions on that scope".into()))
            }
            other => Err(ServerError::Raft(format!("unexpected apply result {other:?}"))),
        }
    }
}

fn grants_to_pb<'a>(
    grants: impl Iterator<Item = (&'a str, &'a Scope, &'a std::collections::BTreeSet<Permission>)>,
) -> Vec<pb::AccessGrant> {
    grants
        .map(|(identity, scope, set)| pb::AccessGrant {
            identity: identity.to_string(),
            scope: scope.to_string(),
            permissions: set.iter().map(|p| p.as_str().to_string()).collect(),
        })
        .collect()
}

#[tonic::async_trait]
impl Access for AccessService {
    async fn grant(&self, request: Request<pb::GrantRequest>) -> Result<Response<pb::AccessResponse>, Status> {
        let caller = self.auth.caller(&request);
        let req = request.into_inner();
        let changed = self.change(&caller, req.identity, &req.scope, &req.permissions, true).await;
        changed.map(Response::new).map_err(to_status)
    }

    async fn revoke(&self, request: Request<pb::RevokeRequest>) -> Result<Response<pb::AccessResponse>, Status> {
        let caller = self.auth.caller(&request);
        let req = request.into_inner();
        let changed = self.change(&caller, req.identity, &req.scope, &req.permissions, false).await;
        changed.map(Response::new).map_err(to_status)
    }

    async fn list(&self, request: Request<pb::ListAccessRequest>) -> Result<Response<pb::ListAccessResponse>, Status> {
        let caller = self.auth.caller(&request);
        let run = async {
            self.auth.check(&caller, None, Permission::Admin)?;
            // Linearizable: a grant just made is listed.
            crate::read_barrier::ensure_linearizable(&self.raft, &self.view).await?;
            let policy = self.auth.policy();
            Ok(pb::ListAccessResponse {
                grants: grants_to_pb(policy.entries()),
                configured_admins: self.auth.configured_admins().map(str::to_string).collect(),
            })
        };
        run.await.map(Response::new).map_err(to_status)
    }

    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = self.auth.caller(&request);
        let policy: AccessPolicy = self.auth.policy();
        let identity = match &caller {
            Caller::Identity(identity) => identity.clone(),
            _ => String::new(),
        };
        let mine = policy.entries().filter(|(who, _, _)| *who == identity);
        Ok(Response::new(pb::WhoAmIResponse {
            authenticated: matches!(caller, Caller::Identity(_)),
            grants: grants_to_pb(mine),
            cluster_admin: self.auth.allows(&caller, None, Permission::Admin),
            identity,
        }))
    }
}

/// Serves the audit trail for one node.
pub struct AuditService {
    raft: Raft,
    view: ReadView,
    codec: RecordCodec,
    auth: Authorizer,
    auditor: Auditor,
}

impl AuditService {
    pub fn new(raft: Raft, view: ReadView, codec: RecordCodec, auth: Authorizer, auditor: Auditor) -> Self {
        Self { raft, view, codec, auth, auditor }
    }
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn trail(&self, request: Request<pb::TrailRequest>) -> Result<Response<pb::TrailResponse>, Status> {
        let caller = self.auth.caller(&request);
        let req = request.into_inner();
        let run = async {
            let registry = RegistryName::parse(&req.registry)?;
            validate_record_id(&req.record_id)?;
            let limit = page_limit(req.limit)?;
            let after = match req.page_token.len() {
                0 => None,
                TRAIL_TOKEN_BYTES => Some(req.page_token),
                n => {
                    return Err(ServerError::InvalidArgument(format!(
                        "page_token is {n} bytes; pass back the next_page_token of the previous page"
                    )))
                }
            };
            let record = self.codec.storage_record(&registry, &req.record_id);
            self.auditor.authorize(&self.auth, &caller, &registry, &record, AuditOp::ReadAudit, Permission::Audit)?;
            crate::read_barrier::ensure_linearizable(&self.raft, &self.view).await?;
            let page = self.view.audit_trail(registry.clone(), record.clone(), after, limit).await?;
            // Looking at who looked is itself recorded, before answering.
            let event = self.auditor.event(
                caller.name(),
                &registry,
                &record,
                AuditOp::ReadAudit,
                page.applied,
                AuditOutcome::Ok,
            );
            self.auditor.record_read(vec![event]).await?;
            let entries = page
                .events
                .into_iter()
                .filter(|e| !req.reads_only || e.op.is_read())
                .map(|e| pb::AuditEntry {
                    time_ms: e.time_ms,
                    identity: e.identity,
                    op: e.op.as_str().to_string(),
                    revision: e.revision,
                    outcome: e.outcome.as_str().to_string(),
                    node: e.node,
                })
                .collect();
            Ok(pb::TrailResponse {
                entries,
                next_page_token: page.next_after.unwrap_or_default(),
                applied_revision: page.applied,
            })
        };
        run.await.map(Response::new).map_err(to_status)
    }
}
