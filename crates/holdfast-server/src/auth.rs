//! Who is calling, and whether the replicated access policy lets them do
//! what they ask.
//!
//! On a TLS node every caller is authenticated by its client certificate and
//! everything is denied unless a grant (or the node's configured `admins`
//! list) allows it. A plaintext node (`insecure_transport`) cannot know who
//! calls: every caller is `anonymous` and nothing is checked.

use std::collections::BTreeSet;
use std::sync::Arc;

use holdfast_types::{AccessPolicy, Permission, RegistryName};
use tokio::sync::watch;
use tonic::Request;

use crate::error::ServerError;

/// The identity recorded for callers on a plaintext node.
pub const ANONYMOUS: &str = "anonymous";

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Authenticated by a client certificate.
    Identity(String),
    /// A plaintext connection: no identity is known.
    Anonymous,
    /// A TLS connection whose certificate names no usable identity.
    Unidentified,
}

impl Caller {
    /// The name written to history and the audit trail.
    pub fn name(&self) -> &str {
        match self {
            Caller::Identity(id) => id,
            Caller::Anonymous => ANONYMOUS,
            Caller::Unidentified => "unidentified",
        }
    }
}

/// Checks requests against the replicated policy.
#[derive(Clone)]
pub struct Authorizer {
    policy: watch::Receiver<AccessPolicy>,
    /// Cluster administrators by configuration (break-glass; the same list
    /// belongs on every node).
    admins: Arc<BTreeSet<String>>,
    /// False on plaintext nodes.
    enforce: bool,
}

impl Authorizer {
    pub fn new(policy: watch::Receiver<AccessPolicy>, admins: BTreeSet<String>, enforce: bool) -> Self {
        Self { policy, admins: Arc::new(admins), enforce }
    }

    /// Who sent `request`.
    pub fn caller<T>(&self, request: &Request<T>) -> Caller {
        if !self.enforce {
            return Caller::Anonymous;
        }
        match crate::identity::peer_identity(request) {
            Some(identity) if !identity.is_empty() => Caller::Identity(identity),
            _ => Caller::Unidentified,
        }
    }

    /// The identities configured as cluster administrators.
    pub fn configured_admins(&self) -> impl Iterator<Item = &str> {
        self.admins.iter().map(String::as_str)
    }

    /// The current replicated policy.
    pub fn policy(&self) -> AccessPolicy {
        self.policy.borrow().clone()
    }

    /// Whether `caller` holds `wanted` on `registry` (`None`: cluster-wide,
    /// which only administrators hold).
    pub fn allows(&self, caller: &Caller, registry: Option<&RegistryName>, wanted: Permission) -> bool {
        match caller {
            Caller::Anonymous => !self.enforce,
            Caller::Unidentified => false,
            Caller::Identity(identity) => {
                self.admins.contains(identity) || self.policy.borrow().allows(identity, registry, wanted)
            }
        }
    }

    /// `PERMISSION_DENIED` naming the identity and the missing permission
    /// unless `caller` holds `wanted`.
    pub fn check(
        &self,
        caller: &Caller,
        registry: Option<&RegistryName>,
        wanted: Permission,
    ) -> Result<(), ServerError> {
        if self.allows(caller, registry, wanted) {
            return Ok(());
        }
        let on = match registry {
            Some(registry) => format!("'{wanted}' on registry {registry}"),
            None => "'admin' on '*' (cluster administration)".to_string(),
        };
        Err(ServerError::PermissionDenied(match caller {
            Caller::Unidentified => format!("the client certificate names no identity; {on} is required"),
            _ => format!("identity '{}' lacks {on}", caller.name()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_types::Scope;

    #[test]
    fn enforcing_node_denies_unless_granted_or_configured() {
        let pop = RegistryName::parse("population").unwrap();
        let mut policy = AccessPolicy::default();
        policy.grants.insert(("svc".into(), Scope::Registry(pop.clone())), [Permission::Read].into());
        let (_tx, rx) = watch::channel(policy);
        let auth = Authorizer::new(rx, ["root".to_string()].into(), true);
        let svc = Caller::Identity("svc".into());
        assert!(auth.check(&svc, Some(&pop), Permission::Read).is_ok());
        let err = auth.check(&svc, Some(&pop), Permission::Write).unwrap_err().to_string();
        assert!(err.contains("'svc' lacks 'write' on registry population"), "{err}");
        assert!(auth.check(&svc, None, Permission::Admin).is_err());
        assert!(auth.check(&Caller::Identity("root".into()), None, Permission::Admin).is_ok());
        assert!(auth.check(&Caller::Unidentified, Some(&pop), Permission::Read).is_err());
        assert!(auth.check(&Caller::Anonymous, Some(&pop), Permission::Read).is_err());
    }

    #[test]
    fn plaintext_node_allows_anonymous() {
        let (_tx, rx) = watch::channel(AccessPolicy::default());
        let auth = Authorizer::new(rx, BTreeSet::new(), false);
        assert!(auth.check(&Caller::Anonymous, None, Permission::Admin).is_ok());
        assert_eq!(auth.caller(&Request::new(())), Caller::Anonymous);
    }
}
