//! Mutual TLS: a cluster that forms and serves over it, callers it refuses
//! (another CA, an expired certificate, plaintext, a client certificate or
//! a removed node's certificate speaking Raft), and certificates reloaded
//! from disk without a restart.

use std::path::Path;
use std::time::{Duration, SystemTime};

use holdfast_client::{Client, ClientTls, ReadOptions};
use holdfast_proto::v1::raft_client::RaftClient;
use holdfast_proto::v1::RaftMessage;
use holdfast_server::pki::{Ca, Issued, Validity};
use holdfast_server::NodeConfig;
use holdfast_testkit::{wait_until, TestCluster};
use holdfast_types::NodeId;
use openraft::async_runtime::WatchReceiver;
use tonic::Code;

use crate::t50_health::{http, sample};
use crate::{opts, LEADER_TIMEOUT};

const REGIONS: &[&str] = &["ua-kyiv", "ua-lviv", "eu-frankfurt"];

/// A client that tries once, for callers that must be refused.
fn one_shot(endpoints: Vec<String>, tls: Option<ClientTls>) -> anyhow::Result<Client> {
    let builder = Client::builder(endpoints).timeout(Duration::from_secs(3)).max_retries(0);
    Ok(match tls {
        Some(tls) => builder.tls(tls),
        None => builder,
    }
    .build()?)
}

fn tls_of(ca_pem: &str, issued: &Issued) -> ClientTls {
    ClientTls {
        ca_pem: ca_pem.as_bytes().to_vec(),
        cert_pem: issued.cert_pem.as_bytes().to_vec(),
        key_pem: issued.key_pem.as_bytes().to_vec(),
    }
}

fn cluster_ca_pem(cluster: &TestCluster) -> String {
    cluster.pki().map(|p| p.ca().cert_pem().to_owned()).expect("a TLS cluster")
}

/// Calls the internal Raft service of `addr` directly with `tls`.
async fn raw_raft_call(addr: &str, tls: &ClientTls, vote: bool) -> Result<(), tonic::Status> {
    let channel =
        tls.endpoint(addr).expect("endpoint").connect().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut raft = RaftClient::new(channel);
    // The caller is refused before its payload is read.
    let message = RaftMessage { payload: b"not a raft message".to_vec() };
    if vote {
        raft.vote(message).await.map(drop)
    } else {
        raft.append_entries(message).await.map(drop)
    }
}

#[tokio::test]
async fn cluster_forms_and_serves_over_mutual_tls() -> anyhow::Result<()> {
    let cluster = TestCluster::start_tls_with(REGIONS, |_| {}).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let client = cluster.client_builder()?.build()?;
    assert!(client.endpoints().iter().all(|e| e.starts_with("https://")));
    let written = client.put("population", "UA-1", "Olena", opts("birth")).await?;
    cluster.wait_applied(written.revision, Duration::from_secs(10)).await?;
    // Every replica answers over TLS, under the IP address it was dialled by.
    for endpoint in cluster.endpoints() {
        let pinned = client.on_endpoint(&endpoint)?;
        let stale = ReadOptions { consistency: holdfast_client::Consistency::Stale, ..Default::default() };
        let record = pinned.get("population", "UA-1", stale).await?.expect("replicated");
        assert_eq!(record.value.as_deref(), Some(&b"Olena"[..]));
    }
    cluster.shutdown().await
}

