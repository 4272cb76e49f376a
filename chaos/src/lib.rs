//! holdfast-chaos: runs a real multi-region holdfast cluster as processes,
//! injects faults through per-link TCP proxies, drives a register workload
//! and checks the recorded history for linearizability and lost writes.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod nemesis;
mod progress;
pub mod proxy;
pub mod replace;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod svg;
pub mod workload;

pub use checker::Verdict;
pub use runner::{run, RunConfig};

/// Runs a scenario and writes report.json, history.json and timeline.svg
/// into the out dir; a failure to write them turns the verdict `unknown`.
pub async fn run_and_write(config: &RunConfig) -> report::Report {
    let mut report = run(config).await;
    if let Err(error) = write_outputs(config, &report) {
        report.harness_errors.push(format!("writing the report: {error:#}"));
        report.finish();
    }
    report
}

fn write_outputs(config: &RunConfig, report: &report::Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.out_dir)?;
    report.write_json(&config.out_dir)?;
    std::fs::write(config.out_dir.join("history.json"), serde_json::to_vec(&report.history)?)?;
    std::fs::write(config.out_dir.join("timeline.svg"), svg::timeline(report))?;
    Ok(())
}
