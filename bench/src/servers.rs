//! The clusters `compare` starts on loopback — 3 holdfast nodes and 3 etcd
//! members, each in a temp dir and stopped on drop — and what they spend:
//! the CPU time of their processes, read from /proc, and the WAL syncs
//! their metrics count.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use holdfast_client::ClientTls;
use holdfast_testkit::certs::{ClusterPki, ADMIN_IDENTITY};
use holdfast_testkit::process::{free_ports, reference_topology, NodeOptions, ProcessCluster};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reference-topology nodes in three distinct regions: the placement rule
/// refuses a voter set with two of three voters in one region.
const HOLDFAST_NODE_IDS: [u64; 3] = [1, 3, 4];
/// A cold start (RocksDB open, first election) on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// etcd refuses writes past its backend quota (2 GiB by default); a long run
/// of unique 256-byte keys must never reach it.
const ETCD_QUOTA_BACKEND_BYTES: u64 = 8 << 30;
/// /proc/<pid>/stat counts CPU time in clock ticks of USER_HZ, which Linux
/// fixes at 100 for user space on every architecture it exposes /proc on.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
/// The WAL syncs a holdfast node has made, in its metrics.
const HOLDFAST_SYNC_COUNTER: &str = "holdfast_storage_fsync_seconds_count";
/// The same for an etcd member.
const ETCD_SYNC_COUNTER: &str = "etcd_disk_wal_fsync_duration_seconds_count";
/// A metrics scrape on loopback; a server slower than this counts as silent.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Three `holdfast serve` processes from generated config files, as users
/// run them: sealed records and mutual TLS unless told otherwise.
pub struct HoldfastCluster {
    // Declared first so its processes die before the temp dir goes.
    cluster: ProcessCluster,
    _root: TempDir,
}

impl HoldfastCluster {
    pub async fn start(
        binary: &Path,
        insecure_plaintext: bool,
        insecure_transport: bool,
        audit: Option<String>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            binary.exists(),
            "holdfast binary {} not found; build it first: cargo build --release -p holdfast",
            binary.display()
        );
        let root = tempfile::Builder::new().prefix("holdfast-bench-").tempdir()?;
        let specs: Vec<_> = reference_topology().into_iter().filter(|s| HOLDFAST_NODE_IDS.contains(&s.id)).collect();
        // As users run it (the node's own storage defaults too).
        let options = |_| NodeOptions {
            insecure_plaintext,
            insecure_transport,
            audit: audit.clone(),
            wal_file_mb: None,
            serve_metrics: true,
            ..NodeOptions::default()
        };
        let mut cluster = ProcessCluster::configure(binary, root.path(), &specs, None, options)?;
        cluster.start_all()?;
        let started = Self { cluster, _root: root };
        if let Err(error) = started.cluster.wait_for_leader(START_TIMEOUT).await {
            let logs: Vec<PathBuf> = started.cluster.nodes().map(|n| n.log_path.clone()).collect();
            bail!("holdfast cluster did not elect a leader: {error:#}\n{}", log_tails(&logs));
        }
        Ok(started)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.cluster.endpoints()
    }

    /// The `admin` client certificate, unless the cluster runs plaintext.
    pub fn client_tls(&self) -> Option<ClientTls> {
        self.cluster.client_tls().cloned()
    }

    /// Where to read what the nodes spend.
    pub fn probe(&self) -> ServerProbe {
        ServerProbe {
            pids: self.cluster.nodes().filter_map(|n| n.pid()).collect(),
            metrics: self.cluster.nodes().filter_map(|n| n.metrics_addr.clone()).collect(),
            sync_counter: HOLDFAST_SYNC_COUNTER,
        }
    }
}

/// Three etcd members with data dirs in a temp dir, default snapshot and WAL
/// settings; client and peer traffic over mutual TLS unless told otherwise,
/// as production etcd runs (and as holdfast runs in the same comparison).
pub struct EtcdCluster {
    children: Vec<Child>,
    client_addrs: Vec<String>,
    /// Each member's plain-HTTP metrics address.
    metrics: Vec<String>,
    leader_addr: String,
    /// The client certificate (issued by the cluster's own CA); `None` when
    /// the cluster runs plaintext.
    client_tls: Option<ClientTls>,
    root: TempDir,
}

