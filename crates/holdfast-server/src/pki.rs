//! Issuing the cluster's certificates: a CA, node certificates
//! (`CN=node-<id>`, serving and dialling) and client certificates
//! (`CN=<identity>`, dialling only), all ECDSA P-256 and PEM-encoded.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use holdfast_types::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// How long a CA is valid unless told otherwise: roots are rotated rarely
/// and by overlap, so ten years.
pub const CA_VALID_DAYS_DEFAULT: u64 = 3650;
/// How long node and client certificates are valid unless told otherwise.
pub const LEAF_VALID_DAYS_DEFAULT: u64 = 825;
/// Certificates start this long before they are made, so a peer whose clock
/// is a little behind does not see a certificate from the future.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// A certificate that cannot be made or a CA that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0} is not a usable CA: {1}")]
    BadCa(&'static str, String),
    #[error("invalid name {0:?}: use letters, digits, '.', '-' and '_'")]
    BadName(String),
    #[error("{} already exists; refusing to overwrite it", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From a little before now for `days` days.
    pub fn days(days: u64) -> Self {
        let now = SystemTime::now();
        Self {
            not_before: now.checked_sub(CLOCK_SKEW).unwrap_or(now),
            not_after: now + Duration::from_secs(days.saturating_mul(86_400)),
        }
    }
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority that signs node and client certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed CA named `name`, valid for the default ten years.
    pub fn generate(name: &str) -> Result<Ca, PkiError> {
        Self::generate_valid(name, Validity::days(CA_VALID_DAYS_DEFAULT))
    }

    /// A new self-signed CA valid for `validity`.
    pub fn generate_valid(name: &str, validity: Validity) -> Result<Ca, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params, validity);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Ca { issuer: Issuer::new(params, key), cert_pem: cert.pem(), key_pem })
    }

    /// A CA made earlier, to issue more certificates under it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::BadCa("the CA key", e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| PkiError::BadCa("the CA certificate", e.to_string()))?;
        Ok(Ca { issuer, cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned() })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A node's certificate: `CN=node-<id>`, SANs `node-<id>`, `hosts` (DNS
    /// names or IP addresses), `localhost` and `127.0.0.1`; usable to serve
    /// and to dial. Peers verify it under the name `node-<id>`, clients under
    /// the host they dialled.
    pub fn issue_node(&self, id: NodeId, hosts: &[String], validity: Validity) -> Result<Issued, PkiError> {
        let name = node_identity(id);
        let mut sans = vec![name.clone()];
        for host in hosts.iter().map(|h| h.trim()).chain(["localhost", "127.0.0.1"]) {
            if !host.is_empty() && !sans.iter().any(|s| s == host) {
                sans.push(host.to_owned());
            }
        }
        let usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(&name, sans, usages, validity)
    }

    /// A client's certificate: `CN=<identity>`, usable only to dial.
    pub fn issue_client(&self, identity: &str, validity: Validity) -> Result<Issued, PkiError> {
        check_name(identity)?;
        self.issue(identity, Vec::new(), vec![ExtendedKeyUsagePurpose::ClientAuth], validity)
    }

    fn issue(
        &self,
        common_name: &str,
        sans: Vec<String>,
        usages: Vec<ExtendedKeyUsagePurpose>,
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, validity);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// The certificate identity of node `id`, and the name peers verify it by.
pub fn node_identity(id: NodeId) -> String {
    format!("node-{id}")
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    params.not_before = validity.not_before.into();
    params.not_after = validity.not_after.into();
}

/// Identities become file names and log fields: keep them plain.
fn check_name(name: &str) -> Result<(), PkiError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) || name.starts_with('.') {
        return Err(PkiError::BadName(name.to_owned()));
    }
    Ok(())
}

