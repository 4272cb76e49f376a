//! Figures of a run and how they are shown: one table row per target and
//! case, the holdfast/etcd ratios, and the same as JSON.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::LoadSpec;
use crate::servers::Spent;
use crate::target::Kind;
use crate::workload::Workload;

/// The figures of one measured window.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub target: Kind,
    pub workload: Workload,
    pub clients: usize,
    pub connections: usize,
    pub value_bytes: usize,
    pub duration_secs: f64,
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Server CPU (user + system, all server processes) per 1,000 ops;
    /// `None` when no server pids were given (an outside cluster).
    pub cpu_secs_per_kop: Option<f64>,
    /// WAL syncs (fsyncs) of all server processes per 1,000 ops, from
    /// their metrics; `None` when they were not read.
    pub wal_syncs_per_kop: Option<f64>,
    /// The load generator's own CPU per 1,000 ops (it shares the cores).
    pub client_cpu_secs_per_kop: Option<f64>,
    /// The share of the machine's CPU time left idle during the window.
    pub idle_percent: Option<f64>,
}

fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

impl Measurement {
    pub fn new(kind: Kind, spec: &LoadSpec, histogram: &Histogram<u64>, errors: u64, spent: Spent) -> Self {
        let ops = histogram.len();
        let per_kop = |total: Option<f64>| total.filter(|_| ops > 0).map(|t| t * 1000.0 / ops as f64);
        let secs = spec.duration.as_secs_f64();
        Self {
            target: kind,
            workload: spec.workload,
            clients: spec.clients,
            connections: spec.connections.min(spec.clients).max(1),
            value_bytes: spec.value_bytes,
            duration_secs: secs,
            ops,
            errors,
            ops_per_sec: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            p50_ms: ms(histogram, 0.5),
            p99_ms: ms(histogram, 0.99),
            p999_ms: ms(histogram, 0.999),
            max_ms: histogram.max() as f64 / 1000.0,
            cpu_secs_per_kop: per_kop(spent.cpu_secs),
            wal_syncs_per_kop: per_kop(spent.wal_syncs),
            client_cpu_secs_per_kop: per_kop(spent.client_cpu_secs),
            idle_percent: spent.idle_percent(),
        }
    }
}

/// holdfast against etcd on one case (workload and client count).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub workload: Workload,
    pub clients: usize,
    pub holdfast: Measurement,
    pub etcd: Measurement,
    /// holdfast / etcd: above 1 means holdfast is faster (ops/s) or slower
    /// (latency) or costlier (CPU).
    pub ratio_ops_per_sec: f64,
    pub ratio_p99: f64,
    pub ratio_cpu_per_kop: Option<f64>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

impl Comparison {
    pub fn new(holdfast: Measurement, etcd: Measurement) -> Self {
        let ratio_cpu_per_kop = holdfast.cpu_secs_per_kop.zip(etcd.cpu_secs_per_kop).map(|(h, e)| ratio(h, e));
        Self {
            workload: holdfast.workload,
            clients: holdfast.clients,
            ratio_ops_per_sec: ratio(holdfast.ops_per_sec, etcd.ops_per_sec),
            ratio_p99: ratio(holdfast.p99_ms, etcd.p99_ms),
            ratio_cpu_per_kop,
            holdfast,
            etcd,
        }
    }
}

/// Everything `compare` found, as printed and as written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: String,
    pub etcd_version: String,
    /// How each side runs: transport, sealing, audit mode.
    pub setup: String,
    pub value_bytes: usize,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    pub rounds: usize,
    pub comparisons: Vec<Comparison>,
}

const HEADER: &str = "workload clients target        ops/s    p50 ms   p99 ms p99.9 ms  cpu s/kop syncs/kop  errors  \
                      client cpu s/kop  idle %";

/// `value` with `decimals` places, or "-" when it was not measured.
fn figure(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn row(out: &mut String, m: &Measurement) {
    let cpu = figure(m.cpu_secs_per_kop, 3);
    let syncs = figure(m.wal_syncs_per_kop, 0);
    let client_cpu = figure(m.client_cpu_secs_per_kop, 3);
    let idle = figure(m.idle_percent, 0);
    let _ = writeln!(
        out,
        "{:<8} {:>7} {:<8} {:>10.0} {:>9.2} {:>8.2} {:>8.2} {:>10} {:>9} {:>7} {:>17} {:>7}",
        m.workload.to_string(),
        m.clients,
        m.target.to_string(),
        m.ops_per_sec,
        m.p50_ms,
        m.p99_ms,
        m.p999_ms,
        cpu,
        syncs,
        m.errors,
        client_cpu,
        idle
    );
}

/// A table of single measurements (the `run` command).
pub fn table_of_runs(measurements: &[Measurement]) -> String {
    let mut out = format!("{HEADER}\n");
    measurements.iter().for_each(|m| row(&mut out, m));
    out
}

impl Report {
    /// The side-by-side table, one ratio line under each pair.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}, values {} B, {:.1} s measured after {:.1} s warm-up, median of {} round(s)\n\n{HEADER}\n",
            self.machine,
            self.setup,
            self.etcd_version,
            self.value_bytes,
            self.duration_secs,
            self.warmup_secs,
            self.rounds
        );
        for c in &self.comparisons {
            row(&mut out, &c.holdfast);
            row(&mut out, &c.etcd);
            let cpu = c.ratio_cpu_per_kop.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"));
            let _ = writeln!(
                out,
                "{:<8} {:>7} {:<8} {:>9.2}x {:>9} {:>7.2}x {:>8} {:>10}\n",
                "", "", "ratio", c.ratio_ops_per_sec, "", c.ratio_p99, "", cpu
            );
        }
        out
    }

    pub fn json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

/// The run whose ops/s is the median of `runs` (the lower middle one for an
/// even count), so latency and CPU figures come from one real run.
pub fn median_run(mut runs: Vec<Measurement>) -> Option<Measurement> {
    runs.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    let middle = runs.len().checked_sub(1)? / 2;
    runs.into_iter().nth(middle)
}
