//! Mutual TLS for the client: the CA bundle that node certificates must
//! chain to, and the certificate and key the client presents. Nodes are
//! verified under the host of the endpoint dialled (their certificates name
//! their advertised host, `localhost` and `127.0.0.1`).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::endpoint::normalize_endpoint_for;
use crate::error::ClientError;

/// The client's TLS material, PEM. Cheap enough to clone per client.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// CA certificates to trust (one or several, e.g. during a CA rotation).
    pub ca_pem: Vec<u8>,
    /// The client certificate (chain) presented to nodes; its subject names
    /// the caller.
    pub cert_pem: Vec<u8>,
    /// The private key of `cert_pem`.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientTls {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// From PEM bytes, checked: the CA and certificate hold at least one
    /// certificate each and the key parses.
    pub fn new(ca_pem: Vec<u8>, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<Self, ClientError> {
        let tls = Self { ca_pem, cert_pem, key_pem };
        tls.check("CA", "certificate", "key")?;
        Ok(tls)
    }

    /// Reads and checks the three PEM files; an error names the file that
    /// cannot be read or used.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, ClientError> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| ClientError::Tls(format!("cannot read {what} file {}: {e}", path.display())))
        };
        let tls = Self { ca_pem: read("CA", ca)?, cert_pem: read("certificate", cert)?, key_pem: read("key", key)? };
        let name = |what: &str, path: &Path| format!("{what} file {}", path.display());
        tls.check(&name("CA", ca), &name("certificate", cert), &name("key", key))?;
        Ok(tls)
    }

    /// The `--cacert/--cert/--key` triple of a command line: all three
    /// (TLS), or none (plaintext, `None`); anything else is an error.
    pub fn from_optional_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<Self>, ClientError> {
        match (ca, cert, key) {
            (Some(ca), Some(cert), Some(key)) => Self::from_files(ca, cert, key).map(Some),
            (None, None, None) => Ok(None),
            _ => Err(ClientError::Tls(
                "give all of --cacert, --cert and --key (or HOLDFAST_CACERT, HOLDFAST_CERT, HOLDFAST_KEY), or none for plaintext"
                    .into(),
            )),
        }
    }

    fn check(&self, ca: &str, cert: &str, key: &str) -> Result<(), ClientError> {
        certificates(&self.ca_pem).map_err(|e| ClientError::Tls(format!("{ca} {e}")))?;
        certificates(&self.cert_pem).map_err(|e| ClientError::Tls(format!("{cert} {e}")))?;
        PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| ClientError::Tls(format!("{key} holds no usable private key ({e})")))?;
        Ok(())
    }

    /// tonic's TLS settings for these files, for [`ClientTls::endpoint`]
    /// (the client itself dials with [`ClientTls::rustls_config`]); the
    /// server name comes from the endpoint's host.
    pub(crate) fn config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }

    /// The rustls settings the client dials nodes with (`dial.rs`): these
    /// CAs as the only roots, this certificate and key presented, HTTP/2
    /// by ALPN; a node is verified under the host dialled.
    pub(crate) fn rustls_config(&self) -> Result<Arc<ClientConfig>, ClientError> {
        let tls_error = |what: &str, e: &dyn std::fmt::Display| ClientError::Tls(format!("{what}: {e}"));
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca_pem) {
            let cert = cert.map_err(|e| tls_error("CA is not valid PEM", &e))?;
            roots.add(cert).map_err(|e| tls_error("CA certificate cannot be used", &e))?;
        }
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error("certificate is not valid PEM", &e))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| tls_error("no usable private key", &e))?;
        let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("TLS versions", &e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls_error("certificate and key cannot be used together", &e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// A tonic endpoint for one node (`host:port` or `https://host:port`)
    /// over this TLS, for tools that speak to a node's services directly
    /// (health checks, status polls).
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, ClientError> {
        let url = normalize_endpoint_for(addr, true)?;
        Endpoint::from_shared(url.clone())
            .and_then(|e| e.tls_config(self.config()))
            .map_err(|e| ClientError::InvalidEndpoint { endpoint: url, reason: e.to_string() })
    }
}

/// Checks that a PEM blob holds one certificate or more.
fn certificates(pem: &[u8]) -> Result<usize, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not valid PEM ({e})"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_and_invalid_files_are_named() {
        let dir = std::env::temp_dir();
        let missing = dir.join("holdfast-client-test-missing.pem");
        let err = ClientTls::from_files(&missing, &missing, &missing).expect_err("missing");
        assert!(err.to_string().contains("CA file") && err.to_string().contains("missing.pem"), "{err}");
        assert!(ClientTls::new(b"junk".to_vec(), Vec::new(), Vec::new()).is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        let tls = ClientTls { ca_pem: Vec::new(), cert_pem: Vec::new(), key_pem: b"SECRET".to_vec() };
        assert!(!format!("{tls:?}").contains("SECRET"));
    }
}