/// Writes `<dir>/<name>.pem` and `<dir>/<name>.key` (the key readable by its
/// owner only), refusing to overwrite either. Returns the two paths.
pub fn write_issued(dir: &Path, name: &str, issued: &Issued) -> Result<(PathBuf, PathBuf), PkiError> {
    check_name(name)?;
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    for path in [&cert, &key] {
        if path.exists() {
            return Err(PkiError::Exists(path.clone()));
        }
    }
    write_new(&key, issued.key_pem.as_bytes(), 0o600)?;
    write_new(&cert, issued.cert_pem.as_bytes(), 0o644)?;
    Ok((cert, key))
}

/// Creates `path` with `mode`; fails if it exists.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            PkiError::Exists(path.to_path_buf())
        } else {
            PkiError::Write { path: path.to_path_buf(), source: e }
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| PkiError::Write { path: path.to_path_buf(), source: e })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn parse(pem: &str) -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
        pem.contents
    }

    fn common_name(der: &[u8]) -> String {
        let (_, cert) = X509Certificate::from_der(der).expect("der");
        let cn = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).expect("cn").to_owned();
        cn
    }

    #[test]
    fn node_certificate_names_and_usages() {
        let ca = Ca::generate("test ca").expect("ca");
        let node = ca.issue_node(3, &["kyiv-1.internal".into(), "10.0.0.3".into()], Validity::days(1)).expect("node");
        let der = parse(&node.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).expect("der");
        assert_eq!(common_name(&der), "node-3");
        let names = &cert.subject_alternative_name().expect("ext").expect("san").value.general_names;
        let dns: Vec<&str> = names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(*d),
                _ => None,
            })
            .collect();
        let ips: Vec<&[u8]> = names
            .iter()
            .filter_map(|n| match n {
                GeneralName::IPAddress(ip) => Some(*ip),
                _ => None,
            })
            .collect();
        assert_eq!(dns, ["node-3", "kyiv-1.internal", "localhost"]);
        assert_eq!(ips, [&[10u8, 0, 0, 3][..], &[127, 0, 0, 1][..]]);
        let eku = cert.extended_key_usage().expect("ext").expect("eku").value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(!cert.is_ca());
    }

    #[test]
    fn client_certificate_is_client_only_and_ca_reloads() {
        let ca = Ca::generate("test ca").expect("ca");
        let again = Ca::from_pem(ca.cert_pem(), ca.key_pem()).expect("reload");
        let client = again.issue_client("auditor", Validity::days(1)).expect("client");
        let der = parse(&client.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).expect("der");
        assert_eq!(common_name(&der), "auditor");
        let eku = cert.extended_key_usage().expect("ext").expect("eku").value;
        assert!(eku.client_auth && !eku.server_auth);
        // Issued by the same CA subject.
        let ca_der = parse(ca.cert_pem());
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).expect("der");
        assert_eq!(cert.issuer(), ca_cert.subject());
        assert!(ca_cert.is_ca());
        assert!(Ca::from_pem(ca.cert_pem(), "not a key").is_err());
        assert!(again.issue_client("../etc/passwd", Validity::days(1)).is_err());
    }

    #[test]
    fn validity_window_is_respected() {
        let ca = Ca::generate("test ca").expect("ca");
        let now = SystemTime::now();
        let expired =
            Validity { not_before: now - Duration::from_secs(7200), not_after: now - Duration::from_secs(3600) };
        let client = ca.issue_client("late", expired).expect("client");
        let der = parse(&client.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).expect("der");
        assert!(!cert.validity().is_valid());
    }

    #[test]
    fn writes_refuse_to_overwrite_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let ca = Ca::generate("test ca").expect("ca");
        let issued = ca.issue_client("admin", Validity::days(1)).expect("client");
        let (_, key) = write_issued(dir.path(), "admin", &issued).expect("write");
        assert_eq!(std::fs::metadata(&key).expect("key").permissions().mode() & 0o777, 0o600);
        assert!(matches!(write_issued(dir.path(), "admin", &issued), Err(PkiError::Exists(_))));
    }
}
