//! The `holdfast-chaos` command line: `run` a scenario and `list` them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use holdfast_chaos::{run_and_write, scenario, RunConfig, Verdict};

#[derive(Parser)]
#[command(
    name = "holdfast-chaos",
    about = "Chaos runs against a real holdfast cluster, with a linearizability checker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario; exits 0 only when the verdict is valid.
    Run {
        #[arg(long)]
        scenario: String,
        /// Length of the fault phase, e.g. `60s`, `2m`, `500ms`.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where the report, history, timeline and node logs go.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The `holdfast` binary; by default the one built next to this one.
        #[arg(long)]
        holdfast: Option<PathBuf>,
    },
    /// List the scenarios.
    List,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().map_err(|_| format!("bad duration {text:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration unit in {text:?} (ms, s, m)")),
    }
}

fn holdfast_next_to_me() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("holdfast");
    anyhow::ensure!(
        path.exists(),
        "{} not found; build it (`cargo build -p holdfast`) or pass --holdfast",
        path.display()
    );
    Ok(path)
}

/// Waits for Ctrl-C or SIGTERM and names it.
async fn stop_signal() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        // Without a SIGTERM handler, Ctrl-C still stops the run cleanly.
        Err(_) => return tokio::signal::ctrl_c().await.map_or("a signal", |()| "interrupted"),
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "terminated",
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::List => {
            for s in scenario::all() {
                println!("{:<22} {}", s.name, s.about);
            }
            ExitCode::SUCCESS
        }
        Command::Run { scenario: name, duration, seed, out, holdfast } => {
            let Some(scenario) = scenario::find(&name) else {
                eprintln!("unknown scenario {name:?}; see `holdfast-chaos list`");
                return ExitCode::from(2);
            };
            let binary = match holdfast.map_or_else(holdfast_next_to_me, Ok) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("{e:#}");
                    return ExitCode::from(2);
                }
            };
            let out_dir = out.unwrap_or_else(|| std::env::temp_dir().join(format!("holdfast-chaos-{name}-{seed}")));
            let config = RunConfig { scenario, duration, seed, out_dir: out_dir.clone(), binary, progress: true };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::from(2);
                }
            };
            // Stopped by a signal, the run is dropped, and with it the
            // cluster, which kills its node processes (a SIGTERM to this
            // process alone would otherwise leave them running).
            let outcome = runtime.block_on(async {
                tokio::select! {
                    report = run_and_write(&config) => Ok(report),
                    signal = stop_signal() => Err(signal),
                }
            });
            let report = match outcome {
                Ok(report) => report,
                Err(signal) => {
                    eprintln!("\nholdfast-chaos: {signal}; the cluster is stopped, no verdict");
                    return ExitCode::from(130);
                }
            };
            print!("{}", report.summary());
            println!("report: {}", out_dir.join("report.json").display());
            if report.verdict == Verdict::Valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
