//! One chaos run, phase by phase: start the cluster, warm up healthy,
//! inject the scheduled faults, heal, wait for convergence, do a final
//! read and write of every key, read the stored history, check, report.
//! Anything that goes wrong in the harness makes the verdict `unknown`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use holdfast_client::Client;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::checker::{self, CheckInput, StoredRevision, Verdict};
use crate::cluster::ChaosCluster;
use crate::history::{Call, Op, Outcome};
use crate::nemesis;
use crate::progress::Progress;
use crate::report::{FaultWindow, Report};
use crate::scenario::Scenario;
use crate::workload::{self, parse_value, Workload, REGISTRY};

/// Healthy time before the first fault, so the timeline has a baseline.
const WARMUP: Duration = Duration::from_secs(4);
/// Workload keeps running after healing, to show recovery in the timeline.
const RECOVERY: Duration = Duration::from_secs(4);
/// Startup of five debug-build processes on a busy 2-core machine.
const LEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Catch-up after healing, including restarted nodes replaying their logs.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Budget of the linearizability search per key; out of budget = unknown.
const SEARCH_BUDGET_PER_KEY: Duration = Duration::from_secs(10);
/// Page size when reading a key's stored history.
const HISTORY_PAGE: u32 = 500;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub scenario: Scenario,
    /// Length of the fault phase.
    pub duration: Duration,
    pub seed: u64,
    pub out_dir: PathBuf,
    /// The `holdfast` binary to run as nodes.
    pub binary: PathBuf,
    /// Print a progress line while running.
    pub progress: bool,
}

/// Runs the scenario; never fails: a harness error becomes `unknown`.
pub async fn run(config: &RunConfig) -> Report {
    let origin = Instant::now();
    let mut report = Report::new(config);
    if let Err(error) = run_phases(config, origin, &mut report).await {
        report.harness_errors.push(format!("{error:#}"));
    }
    report.finish();
    report
}

async fn run_phases(config: &RunConfig, origin: Instant, report: &mut Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.out_dir)?;
    let root = config.out_dir.join("cluster");
    if root.exists() {
        // A previous run's data dirs would make this run start from its state.
        std::fs::remove_dir_all(&root)?;
    }
    let mut cluster = ChaosCluster::start(&config.binary, &root, config.scenario.unsafe_local_reads).await?;
    cluster.processes.wait_for_leader(LEADER_TIMEOUT).await?;
    let workload = Workload::new(origin, config.seed);
    let tasks = workload.spawn(&cluster.endpoints(), cluster.processes.client_tls(), config.seed)?;
    let total = WARMUP + config.duration + RECOVERY;
    let progress = config.progress.then(|| Progress::spawn(workload.clone(), total));

    tokio::time::sleep(WARMUP).await;
    let fault_result = run_faults(config, &mut cluster, &workload, report, progress.as_ref()).await;
    // Heal whatever is left, even after a harness error, before judging.
    heal_everything(&mut cluster)?;
    fault_result?;
    tokio::time::sleep(RECOVERY).await;
    workload.stop();
    for task in tasks {
        task.await?;
    }
    if let Some(p) = progress {
        p.finish().await;
    }

    match cluster.wait_converged(CONVERGE_TIMEOUT).await {
        Ok(took) => report.converge_ms = Some(took.as_millis() as u64),
        Err(error) => report.convergence_failures.push(format!("{error:#}")),
    }
    report.final_states = cluster.states().await;

    let client = cluster.client_builder().build()?;
    let keys = workload.keys();
    let final_reads = final_ops(&client, &workload, &keys, report).await;
    let stored = read_stored(&client, &keys).await;
    if let Err(error) = &stored {
        report.harness_errors.push(format!("reading stored history: {error:#}"));
    }
    let ops = workload.history.snapshot();
    let check = checker::check(&CheckInput {
        ops: &ops,
        stored: stored.as_ref().ok(),
        final_reads: &final_reads,
        budget_per_key: SEARCH_BUDGET_PER_KEY,
    });
    report.set_results(&ops, check);
    Ok(())
}

