//! Access control and the audit trail on a mutual-TLS cluster: an identity
//! without grants is refused every operation and changes nothing; grants
//! open exactly what they name; the stored actor is the certificate's
//! identity; every access, refusals included, lands in the trail.

use std::time::Duration;

use holdfast_client::{Client, ClientError, ReadOptions, WriteOptions};
use holdfast_server::NodeConfig;
use holdfast_testkit::TestCluster;

use crate::{opts, LEADER_TIMEOUT};

const REGIONS: &[&str] = &["ua-kyiv", "ua-lviv", "eu-frankfurt"];

fn with_admins(config: &mut NodeConfig) {
    config.admins = ["admin".to_string()].into();
}

/// A client presenting the certificate of `identity`.
fn as_identity(cluster: &TestCluster, identity: &str) -> anyhow::Result<Client> {
    let tls = cluster.client_tls(identity)?.expect("a TLS cluster");
    Ok(Client::builder(cluster.endpoints()).timeout(Duration::from_secs(5)).tls(tls).build()?)
}

fn assert_denied<T: std::fmt::Debug>(result: Result<T, ClientError>, identity: &str, permission: &str) {
    let err = result.expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("permission denied"), "{text}");
    assert!(text.contains(identity) && text.contains(permission), "{text} should name {identity} and {permission}");
}

#[tokio::test]
async fn an_identity_without_grants_is_refused_everything_and_changes_nothing() -> anyhow::Result<()> {
    let cluster = TestCluster::start_tls_with(REGIONS, with_admins).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let admin = cluster.client_builder()?.build()?;
    let written = admin.put("population", "UA-1", "v1", opts("birth")).await?;
    let stranger = as_identity(&cluster, "stranger")?;

    assert_denied(stranger.put("population", "UA-1", "forged", opts("x")).await, "stranger", "'write'");
    assert_denied(stranger.put("population", "UA-2", "forged", opts("x")).await, "stranger", "'write'");
    assert_denied(stranger.delete("population", "UA-1", opts("x")).await, "stranger", "'write'");
    assert_denied(stranger.get("population", "UA-1", ReadOptions::default()).await, "stranger", "'read'");
    assert_denied(stranger.history("population", "UA-1", 0, 10).await, "stranger", "'read'");
    assert_denied(stranger.scan("population", None, 10).await, "stranger", "'read'");
    assert_denied(stranger.audit_trail("population", "UA-1", true, None, 10).await, "stranger", "'audit'");
    assert_denied(stranger.grant("stranger", "population", &["read"]).await, "stranger", "'admin'");
    assert_denied(stranger.grant("stranger", "*", &["admin"]).await, "stranger", "'admin'");
    assert_denied(stranger.list_access().await, "stranger", "'admin'");
    assert_denied(stranger.rotate_key().await, "stranger", "'admin'");
    assert_denied(stranger.remove(3, false).await, "stranger", "'admin'");
    let me = stranger.who_am_i().await?;
    assert!(me.authenticated && me.identity == "stranger" && me.grants.is_empty() && !me.cluster_admin);

    // Nothing changed: one revision, no UA-2, no grant, all three voters.
    let history = admin.history("population", "UA-1", 0, 10).await?;
    assert_eq!(history.revisions.len(), 1);
    assert_eq!(history.revisions[0].revision, written.revision);
    assert!(admin.get("population", "UA-2", ReadOptions::default()).await?.is_none());
    assert!(admin.list_access().await?.grants.is_empty());
    assert_eq!(admin.members().await?.members.iter().filter(|m| m.voter).count(), 3);

    // Every refusal is in the trail, with the identity that tried.
    let trail = admin.audit_trail_all("population", "UA-1", false).await?;
    for op in ["put", "delete", "get", "history", "read-audit"] {
        assert!(
            trail.iter().any(|e| e.identity == "stranger" && e.op == op && e.outcome == "denied"),
            "denied {op} missing: {trail:?}"
        );
    }
    cluster.shutdown().await
}