impl Drop for EtcdCluster {
    /// Never leaves an etcd behind, whatever failed.
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl EtcdCluster {
    /// Starts the members; `plaintext` turns TLS off on client and peer
    /// URLs (etcd's fastest setting, to show what TLS costs it).
    pub async fn start(binary: &Path, plaintext: bool) -> anyhow::Result<Self> {
        anyhow::ensure!(
            binary.exists(),
            "etcd binary {} not found; install Debian's etcd-server (cargo xtask deps does)",
            binary.display()
        );
        let root = tempfile::Builder::new().prefix("etcd-bench-").tempdir()?;
        let scheme = if plaintext { "http" } else { "https" };
        let ports = free_ports(9)?;
        let client_addrs: Vec<String> = ports[..3].iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let peer_urls: Vec<String> = ports[3..6].iter().map(|p| format!("{scheme}://127.0.0.1:{p}")).collect();
        let metrics: Vec<String> = ports[6..].iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let initial_cluster: Vec<String> = peer_urls.iter().enumerate().map(|(i, url)| format!("e{i}={url}")).collect();
        let pki = if plaintext { None } else { Some(ClusterPki::open_or_create(&root.path().join("pki"))?) };
        let client_tls = pki.as_ref().map(|pki| pki.client_tls(ADMIN_IDENTITY)).transpose()?;
        let mut cluster =
            Self { children: Vec::new(), client_addrs, metrics, leader_addr: String::new(), client_tls, root };
        for (i, peer_url) in peer_urls.iter().enumerate() {
            let log = File::create(cluster.log_path(i))?;
            let client_url = format!("{scheme}://{}", cluster.client_addrs[i]);
            let mut command = Command::new(binary);
            if let Some(pki) = &pki {
                // One certificate per member for both roles (server and
                // client auth), as holdfast's nodes have; every connection
                // must present a certificate of the cluster's CA.
                let files = pki.node_files(i as u64 + 1)?;
                for role in ["", "peer-"] {
                    command
                        .arg(format!("--{role}cert-file={}", files.cert.display()))
                        .arg(format!("--{role}key-file={}", files.key.display()))
                        .arg(format!("--{role}trusted-ca-file={}", files.ca.display()))
                        .arg(format!("--{role}client-cert-auth"));
                }
            }
            let child = command
                .arg(format!("--name=e{i}"))
                .arg(format!("--data-dir={}", cluster.root.path().join(format!("e{i}")).display()))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--listen-metrics-urls=http://{}", cluster.metrics[i]))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster={}", initial_cluster.join(",")))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=holdfast-bench")
                .arg(format!("--quota-backend-bytes={ETCD_QUOTA_BACKEND_BYTES}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            cluster.children.push(child);
        }
        match tokio::time::timeout(START_TIMEOUT, cluster.find_leader()).await {
            Ok(Some(leader)) => cluster.leader_addr = leader,
            _ => {
                let logs: Vec<PathBuf> = (0..3).map(|i| cluster.log_path(i)).collect();
                bail!("etcd cluster did not elect a leader\n{}", log_tails(&logs));
            }
        }
        Ok(cluster)
    }

    fn log_path(&self, member: usize) -> PathBuf {
        self.root.path().join(format!("e{member}.log"))
    }

    /// Polls every member until all agree on a leader; returns its client address.
    async fn find_leader(&self) -> Option<String> {
        loop {
            let mut answers = Vec::new();
            for addr in &self.client_addrs {
                answers.push(etcd_status(addr, self.client_tls.as_ref()).await);
            }
            let leader_id = answers.first().copied().flatten().map(|(_, leader)| leader).unwrap_or(0);
            let agreed = leader_id != 0 && answers.iter().all(|a| a.is_some_and(|(_, leader)| leader == leader_id));
            if agreed {
                let position = answers.iter().position(|a| a.is_some_and(|(member, _)| member == leader_id))?;
                return Some(self.client_addrs[position].clone());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The leader only, as holdfast's client sends every request to its
    /// leader too: neither side pays for follower forwarding.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.leader_addr.clone()]
    }

    /// Where to read what the members spend.
    pub fn probe(&self) -> ServerProbe {
        ServerProbe {
            pids: self.children.iter().map(Child::id).collect(),
            metrics: self.metrics.clone(),
            sync_counter: ETCD_SYNC_COUNTER,
        }
    }

    /// The client certificate to dial the members with; `None` when they
    /// run plaintext.
    pub fn client_tls(&self) -> Option<ClientTls> {
        self.client_tls.clone()
    }
}

/// Connects an etcd client to `addrs` (`host:port`), over mutual TLS with
/// `tls`, plaintext without.
pub async fn etcd_connect(
    addrs: &[String],
    tls: Option<&ClientTls>,
    options: etcd_client::ConnectOptions,
) -> anyhow::Result<etcd_client::Client> {
    let (scheme, options) = match tls {
        Some(tls) => {
            let config = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(&tls.ca_pem))
                .identity(etcd_client::Identity::from_pem(&tls.cert_pem, &tls.key_pem));
            ("https", options.with_tls(config))
        }
        None => ("http", options),
    };
    let urls: Vec<String> = addrs.iter().map(|a| format!("{scheme}://{a}")).collect();
    etcd_client::Client::connect(urls, Some(options)).await.with_context(|| format!("connecting to etcd at {addrs:?}"))
}

/// (this member's id, the leader it knows) or `None` if it does not answer.
async fn etcd_status(addr: &str, tls: Option<&ClientTls>) -> Option<(u64, u64)> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(2));
    let mut client = etcd_connect(&[addr.to_owned()], tls, options).await.ok()?;
    let status = client.status().await.ok()?;
    Some((status.header()?.member_id(), status.leader()))
}

/// Where the benchmark reads what servers have spent: the CPU of their
/// processes, and the WAL syncs their metrics count.
#[derive(Debug, Clone, Default)]
pub struct ServerProbe {
    pub pids: Vec<u32>,
    /// Plain-HTTP `/metrics` addresses (`host:port`), one per server.
    pub metrics: Vec<String>,
    /// The counter of WAL syncs in those metrics.
    pub sync_counter: &'static str,
}

/// What the servers had spent by one moment (or between two), with the
/// load generator's own CPU and the machine's idle time beside it: the
/// load generator shares the cores, and a cluster that leaves cores idle
/// is waiting (on disks, on round trips), not short of CPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spent {
    /// `None` without pids.
    pub cpu_secs: Option<f64>,
    /// `None` without metrics addresses, or when a server did not answer.
    pub wal_syncs: Option<f64>,
    /// CPU seconds of this process (the load generator); `None` if its
    /// `/proc` entry is unreadable.
    pub client_cpu_secs: Option<f64>,
    /// Ticks all CPUs spent idle (iowait included), and in all; `None` if
    /// `/proc/stat` is unreadable.
    pub machine_ticks: Option<MachineTicks>,
}

/// Ticks from `/proc/stat`'s `cpu` line, summed over every CPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MachineTicks {
    pub idle: u64,
    pub total: u64,
}

