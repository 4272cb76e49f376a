//! The placement rule at cluster initialisation.

use std::collections::BTreeMap;

use holdfast_server::{Node, NodeConfig, RaftTimings};
use holdfast_testkit::placement;
use holdfast_types::NodeInfo;
use tokio::net::TcpListener;

#[tokio::test]
async fn a_region_holding_half_the_voters_is_refused_unless_forced() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let regions = ["ua-kyiv", "ua-kyiv", "ua-lviv", "eu-frankfurt"];
    let members: BTreeMap<u64, NodeInfo> = regions
        .iter()
        .enumerate()
        .map(|(i, r)| (i as u64 + 1, NodeInfo { addr: format!("127.0.0.1:{}", 1 + i), placement: placement(r) }))
        .collect();
    let mut config = NodeConfig {
        id: 1,
        advertise_addr: "127.0.0.1:1".into(),
        placement: placement("ua-kyiv"),
        data_dir: dir.path().join("n1"),
        initial_members: members,
        force_topology: false,
        peer_addr_overrides: BTreeMap::new(),
        raft: RaftTimings::default(),
        unsafe_local_reads: false,
        master_key: None,
        metrics_listen: None,
        admins: Default::default(),
        audit: Default::default(),
        tls: None,
        tls_reload_interval_ms: holdfast_server::TLS_RELOAD_INTERVAL_MS_DEFAULT,
        storage: holdfast_server::StoreOptions::small(),
    };
    let err = Node::start(config.clone(), TcpListener::bind("127.0.0.1:0").await?).await.expect_err("refused");
    let message = err.to_string();
    assert!(message.contains("ua-kyiv") && message.contains("2 of 4"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(!config.data_dir.exists(), "a refused node writes nothing");

    config.force_topology = true;
    let node = Node::start(config, TcpListener::bind("127.0.0.1:0").await?).await?;
    node.shutdown().await?;
    Ok(())
}
