//! The checker: per-key linearizability plus the cheap invariants, folded
//! into one verdict. A key whose search runs out of time is `unknown`,
//! never a pass.

mod invariants;
pub mod model;
pub mod search;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

pub use search::KeyVerdict;

use crate::history::Op;

/// The run's answer; only `Valid` exits 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Valid,
    Invalid,
    Unknown,
}

impl Verdict {
    /// Combines two verdicts: invalid beats unknown beats valid.
    pub fn and(self, other: Verdict) -> Verdict {
        use Verdict::*;
        match (self, other) {
            (Invalid, _) | (_, Invalid) => Invalid,
            (Unknown, _) | (_, Unknown) => Unknown,
            _ => Valid,
        }
    }
}

/// One revision of a key as the cluster's own history reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRevision {
    pub revision: u64,
    /// The workload value (`None` for a tombstone or unparsable bytes).
    pub value: Option<u64>,
    /// The request id the workload put in the revision's reason.
    pub request_id: String,
}

/// What the checker needs besides the ops.
#[derive(Debug)]
pub struct CheckInput<'a> {
    pub ops: &'a [Op],
    /// Per key, the stored history; `None` when it could not be read.
    pub stored: Option<&'a BTreeMap<String, Vec<StoredRevision>>>,
    /// Per key, the revision returned by the final read after healing.
    pub final_reads: &'a BTreeMap<String, Option<u64>>,
    pub budget_per_key: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub verdict: Verdict,
    pub keys: BTreeMap<String, KeyVerdict>,
    pub keys_linearizable: usize,
    pub keys_not_linearizable: usize,
    pub keys_unknown: usize,
    pub acked_writes: usize,
    pub lost_acked_writes: Vec<String>,
    pub phantom_reads: Vec<String>,
    pub revision_regressions: Vec<String>,
    pub duplicate_applies: Vec<String>,
    /// Why the checker could not decide (harness gaps), if it could not.
    pub gaps: Vec<String>,
}

/// Runs every check.
pub fn check(input: &CheckInput<'_>) -> CheckReport {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in input.ops {
        by_key.entry(&op.key).or_default().push(op);
    }
    let applied: Option<BTreeMap<&str, BTreeMap<u64, u64>>> = input.stored.map(|stored| {
        stored
            .iter()
            .map(|(key, revs)| (key.as_str(), revs.iter().filter_map(|r| r.value.map(|v| (v, r.revision))).collect()))
            .collect()
    });
    let empty = BTreeMap::new();
    let mut keys = BTreeMap::new();
    for (key, ops) in &by_key {
        let key_applied = applied.as_ref().map(|a| a.get(key).unwrap_or(&empty));
        let entries = model::prepare(ops, key_applied);
        keys.insert(key.to_string(), search::check_key(&entries, input.budget_per_key));
    }
    let (acked_writes, lost_acked_writes) = invariants::lost_acked_writes(input.ops, input.final_reads, input.stored);
    let phantom_reads = invariants::phantom_reads(input.ops);
    let revision_regressions = invariants::revision_regressions(input.ops);
    let duplicate_applies = input.stored.map(invariants::duplicate_applies).unwrap_or_default();
    let mut gaps = Vec::new();
    if input.stored.is_none() {
        gaps.push("the stored history could not be read".to_owned());
    }
    for key in by_key.keys() {
        if !input.final_reads.contains_key(*key) {
            gaps.push(format!("{key}: no final read"));
        }
    }
    let count = |v: KeyVerdict| keys.values().filter(|k| **k == v).count();
    let (keys_linearizable, keys_not_linearizable, keys_unknown) =
        (count(KeyVerdict::Linearizable), count(KeyVerdict::NotLinearizable), count(KeyVerdict::Unknown));
    let broken = keys_not_linearizable > 0
        || !lost_acked_writes.is_empty()
        || !phantom_reads.is_empty()
        || !revision_regressions.is_empty()
        || !duplicate_applies.is_empty();
    let verdict = if broken {
        Verdict::Invalid
    } else if keys_unknown > 0 || !gaps.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    CheckReport {
        verdict,
        keys,
        keys_linearizable,
        keys_not_linearizable,
        keys_unknown,
        acked_writes,
        lost_acked_writes,
        phantom_reads,
        revision_regressions,
        duplicate_applies,
        gaps,
    }
}
