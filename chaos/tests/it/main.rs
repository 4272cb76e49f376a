//! Integration tests of the chaos harness against real node processes:
//! a short smoke run must be valid, the stale-read control invalid.
//!
//! They need the `holdfast` binary built next to the test executable
//! (`cargo build -p holdfast`).

mod t10_smoke;
mod t20_control;

use std::time::Duration;

use holdfast_chaos::{run_and_write, scenario, RunConfig};
use holdfast_testkit::process::workspace_binary;

/// One chaos cluster at a time: two would share 2 cores with each other.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `name` for a short fault phase in a temp dir and returns the report.
pub async fn run_short(name: &str, fault_phase: Duration, seed: u64) -> holdfast_chaos::report::Report {
    let _turn = ONE_CLUSTER.lock().await;
    let scenario = scenario::find(name).expect("scenario exists");
    let binary = workspace_binary("holdfast").expect("holdfast binary built");
    let dir = tempfile::tempdir().expect("temp dir");
    let config =
        RunConfig { scenario, duration: fault_phase, seed, out_dir: dir.path().to_path_buf(), binary, progress: false };
    let report = run_and_write(&config).await;
    assert!(dir.path().join("report.json").exists());
    assert!(dir.path().join("timeline.svg").exists());
    println!("{}", report.summary());
    report
}
