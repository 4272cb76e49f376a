//! The workloads both targets run: which operation comes next and on which key.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use serde::Serialize;

/// Share of reads in the `mixed` workload, in percent (80 reads / 20 writes,
/// the usual read-mostly registry pattern).
const MIXED_READ_PERCENT: u32 = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Writes, each to the next key of the key space (unique until it wraps).
    Put,
    /// Linearizable reads of preloaded keys.
    Get,
    /// 80 % linearizable reads, 20 % writes.
    Mixed,
}

impl Workload {
    /// Whether the keys read must exist before the measured run starts.
    pub fn needs_preload(self) -> bool {
        matches!(self, Self::Get | Self::Mixed)
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Put => "put",
            Self::Get => "get",
            Self::Mixed => "mixed",
        })
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "put" => Ok(Self::Put),
            "get" => Ok(Self::Get),
            "mixed" => Ok(Self::Mixed),
            other => Err(format!("unknown workload {other:?} (put, get, mixed)")),
        }
    }
}

/// One operation a worker is about to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(String),
    Get(String),
}

/// Hands out keys: a shared counter for writes, so concurrent clients never
/// write the same key at once, and random preloaded keys for reads.
#[derive(Debug)]
pub struct KeyPlan {
    prefix: String,
    key_space: u64,
    preloaded: u64,
    next_write: AtomicU64,
}

impl KeyPlan {
    /// `prefix` keeps the keys of one run apart from those of earlier runs,
    /// so a `put` run writes keys nobody wrote before.
    pub fn new(prefix: &str, key_space: u64, preloaded: u64) -> Self {
        let key_space = key_space.max(1);
        Self {
            prefix: prefix.to_owned(),
            key_space,
            preloaded: preloaded.clamp(1, key_space),
            next_write: AtomicU64::new(0),
        }
    }

    pub fn key_name(&self, index: u64) -> String {
        // Fixed width keeps every key of a run the same size on both targets.
        format!("{}{index:010}", self.prefix)
    }

    /// The keys a `get` or `mixed` run expects to find.
    pub fn preload_keys(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.preloaded).map(|i| self.key_name(i))
    }

    fn next_write_key(&self) -> String {
        self.key_name(self.next_write.fetch_add(1, Ordering::Relaxed) % self.key_space)
    }

    fn random_read_key(&self, rng: &mut impl Rng) -> String {
        self.key_name(rng.gen_range(0..self.preloaded))
    }

    pub fn next_op(&self, workload: Workload, rng: &mut impl Rng) -> Op {
        match workload {
            Workload::Put => Op::Put(self.next_write_key()),
            Workload::Get => Op::Get(self.random_read_key(rng)),
            Workload::Mixed => {
                if rng.gen_range(0..100) < MIXED_READ_PERCENT {
                    Op::Get(self.random_read_key(rng))
                } else {
                    Op::Put(self.next_write_key())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn writes_walk_the_key_space_and_reads_stay_in_the_preload() {
        let plan = KeyPlan::new("t-", 3, 2);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let writes: Vec<Op> = (0..4).map(|_| plan.next_op(Workload::Put, &mut rng)).collect();
        let names: Vec<Op> = [0, 1, 2, 0].iter().map(|i| Op::Put(plan.key_name(*i))).collect();
        assert_eq!(writes, names);
        for _ in 0..50 {
            match plan.next_op(Workload::Get, &mut rng) {
                Op::Get(key) => assert!(key == plan.key_name(0) || key == plan.key_name(1)),
                Op::Put(key) => panic!("get workload wrote {key}"),
            }
        }
    }

    #[test]
    fn mixed_is_mostly_reads() {
        let plan = KeyPlan::new("t-", 1000, 100);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let reads = (0..10_000).filter(|_| matches!(plan.next_op(Workload::Mixed, &mut rng), Op::Get(_))).count();
        assert!((7_500..8_500).contains(&reads), "{reads} reads of 10000");
    }
}
