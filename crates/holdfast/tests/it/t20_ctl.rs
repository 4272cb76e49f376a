//! `holdfastctl` against a running cluster: the commands of the README tour,
//! JSON output, and one-line errors with a non-zero exit.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use holdfast_testkit::process::{reference_topology, workspace_binary, NodeOptions, ProcessCluster};

/// Runs holdfastctl with the cluster's `admin` certificate from the
/// environment, as the README tour does.
fn ctl(cluster: &ProcessCluster, args: &[&str]) -> anyhow::Result<Output> {
    ctl_as(cluster, "admin", args)
}

/// Runs holdfastctl with the certificate of `identity`.
fn ctl_as(cluster: &ProcessCluster, identity: &str, args: &[&str]) -> anyhow::Result<Output> {
    let files = cluster.pki().expect("a TLS cluster").client_files(identity)?;
    Ok(Command::new(workspace_binary("holdfastctl")?)
        .env("HOLDFAST_ENDPOINTS", cluster.endpoints().join(","))
        .env("HOLDFAST_CACERT", &files.ca)
        .env("HOLDFAST_CERT", &files.cert)
        .env("HOLDFAST_KEY", &files.key)
        .args(args)
        .output()?)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn ctl_tour_works_and_errors_are_one_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // One node per region (n1 ua-kyiv, n3 ua-lviv, n4 eu-frankfurt): three
    // nodes with two in one region would break the placement rule.
    let specs: Vec<_> = reference_topology().into_iter().filter(|s| [1, 3, 4].contains(&s.id)).collect();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_holdfast"));
    let mut cluster = ProcessCluster::configure(&binary, dir.path(), &specs, None, |_| NodeOptions::default())?;
    cluster.start_all()?;
    cluster.wait_for_leader(Duration::from_secs(30)).await?;

    let out = ctl(&cluster, &["put", "population", "UA-7", "{\"name\":\"Oksana\"}", "--reason", "birth"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ctl(&cluster, &["get", "population", "UA-7"])?;
    assert!(stdout(&out).contains("Oksana"));
    let out = ctl(&cluster, &["-w", "json", "history", "population", "UA-7"])?;
    let json: serde_json::Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(json["revisions"].as_array().map(|a| a.len()), Some(1), "{json}");
    let out = ctl(&cluster, &["member", "list"])?;
    assert!(stdout(&out).contains("ua-lviv"));
    let out = ctl(&cluster, &["endpoint", "status"])?;
    assert!(out.status.success() && stdout(&out).contains("leader"));

    let out = ctl(&cluster, &["get", "population", "UA-nobody"])?;
    assert!(!out.status.success());
    let out = ctl(&cluster, &["put", "Bad Registry", "x", "y"])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("malformed"), "{stderr}");

    // Access control and the audit trail, as the README shows them.
    let out = ctl_as(&cluster, "auditor", &["get", "population", "UA-7"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("permission denied") && stderr.contains("auditor"), "{stderr}");
    let out = ctl(&cluster, &["access", "grant", "auditor", "population", "audit"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ctl(&cluster, &["access", "list"])?;
    assert!(stdout(&out).contains("auditor") && stdout(&out).contains("audit"), "{}", stdout(&out));
    let out = ctl_as(&cluster, "auditor", &["-w", "json", "audit", "who-read", "population", "UA-7"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out))?;
    let entries = json["entries"].as_array().cloned().unwrap_or_default();
    assert!(entries.iter().any(|e| e["identity"] == "admin" && e["op"] == "get"), "{json}");
    assert!(entries.iter().any(|e| e["identity"] == "auditor" && e["outcome"] == "denied"), "{json}");
    let out = ctl(&cluster, &["history", "population", "UA-7"])?;
    assert!(stdout(&out).contains("admin"), "the actor is the certificate's identity: {}", stdout(&out));

    // Without certificates the nodes do not talk to it; half a set is refused.
    let plain = Command::new(workspace_binary("holdfastctl")?)
        .env("HOLDFAST_ENDPOINTS", cluster.endpoints().join(","))
        .args(["--max-retries", "0", "get", "population", "UA-7"])
        .output()?;
    assert!(!plain.status.success() && !stdout(&plain).contains("Oksana"));
    let half =
        Command::new(workspace_binary("holdfastctl")?).args(["--cert", "x.pem", "endpoint", "status"]).output()?;
    let stderr = String::from_utf8_lossy(&half.stderr);
    assert!(!half.status.success() && stderr.contains("--cacert"), "{stderr}");
    cluster.stop_all().await?;
    Ok(())
}
