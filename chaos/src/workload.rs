//! The register workload: concurrent clients doing linearizable reads,
//! unique-value writes and CAS writes on rotating keys, each op recorded
//! in the history with its outcome.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use holdfast_client::{Client, ClientError, ClientTls, Outcome as WriteOutcome, ReadOptions, WriteOptions};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::history::{Call, History, Op, Outcome};

/// The registry every chaos key lives in.
pub const REGISTRY: &str = "chaos";
/// Concurrent clients. The spec allows up to ~10 per key; 6 keeps a 2-core
/// machine (five debug-build nodes plus the harness) from drowning.
pub const CLIENTS: u64 = 6;
/// Ops per key before the workload moves to a new key: keeps each key's
/// history small enough for the linearizability search.
pub const OPS_PER_KEY: u64 = 200;
/// One attempt's timeout: a few WAN round trips plus an fsync, well short
/// of the fault windows, so an op stuck behind a fault ends as `info`.
const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// Client retries: enough to follow a leader hint or skip a dead node; the
/// client keeps the request id across them, so they stay safe.
const OP_RETRIES: u32 = 2;
/// Think time between a client's ops, bounding the load on 2 cores.
const THINK_MS: (u64, u64) = (5, 20);
/// Share of reads sent to a random node instead of the leader. A correct
/// follower refuses them (NotLeader); a node serving local reads does not.
const SPREAD_READS: f64 = 0.3;

/// The shared state of a running workload.
#[derive(Debug, Clone)]
pub struct Workload {
    pub history: History,
    /// The run's clock origin.
    pub origin: Instant,
    stop: Arc<AtomicBool>,
    ops_issued: Arc<AtomicU64>,
    next_value: Arc<AtomicU64>,
    next_process: Arc<AtomicU64>,
    run_tag: String,
}

/// The key for the `n`-th op overall.
pub fn key_for(n: u64) -> String {
    format!("k{:04}", n / OPS_PER_KEY)
}

