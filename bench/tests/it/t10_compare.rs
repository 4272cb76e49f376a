//! `compare` end to end on a tiny workload: both clusters start, both
//! targets answer, and the JSON report is well formed. No time is checked
//! (times on a shared machine say nothing); the WAL sync counts only have to
//! be read and, where a request must sync, above zero.

use std::path::Path;
use std::process::Command;

use holdfast_testkit::process::workspace_binary;

const ETCD: &str = "/usr/bin/etcd";

#[test]
fn compare_runs_both_targets_and_reports() {
    assert!(
        Path::new(ETCD).exists(),
        "{ETCD} is missing: install Debian's etcd-server (`cargo xtask deps` does) to run the benchmark test"
    );
    let holdfast = workspace_binary("holdfast").expect("the holdfast binary is built");
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_holdfast-bench"))
        .args(["compare", "--workloads", "put,get", "--clients", "2", "--duration", "1", "--warmup", "0.5"])
        .args(["--preload-keys", "20", "--etcd-bin", ETCD])
        .arg("--holdfast-bin")
        .arg(&holdfast)
        .arg("--json")
        .arg(&json_path)
        .output()
        .expect("holdfast-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "compare failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("ratio"), "no ratio line in the table:\n{stdout}");

    let text = std::fs::read_to_string(&json_path).expect("the JSON report is written");
    let report: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");
    let setup = report["setup"].as_str().expect("the report says how each side ran");
    assert!(setup.contains("holdfast: mutual TLS") && setup.contains("etcd: mutual TLS"), "{setup}");
    let comparisons = report["comparisons"].as_array().expect("comparisons is a list");
    assert_eq!(comparisons.len(), 2, "{text}");
    for (comparison, workload) in comparisons.iter().zip(["put", "get"]) {
        assert_eq!(comparison["workload"], workload);
        for target in ["holdfast", "etcd"] {
            let measurement = &comparison[target];
            assert_eq!(measurement["target"], target);
            assert!(measurement["ops"].as_u64().is_some_and(|ops| ops > 0), "{target} did no {workload}: {text}");
            assert!(measurement["p99_ms"].as_f64().is_some(), "{text}");
            assert!(measurement["cpu_secs_per_kop"].as_f64().is_some(), "{text}");
            let client_cpu = measurement["client_cpu_secs_per_kop"].as_f64().expect("the load generator's CPU");
            assert!(client_cpu > 0.0, "{target} {workload}: the load generator spent no CPU: {text}");
            // A share, whatever the machine did meanwhile: this checks it is
            // there and is one.
            let idle = measurement["idle_percent"].as_f64().expect("the machine's idle share");
            assert!((0.0..=100.0).contains(&idle), "{target} {workload}: idle {idle} %: {text}");
            // Every put is synced, and so is a holdfast get's strict audit
            // event; an etcd get writes nothing.
            let syncs = measurement["wal_syncs_per_kop"].as_f64().expect("WAL syncs are read off the metrics");
            let may_not_sync = workload == "get" && target == "etcd";
            assert!(syncs > 0.0 || may_not_sync, "{target} {workload} made no WAL sync: {text}");
        }
        assert!(comparison["ratio_ops_per_sec"].as_f64().is_some(), "{text}");
    }
}