impl Spent {
    /// What was spent from `self` until `later`.
    pub fn until(&self, later: &Spent) -> Spent {
        let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
        Spent {
            cpu_secs: delta(self.cpu_secs, later.cpu_secs),
            wal_syncs: delta(self.wal_syncs, later.wal_syncs),
            client_cpu_secs: delta(self.client_cpu_secs, later.client_cpu_secs),
            machine_ticks: self.machine_ticks.zip(later.machine_ticks).map(|(a, b)| MachineTicks {
                idle: b.idle.saturating_sub(a.idle),
                total: b.total.saturating_sub(a.total),
            }),
        }
    }

    /// The share of all CPUs' time spent idle, in percent.
    pub fn idle_percent(&self) -> Option<f64> {
        self.machine_ticks.filter(|t| t.total > 0).map(|t| t.idle as f64 * 100.0 / t.total as f64)
    }

    /// What the load generator and the machine had spent by now.
    fn here(cpu_secs: Option<f64>, wal_syncs: Option<f64>) -> Spent {
        let client_cpu_secs = cpu_seconds(&[std::process::id()]).ok().flatten();
        let machine_ticks = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| parse_machine_ticks(&stat));
        Spent { cpu_secs, wal_syncs, client_cpu_secs, machine_ticks }
    }
}

/// Idle (idle + iowait) and total ticks from `/proc/stat`'s first line:
/// `cpu user nice system idle iowait irq softirq steal [guest guest_nice]`
/// (guest time is already counted in user).
fn parse_machine_ticks(stat: &str) -> Option<MachineTicks> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    (fields.next()? == "cpu").then_some(())?;
    let ticks: Vec<u64> = fields.take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    (ticks.len() == 8).then(|| MachineTicks { idle: ticks[3] + ticks[4], total: ticks.iter().sum() })
}

impl ServerProbe {
    /// Reads what was spent when a measured window opens: syncs first, so
    /// the CPU the servers spend answering the scrape stays outside the
    /// window. CPU is an error if a server process is gone; syncs are
    /// `None` if any server's metrics are unreadable (the figure is then
    /// left out, with a warning).
    pub async fn read_at_start(&self) -> anyhow::Result<Spent> {
        let wal_syncs = self.wal_syncs().await;
        Ok(Spent::here(cpu_seconds(&self.pids)?, wal_syncs))
    }