#[tokio::test]
async fn callers_without_a_valid_certificate_are_refused_and_change_nothing() -> anyhow::Result<()> {
    let cluster = TestCluster::start_tls_with(REGIONS, |c| c.metrics_listen = Some("127.0.0.1:0".into())).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let ca_pem = cluster_ca_pem(&cluster);

    // A certificate from another CA, even one naming a known identity.
    let rogue = Ca::generate("rogue ca")?;
    let foreign = tls_of(&ca_pem, &rogue.issue_client("admin", Validity::days(1))?);
    // A certificate from the right CA that has expired.
    let now = SystemTime::now();
    let expired_window =
        Validity { not_before: now - Duration::from_secs(7200), not_after: now - Duration::from_secs(3600) };
    let ca = cluster.pki().expect("tls").ca();
    let expired = tls_of(&ca_pem, &ca.issue_client("admin", expired_window)?);

    for (what, tls) in [("another CA", Some(foreign)), ("expired", Some(expired)), ("plaintext", None)] {
        let plaintext = tls.is_none();
        let client = one_shot(cluster.endpoints(), tls)?;
        let result = client.put("population", "UA-666", "forged", opts("forgery")).await;
        let error = result.expect_err(&format!("{what}: a write was accepted"));
        if plaintext {
            // Not a bare "broken pipe": the error says what may be missing.
            assert!(error.to_string().contains("this client speaks plaintext"), "{error}");
        }
        assert!(client.members().await.is_err(), "{what}: the cluster service answered");
    }
    let admin = cluster.client_builder()?.build()?;
    assert!(admin.get("population", "UA-666", ReadOptions::default()).await?.is_none(), "nothing was written");
    // The refused handshakes are counted where operators can see them.
    let metrics: Vec<_> = cluster.ids().iter().filter_map(|id| cluster.node(*id)?.metrics_addr()).collect();
    wait_until("refused handshakes to be counted", Duration::from_secs(10), || async {
        let mut failures = 0.0;
        for addr in &metrics {
            let body = http(*addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.ok()?;
            failures += sample(&body, "holdfast_tls_handshake_failures_total")?;
        }
        (failures >= 3.0).then_some(())
    })
    .await?;
    cluster.shutdown().await
}

/// The client verifies the node: with a certificate the nodes accept but
/// only a rogue CA trusted, it refuses every node before sending anything,
/// and says the write was not applied.
#[tokio::test]
async fn a_client_refuses_nodes_its_cas_do_not_vouch_for() -> anyhow::Result<()> {
    let cluster = TestCluster::start_tls_with(REGIONS, |_| {}).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let admin = cluster.client_tls("admin")?.expect("tls");
    let rogue = Ca::generate("rogue ca")?;
    let misled = ClientTls { ca_pem: rogue.cert_pem().as_bytes().to_vec(), ..admin };
    let client = one_shot(cluster.endpoints(), Some(misled))?;
    let error = client.put("population", "UA-777", "unsent", opts("misled")).await.expect_err("a node was trusted");
    assert_eq!(error.outcome(), holdfast_client::Outcome::NotApplied, "{error}");
    let trusted = cluster.client_builder()?.build()?;
    assert!(trusted.get("population", "UA-777", ReadOptions::default()).await?.is_none(), "nothing was written");
    cluster.shutdown().await
}

#[tokio::test]
async fn a_client_certificate_cannot_speak_raft() -> anyhow::Result<()> {
    let cluster = TestCluster::start_tls_with(REGIONS, |_| {}).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let auditor = cluster.client_tls("auditor")?.expect("tls");
    for vote in [false, true] {
        let status = raw_raft_call(&cluster.endpoint(1), &auditor, vote).await.expect_err("refused");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("identity 'auditor' is not a node certificate"), "{}", status.message());
    }
    cluster.shutdown().await
}

#[tokio::test]
async fn a_node_is_verified_under_its_own_id_whatever_address_is_dialled() -> anyhow::Result<()> {
    let cluster = TestCluster::start_tls_with(REGIONS, |_| {}).await?;
    let pki = cluster.pki().expect("tls");
    let files = pki.node_files(1)?;
    let (ca, cert, key) = (std::fs::read(&files.ca)?, std::fs::read(&files.cert)?, std::fs::read(&files.key)?);
    // How a node dials a peer: its own certificate, the peer's node name.
    let dial = |expected: &str| {
        let config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
            .identity(tonic::transport::Identity::from_pem(&cert, &key))
            .domain_name(expected);
        tonic::transport::Endpoint::from_shared(format!("https://{}", cluster.endpoint(2)))
            .and_then(|e| e.tls_config(config))
    };
    assert!(dial("node-2")?.connect().await.is_ok(), "node 2 proves it is node-2");
    assert!(dial("node-3")?.connect().await.is_err(), "node 2 cannot pass for node-3");
    cluster.shutdown().await
}

