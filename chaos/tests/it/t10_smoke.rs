//! A short smoke run (kills and a partition of the leader's region) is valid.

use std::time::Duration;

use holdfast_chaos::Verdict;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_smoke_run_is_valid() {
    let report = crate::run_short("smoke", Duration::from_secs(20), 1).await;
    assert!(!report.faults.is_empty(), "faults were injected");
    let check = report.check.as_ref().expect("checked");
    assert!(check.acked_writes > 0, "the workload made progress");
    assert_eq!(report.verdict, Verdict::Valid, "{}", report.summary());
}
