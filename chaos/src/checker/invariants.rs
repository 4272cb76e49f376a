//! The cheap O(n) checks beside the search: lost acknowledged writes,
//! phantom values, revisions going backwards for one client, and a request
//! applied twice.

use std::collections::{BTreeMap, BTreeSet};

use super::StoredRevision;
use crate::history::{Call, Op, Outcome};

/// Every acked write must survive: the final read of its key returns a
/// revision at least as high, and the stored history holds it at its revision.
pub fn lost_acked_writes(
    ops: &[Op],
    final_reads: &BTreeMap<String, Option<u64>>,
    stored: Option<&BTreeMap<String, Vec<StoredRevision>>>,
) -> (usize, Vec<String>) {
    let mut acked = 0;
    let mut lost = Vec::new();
    for op in ops {
        let (Outcome::Written { revision }, Call::Write { value } | Call::Cas { value, .. }) = (&op.outcome, &op.call)
        else {
            continue;
        };
        acked += 1;
        match final_reads.get(&op.key) {
            Some(Some(last)) if last >= revision => {}
            Some(last) => {
                lost.push(format!("{}: write of {value} acked at revision {revision}, final read saw {last:?}", op.key))
            }
            // No final read: reported as a harness gap by the caller.
            None => {}
        }
        if let Some(stored) = stored {
            let kept = stored
                .get(&op.key)
                .is_some_and(|revs| revs.iter().any(|r| r.revision == *revision && r.value == Some(*value)));
            if !kept {
                lost.push(format!(
                    "{}: write of {value} acked at revision {revision} is not in the stored history",
                    op.key
                ));
            }
        }
    }
    (acked, lost)
}

/// Every value read was written by an op that was not reported as
/// definitely failed.
pub fn phantom_reads(ops: &[Op]) -> Vec<String> {
    let mut writable: BTreeSet<(&str, u64)> = BTreeSet::new();
    for op in ops {
        if let (Call::Write { value } | Call::Cas { value, .. }, outcome) = (&op.call, &op.outcome) {
            if *outcome != Outcome::Fail {
                writable.insert((&op.key, *value));
            }
        }
    }
    ops.iter()
        .filter_map(|op| match op.outcome {
            Outcome::Read(Some((value, revision))) if !writable.contains(&(op.key.as_str(), value)) => {
                Some(format!("{}: read {value} at revision {revision}, which no (non-failed) write wrote", op.key))
            }
            _ => None,
        })
        .collect()
}

/// One client (process) never sees a key's revision go backwards.
pub fn revision_regressions(ops: &[Op]) -> Vec<String> {
    let mut by_process: BTreeMap<(u64, &str), Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_process.entry((op.process, &op.key)).or_default().push(op);
    }
    let mut found = Vec::new();
    for ((process, key), mut list) in by_process {
        list.sort_by_key(|op| op.call_us);
        let mut highest = 0u64;
        for op in list {
            let seen = match op.outcome {
                Outcome::Read(Some((_, revision))) | Outcome::Written { revision } => revision,
                Outcome::Read(None) => 0,
                _ => continue,
            };
            if seen < highest {
                found.push(format!("{key}: process {process} saw revision {seen} after {highest}"));
            }
            highest = highest.max(seen);
        }
    }
    found
}

/// No request id and no value appears twice in a key's stored history.
pub fn duplicate_applies(stored: &BTreeMap<String, Vec<StoredRevision>>) -> Vec<String> {
    let mut found = Vec::new();
    for (key, revisions) in stored {
        let mut ids = BTreeSet::new();
        let mut values = BTreeSet::new();
        for r in revisions {
            if !r.request_id.is_empty() && !ids.insert(r.request_id.as_str()) {
                found.push(format!("{key}: request {} applied twice (again at revision {})", r.request_id, r.revision));
            }
            if let Some(value) = r.value {
                if !values.insert(value) {
                    found.push(format!("{key}: value {value} written twice (again at revision {})", r.revision));
                }
            }
        }
    }
    found
}
