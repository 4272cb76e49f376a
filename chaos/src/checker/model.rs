//! The register model for one key, and how recorded ops become model ops.
//!
//! State is the key's `(value, revision)`; a revision grows with the Raft
//! log (log index << 10 | position in the entry), so writes linearize in
//! revision order. A write whose revision
//! the harness cannot learn gets a synthetic revision above
//! [`SYNTHETIC_REVISION_BASE`], which the model treats as "some unknown,
//! later index".

use std::collections::BTreeMap;

use crate::history::{Call, Micros, Op, Outcome};

/// Revisions at or above this are placeholders for an unknown real revision;
/// real revisions (log index << 10) never get near it.
pub const SYNTHETIC_REVISION_BASE: u64 = 1 << 62;

/// The register's state; `value == 0` means absent (workload values start at 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct State {
    pub value: u64,
    pub revision: u64,
}

/// What a CAS did, as far as the model is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasResult {
    Written { revision: u64 },
    Refused { current: Option<u64> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelOp {
    Read(Option<(u64, u64)>),
    Write { value: u64, revision: u64 },
    Cas { value: u64, if_revision: u64, result: CasResult },
}

/// One op for the search: `return_us == None` is an `info` op, which may
/// take effect at any point after its call, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub call_us: Micros,
    pub return_us: Option<Micros>,
    pub op: ModelOp,
}

fn is_synthetic(revision: u64) -> bool {
    revision >= SYNTHETIC_REVISION_BASE
}

/// Revisions grow with the log; unknown ones cannot be compared.
fn follows(old: u64, new: u64) -> bool {
    is_synthetic(old) || is_synthetic(new) || new > old
}

/// The state after `op`, or `None` if `op` cannot happen in `state`.
pub fn step(state: State, op: &ModelOp) -> Option<State> {
    match *op {
        ModelOp::Read(None) => (state.value == 0).then_some(state),
        ModelOp::Read(Some((value, revision))) => (state.value == value && state.revision == revision).then_some(state),
        ModelOp::Write { value, revision } => follows(state.revision, revision).then_some(State { value, revision }),
        ModelOp::Cas { value, if_revision, result: CasResult::Written { revision } } => {
            (state.revision == if_revision && follows(state.revision, revision)).then_some(State { value, revision })
        }
        ModelOp::Cas { if_revision, result: CasResult::Refused { current }, .. } => {
            let current_matches = current.is_none_or(|c| c == state.revision || is_synthetic(state.revision));
            (state.revision != if_revision && current_matches).then_some(state)
        }
    }
}

/// Turns one key's recorded ops into search entries.
///
/// `applied` maps value → revision for every write the server's own
/// history shows as applied (when that history could be read). An `info`
/// write found neither there nor in any read is dropped when `applied` is
/// known (it never happened), and gets a synthetic revision otherwise.
pub fn prepare(ops: &[&Op], applied: Option<&BTreeMap<u64, u64>>) -> Vec<Entry> {
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    for op in ops {
        if let Outcome::Read(Some((value, revision))) = op.outcome {
            seen.insert(value, revision);
        }
    }
    let mut entries = Vec::new();
    let mut next_synthetic = SYNTHETIC_REVISION_BASE;
    for op in ops {
        let ret = Some(op.return_us);
        let model = match (&op.call, &op.outcome) {
            (Call::Read, Outcome::Read(result)) => Some((ModelOp::Read(*result), ret)),
            (Call::Write { value }, Outcome::Written { revision }) => {
                Some((ModelOp::Write { value: *value, revision: *revision }, ret))
            }
            (Call::Cas { value, if_revision }, Outcome::Written { revision }) => Some((
                ModelOp::Cas {
                    value: *value,
                    if_revision: *if_revision,
                    result: CasResult::Written { revision: *revision },
                },
                ret,
            )),
            (Call::Cas { value, if_revision }, Outcome::Refused { current }) => Some((
                ModelOp::Cas {
                    value: *value,
                    if_revision: *if_revision,
                    result: CasResult::Refused { current: *current },
                },
                ret,
            )),
            (Call::Write { value } | Call::Cas { value, .. }, Outcome::Info) => {
                let known = seen.get(value).or_else(|| applied.and_then(|a| a.get(value))).copied();
                let revision = match (known, applied) {
                    (Some(revision), _) => Some(revision),
                    (None, Some(_)) => None,
                    (None, None) => {
                        next_synthetic += 1;
                        Some(next_synthetic)
                    }
                };
                revision.map(|revision| {
                    let op = match op.call {
                        Call::Cas { if_revision, .. } => {
                            ModelOp::Cas { value: *value, if_revision, result: CasResult::Written { revision } }
                        }
                        _ => ModelOp::Write { value: *value, revision },
                    };
                    (op, None)
                })
            }
            // Failed ops and unanswered reads constrain nothing.
            _ => None,
        };
        if let Some((op_model, return_us)) = model {
            entries.push(Entry { call_us: op.call_us, return_us, op: op_model });
        }
    }
    entries
}
