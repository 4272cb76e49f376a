//! The load generator: N concurrent clients over M connections, a warm-up,
//! a measured window, HDR latency histograms and a progress line.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;
use holdfast_client::ClientTls;
use rand::{RngCore, SeedableRng};
use tokio::time::Instant;

use crate::report::Measurement;
use crate::servers::ServerProbe;
use crate::target::{Connection, Kind};
use crate::workload::{KeyPlan, Op, Workload};

/// Latencies are recorded in microseconds, up to a minute (longer is a
/// timeout anyway), with 3 significant digits.
const LATENCY_MAX_US: u64 = 60_000_000;
/// Writes in flight while preloading the keys that reads will find.
const PRELOAD_CONCURRENCY: usize = 64;

/// What one run does; the same for every target.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub workload: Workload,
    pub value_bytes: usize,
    pub clients: usize,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub key_space: u64,
    pub preload_keys: u64,
    /// Starts every key of this run (see [`KeyPlan::new`]).
    pub key_prefix: String,
    /// The client certificate to speak mutual TLS with (to holdfast or
    /// etcd); `None` dials plaintext.
    pub tls: Option<ClientTls>,
}

impl LoadSpec {
    /// Connections unless set: one per 16 clients, so 256 clients do not
    /// queue behind one HTTP/2 session's stream limit, and 1 client has 1.
    pub fn default_connections(clients: usize) -> usize {
        clients.div_ceil(16).max(1)
    }
}

/// Runs `spec` against `endpoints`, charging what `servers` spend while it
/// is measured.
pub async fn run(
    kind: Kind,
    endpoints: &[String],
    servers: &ServerProbe,
    spec: &LoadSpec,
) -> anyhow::Result<Measurement> {
    let connections =
        Connection::open_many(kind, endpoints, spec.connections.min(spec.clients), spec.tls.as_ref()).await?;
    let plan = Arc::new(KeyPlan::new(&spec.key_prefix, spec.key_space, spec.preload_keys));
    let mut value = vec![0u8; spec.value_bytes];
    // Random bytes, like the sealed values holdfast stores: nothing compresses.
    rand::rngs::StdRng::seed_from_u64(42).fill_bytes(&mut value);
    let value = Arc::new(value);
    if spec.workload.needs_preload() {
        preload(&connections, &plan, &value).await.with_context(|| format!("preloading keys into {kind}"))?;
    }

    let label = format!("{kind} {} c={}", spec.workload, spec.clients);
    let start = Instant::now();
    let measure_start = start + spec.warmup;
    let end = measure_start + spec.duration;
    let completed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(spec.clients);
    for client in 0..spec.clients {
        let worker = Worker {
            connection: connections[client % connections.len()].clone(),
            plan: plan.clone(),
            value: value.clone(),
            workload: spec.workload,
            completed: completed.clone(),
            seed: client as u64,
        };
        workers.push(tokio::spawn(worker.run(measure_start, end)));
    }
    let progress = tokio::spawn(show_progress(label.clone(), completed, start, measure_start, end));

    tokio::time::sleep_until(measure_start).await;
    let before = servers.read_at_start().await?;
    tokio::time::sleep_until(end).await;
    let after = servers.read_at_end().await?;

    let mut histogram = new_histogram()?;
    let (mut errors, mut first_error) = (0u64, None);
    for worker in workers {
        let tally = worker.await.context("a load worker panicked")??;
        histogram.add(&tally.histogram).context("merging latency histograms")?;
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    progress.abort();
    eprintln!();
    if let Some(error) = &first_error {
        eprintln!("{label}: {errors} errors; first: {error}");
    }
    Ok(Measurement::new(kind, spec, &histogram, errors, before.until(&after)))
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).context("creating a latency histogram")
}

async fn preload(connections: &[Connection], plan: &KeyPlan, value: &Arc<Vec<u8>>) -> anyhow::Result<()> {
    let keys: Vec<String> = plan.preload_keys().collect();
    let results = futures::stream::iter(keys.into_iter().enumerate())
        .map(|(i, key)| {
            let mut connection = connections[i % connections.len()].clone();
            let value = value.as_ref().clone();
            async move { connection.put(key, value).await }
        })
        .buffer_unordered(PRELOAD_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    results.into_iter().collect()
}

struct Worker {
    connection: Connection,
    plan: Arc<KeyPlan>,
    value: Arc<Vec<u8>>,
    workload: Workload,
    completed: Arc<AtomicU64>,
    seed: u64,
}

struct Tally {
    histogram: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Worker {
    /// One closed-loop client: the next request goes out when the last
    /// answer is in. Only requests sent inside the window are counted.
    async fn run(mut self, measure_start: Instant, end: Instant) -> anyhow::Result<Tally> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let mut tally = Tally { histogram: new_histogram()?, errors: 0, first_error: None };
        loop {
            let sent = Instant::now();
            if sent >= end {
                return Ok(tally);
            }
            let result = match self.plan.next_op(self.workload, &mut rng) {
                Op::Put(key) => self.connection.put(key, self.value.as_ref().clone()).await,
                Op::Get(key) => self.connection.get(key).await,
            };
            self.completed.fetch_add(1, Ordering::Relaxed);
            if sent < measure_start {
                continue;
            }
            match result {
                Ok(()) => {
                    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(LATENCY_MAX_US);
                    tally.histogram.saturating_record(micros.clamp(1, LATENCY_MAX_US));
                }
                Err(error) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert_with(|| format!("{error:#}"));
                }
            }
        }
    }
}

/// One line on stderr, rewritten each second: phase, elapsed, recent ops/s.
async fn show_progress(label: String, completed: Arc<AtomicU64>, start: Instant, measure_start: Instant, end: Instant) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut last = 0;
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let done = completed.load(Ordering::Relaxed);
        let phase = if now < measure_start { "warm-up" } else { "measure" };
        let total = (end - start).as_secs_f64();
        eprint!("\r{label}: {phase} {:5.1}/{total:.1}s {:>8} ops/s   ", (now - start).as_secs_f64(), done - last);
        let _ = std::io::stderr().flush();
        last = done;
    }
}