async fn run_faults(
    config: &RunConfig,
    cluster: &mut ChaosCluster,
    workload: &Workload,
    report: &mut Report,
    progress: Option<&Progress>,
) -> anyhow::Result<()> {
    let phase_start = Instant::now();
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x006e_656d_6573_6973);
    for planned in config.scenario.schedule(config.duration, config.seed) {
        tokio::time::sleep_until((phase_start + planned.start).into()).await;
        let start_us = workload.now_us();
        let (detail, active) = nemesis::inject(cluster, planned.fault, &mut rng).await?;
        if let Some(p) = progress {
            p.set_fault(&detail);
        }
        tokio::time::sleep_until((phase_start + planned.start + planned.length).into()).await;
        let healed = nemesis::heal(cluster, active).await?;
        if let Some(p) = progress {
            p.set_fault("");
        }
        report.membership_failures.extend(healed.problems);
        let detail = std::iter::once(detail).chain(healed.notes).collect::<Vec<_>>().join("; ");
        report.faults.push(FaultWindow {
            label: planned.fault.label(),
            detail,
            start_us,
            end_us: workload.now_us(),
            unavailable_ms: 0,
        });
    }
    tokio::time::sleep_until((phase_start + config.duration).into()).await;
    Ok(())
}

/// Restarts every stopped node, resumes paused ones, heals every link.
fn heal_everything(cluster: &mut ChaosCluster) -> anyhow::Result<()> {
    cluster.heal_links();
    for id in cluster.ids() {
        if cluster.processes.is_running(id) {
            // SIGCONT is harmless to a process that is not stopped.
            cluster.processes.resume(id)?;
        } else {
            cluster.processes.start(id)?;
        }
    }
    Ok(())
}

/// A final read and write of every key, recorded like any op; returns the
/// final read's revision per key. They must all succeed.
async fn final_ops(
    client: &Client,
    workload: &Workload,
    keys: &[String],
    report: &mut Report,
) -> BTreeMap<String, Option<u64>> {
    let mut finals = BTreeMap::new();
    // A process id of its own, above any the clients use.
    let process = u64::MAX / 2;
    for (i, key) in keys.iter().enumerate() {
        // Write first, then read: the read must see at least that write, and
        // every write acknowledged before it.
        for call in [Call::Write { value: u64::MAX / 2 + i as u64 }, Call::Read] {
            let request_id = format!("final-{key}-{}", call_name(&call));
            let call_us = workload.now_us();
            let outcome = workload::perform(client, client, key, &call, &request_id).await;
            let return_us = workload.now_us();
            match &outcome {
                Outcome::Read(seen) => {
                    finals.insert(key.clone(), seen.map(|(_, revision)| revision));
                }
                Outcome::Written { .. } => {}
                other => report.final_op_failures.push(format!("{key}: final {} ended {other:?}", call_name(&call))),
            }
            let op = Op { process, key: key.clone(), request_id, call, outcome, call_us, return_us };
            workload.history.record(op);
        }
    }
    finals
}

fn call_name(call: &Call) -> &'static str {
    match call {
        Call::Read => "read",
        _ => "write",
    }
}

/// Every key's stored revisions, as the cluster reports them.
async fn read_stored(client: &Client, keys: &[String]) -> anyhow::Result<BTreeMap<String, Vec<StoredRevision>>> {
    let mut stored = BTreeMap::new();
    for key in keys {
        let mut revisions = Vec::new();
        let mut after = 0;
        loop {
            let page = client.history(REGISTRY, key, after, HISTORY_PAGE).await;
            let page = match page {
                Ok(page) => page,
                // A key never written has no history.
                Err(holdfast_client::ClientError::NotFound(_)) => break,
                Err(error) => return Err(error.into()),
            };
            for r in &page.revisions {
                revisions.push(StoredRevision {
                    revision: r.revision,
                    value: r.value.as_deref().map(|v| parse_value(Some(v))),
                    request_id: r.reason.clone(),
                });
            }
            match page.next_after_revision {
                Some(next) => after = next,
                None => break,
            }
        }
        stored.insert(key.clone(), revisions);
    }
    Ok(stored)
}

impl Report {
    /// The overall verdict: the checker's, made invalid by a failed
    /// convergence or final op, and unknown by any harness error.
    pub fn verdict(&self) -> Verdict {
        let mut verdict = self.check.as_ref().map_or(Verdict::Unknown, |c| c.verdict);
        if !self.convergence_failures.is_empty()
            || !self.final_op_failures.is_empty()
            || !self.membership_failures.is_empty()
        {
            verdict = verdict.and(Verdict::Invalid);
        }
        if !self.harness_errors.is_empty() {
            verdict = verdict.and(Verdict::Unknown);
        }
        verdict
    }
}
