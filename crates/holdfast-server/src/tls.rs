//! The node's TLS material: loading the CA bundle, certificate and key from
//! disk, the rustls server config built from them (client certificates
//! required), and reloading both when the files change, without a restart.
//!
//! The current material sits in one swappable cell with a generation number;
//! the accept loop takes the server config per connection and the peer
//! network rebuilds its channels when the generation moves, so new
//! connections use new material while established ones carry on.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

use crate::config::TlsFiles;

/// The protocol both ends speak inside TLS: gRPC runs over HTTP/2 only.
const ALPN_H2: &[u8] = b"h2";

/// A TLS file set that cannot be used: which file and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} {path}: {reason}")]
pub struct TlsError {
    pub what: &'static str,
    pub path: String,
    pub reason: String,
}

impl TlsError {
    fn new(what: &'static str, path: &Path, reason: impl std::fmt::Display) -> Self {
        Self { what, path: path.display().to_string(), reason: reason.to_string() }
    }
}

/// The PEM bytes of one consistent file set, as peers are dialled with them.
#[derive(Clone)]
pub(crate) struct TlsMaterial {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// What identifies a version of the files without reading them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<Option<(SystemTime, u64)>>);

fn stamp_of(files: &TlsFiles) -> Stamp {
    Stamp(
        [&files.ca, &files.cert, &files.key]
            .iter()
            .map(|p| std::fs::metadata(p).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())))
            .collect(),
    )
}

struct Current {
    server: Arc<ServerConfig>,
    material: Arc<TlsMaterial>,
    stamp: Stamp,
}

/// The node's live TLS state, shared by the accept loop, the peer network
/// and the reload task.
pub struct TlsState {
    files: TlsFiles,
    current: RwLock<Current>,
    generation: AtomicU64,
    reloads_failed: AtomicU64,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState").field("files", &self.files).field("generation", &self.generation).finish()
    }
}

impl TlsState {
    /// Loads the files once; a node whose TLS files are unusable does not start.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let stamp = stamp_of(&files);
        let (server, material) = build(&files)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Current { server, material, stamp }),
            generation: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        }))
    }

    /// The config new inbound connections are accepted with.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        self.read().server.clone()
    }

    /// The material peers are dialled with, and its generation.
    pub(crate) fn material(&self) -> (Arc<TlsMaterial>, u64) {
        let current = self.read();
        (current.material.clone(), self.generation())
    }

    /// Bumped on every successful reload.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reloads that found an unusable file set (the old one stayed).
    pub(crate) fn reloads_failed(&self) -> u64 {
        self.reloads_failed.load(Ordering::Relaxed)
    }

    /// Loads the files again if `force` or they changed since the last
    /// load. Returns whether new material is now in use; on an unusable set
    /// the old material stays and the error says which file and why.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let stamp = stamp_of(&self.files);
        if !force && stamp == self.read().stamp {
            return Ok(false);
        }
        match build(&self.files) {
            Ok((server, material)) => {
                let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
                *current = Current { server, material, stamp };
                self.generation.fetch_add(1, Ordering::AcqRel);
                Ok(true)
            }
            Err(e) => {
                // Remember the stamp so a broken set is reported once, not
                // on every poll; fixing any file changes the stamp again.
                self.current.write().unwrap_or_else(|p| p.into_inner()).stamp = stamp;
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        // Writers replace the whole value in one assignment: a poisoned lock
        // still holds a consistent one.
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Polls the files every `interval` and reloads them when they change,
/// until shutdown.
pub(crate) async fn watch_files(state: Arc<TlsState>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let state = state.clone();
        // stat and read are blocking file IO.
        match tokio::task::spawn_blocking(move || state.reload(false)).await {
            Ok(Ok(true)) => tracing::info!("TLS files changed: new connections use the new certificates"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!("TLS reload refused, keeping the current certificates: {e}"),
            Err(e) => tracing::error!("TLS reload task failed: {e}"),
        }
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::new(what, path, e))
}

/// Reads the three files and builds the server config, checking each file.
fn build(files: &TlsFiles) -> Result<(Arc<ServerConfig>, Arc<TlsMaterial>), TlsError> {
    let material = TlsMaterial {
        ca_pem: read_file("CA file", &files.ca)?,
        cert_pem: read_file("certificate file", &files.cert)?,
        key_pem: read_file("key file", &files.key)?,
    };
    let roots = parse_certs(&material.ca_pem).map_err(|e| TlsError::new("CA file", &files.ca, e))?;
    let chain = parse_certs(&material.cert_pem).map_err(|e| TlsError::new("certificate file", &files.cert, e))?;
    let key = PrivateKeyDer::from_pem_slice(&material.key_pem)
        .map_err(|e| TlsError::new("key file", &files.key, format!("no usable private key ({e})")))?;
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root).map_err(|e| TlsError::new("CA file", &files.ca, e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::new("key file", &files.key, format!("unusable private key ({e})")))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| TlsError::new("CA file", &files.ca, e))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::new("certificate file", &files.cert, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::new("certificate file", &files.cert, format!("does not match the key: {e}")))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok((Arc::new(config), Arc::new(material)))
}

/// Every certificate in a PEM file; at least one.
fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("malformed PEM ({e})"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, Validity};

    fn write_set(dir: &Path, ca: &Ca) -> TlsFiles {
        let node = ca.issue_node(1, &[], Validity::days(1)).expect("node");
        let files = TlsFiles { ca: dir.join("ca.pem"), cert: dir.join("node.pem"), key: dir.join("node.key") };
        std::fs::write(&files.ca, ca.cert_pem()).expect("write");
        std::fs::write(&files.cert, node.cert_pem).expect("write");
        std::fs::write(&files.key, node.key_pem).expect("write");
        files
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = Ca::generate("ca").expect("ca");
        let files = write_set(dir.path(), &ca);
        let state = TlsState::load(files.clone()).expect("valid set");
        std::fs::write(&files.key, "garbage").expect("write");
        let err = state.reload(false).expect_err("bad key");
        assert_eq!(err.what, "key file");
        assert_eq!(state.generation(), 0, "the old material stays");
        std::fs::write(&files.ca, "").expect("write");
        assert_eq!(TlsState::load(files.clone()).expect_err("empty ca").what, "CA file");
        std::fs::remove_file(&files.cert).expect("rm");
        assert_eq!(TlsState::load(files).expect_err("missing cert").what, "certificate file");
    }

    #[test]
    fn a_changed_set_bumps_the_generation() {
        let dir = tempfile::tempdir().expect("dir");
        let files = write_set(dir.path(), &Ca::generate("ca").expect("ca"));
        let state = TlsState::load(files.clone()).expect("valid set");
        assert!(!state.reload(false).expect("unchanged"));
        // A new key from another CA: a different length, so the stamp moves
        // even within the file system's timestamp granularity.
        let other = Ca::generate("another ca with a longer name").expect("ca");
        let bundle = format!("{}{}", std::fs::read_to_string(&files.ca).expect("read"), other.cert_pem());
        std::fs::write(&files.ca, bundle).expect("write");
        assert!(state.reload(false).expect("changed"));
        assert_eq!(state.generation(), 1);
    }
}
