//! The history: every operation the workload issued, with its call and
//! return times and its outcome, shared by the client tasks.

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Microseconds since the run started; one clock for ops and faults.
pub type Micros = u64;

/// What was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Call {
    /// Linearizable read of the key.
    Read,
    /// Unconditional write of a unique value.
    Write { value: u64 },
    /// Write of a unique value only if the key is at `if_revision` (0 = absent).
    Cas { value: u64, if_revision: u64 },
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// A read's answer: `(value, revision)`, or `None` when absent.
    Read(Option<(u64, u64)>),
    /// A write or CAS applied at this revision.
    Written { revision: u64 },
    /// A CAS refused: the key was at `current` (if the server said).
    Refused { current: Option<u64> },
    /// Definitely not applied (the error proves it was never proposed).
    Fail,
    /// Unknown: it may or may not have happened.
    Info,
}

impl Outcome {
    /// `ok`, `fail` or `info`, as the report counts them.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Read(_) | Outcome::Written { .. } | Outcome::Refused { .. } => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// One completed operation.
#[derive(Debug, Clone, Serialize)]
pub struct Op {
    /// The logical client ("process"): a new one after every `info`, since
    /// that client's earlier op may still be in flight.
    pub process: u64,
    pub key: String,
    pub request_id: String,
    pub call: Call,
    pub outcome: Outcome,
    pub call_us: Micros,
    pub return_us: Micros,
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self.call {
            Call::Read => "read",
            Call::Write { .. } => "write",
            Call::Cas { .. } => "cas",
        }
    }

    pub fn latency_us(&self) -> Micros {
        self.return_us.saturating_sub(self.call_us)
    }
}

/// The shared, append-only log of ops.
#[derive(Debug, Clone, Default)]
pub struct History {
    ops: Arc<Mutex<Vec<Op>>>,
}

impl History {
    pub fn record(&self, op: Op) {
        // A poisoned lock means a client task panicked mid-push; the vector
        // itself is still consistent, so keep recording.
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    pub fn snapshot(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn len(&self) -> usize {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
