//! The run report: configuration, fault windows, op counts, latency inside
//! and outside faults, unavailability, convergence and the checker's
//! findings; written as report.json and printed as a short summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::checker::{CheckReport, Verdict};
use crate::cluster::NodeState;
use crate::history::{Micros, Op, Outcome};
use crate::runner::RunConfig;
use crate::scenario::Planned;

/// Width of one timeline bucket.
pub const BUCKET_US: Micros = 1_000_000;
/// After a fault heals, the cluster gets this long to serve again before
/// the gap still counts against that fault.
const RECOVERY_GRACE_US: Micros = 3_000_000;

/// One fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultWindow {
    pub label: String,
    /// The concrete nodes and links affected.
    pub detail: String,
    pub start_us: Micros,
    pub end_us: Micros,
    /// Longest stretch without a successful op, from the fault's start to
    /// shortly after it healed.
    pub unavailable_ms: u64,
}

/// Ops of one timeline bucket.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Bucket {
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub inside_faults_p50_ms: f64,
    pub inside_faults_p99_ms: f64,
    pub outside_faults_p50_ms: f64,
    pub outside_faults_p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub about: String,
    pub seed: u64,
    pub fault_phase_s: u64,
    pub unsafe_local_reads: bool,
    pub schedule: Vec<Planned>,
    pub faults: Vec<FaultWindow>,
    pub ops_total: usize,
    /// kind (read/write/cas) → outcome class (ok/fail/info) → count.
    pub ops: BTreeMap<String, BTreeMap<String, usize>>,
    pub latency: Latency,
    pub timeline: Vec<Bucket>,
    pub converge_ms: Option<u64>,
    pub final_states: Vec<NodeState>,
    pub convergence_failures: Vec<String>,
    pub final_op_failures: Vec<String>,
    /// A replaced node's old id got back in, or the voters came out wrong.
    pub membership_failures: Vec<String>,
    pub harness_errors: Vec<String>,
    pub check: Option<CheckReport>,
    pub verdict: Verdict,
    /// Every op, written separately as history.json.
    #[serde(skip)]
    pub history: Vec<Op>,
}

/// Nearest-rank percentile of sorted values, 0 when empty.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

impl Report {
    pub fn new(config: &RunConfig) -> Self {
        Self {
            scenario: config.scenario.name.to_owned(),
            about: config.scenario.about.to_owned(),
            seed: config.seed,
            fault_phase_s: config.duration.as_secs(),
            unsafe_local_reads: config.scenario.unsafe_local_reads,
            schedule: config.scenario.schedule(config.duration, config.seed),
            faults: Vec::new(),
            ops_total: 0,
            ops: BTreeMap::new(),
            latency: Latency::default(),
            timeline: Vec::new(),
            converge_ms: None,
            final_states: Vec::new(),
            convergence_failures: Vec::new(),
            final_op_failures: Vec::new(),
            membership_failures: Vec::new(),
            harness_errors: Vec::new(),
            check: None,
            verdict: Verdict::Unknown,
            history: Vec::new(),
        }
    }

    /// Fills in the figures derived from the history.
    pub fn set_results(&mut self, ops: &[Op], check: CheckReport) {
        self.ops_total = ops.len();
        for op in ops {
            *self.ops.entry(op.kind().to_owned()).or_default().entry(op.outcome.class().to_owned()).or_default() += 1;
        }
        let in_fault = |t: Micros| self.faults.iter().any(|f| t >= f.start_us && t <= f.end_us);
        let ok_ops = || ops.iter().filter(|op| op.outcome.class() == "ok");
        let mut inside: Vec<u64> = ok_ops().filter(|op| in_fault(op.call_us)).map(Op::latency_us).collect();
        let mut outside: Vec<u64> = ok_ops().filter(|op| !in_fault(op.call_us)).map(Op::latency_us).collect();
        inside.sort_unstable();
        outside.sort_unstable();
        self.latency = Latency {
            inside_faults_p50_ms: percentile(&inside, 0.5),
            inside_faults_p99_ms: percentile(&inside, 0.99),
            outside_faults_p50_ms: percentile(&outside, 0.5),
            outside_faults_p99_ms: percentile(&outside, 0.99),
        };
        let mut ok_returns: Vec<Micros> = ok_ops().map(|op| op.return_us).collect();
        ok_returns.sort_unstable();
        for fault in &mut self.faults {
            fault.unavailable_ms = longest_gap(&ok_returns, fault.start_us, fault.end_us + RECOVERY_GRACE_US) / 1000;
        }
        self.timeline = timeline(ops);
        self.check = Some(check);
        self.history = ops.to_vec();
    }

