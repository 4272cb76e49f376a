//! Hand-made histories the checker must reject or accept, and cross-checks
//! of the search against brute force and against stateright's
//! linearizability tester on small random histories.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::model::{step, CasResult, Entry, ModelOp, State, SYNTHETIC_REVISION_BASE};
use super::search::{check_key, KeyVerdict};
use super::*;
use crate::history::{Call, Op, Outcome};

const BUDGET: Duration = Duration::from_secs(5);

fn op(process: u64, call: Call, outcome: Outcome, call_us: u64, return_us: u64) -> Op {
    Op { process, key: "k".into(), request_id: format!("r{process}-{call_us}"), call, outcome, call_us, return_us }
}

fn write(process: u64, value: u64, revision: u64, at: (u64, u64)) -> Op {
    op(process, Call::Write { value }, Outcome::Written { revision }, at.0, at.1)
}

fn read(process: u64, seen: Option<(u64, u64)>, at: (u64, u64)) -> Op {
    op(process, Call::Read, Outcome::Read(seen), at.0, at.1)
}

/// Checks `ops` with a stored history made of the given `(value, revision)` pairs.
fn verdict_with(ops: &[Op], stored: &[(u64, u64)], final_revision: Option<u64>) -> CheckReport {
    let revisions =
        stored.iter().map(|&(v, r)| StoredRevision { revision: r, value: Some(v), request_id: format!("id{v}") });
    let stored = BTreeMap::from([("k".to_owned(), revisions.collect())]);
    let finals = BTreeMap::from([("k".to_owned(), final_revision)]);
    check(&CheckInput { ops, stored: Some(&stored), final_reads: &finals, budget_per_key: BUDGET })
}

#[test]
fn legal_concurrent_history_is_valid() {
    let ops = [
        write(1, 1, 5, (0, 10)),
        write(2, 2, 6, (2, 12)),
        read(3, None, (1, 4)),
        read(4, Some((1, 5)), (3, 11)),
        read(3, Some((2, 6)), (13, 15)),
    ];
    let report = verdict_with(&ops, &[(1, 5), (2, 6)], Some(6));
    assert_eq!(report.verdict, Verdict::Valid, "{report:?}");
}

#[test]
fn stale_read_is_invalid() {
    let ops = [write(1, 1, 5, (0, 10)), write(1, 2, 7, (20, 30)), read(2, Some((1, 5)), (40, 50))];
    let report = verdict_with(&ops, &[(1, 5), (2, 7)], Some(7));
    assert_eq!(report.keys["k"], KeyVerdict::NotLinearizable);
    assert_eq!(report.verdict, Verdict::Invalid);
}

#[test]
fn lost_acked_write_is_invalid() {
    let ops = [write(1, 1, 5, (0, 10)), read(2, None, (20, 30))];
    let report = verdict_with(&ops, &[], None);
    assert_eq!(report.verdict, Verdict::Invalid);
    assert_eq!(report.lost_acked_writes.len(), 2, "final read and stored history both miss it");
    assert_eq!(report.keys["k"], KeyVerdict::NotLinearizable);
}

#[test]
fn write_appearing_twice_is_invalid() {
    // The same value observed at two revisions: applied twice.
    let ops = [write(1, 1, 5, (0, 10)), read(2, Some((1, 5)), (11, 12)), read(2, Some((1, 8)), (13, 14))];
    let report = verdict_with(&ops, &[(1, 5), (1, 8)], Some(8));
    assert_eq!(report.keys["k"], KeyVerdict::NotLinearizable);
    assert_eq!(report.duplicate_applies.len(), 2, "request id and value both repeat: {report:?}");
    assert_eq!(report.verdict, Verdict::Invalid);
}