#[tokio::test]
async fn grants_open_exactly_what_they_name_and_the_trail_names_who_looked() -> anyhow::Result<()> {
    let cluster = TestCluster::start_tls_with(REGIONS, with_admins).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let admin = cluster.client_builder()?.build()?;
    admin.grant("population-service", "population", &["read", "write"]).await?;
    admin.grant("auditor", "population", &["audit"]).await?;
    admin.grant("pop-admin", "population", &["admin"]).await?;
    let svc = as_identity(&cluster, "population-service")?;
    let auditor = as_identity(&cluster, "auditor")?;
    let pop_admin = as_identity(&cluster, "pop-admin")?;

    // The actor is the certificate's identity, whatever the client claims.
    let claimed = WriteOptions { actor: "someone-else".into(), ..opts("birth") };
    let written = svc.put("population", "UA-7", "v1", claimed).await?;
    let record = svc.get("population", "UA-7", ReadOptions::default()).await?.expect("readable");
    assert_eq!(record.revision, written.revision);
    assert_eq!(record.actor, "population-service");
    assert_denied(svc.put("passports", "FX-1", "v", opts("x")).await, "population-service", "'write'");
    assert_denied(svc.get("passports", "FX-1", ReadOptions::default()).await, "population-service", "'read'");
    assert_denied(svc.audit_trail("population", "UA-7", true, None, 10).await, "population-service", "'audit'");

    // The auditor sees who read the record; its own look is recorded too.
    assert_denied(auditor.get("population", "UA-7", ReadOptions::default()).await, "auditor", "'read'");
    let who_read = auditor.audit_trail_all("population", "UA-7", true).await?;
    assert!(who_read.iter().any(|e| e.identity == "population-service" && e.op == "get" && e.outcome == "ok"));
    assert!(who_read.iter().all(|e| e.op != "put"), "who-read lists reads only");
    let again = auditor.audit_trail_all("population", "UA-7", true).await?;
    assert!(again.iter().any(|e| e.identity == "auditor" && e.op == "read-audit"), "{again:?}");

    // A registry admin manages its registry only.
    pop_admin.grant("reader", "population", &["read"]).await?;
    assert_denied(pop_admin.grant("reader", "passports", &["read"]).await, "pop-admin", "'admin'");
    assert_denied(pop_admin.grant("reader", "*", &["read"]).await, "pop-admin", "'admin'");
    let reader = as_identity(&cluster, "reader")?;
    assert!(reader.get("population", "UA-7", ReadOptions::default()).await?.is_some());

    // Revoking closes what it names and nothing else.
    admin.revoke("population-service", "population", &["write"]).await?;
    assert_denied(svc.put("population", "UA-7", "v2", opts("x")).await, "population-service", "'write'");
    assert!(svc.get("population", "UA-7", ReadOptions::default()).await?.is_some());
    let me = svc.who_am_i().await?;
    assert_eq!(me.grants.len(), 1);
    assert_eq!(me.grants[0].permissions, vec!["read".to_string()]);

    // Bad grants are refused with the rule named.
    let err = admin.grant("node-2", "population", &["read"]).await.expect_err("node identity");
    assert!(err.to_string().contains("node identity"), "{err}");
    let err = admin.grant("x", "population", &["root"]).await.expect_err("unknown permission");
    assert!(err.to_string().contains("unknown permission"), "{err}");
    let list = admin.list_access().await?;
    assert_eq!(list.configured_admins, vec!["admin".to_string()]);
    assert_eq!(list.grants.len(), 4, "{list:?}");
    cluster.shutdown().await
}

#[tokio::test]
async fn garbage_and_oversized_frames_on_the_port_change_nothing() -> anyhow::Result<()> {
    use rand::RngCore;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let cluster = TestCluster::start_tls_with(REGIONS, with_admins).await?;
    cluster.wait_for_leader(LEADER_TIMEOUT).await?;
    let admin = cluster.client_builder()?.build()?;
    let written = admin.put("population", "UA-9", "v1", opts("birth")).await?;
    let addr = cluster.endpoint(1);
    let mut rng = rand::thread_rng();
    let mut shapes: Vec<Vec<u8>> = Vec::new();
    // Random bytes where a TLS ClientHello belongs.
    let mut noise = vec![0u8; 256 * 1024];
    rng.fill_bytes(&mut noise);
    shapes.push(noise);
    // A TLS record header announcing a huge handshake message.
    shapes.push(vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0xff, 0xff, 0xff]);
    // A plaintext HTTP/2 preface and a frame header claiming 16 MiB.
    let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2.extend_from_slice(&[0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01]);
    shapes.push(h2);
    for bytes in shapes {
        let mut stream = tokio::net::TcpStream::connect(addr.trim_start_matches("https://")).await?;
        let _ = stream.write_all(&bytes).await;
        let mut sink = [0u8; 1024];
        // The node closes the connection (or answers with a TLS alert).
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut sink)).await;
    }
    // A frame over the gRPC message limit from an authenticated client.
    let huge = vec![7u8; holdfast_types::limits::GRPC_MESSAGE_BYTES_MAX + 1];
    assert!(admin.put("population", "UA-9", huge, opts("too big")).await.is_err());

    // Still serving, and nothing changed.
    let record = admin.get("population", "UA-9", ReadOptions::default()).await?.expect("present");
    assert_eq!(record.revision, written.revision);
    assert_eq!(admin.history("population", "UA-9", 0, 10).await?.revisions.len(), 1);
    admin.put("population", "UA-10", "v", opts("after")).await?;
    cluster.shutdown().await
}