    /// The same when the window closes: CPU first.
    pub async fn read_at_end(&self) -> anyhow::Result<Spent> {
        let spent = Spent::here(cpu_seconds(&self.pids)?, None);
        Ok(Spent { wal_syncs: self.wal_syncs().await, ..spent })
    }

    async fn wal_syncs(&self) -> Option<f64> {
        let mut total = 0.0;
        for addr in &self.metrics {
            let count = match tokio::time::timeout(SCRAPE_TIMEOUT, scrape(addr)).await {
                Ok(Ok(text)) => counter_value(&text, self.sync_counter)
                    .ok_or_else(|| format!("no {} in the metrics", self.sync_counter)),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} s", SCRAPE_TIMEOUT.as_secs())),
            };
            match count {
                Ok(count) => total += count,
                Err(why) => {
                    eprintln!("WAL syncs left out: metrics at {addr}: {why}");
                    return None;
                }
            }
        }
        (!self.metrics.is_empty()).then_some(total)
    }
}

/// `GET /metrics` over plain HTTP/1.0 (the server closes the connection
/// after answering); the whole response, headers included.
async fn scrape(addr: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// The value of an unlabelled counter in Prometheus text format.
fn counter_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next()? == name).then(|| parts.next()?.parse().ok()).flatten()
    })
}

/// User + system CPU seconds used so far by `pids`, summed; `None` for no pids.
pub fn cpu_seconds(pids: &[u32]) -> anyhow::Result<Option<f64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut ticks = 0u64;
    for pid in pids {
        let path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path} (did the server exit?)"))?;
        ticks += parse_cpu_ticks(&stat).with_context(|| format!("{path} has an unexpected format"))?;
    }
    Ok(Some(ticks as f64 / CLOCK_TICKS_PER_SEC))
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line. The command
/// name (field 2) may hold spaces, so fields are counted after its `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The last lines of each log, for an error message.
fn log_tails(paths: &[PathBuf]) -> String {
    let mut out = String::new();
    for path in paths {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("--- {} ---\n", path.display()));
        for line in &lines[lines.len().saturating_sub(10)..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// CPU model, cores, memory and kernel, for the report header.
pub fn describe_machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .unwrap_or("unknown CPU")
        .trim()
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |kib| kib as f64 / (1024.0 * 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    format!("{model}, {cores} cores, {mem_gib:.0} GiB, Linux {}, load average at start {load}", kernel.trim())
}

/// `etcd --version`'s first line, e.g. "etcd Version: 3.4.23".
pub fn etcd_version(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::{counter_value, parse_cpu_ticks, parse_machine_ticks, MachineTicks, Spent};

    #[test]
    fn counters_are_read_by_exact_name_without_labels() {
        let text = "HTTP/1.0 200 OK\r\n\r\n# TYPE x_count counter\nx_count_total 7\nx_count{a=\"b\"} 3\nx_count 41\n";
        assert_eq!(counter_value(text, "x_count"), Some(41.0));
        assert_eq!(counter_value(text, "x_count_total"), Some(7.0));
        assert_eq!(counter_value(text, "missing"), None);
        assert_eq!(counter_value("x_count nan-ish\n", "x_count"), None);
    }

    #[test]
    fn cpu_ticks_are_fields_14_and_15_even_with_spaces_in_the_name() {
        let stat = "1234 (holdfast (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn machine_idle_counts_iowait_and_leaves_guest_time_out() {
        let stat = "cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 50 2 25 400 20 1 1 0 3 0\n";
        assert_eq!(parse_machine_ticks(stat), Some(MachineTicks { idle: 840, total: 1000 }));
        assert_eq!(parse_machine_ticks("cpu 1 2 3\n"), None);
        assert_eq!(parse_machine_ticks("intr 5\n"), None);
        let at = |idle, total| Spent {
            cpu_secs: None,
            wal_syncs: None,
            client_cpu_secs: Some(1.0),
            machine_ticks: Some(MachineTicks { idle, total }),
        };
        let window = at(840, 1000).until(&at(940, 1400));
        assert_eq!(window.idle_percent(), Some(25.0));
        assert_eq!(window.client_cpu_secs, Some(0.0));
        assert_eq!(at(5, 5).until(&at(5, 5)).idle_percent(), None, "an empty window has no share");
    }
}