    pub fn finish(&mut self) {
        self.verdict = self.verdict();
    }

    pub fn write_json(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    /// The human summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "scenario {} seed {} ({} s of faults)", self.scenario, self.seed, self.fault_phase_s);
        let _ = writeln!(s, "ops: {} total", self.ops_total);
        for (kind, classes) in &self.ops {
            let parts: Vec<String> = classes.iter().map(|(c, n)| format!("{c} {n}")).collect();
            let _ = writeln!(s, "  {kind:<5} {}", parts.join(", "));
        }
        if let Some(c) = &self.check {
            let _ = writeln!(
                s,
                "acked writes: {}, lost acked writes: {}, phantom reads: {}, revision regressions: {}, duplicate applies: {}",
                c.acked_writes,
                c.lost_acked_writes.len(),
                c.phantom_reads.len(),
                c.revision_regressions.len(),
                c.duplicate_applies.len()
            );
            let _ = writeln!(
                s,
                "keys: {} linearizable, {} NOT linearizable, {} unknown (budget)",
                c.keys_linearizable, c.keys_not_linearizable, c.keys_unknown
            );
            let bad: Vec<&String> = c
                .keys
                .iter()
                .filter(|(_, v)| **v != crate::checker::KeyVerdict::Linearizable)
                .map(|(k, _)| k)
                .collect();
            if !bad.is_empty() {
                let _ = writeln!(s, "  keys not proven linearizable: {}", join_some(&bad));
            }
            for line in
                c.lost_acked_writes.iter().chain(&c.phantom_reads).chain(&c.duplicate_applies).chain(&c.gaps).take(5)
            {
                let _ = writeln!(s, "  {line}");
            }
        }
        let _ = writeln!(s, "faults:");
        for f in &self.faults {
            let _ = writeln!(
                s,
                "  {:>6.1}s-{:>5.1}s {:<22} unavailable {:>5} ms  ({})",
                f.start_us as f64 / 1e6,
                f.end_us as f64 / 1e6,
                f.label,
                f.unavailable_ms,
                f.detail
            );
        }
        let l = &self.latency;
        let _ = writeln!(
            s,
            "latency (ok ops): outside faults p50 {:.1} ms p99 {:.1} ms; inside faults p50 {:.1} ms p99 {:.1} ms",
            l.outside_faults_p50_ms, l.outside_faults_p99_ms, l.inside_faults_p50_ms, l.inside_faults_p99_ms
        );
        match self.converge_ms {
            Some(ms) => {
                let _ = writeln!(s, "replicas converged {ms} ms after the workload stopped");
            }
            None => {
                let _ = writeln!(s, "replicas did NOT converge: {}", join_some(&self.convergence_failures));
            }
        }
        for e in self.final_op_failures.iter().chain(&self.membership_failures).chain(&self.harness_errors) {
            let _ = writeln!(s, "  problem: {e}");
        }
        let _ = writeln!(s, "verdict: {}", verdict_word(self.verdict));
        s
    }
}

pub fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Valid => "VALID",
        Verdict::Invalid => "INVALID",
        Verdict::Unknown => "UNKNOWN",
    }
}

/// A few items of a list, for one summary line.
fn join_some<T: std::fmt::Display>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().take(8).map(|i| i.to_string()).collect();
    let more = items.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} (+{more} more)", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The longest stretch inside `[from, to]` with no successful op returning.
fn longest_gap(sorted_returns: &[Micros], from: Micros, to: Micros) -> Micros {
    let mut last = from;
    let mut longest = 0;
    for &t in sorted_returns.iter().filter(|t| **t >= from && **t <= to) {
        longest = longest.max(t - last);
        last = t;
    }
    longest.max(to.saturating_sub(last))
}

/// Ops per second by outcome, and latency of successful ops, by call time.
fn timeline(ops: &[Op]) -> Vec<Bucket> {
    let end = ops.iter().map(|op| op.return_us).max().unwrap_or(0);
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); (end / BUCKET_US + 1) as usize];
    let mut buckets = vec![Bucket::default(); latencies.len()];
    for op in ops {
        let i = (op.call_us / BUCKET_US) as usize;
        match op.outcome {
            Outcome::Fail => buckets[i].fail += 1,
            Outcome::Info => buckets[i].info += 1,
            _ => {
                buckets[i].ok += 1;
                latencies[i].push(op.latency_us());
            }
        }
    }
    for (bucket, mut l) in buckets.iter_mut().zip(latencies) {
        l.sort_unstable();
        bucket.p50_ms = percentile(&l, 0.5);
        bucket.p99_ms = percentile(&l, 0.99);
    }
    buckets
}