impl Workload {
    pub fn new(origin: Instant, seed: u64) -> Self {
        Self {
            history: History::default(),
            origin,
            stop: Arc::new(AtomicBool::new(false)),
            ops_issued: Arc::new(AtomicU64::new(0)),
            next_value: Arc::new(AtomicU64::new(1)),
            next_process: Arc::new(AtomicU64::new(CLIENTS)),
            run_tag: format!("s{seed}"),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// Every key the workload has touched so far.
    pub fn keys(&self) -> Vec<String> {
        let issued = self.ops_issued.load(Ordering::Relaxed);
        (0..=issued.saturating_sub(1) / OPS_PER_KEY).map(|k| key_for(k * OPS_PER_KEY)).collect()
    }

    /// A client for the workload's calls: short timeout, few retries.
    pub fn client(endpoints: Vec<String>, tls: Option<&ClientTls>) -> anyhow::Result<Client> {
        let builder = Client::builder(endpoints).timeout(OP_TIMEOUT).max_retries(OP_RETRIES);
        let builder = match tls {
            Some(tls) => builder.tls(tls.clone()),
            None => builder,
        };
        Ok(builder.build()?)
    }

    /// Starts the client tasks; they run until [`Workload::stop`].
    pub fn spawn(
        &self,
        endpoints: &[String],
        tls: Option<&ClientTls>,
        seed: u64,
    ) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
        let mut tasks = Vec::new();
        for index in 0..CLIENTS {
            // Each task starts on a different endpoint so that not every
            // client discovers the leader the same way.
            let mut ordered = endpoints.to_vec();
            ordered.rotate_left(index as usize % endpoints.len().max(1));
            let client = Self::client(ordered, tls)?;
            let pinned: Vec<Client> =
                endpoints.iter().map(|e| client.on_endpoint(e)).collect::<Result<_, ClientError>>()?;
            let rng = StdRng::seed_from_u64(seed.wrapping_mul(1000).wrapping_add(index));
            let this = self.clone();
            tasks.push(tokio::spawn(async move { this.client_loop(index, client, pinned, rng).await }));
        }
        Ok(tasks)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    async fn client_loop(self, mut process: u64, client: Client, pinned: Vec<Client>, mut rng: StdRng) {
        let mut last_seen: Option<(String, u64)> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let n = self.ops_issued.fetch_add(1, Ordering::Relaxed);
            let key = key_for(n);
            let known_revision = last_seen.as_ref().filter(|(k, _)| *k == key).map_or(0, |(_, r)| *r);
            let call = match rng.gen_range(0..4) {
                0 | 1 => Call::Read,
                2 => Call::Write { value: self.next_value.fetch_add(1, Ordering::Relaxed) },
                _ => Call::Cas { value: self.next_value.fetch_add(1, Ordering::Relaxed), if_revision: known_revision },
            };
            let request_id = format!("{}-p{process}-{n}", self.run_tag);
            let target = if rng.gen_bool(SPREAD_READS) { pinned.choose(&mut rng).unwrap_or(&client) } else { &client };
            let call_us = self.now_us();
            let outcome = perform(target, &client, &key, &call, &request_id).await;
            let return_us = self.now_us();
            match outcome {
                Outcome::Read(Some((_, revision))) | Outcome::Written { revision } => {
                    last_seen = Some((key.clone(), revision));
                }
                Outcome::Refused { current: Some(current) } => last_seen = Some((key.clone(), current)),
                _ => {}
            }
            let was_info = outcome == Outcome::Info;
            self.history.record(Op { process, key, request_id, call, outcome, call_us, return_us });
            if was_info {
                // The op may still be in flight: this client continues as a
                // new process so that process histories stay sequential.
                process = self.next_process.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(rng.gen_range(THINK_MS.0..=THINK_MS.1))).await;
        }
    }
}

/// Runs one op; `reader` serves reads (maybe a pinned node), `writer` writes.
pub async fn perform(reader: &Client, writer: &Client, key: &str, call: &Call, request_id: &str) -> Outcome {
    match *call {
        Call::Read => match reader.get(REGISTRY, key, ReadOptions::default()).await {
            Ok(Some(record)) => Outcome::Read(Some((parse_value(record.value.as_deref()), record.revision))),
            Ok(None) => Outcome::Read(None),
            Err(error) => classify(&error),
        },
        Call::Write { value } | Call::Cas { value, .. } => {
            let if_revision = match *call {
                Call::Cas { if_revision, .. } => Some(if_revision),
                _ => None,
            };
            let options = WriteOptions {
                if_revision,
                // The request id goes into the stored history, where the
                // checker looks for a request applied twice.
                reason: request_id.to_owned(),
                actor: "chaos".into(),
                request_id: Some(request_id.to_owned()),
            };
            match writer.put(REGISTRY, key, value.to_string(), options).await {
                Ok(written) => Outcome::Written { revision: written.revision },
                Err(error) => match (cas_conflict(&error), if_revision) {
                    (Some(current), Some(_)) => Outcome::Refused { current },
                    _ => classify(&error),
                },
            }
        }
    }
}

/// A CAS refusal, possibly behind the retry wrapper; the server answers a
/// retried request id from its table, so a refusal on a retry is final.
fn cas_conflict(error: &ClientError) -> Option<Option<u64>> {
    match error {
        ClientError::CasConflict { current_revision, .. } => Some(*current_revision),
        ClientError::RetriesExhausted { last, .. } => cas_conflict(last),
        _ => None,
    }
}

fn classify(error: &ClientError) -> Outcome {
    match error.outcome() {
        WriteOutcome::NotApplied => Outcome::Fail,
        WriteOutcome::Unknown => Outcome::Info,
    }
}

/// Workload values are decimal u64s; anything else is reported as a value
/// no write could have produced, so the phantom check flags it.
pub fn parse_value(bytes: Option<&[u8]>) -> u64 {
    bytes.and_then(|b| std::str::from_utf8(b).ok()).and_then(|s| s.parse().ok()).unwrap_or(u64::MAX)
}
