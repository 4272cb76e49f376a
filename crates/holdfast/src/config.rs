//! The node config file (TOML), its env and flag overrides, and its
//! translation into the library's validated `NodeConfig`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use anyhow::Context;
use holdfast_crypto::MasterKey;
use holdfast_server::{AuditMode, NodeConfig, RaftTimings, StoreOptions, TlsFiles};
use holdfast_types::{Jurisdiction, NodeId, NodeInfo, Placement};
use serde::{Deserialize, Serialize};

/// A node config file as written by operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub id: NodeId,
    /// Address to bind, `host:port`.
    pub listen: String,
    /// Address peers and clients use; defaults to `listen`.
    #[serde(default)]
    pub advertise: Option<String>,
    pub data_dir: PathBuf,
    pub placement: FilePlacement,
    /// The voters of a fresh cluster, this node included.
    #[serde(default)]
    pub initial_members: Vec<FileMember>,
    /// Accept an initial voter set that breaks the placement rule.
    #[serde(default)]
    pub force_topology: bool,
    #[serde(default)]
    pub raft: FileRaft,
    #[serde(default)]
    pub log: FileLog,
    #[serde(default)]
    pub storage: FileStorage,
    /// Dial these peers at another address (e.g. through a proxy).
    #[serde(default)]
    pub peer_addr_overrides: BTreeMap<String, String>,
    /// UNSAFE: serve linearizable reads locally without ReadIndex. Exists only
    /// to prove the chaos checker catches stale reads. Never in production.
    #[serde(default)]
    pub unsafe_local_reads: bool,
    /// Serve Prometheus `GET /metrics` here (`host:port`), e.g. `0.0.0.0:9100`.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// The cluster's master key file: 32 raw bytes or 64 hex characters.
    /// Every node of a cluster holds the same one. Required unless
    /// `insecure_plaintext` is set.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Store record ids and values unencrypted. For tests only.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Access control and the access audit trail.
    #[serde(default)]
    pub access: FileAccess,
    /// Mutual TLS for all gRPC traffic. Required unless `insecure_transport`.
    #[serde(default)]
    pub tls: Option<FileTls>,
    /// Serve and dial plaintext gRPC: no TLS, no caller identities. For
    /// tests and measurements only.
    #[serde(default)]
    pub insecure_transport: bool,
}

/// The `[access]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAccess {
    /// Certificate identities that administer the cluster whatever the
    /// replicated policy says (how the first grants are made). The same list
    /// on every node.
    #[serde(default)]
    pub admins: Vec<String>,
    /// `strict` (default: a read answers only once its audit event is
    /// committed), `best-effort`, or `off`.
    #[serde(default)]
    pub audit: Option<String>,
}

/// The `[tls]` table: PEM files, reloaded when they change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// CA certificates that peers' and clients' certificates must chain to
    /// (several during a CA rotation).
    pub ca_file: PathBuf,
    /// This node's certificate, `CN=node-<id>` (`holdfast certs node`).
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// How often the files are checked for changes; SIGHUP reloads at once.
    #[serde(default = "default_reload_interval_ms")]
    pub reload_interval_ms: u64,
}

