//! Health and metrics: the registry's gRPC readiness follows the cluster
//! (SERVING with a leader, NOT_SERVING once quorum is gone), liveness stays
//! SERVING, and `/metrics` reports Raft, storage and request series.

use std::time::Duration;

use holdfast_testkit::wait_until;
use holdfast_testkit::TestCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::{client, opts, LEADER_TIMEOUT};

const REGISTRY: &str = "holdfast.v1.Registry";

async fn health(addr: &str, service: &str) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?.connect().await.ok()?;
    let response = HealthClient::new(channel).check(HealthCheckRequest { service: service.into() }).await.ok()?;
    Some(response.into_inner().status())
}

/// One raw HTTP/1.1 exchange; returns the whole response.
pub(crate) async fn http(addr: std::net::SocketAddr, request: &[u8]) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// The value of an unlabelled (or exactly labelled) sample, if present.
pub(crate) fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn readiness_follows_quorum_and_metrics_describe_the_node() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start_with(&["ua-kyiv", "ua-lviv", "eu-frankfurt"], |c| {
        c.metrics_listen = Some("127.0.0.1:0".into());
    })
    .await?;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    for id in cluster.ids() {
        let addr = cluster.endpoint(id);
        wait_until("registry SERVING", LEADER_TIMEOUT, || async {
            (health(&addr, REGISTRY).await == Some(ServingStatus::Serving)).then_some(())
        })
        .await?;
        assert_eq!(health(&addr, "").await, Some(ServingStatus::Serving), "liveness");
    }

    let c = client(cluster.endpoints());
    c.put("passports", "P-1", "v1", opts("issue")).await?;
    let metrics_addr = cluster.node(leader).and_then(|n| n.metrics_addr()).expect("metrics_listen was set");
    let response = http(metrics_addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await?;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    for series in ["holdfast_ready", "holdfast_raft_has_leader", "holdfast_raft_is_leader"] {
        assert_eq!(sample(&response, series), Some(1.0), "{series}");
    }
    assert!(sample(&response, "holdfast_raft_term").is_some_and(|t| t >= 1.0));
    assert!(sample(&response, "holdfast_raft_commit_index").is_some_and(|i| i >= 2.0));
    assert!(sample(&response, "holdfast_raft_applied_index").is_some_and(|i| i >= 2.0));
    assert!(sample(&response, "holdfast_storage_fsync_seconds_count").is_some_and(|n| n >= 1.0));
    assert!(sample(&response, "holdfast_proposals_committed_total").is_some_and(|n| n >= 1.0), "{response}");
    assert!(response.contains("holdfast_raft_replication_lag_entries{peer=\""), "{response}");
    let put = "holdfast_grpc_requests_total{method=\"/holdfast.v1.Registry/Put\",code=\"Ok\"}";
    assert!(sample(&response, put).is_some_and(|n| n >= 1.0), "{response}");

    // Anything but a small GET /metrics is refused, with a bounded read.
    let other = http(metrics_addr, b"GET / HTTP/1.1\r\n\r\n").await?;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let refused = http(metrics_addr, &huge).await.unwrap_or_default();
    assert!(!refused.contains("200 OK"), "oversized request must not be served");

    // Two of three gone: the survivor loses its leader (or its quorum) and
    // must stop reporting ready, while staying alive.
    let survivor = *cluster.ids().iter().find(|id| **id != leader).expect("three nodes");
    for id in cluster.ids() {
        if id != survivor {
            cluster.stop(id).await?;
        }
    }
    let addr = cluster.endpoint(survivor);
    wait_until("registry NOT_SERVING without quorum", Duration::from_secs(20), || async {
        (health(&addr, REGISTRY).await == Some(ServingStatus::NotServing)).then_some(())
    })
    .await?;
    assert_eq!(health(&addr, "").await, Some(ServingStatus::Serving), "liveness without quorum");
    let metrics_addr = cluster.node(survivor).and_then(|n| n.metrics_addr()).expect("metrics_listen was set");
    let response = http(metrics_addr, b"GET /metrics HTTP/1.0\r\n\r\n").await?;
    assert_eq!(sample(&response, "holdfast_ready"), Some(0.0), "{response}");
    cluster.shutdown().await
}
