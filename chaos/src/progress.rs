//! The progress line printed while a run is going: elapsed time, a bar,
//! op counts and the fault in progress.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::workload::Workload;

/// Width of the bar in characters.
const BAR_WIDTH: usize = 30;

#[derive(Debug)]
pub struct Progress {
    fault: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Redraws the line once a second on stderr until [`Progress::finish`].
    pub fn spawn(workload: Workload, total: Duration) -> Self {
        let fault = Arc::new(Mutex::new(String::new()));
        let shown = fault.clone();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            loop {
                let elapsed = started.elapsed();
                let done = ((elapsed.as_secs_f64() / total.as_secs_f64()).min(1.0) * BAR_WIDTH as f64) as usize;
                let ops = workload.history.snapshot();
                let count = |class: &str| ops.iter().filter(|op| op.outcome.class() == class).count();
                let fault = shown.lock().map(|f| f.clone()).unwrap_or_default();
                eprint!(
                    "\r[{}{}] {:>4}s/{}s ops {} ok {} info {} fail {} {:<40}",
                    "#".repeat(done),
                    ".".repeat(BAR_WIDTH - done),
                    elapsed.as_secs(),
                    total.as_secs(),
                    ops.len(),
                    count("ok"),
                    count("info"),
                    count("fail"),
                    if fault.is_empty() { String::new() } else { format!("| {fault}") },
                );
                let _ = std::io::stderr().flush();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Self { fault, task }
    }

    pub fn set_fault(&self, text: &str) {
        if let Ok(mut f) = self.fault.lock() {
            *f = text.to_owned();
        }
    }

    pub async fn finish(self) {
        self.task.abort();
        let _ = self.task.await;
        eprintln!();
    }
}
