//! Who is calling: the identity in the client certificate of a request that
//! came over mutual TLS.

use std::collections::HashMap;
use std::sync::Mutex;

use holdfast_types::NodeId;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The prefix of node identities: node `n` holds a certificate for `node-n`.
const NODE_PREFIX: &str = "node-";

/// The caller's identity: the subject common name of its certificate, else
/// its first DNS name, else its first URI. `None` on a plaintext connection
/// or a certificate that names nothing (the TLS layer has already verified
/// the chain; this only reads it).
pub fn peer_identity<T>(request: &tonic::Request<T>) -> Option<String> {
    let certs = request.peer_certs()?;
    cached_identity_of(certs.first()?.as_ref())
}

/// Certificates whose identity was read, at most this many (then the cache
/// starts over): a cluster has a handful of nodes and client identities.
const IDENTITY_CACHE_MAX: usize = 1024;

/// [`identity_of`], remembered per certificate: every request and every
/// Raft RPC names its caller, and parsing X.509 each time cost 3-4 % of a
/// leader's CPU. The identity is a function of the certificate's bytes
/// alone, so a cached answer is always the answer.
fn cached_identity_of(der: &[u8]) -> Option<String> {
    type Identities = HashMap<Box<[u8]>, Option<String>>;
    static CACHE: Mutex<Option<Identities>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(identity) = cache.get(der) {
        return identity.clone();
    }
    let identity = identity_of(der);
    if cache.len() >= IDENTITY_CACHE_MAX {
        cache.clear();
    }
    cache.insert(der.into(), identity.clone());
    identity
}

/// The identity in a DER certificate, by the rules of [`peer_identity`].
pub fn identity_of(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    if let Some(cn) = cert.subject().iter_common_name().find_map(|cn| cn.as_str().ok()) {
        if !cn.is_empty() {
            return Some(cn.to_owned());
        }
    }
    let san = cert.subject_alternative_name().ok().flatten()?;
    let names = &san.value.general_names;
    let dns = names.iter().find_map(|n| match n {
        GeneralName::DNSName(name) => Some(*name),
        _ => None,
    });
    let uri = || {
        names.iter().find_map(|n| match n {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
    };
    dns.or_else(uri).map(str::to_owned)
}

/// The node id in a node identity (`node-7` → 7).
pub fn node_id_of(identity: &str) -> Option<NodeId> {
    let digits = identity.strip_prefix(NODE_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, Validity};
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem").1.contents
    }

    fn self_signed(params: CertificateParams) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn cached_identities_are_the_parsed_ones() {
        let ca = Ca::generate("ca").expect("ca");
        let certs: Vec<Vec<u8>> = (0..3)
            .map(|i| der(&ca.issue_client(&format!("svc-{i}"), Validity::days(1)).expect("client").cert_pem))
            .collect();
        for _ in 0..2 {
            for (i, cert) in certs.iter().enumerate() {
                assert_eq!(cached_identity_of(cert).as_deref(), Some(format!("svc-{i}").as_str()));
            }
        }
        assert_eq!(cached_identity_of(b"not a certificate"), None);
        assert_eq!(cached_identity_of(b"not a certificate"), None);
    }

    #[test]
    fn common_name_comes_first() {
        let ca = Ca::generate("ca").expect("ca");
        let node = ca.issue_node(4, &["n4.internal".into()], Validity::days(1)).expect("node");
        assert_eq!(identity_of(&der(&node.cert_pem)).as_deref(), Some("node-4"));
        let client = ca.issue_client("population-service", Validity::days(1)).expect("client");
        assert_eq!(identity_of(&der(&client.cert_pem)).as_deref(), Some("population-service"));
    }

    #[test]
    fn falls_back_to_dns_then_uri() {
        let mut params = CertificateParams::new(vec!["svc.example".to_owned()]).expect("params");
        params.distinguished_name.remove(DnType::CommonName);
        assert_eq!(identity_of(&self_signed(params)).as_deref(), Some("svc.example"));

        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.remove(DnType::CommonName);
        params.subject_alt_names = vec![SanType::URI("spiffe://registry/passport-service".try_into().expect("uri"))];
        assert_eq!(identity_of(&self_signed(params)).as_deref(), Some("spiffe://registry/passport-service"));

        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.remove(DnType::CommonName);
        assert_eq!(identity_of(&self_signed(params)), None);
        assert_eq!(identity_of(b"not a certificate"), None);
    }

    #[test]
    fn plaintext_request_has_no_identity() {
        assert_eq!(peer_identity(&tonic::Request::new(())), None);
    }

    #[test]
    fn node_ids_parse_strictly() {
        assert_eq!(node_id_of("node-12"), Some(12));
        for bad in ["node-", "node-x", "node--1", "node-+1", "auditor", "Node-1", "node-1 "] {
            assert_eq!(node_id_of(bad), None, "{bad}");
        }
    }
}
