//! The linearizability search for one key: Wing–Gong with Lowe's
//! memoisation, as in Porcupine. Ops are call/return events in a linked
//! list; the search linearizes a pending call, or backtracks when it meets a
//! return whose op is not yet linearized. A `(linearized set, state)` pair
//! seen before is never explored twice.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::model::{step, Entry, State};

/// How often (in search steps) the clock is read: often enough to stop
/// close to the budget, rarely enough not to cost.
const CLOCK_EVERY_STEPS: u64 = 1024;
const NONE: usize = usize::MAX;

/// The answer for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyVerdict {
    Linearizable,
    NotLinearizable,
    /// The budget ran out: never counted as a pass.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call: the index of its return event, or NONE for an info op.
    partner: usize,
}

/// A set of op indexes, hashed as words.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Dancing-links list of events; `head` is a sentinel at index `len`.
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
}

impl Links {
    fn new(len: usize) -> Self {
        let head = len;
        // Events 0..len in order after the head; the head points at 0.
        let next = (0..=len)
            .map(|i| match i {
                _ if i == head && len > 0 => 0,
                _ if i == head => NONE,
                _ if i + 1 < len => i + 1,
                _ => NONE,
            })
            .collect();
        let prev = (0..=len)
            .map(|i| {
                if i == head {
                    NONE
                } else if i == 0 {
                    head
                } else {
                    i - 1
                }
            })
            .collect();
        Self { next, prev, head }
    }
    fn remove(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        if n != NONE {
            self.prev[n] = p;
        }
    }
    /// Undoes `remove(x)`; removals must be undone in reverse order.
    fn restore(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        if n != NONE {
            self.prev[n] = x;
        }
    }
}

/// Searches for a linearization of `entries` from the absent state,
/// giving up after `budget`.
pub fn check_key(entries: &[Entry], budget: Duration) -> KeyVerdict {
    let deadline = Instant::now() + budget;
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(entries.len() * 2);
    for (i, e) in entries.iter().enumerate() {
        events.push((e.call_us, true, i));
        if let Some(ret) = e.return_us {
            events.push((ret, false, i));
        }
    }
    // At equal times calls sort first: treating the ops as concurrent is
    // the permissive reading, so a tie can never cause a false alarm.
    events.sort_by_key(|&(t, is_call, op)| (t, !is_call, op));
    let mut list: Vec<Event> = events.iter().map(|&(_, is_call, op)| Event { op, is_call, partner: NONE }).collect();
    let mut call_at = vec![NONE; entries.len()];
    for (idx, ev) in list.iter().enumerate() {
        if ev.is_call {
            call_at[ev.op] = idx;
        }
    }
    for idx in 0..list.len() {
        if !list[idx].is_call {
            let call = call_at[list[idx].op];
            list[call].partner = idx;
        }
    }

    let mut links = Links::new(list.len());
    let mut remaining = entries.iter().filter(|e| e.return_us.is_some()).count();
    let mut linearized = Bits::new(entries.len());
    let mut seen: HashSet<(Bits, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = State::default();
    let mut cursor = links.next[links.head];
    let mut steps: u64 = 0;
    loop {
        if remaining == 0 {
            return KeyVerdict::Linearizable;
        }
        steps += 1;
        if steps.is_multiple_of(CLOCK_EVERY_STEPS) && Instant::now() > deadline {
            return KeyVerdict::Unknown;
        }
        if cursor != NONE && list[cursor].is_call {
            let ev = list[cursor];
            if let Some(next_state) = step(state, &entries[ev.op].op) {
                linearized.set(ev.op);
                if seen.insert((linearized.clone(), next_state)) {
                    stack.push((cursor, state));
                    state = next_state;
                    links.remove(cursor);
                    if ev.partner != NONE {
                        links.remove(ev.partner);
                        remaining -= 1;
                    }
                    cursor = links.next[links.head];
                    continue;
                }
                linearized.clear(ev.op);
            }
            cursor = links.next[cursor];
        } else {
            // A return (or the end) reached with its op still pending: undo
            // the latest choice and try the next candidate after it.
            let Some((call, previous)) = stack.pop() else {
                return KeyVerdict::NotLinearizable;
            };
            let ev = list[call];
            linearized.clear(ev.op);
            state = previous;
            if ev.partner != NONE {
                links.restore(ev.partner);
                remaining += 1;
            }
            links.restore(call);
            cursor = links.next[call];
        }
    }
}