#[tokio::test]
async fn a_removed_node_certificate_is_refused_and_the_cluster_serves_on() -> anyhow::Result<()> {
    let cluster = TestCluster::start_tls_with(&["ua-kyiv", "ua-lviv", "eu-frankfurt", "eu-amsterdam"], |_| {}).await?;
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let victim: NodeId = cluster.ids().into_iter().rev().find(|id| *id != leader).expect("a follower");
    let admin = cluster.client_builder()?.build()?;
    admin.put("passports", "FX1", "before", opts("issue")).await?;

    let pki = cluster.pki().expect("tls");
    let files = pki.node_files(victim)?;
    let victim_tls = ClientTls::from_files(&files.ca, &files.cert, &files.key)?;
    let target = cluster.ids().into_iter().find(|id| *id != victim).expect("another node");
    // While a member, the victim's certificate is accepted (the call then
    // fails only on its made-up payload).
    let status = raw_raft_call(&cluster.endpoint(target), &victim_tls, false).await.expect_err("bad payload");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    admin.remove(victim, false).await?;
    let node = cluster.node(target).expect("running");
    wait_until("the target to drop the victim from its membership", Duration::from_secs(20), || async {
        let metrics = node.raft().metrics().borrow_watched().clone();
        let member = metrics.membership_config.membership().nodes().any(|(id, _)| *id == victim);
        (!member).then_some(())
    })
    .await?;
    let status = raw_raft_call(&cluster.endpoint(target), &victim_tls, false).await.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(&format!("node-{victim} is not a member")), "{}", status.message());

    // The removed node still runs and may call elections; nobody listens.
    admin.put("passports", "FX1", "after", opts("renewal")).await?;
    let record = admin.get("passports", "FX1", ReadOptions::default()).await?.expect("record");
    assert_eq!(record.value.as_deref(), Some(&b"after"[..]));
    cluster.shutdown().await
}

/// Replaces a file in one step, as an operator's `mv` would.
fn replace(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn fast_reload(config: &mut NodeConfig) {
    config.tls_reload_interval_ms = 100;
}

#[tokio::test]
async fn certificates_from_a_new_ca_are_picked_up_without_a_restart() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start_tls_with(REGIONS, fast_reload).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    // The identity the new CA will vouch for may write passports.
    cluster.client_builder()?.build()?.grant("passport-service", "passports", &["read", "write"]).await?;
    let old_ca = cluster_ca_pem(&cluster);
    let new_ca = Ca::generate("holdfast cluster CA 2")?;
    let newcomer = tls_of(new_ca.cert_pem(), &new_ca.issue_client("passport-service", Validity::days(1))?);
    assert!(one_shot(cluster.endpoints(), Some(newcomer.clone()))?.members().await.is_err(), "not trusted yet");

    // Rotate by overlap: every node trusts both CAs and presents a
    // certificate from the new one.
    let pki = cluster.pki().expect("tls");
    let bundle = format!("{old_ca}{}", new_ca.cert_pem());
    replace(&pki.ca_path(), &bundle)?;
    for id in cluster.ids() {
        let files = pki.node_files(id)?;
        let issued = new_ca.issue_node(id, &[], Validity::days(1))?;
        replace(&files.key, &issued.key_pem)?;
        replace(&files.cert, &issued.cert_pem)?;
    }
    let client = Client::builder(cluster.endpoints()).tls(newcomer).timeout(Duration::from_secs(3)).build()?;
    wait_until("a new-CA client to be served", Duration::from_secs(20), || async {
        client.put("passports", "FX-NEW", "issued", opts("issue")).await.ok()
    })
    .await?;
    // Peers connect with the new certificates too: a restarted follower
    // (fresh connections both ways) catches up with a later write.
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    cluster.stop(follower).await?;
    let written = client.put("passports", "FX-NEW", "renewed", opts("renewal")).await?;
    cluster.restart(follower).await?;
    let node = cluster.node(follower).expect("running");
    wait_until("the follower to apply the write", Duration::from_secs(20), || async {
        (node.read_view().applied_revision() >= written.revision).then_some(())
    })
    .await?;
    cluster.shutdown().await
}

#[tokio::test]
async fn an_unusable_file_set_keeps_the_current_certificates() -> anyhow::Result<()> {
    let cluster = TestCluster::start_tls_with(REGIONS, fast_reload).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let files = cluster.pki().expect("tls").node_files(1)?;
    replace(&files.key, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")?;
    let err = cluster.node(1).expect("running").reload_tls().await.expect_err("refused");
    assert!(err.to_string().contains("key file") && err.to_string().contains("node-1.key"), "{err}");
    // New connections to node 1 still get its old, valid certificate.
    let admin = cluster.client_builder()?.build()?;
    let pinned = admin.on_endpoint(&cluster.endpoint(1))?;
    pinned.status(&cluster.endpoint(1)).await?;
    cluster.shutdown().await
}