fn default_reload_interval_ms() -> u64 {
    holdfast_server::TLS_RELOAD_INTERVAL_MS_DEFAULT
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePlacement {
    pub region: String,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub jurisdiction: Jurisdiction,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMember {
    pub id: NodeId,
    pub addr: String,
    pub placement: FilePlacement,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileRaft {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_every_entries: u64,
    pub logs_kept_after_snapshot: u64,
    pub rpc_timeout_ms: u64,
}

impl Default for FileRaft {
    fn default() -> Self {
        let t = RaftTimings::default();
        Self {
            heartbeat_interval_ms: t.heartbeat_interval_ms,
            election_timeout_min_ms: t.election_timeout_min_ms,
            election_timeout_max_ms: t.election_timeout_max_ms,
            snapshot_every_entries: t.snapshot_every_entries,
            logs_kept_after_snapshot: t.logs_kept_after_snapshot,
            rpc_timeout_ms: t.rpc_timeout_ms,
        }
    }
}

/// The `[storage]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileStorage {
    /// The size of a RocksDB WAL file in MiB: the WAL starts a new file at
    /// this size and writes into spent files instead of growing new ones (a
    /// sync that grows a file costs a journal commit too). Every start
    /// writes two spent files of this size first (about a second for 64).
    /// 0: one file that grows, no preparation.
    pub wal_file_mb: u64,
    /// MiB per second that RocksDB's memtable flushes and compactions may
    /// write; 0 (the default): no limit. On a disk the WAL shares with
    /// other busy writers (several nodes or services on one virtual disk)
    /// a limit keeps a flush's burst from queueing every WAL sync behind
    /// it; keep it well above the node's sustained write rate, or
    /// compaction falls behind and RocksDB slows writes down.
    pub background_write_mb_per_s: u64,
}

impl Default for FileStorage {
    fn default() -> Self {
        let store = StoreOptions::default();
        Self {
            wal_file_mb: store.wal_file_bytes >> 20,
            background_write_mb_per_s: store.background_write_bytes_per_sec >> 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileLog {
    /// `human` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `holdfast_server=debug,info`.
    pub level: String,
}

impl Default for FileLog {
    fn default() -> Self {
        Self { format: "human".into(), level: "info".into() }
    }
}

impl From<FilePlacement> for Placement {
    fn from(p: FilePlacement) -> Self {
        Placement { region: p.region, zone: p.zone, provider: p.provider, jurisdiction: p.jurisdiction }
    }
}

impl From<Placement> for FilePlacement {
    fn from(p: Placement) -> Self {
        FilePlacement { region: p.region, zone: p.zone, provider: p.provider, jurisdiction: p.jurisdiction }
    }
}

impl FileConfig {
    /// Reads and parses a config file; errors name the file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            // toml's Display draws a multi-line source excerpt; operators and
            // container logs get one line: where, and what is wrong.
            let line =
                e.span().map_or(0, |span| text.get(..span.start).map_or(0, |head| head.matches('\n').count() + 1));
            anyhow::anyhow!("config {} is malformed at line {line}: {}", path.display(), e.message().trim())
        })
    }

    /// Reads the master key file, if the config names one.
    fn master_key(&self) -> anyhow::Result<Option<Arc<MasterKey>>> {
        match (&self.key_file, self.insecure_plaintext) {
            (Some(_), true) => anyhow::bail!("set either key_file or insecure_plaintext, not both"),
            (None, false) => anyhow::bail!(
                "key_file is required: every node needs the cluster's master key (insecure_plaintext = true disables encryption, for tests only)"
            ),
            (None, true) => Ok(None),
            (Some(path), false) => {
                let bytes = zeroize::Zeroizing::new(
                    std::fs::read(path).with_context(|| format!("cannot read key file {}", path.display()))?,
                );
                let key = MasterKey::from_key_file(&bytes).with_context(|| format!("key file {} is invalid", path.display()))?;
                Ok(Some(Arc::new(key)))
            }
        }
    }

    /// The TLS files, if the config names them.
    fn tls(&self) -> anyhow::Result<Option<TlsFiles>> {
        match (&self.tls, self.insecure_transport) {
            (Some(_), true) => anyhow::bail!("set either [tls] or insecure_transport, not both"),
            (None, false) => anyhow::bail!(
                "a [tls] table (ca_file, cert_file, key_file) is required: nodes and clients authenticate with certificates (insecure_transport = true disables TLS, for tests only)"
            ),
            (None, true) => Ok(None),
            (Some(t), false) => {
                Ok(Some(TlsFiles { ca: t.ca_file.clone(), cert: t.cert_file.clone(), key: t.key_file.clone() }))
            }
        }
    }

    /// The library config this file describes, validated.
    pub fn to_node_config(&self) -> anyhow::Result<NodeConfig> {
        let mut overrides = BTreeMap::new();
        for (id, addr) in &self.peer_addr_overrides {
            let id: NodeId = id.parse().with_context(|| format!("peer_addr_overrides key {id:?} is not a node id"))?;
            overrides.insert(id, addr.clone());
        }
        let r = &self.raft;
        let config = NodeConfig {
            id: self.id,
            advertise_addr: self.advertise.clone().unwrap_or_else(|| self.listen.clone()),
            placement: self.placement.clone().into(),
            data_dir: self.data_dir.clone(),
            initial_members: self
                .initial_members
                .iter()
                .map(|m| (m.id, NodeInfo { addr: m.addr.clone(), placement: m.placement.clone().into() }))
                .collect(),
            force_topology: self.force_topology,
            peer_addr_overrides: overrides,
            raft: RaftTimings {
                heartbeat_interval_ms: r.heartbeat_interval_ms,
                election_timeout_min_ms: r.election_timeout_min_ms,
                election_timeout_max_ms: r.election_timeout_max_ms,
                snapshot_every_entries: r.snapshot_every_entries,
                logs_kept_after_snapshot: r.logs_kept_after_snapshot,
                rpc_timeout_ms: r.rpc_timeout_ms,
            },
            unsafe_local_reads: self.unsafe_local_reads,
            metrics_listen: self.metrics_listen.clone(),
            master_key: self.master_key()?,
            admins: self.access.admins.iter().cloned().collect(),
            audit: match self.access.audit.as_deref() {
                None => AuditMode::default(),
                Some(mode) => AuditMode::parse(mode).with_context(|| {
                    format!("access.audit = {mode:?} is not one of \"strict\", \"best-effort\", \"off\"")
                })?,
            },
            tls: self.tls()?,
            tls_reload_interval_ms: self.tls.as_ref().map_or_else(default_reload_interval_ms, |t| t.reload_interval_ms),
            storage: StoreOptions {
                wal_file_bytes: self
                    .storage
                    .wal_file_mb
                    .checked_mul(1 << 20)
                    .context("storage.wal_file_mb is too large")?,
                background_write_bytes_per_sec: self
                    .storage
                    .background_write_mb_per_s
                    .checked_mul(1 << 20)
                    .context("storage.background_write_mb_per_s is too large")?,
            },
        };
        config.validate().context("invalid config")?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
id = 1
listen = "127.0.0.1:7001"
data_dir = "/tmp/n1"
insecure_plaintext = true
insecure_transport = true

[placement]
region = "ua-kyiv"
jurisdiction = "domestic"

[[initial_members]]
id = 1
addr = "127.0.0.1:7001"
placement = { region = "ua-kyiv" }
"#;

    #[test]
    fn parses_example_and_rejects_unknown_fields() {
        let file: FileConfig = toml::from_str(EXAMPLE).unwrap();
        let config = file.to_node_config().unwrap();
        assert_eq!(config.advertise_addr, "127.0.0.1:7001");
        assert_eq!(config.initial_members.len(), 1);
        let bad = format!("{EXAMPLE}\nbogus = 1\n");
        assert!(toml::from_str::<FileConfig>(&bad).is_err());
        let no_region = EXAMPLE.replace("region = \"ua-kyiv\"\njurisdiction", "region = \"\"\njurisdiction");
        let file: FileConfig = toml::from_str(&no_region).unwrap();
        assert!(file.to_node_config().is_err());
    }

    #[test]
    fn storage_limits_are_in_mib_and_default_to_the_store_defaults() {
        let file: FileConfig = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(file.to_node_config().unwrap().storage, StoreOptions::default());
        let limited = format!("{EXAMPLE}\n[storage]\nbackground_write_mb_per_s = 48\nwal_file_mb = 16\n");
        let storage = toml::from_str::<FileConfig>(&limited).unwrap().to_node_config().unwrap().storage;
        assert_eq!(storage, StoreOptions { wal_file_bytes: 16 << 20, background_write_bytes_per_sec: 48 << 20 });
        // TOML integers are i64: the largest one overflows once in bytes.
        let huge = format!("{EXAMPLE}\n[storage]\nbackground_write_mb_per_s = {}\n", i64::MAX);
        let err = toml::from_str::<FileConfig>(&huge).unwrap().to_node_config().unwrap_err();
        assert!(format!("{err:#}").contains("background_write_mb_per_s is too large"), "{err:#}");
    }

    #[test]
    fn transport_must_be_chosen() {
        let neither = EXAMPLE.replace("insecure_transport = true\n", "");
        let err = toml::from_str::<FileConfig>(&neither).unwrap().to_node_config().unwrap_err().to_string();
        assert!(err.contains("[tls]") && err.contains("insecure_transport"), "{err}");
        let tls = format!(
            "{neither}\n[tls]\nca_file = \"/etc/ca.pem\"\ncert_file = \"/etc/n1.pem\"\nkey_file = \"/etc/n1.key\"\n"
        );
        let file: FileConfig = toml::from_str(&tls).unwrap();
        let config = file.to_node_config().unwrap();
        let files = config.tls.expect("tls");
        assert_eq!(files.cert, PathBuf::from("/etc/n1.pem"));
        assert_eq!(config.tls_reload_interval_ms, holdfast_server::TLS_RELOAD_INTERVAL_MS_DEFAULT);
        let both = format!("insecure_transport = true\n{tls}");
        let err = toml::from_str::<FileConfig>(&both).unwrap().to_node_config().unwrap_err().to_string();
        assert!(err.contains("not both"), "{err}");
    }
}
