//! Who may do what: identities, permissions per registry, and the replicated
//! access policy that the nodes enforce.
//!
//! An identity is what a client's certificate says it is (its subject CN, or
//! a SAN). A grant gives an identity a set of permissions on one registry or
//! on every registry (`*`). `admin` on `*` is the cluster administrator: it
//! implies every permission everywhere and is needed for cluster operations.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::record::{RegistryName, ValidationError};

/// Longest identity a grant may name: certificate subjects are short names.
pub const IDENTITY_BYTES_MAX: usize = 256;

/// Identities of this form belong to cluster nodes; they cannot be granted
/// access to records.
pub const NODE_IDENTITY_PREFIX: &str = "node-";

/// One permission on a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// get, history, scan.
    Read,
    /// put, delete.
    Write,
    /// Read the access audit trail of the registry's records.
    Audit,
    /// Every permission on the registry, and granting them to others. On
    /// `*`: cluster administration too.
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 4] = [Permission::Read, Permission::Write, Permission::Audit, Permission::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Audit => "audit",
            Permission::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self, AccessError> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| AccessError::UnknownPermission(s.to_string()))
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a grant covers: one registry, or all of them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    All,
    Registry(RegistryName),
}

impl Scope {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if s == "*" {
            Ok(Scope::All)
        } else {
            Ok(Scope::Registry(RegistryName::parse(s)?))
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::All => f.write_str("*"),
            Scope::Registry(r) => write!(f, "{r}"),
        }
    }
}

/// An access-control request that breaks a rule; nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("identity is empty")]
    IdentityEmpty,
    #[error("identity is {0} bytes, over the limit IDENTITY_BYTES_MAX = {IDENTITY_BYTES_MAX}")]
    IdentityTooLong(usize),
    #[error("identity {0:?} contains control characters")]
    IdentityMalformed(String),
    #[error("identity {0:?} is a node identity; nodes cannot be granted access to records")]
    NodeIdentity(String),
    #[error("unknown permission {0:?}: use read, write, audit or admin")]
    UnknownPermission(String),
    #[error("no permissions given")]
    NoPermissions,
}

/// Checks an identity named in a grant.
pub fn validate_identity(identity: &str) -> Result<(), AccessError> {
    if identity.is_empty() {
        return Err(AccessError::IdentityEmpty);
    }
    if identity.len() > IDENTITY_BYTES_MAX {
        return Err(AccessError::IdentityTooLong(identity.len()));
    }
    if identity.chars().any(char::is_control) {
        return Err(AccessError::IdentityMalformed(identity.to_string()));
    }
    if identity.starts_with(NODE_IDENTITY_PREFIX) {
        return Err(AccessError::NodeIdentity(identity.to_string()));
    }
    Ok(())
}

/// The replicated policy: the permissions of each identity on each scope.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccessPolicy {
    pub grants: BTreeMap<(String, Scope), BTreeSet<Permission>>,
}

impl AccessPolicy {
    /// Whether `identity` holds `wanted` on `registry` (`None`: a cluster
    /// operation, which needs `admin` on `*`).
    pub fn allows(&self, identity: &str, registry: Option<&RegistryName>, wanted: Permission) -> bool {
        let holds = |scope: Scope, p: Permission| {
            self.grants.get(&(identity.to_string(), scope)).is_some_and(|set| set.contains(&p))
        };
        if holds(Scope::All, Permission::Admin) {
            return true;
        }
        let Some(registry) = registry else {
            return false;
        };
        let scoped = Scope::Registry(registry.clone());
        holds(Scope::All, wanted) || holds(scoped.clone(), wanted) || holds(scoped, Permission::Admin)
    }

    /// Grants in a stable order, for listing.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Scope, &BTreeSet<Permission>)> {
        self.grants.iter().map(|((identity, scope), set)| (identity.as_str(), scope, set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(grants: &[(&str, &str, &[Permission])]) -> AccessPolicy {
        let mut p = AccessPolicy::default();
        for (identity, scope, perms) in grants {
            p.grants.insert((identity.to_string(), Scope::parse(scope).unwrap()), perms.iter().copied().collect());
        }
        p
    }

    #[test]
    fn grants_are_per_registry_and_permission() {
        let pop = RegistryName::parse("population").unwrap();
        let pass = RegistryName::parse("passports").unwrap();
        let p = policy(&[
            ("population-service", "population", &[Permission::Read, Permission::Write]),
            ("reader", "*", &[Permission::Read]),
            ("pop-admin", "population", &[Permission::Admin]),
            ("root", "*", &[Permission::Admin]),
        ]);
        assert!(p.allows("population-service", Some(&pop), Permission::Write));
        assert!(!p.allows("population-service", Some(&pass), Permission::Read));
        assert!(!p.allows("population-service", Some(&pop), Permission::Audit));
        assert!(!p.allows("population-service", None, Permission::Admin));
        assert!(p.allows("reader", Some(&pass), Permission::Read));
        assert!(!p.allows("reader", Some(&pass), Permission::Write));
        assert!(p.allows("pop-admin", Some(&pop), Permission::Audit));
        assert!(!p.allows("pop-admin", Some(&pass), Permission::Read));
        assert!(!p.allows("pop-admin", None, Permission::Admin));
        assert!(p.allows("root", Some(&pass), Permission::Write));
        assert!(p.allows("root", None, Permission::Admin));
        assert!(!p.allows("stranger", Some(&pop), Permission::Read));
    }

    #[test]
    fn identities_are_validated() {
        assert_eq!(validate_identity(""), Err(AccessError::IdentityEmpty));
        assert!(matches!(validate_identity("node-3"), Err(AccessError::NodeIdentity(_))));
        assert!(matches!(validate_identity("a\nb"), Err(AccessError::IdentityMalformed(_))));
        assert!(matches!(validate_identity(&"x".repeat(300)), Err(AccessError::IdentityTooLong(300))));
        assert!(validate_identity("population-service").is_ok());
        assert!(Permission::parse("admin").is_ok());
        assert!(Permission::parse("root").is_err());
        assert_eq!(Scope::parse("*").unwrap(), Scope::All);
        assert!(Scope::parse("Bad Name").is_err());
    }
}