#[test]
fn cas_against_wrong_revision_is_invalid() {
    let ops = [
        write(1, 1, 5, (0, 10)),
        write(1, 2, 6, (20, 30)),
        op(2, Call::Cas { value: 3, if_revision: 5 }, Outcome::Written { revision: 7 }, 40, 50),
    ];
    let report = verdict_with(&ops, &[(1, 5), (2, 6), (3, 7)], Some(7));
    assert_eq!(report.keys["k"], KeyVerdict::NotLinearizable);
    assert_eq!(report.verdict, Verdict::Invalid);
}

#[test]
fn refused_cas_with_matching_revision_is_invalid() {
    let ops = [
        write(1, 1, 5, (0, 10)),
        op(2, Call::Cas { value: 3, if_revision: 5 }, Outcome::Refused { current: Some(5) }, 20, 30),
    ];
    assert_eq!(verdict_with(&ops, &[(1, 5)], Some(5)).verdict, Verdict::Invalid);
}

#[test]
fn info_write_may_land_late_or_never() {
    let late = [
        op(1, Call::Write { value: 1 }, Outcome::Info, 0, 5),
        read(2, None, (10, 20)),
        read(2, Some((1, 5)), (30, 40)),
    ];
    assert_eq!(verdict_with(&late, &[(1, 5)], Some(5)).verdict, Verdict::Valid);
    let never = [op(1, Call::Write { value: 1 }, Outcome::Info, 0, 5), read(2, None, (10, 20))];
    assert_eq!(verdict_with(&never, &[], None).verdict, Verdict::Valid);
}

#[test]
fn phantom_and_failed_write_reads_are_invalid() {
    let phantom = [read(1, Some((9, 3)), (0, 1))];
    let report = verdict_with(&phantom, &[], Some(3));
    assert_eq!(report.phantom_reads.len(), 1);
    let failed = [op(1, Call::Write { value: 1 }, Outcome::Fail, 0, 5), read(2, Some((1, 4)), (10, 20))];
    assert_eq!(verdict_with(&failed, &[(1, 4)], Some(4)).verdict, Verdict::Invalid);
}

#[test]
fn missing_final_read_is_unknown_not_valid() {
    let ops = [write(1, 1, 5, (0, 10))];
    let stored = BTreeMap::from([(
        "k".to_owned(),
        vec![StoredRevision { revision: 5, value: Some(1), request_id: "a".into() }],
    )]);
    let report =
        check(&CheckInput { ops: &ops, stored: Some(&stored), final_reads: &BTreeMap::new(), budget_per_key: BUDGET });
    assert_eq!(report.verdict, Verdict::Unknown);
}

/// Exhaustive reference: tries every order that respects real time.
fn brute_force(entries: &[Entry], done: &mut [bool], state: State) -> bool {
    if entries.iter().zip(done.iter()).all(|(e, d)| *d || e.return_us.is_none()) {
        return true;
    }
    for i in 0..entries.len() {
        if done[i] {
            continue;
        }
        let blocked = entries
            .iter()
            .enumerate()
            .any(|(j, e)| j != i && !done[j] && e.return_us.is_some_and(|r| r < entries[i].call_us));
        if blocked {
            continue;
        }
        if let Some(next) = step(state, &entries[i].op) {
            done[i] = true;
            if brute_force(entries, done, next) {
                return true;
            }
            done[i] = false;
        }
    }
    false
}

