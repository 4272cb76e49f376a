//! The known-bad control: local reads without ReadIndex under partitions
//! must be caught as stale reads.

use std::time::Duration;

use holdfast_chaos::Verdict;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_read_control_is_invalid() {
    let report = crate::run_short("control-stale-reads", Duration::from_secs(15), 1).await;
    assert_eq!(report.verdict, Verdict::Invalid, "{}", report.summary());
    let check = report.check.as_ref().expect("checked");
    assert!(check.keys_not_linearizable > 0, "caught by the linearizability search");
}
