//! A cluster's certificates on disk for tests and local clusters: one CA,
//! a certificate per node and per client identity, made on first use and
//! reused after (so a restarted cluster keeps its identities).

use std::path::{Path, PathBuf};

use holdfast_client::ClientTls;
use holdfast_server::pki::{self, Ca, Validity};
use holdfast_server::TlsFiles;
use holdfast_types::NodeId;

/// The identity of the client certificate harnesses use by default.
pub const ADMIN_IDENTITY: &str = "admin";

/// A directory holding `ca.pem`, `ca.key`, `node-<id>.pem/.key` and
/// `<identity>.pem/.key`.
#[derive(Debug)]
pub struct ClusterPki {
    dir: PathBuf,
    ca: Ca,
}

impl ClusterPki {
    /// Opens the CA in `dir`, making one (and the directory) if there is none.
    pub fn open_or_create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
        let ca = if cert.exists() {
            Ca::from_pem(&std::fs::read_to_string(&cert)?, &std::fs::read_to_string(&key)?)?
        } else {
            let ca = Ca::generate("holdfast cluster CA")?;
            pki::write_new(&key, ca.key_pem().as_bytes(), 0o600)?;
            pki::write_new(&cert, ca.cert_pem().as_bytes(), 0o644)?;
            ca
        };
        Ok(Self { dir: dir.to_path_buf(), ca })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Node `id`'s files, issued now if missing (SANs: `node-<id>`,
    /// `localhost`, `127.0.0.1`).
    pub fn node_files(&self, id: NodeId) -> anyhow::Result<TlsFiles> {
        let name = pki::node_identity(id);
        let (cert, key) = (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}.key")));
        if !cert.exists() {
            let issued = self.ca.issue_node(id, &[], Validity::days(pki::LEAF_VALID_DAYS_DEFAULT))?;
            pki::write_issued(&self.dir, &name, &issued)?;
        }
        Ok(TlsFiles { ca: self.ca_path(), cert, key })
    }

    /// The CA, certificate and key files of client `identity`, issued now
    /// if missing.
    pub fn client_files(&self, identity: &str) -> anyhow::Result<TlsFiles> {
        let (cert, key) = (self.dir.join(format!("{identity}.pem")), self.dir.join(format!("{identity}.key")));
        if !cert.exists() {
            let issued = self.ca.issue_client(identity, Validity::days(pki::LEAF_VALID_DAYS_DEFAULT))?;
            pki::write_issued(&self.dir, identity, &issued)?;
        }
        Ok(TlsFiles { ca: self.ca_path(), cert, key })
    }

    /// Client `identity`'s TLS material, issued now if missing.
    pub fn client_tls(&self, identity: &str) -> anyhow::Result<ClientTls> {
        let files = self.client_files(identity)?;
        Ok(ClientTls::from_files(&files.ca, &files.cert, &files.key)?)
    }
}
