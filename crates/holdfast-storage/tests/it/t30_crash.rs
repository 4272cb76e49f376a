//! Killed mid-write: a process applying synced batches into recycled WAL
//! files is killed with SIGKILL, and every batch it reported applied is
//! there when the store opens again.
//!
//! The test runs its own binary again as the writer (the same test, which
//! writes instead when an environment variable names its directory), so
//! the kill hits a real process wherever it happens to be:
//! inside a sync, a memtable flush, a WAL switch into a recycled file whose
//! tail still holds an older file's records, or between batches. Every
//! open writes two spent WAL files, so each round starts on recycled files
//! again; 4 KiB values and 1 MiB files make each round switch files several
//! times and flush the memtables each time.
//!
//! SIGKILL leaves the kernel's page cache alone, so this proves that what
//! the process had written is recovered (WAL replay through recycled
//! files, memtables and flushes cut short), not that it was synced: losing
//! a sync takes a machine crash.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use holdfast_storage::{Store, StoreOptions};
use holdfast_types::{Command, CommittedLeaderId, Entry, LogId, RegistryName, WriteMeta};
use openraft::storage::RaftStateMachine;
use openraft::EntryPayload;

/// Names the store directory the writer child writes into.
const WRITER_DIR: &str = "HOLDFAST_CRASH_WRITER_DIR";
/// The test's name, for the harness's `--exact` filter in the writer.
const TEST: &str = "t30_crash::acked_batches_survive_sigkill_in_recycled_wal_files";

fn registry() -> RegistryName {
    RegistryName::parse("land").expect("valid name")
}

fn record(index: u64) -> Vec<u8> {
    format!("parcel-{index}").into_bytes()
}

/// The value written at `index`: 4 KiB that name their index.
fn value(index: u64) -> Vec<u8> {
    format!("{index:016}").repeat(256).into_bytes()
}

/// The writer: applies one put per entry, each in its own synced batch,
/// and prints `applied N` once entry N's batch is on stable storage, until
/// killed.
async fn write_until_killed_in(dir: &Path) {
    let store = Store::open(dir, &StoreOptions::small()).expect("store opens");
    let mut sm = store.state_machine().await.expect("state machine opens");
    let (applied, _) = sm.applied_state().await.expect("applied state");
    let mut out = std::io::stdout();
    for index in applied.map_or(0, |log_id| log_id.index) + 1.. {
        let command = Command::Put {
            registry: registry(),
            record: record(index),
            value: value(index),
            if_revision: None,
            meta: WriteMeta {
                request_id: format!("crash-{index}"),
                actor: "registrar".into(),
                reason: "crash test".into(),
                commit_time_ms: 1,
            },
        };
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId { term: 1, node_id: 1 }, index),
            payload: EntryPayload::Normal(command),
        };
        sm.apply_batch(vec![entry]).await.expect("batch applies");
        writeln!(out, "applied {index}").and_then(|()| out.flush()).expect("parent reads");
    }
}

/// Starts the writer on `dir`, kills it once it has reported `count` more
/// batches applied, and returns the last index it reported.
fn write_until_killed(dir: &Path, count: usize) -> u64 {
    let mut writer = Process::new(std::env::current_exe().expect("test binary"))
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(WRITER_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("writer starts");
    let stdout = writer.stdout.take().expect("piped stdout");
    // Read on a thread so a writer that stalls fails the test instead of
    // hanging it.
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut last = None;
    let mut seen = 0;
    while seen < count {
        let line = match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line.expect("writer output"),
            // Ended (the writer failed) or stalled: stop and report.
            Err(_) => break,
        };
        // The harness's own "test … " may precede the first report.
        if let Some((_, index)) = line.split_once("applied ") {
            last = Some(index.parse::<u64>().expect("an index"));
            seen += 1;
        }
    }
    // SIGKILL: no destructor, no flush, no orderly close of the database.
    writer.kill().expect("writer killed");
    writer.wait().expect("writer reaped");
    assert_eq!(seen, count, "the writer stopped after {seen} batches (its stderr is above)");
    last.expect("at least one batch")
}

#[test]
fn acked_batches_survive_sigkill_in_recycled_wal_files() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if let Some(dir) = std::env::var_os(WRITER_DIR) {
        // This process is the writer another run of this test started.
        return runtime.block_on(write_until_killed_in(Path::new(&dir)));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked = 0;
    // Uneven counts, so the kills land at different points of a file.
    for count in [700, 333, 901, 517] {
        acked = write_until_killed(dir.path(), count);
        runtime.block_on(async {
            let store = Store::open(dir.path(), &StoreOptions::small()).expect("store opens after the kill");
            let mut sm = store.state_machine().await.expect("state machine opens after the kill");
            let (applied, _) = sm.applied_state().await.unwrap();
            let applied = applied.map_or(0, |log_id| log_id.index);
            assert!(applied >= acked, "applied {applied} after the writer reported {acked}");
            let view = sm.read_view();
            for index in 1..=acked {
                let (found, _) = view.get(registry(), record(index), None).await.unwrap();
                let found = found.unwrap_or_else(|| panic!("batch {index} was reported applied and is gone"));
                assert_eq!(found.value, Some(value(index)), "batch {index}");
            }
        });
    }
    assert!(acked >= 2451, "four rounds wrote {acked} batches");
}