/// A small history from a real sequential register, sometimes corrupted.
fn random_history(rng: &mut StdRng) -> Vec<Entry> {
    let n = rng.gen_range(2..=7);
    let mut spans: Vec<(u64, u64, u64)> = (0..n)
        .map(|_| {
            let call = rng.gen_range(0..60);
            let ret = call + rng.gen_range(1..30);
            (rng.gen_range(call..=ret), call, ret)
        })
        .collect();
    spans.sort();
    let mut state = State::default();
    let mut next_revision = 1;
    let mut entries = Vec::new();
    for (i, &(_, call, ret)) in spans.iter().enumerate() {
        let value = i as u64 + 1;
        let kind = rng.gen_range(0..4);
        let (op, return_us) = match kind {
            0 => (ModelOp::Read((state.value != 0).then_some((state.value, state.revision))), Some(ret)),
            1 => {
                let revision = next_revision;
                next_revision += 1;
                state = State { value, revision };
                (ModelOp::Write { value, revision }, Some(ret))
            }
            2 => {
                let if_revision = if rng.gen_bool(0.5) { state.revision } else { rng.gen_range(0..next_revision) };
                let result = if if_revision == state.revision {
                    let revision = next_revision;
                    next_revision += 1;
                    state = State { value, revision };
                    CasResult::Written { revision }
                } else {
                    CasResult::Refused { current: Some(state.revision) }
                };
                (ModelOp::Cas { value, if_revision, result }, Some(ret))
            }
            _ => {
                // An info write: applied here, or never (synthetic revision).
                let revision = if rng.gen_bool(0.5) {
                    let r = next_revision;
                    next_revision += 1;
                    state = State { value, revision: r };
                    r
                } else {
                    SYNTHETIC_REVISION_BASE + value
                };
                (ModelOp::Write { value, revision }, None)
            }
        };
        entries.push(Entry { call_us: call, return_us, op });
    }
    if rng.gen_bool(0.5) {
        let i = rng.gen_range(0..entries.len());
        if let ModelOp::Read(_) = entries[i].op {
            let v = rng.gen_range(0..=n as u64);
            entries[i].op = ModelOp::Read((v != 0).then_some((v, rng.gen_range(1..=next_revision))));
        }
    }
    entries
}

/// Runs the search on `cases` random histories from `seed` and asserts it
/// agrees with `reference` on each; returns how many were valid and invalid.
fn cross_check(seed: u64, cases: usize, reference: impl Fn(&[Entry]) -> bool) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut valid, mut invalid) = (0, 0);
    for case in 0..cases {
        let entries = random_history(&mut rng);
        let expected = reference(&entries);
        let want = if expected { KeyVerdict::Linearizable } else { KeyVerdict::NotLinearizable };
        assert_eq!(check_key(&entries, BUDGET), want, "case {case}: {entries:?}");
        if expected {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    (valid, invalid)
}

#[test]
fn search_agrees_with_brute_force() {
    let (valid, invalid) =
        cross_check(7, 3000, |entries| brute_force(entries, &mut vec![false; entries.len()], State::default()));
    // Both answers must be exercised for the comparison to mean anything.
    assert!(valid > 300 && invalid > 200, "valid {valid}, invalid {invalid}");
}

/// The register model as a stateright sequential spec. The recorded ops
/// carry their results, so an op's "return value" is whether it is a legal
/// step from the current state; an illegal step leaves the state alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Spec(State);

impl stateright::semantics::SequentialSpec for Spec {
    type Op = ModelOp;
    type Ret = bool;

    fn invoke(&mut self, op: &ModelOp) -> bool {
        match step(self.0, op) {
            Some(next) => {
                self.0 = next;
                true
            }
            None => false,
        }
    }
}

/// Stateright's verdict on `entries`: each op on its own thread, events fed
/// in time order with calls before returns at the same instant (touching
/// ops are concurrent, as in the search). Ops without a return (`info`)
/// stay in flight, so they may or may not take effect.
fn stateright_verdict(entries: &[Entry]) -> bool {
    use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
    let mut events: Vec<(u64, u8, usize)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        events.push((e.call_us, 0, i));
        if let Some(ret) = e.return_us {
            events.push((ret, 1, i));
        }
    }
    events.sort();
    let mut tester = LinearizabilityTester::new(Spec::default());
    for (_, kind, i) in events {
        let result = if kind == 0 { tester.on_invoke(i, entries[i].op) } else { tester.on_return(i, true) };
        if result.is_err() {
            return false;
        }
    }
    tester.is_consistent()
}

#[test]
fn search_agrees_with_stateright() {
    let (valid, invalid) = cross_check(11, 2000, stateright_verdict);
    assert!(valid > 200 && invalid > 150, "valid {valid}, invalid {invalid}");
}
