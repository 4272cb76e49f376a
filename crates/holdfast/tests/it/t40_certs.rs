//! `holdfast certs`: the files it writes, their permissions, and that it
//! never overwrites one.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

fn holdfast() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_holdfast"))
}

#[test]
fn certs_init_writes_a_cluster_pki_and_refuses_to_overwrite() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out_dir = dir.path().join("pki");
    let init = |extra: &[&str]| {
        Command::new(holdfast())
            .args(["certs", "init", "--out"])
            .arg(&out_dir)
            .args(["--nodes", "1=kyiv-1.internal,2=10.0.0.2", "--clients", "admin,auditor"])
            .args(extra)
            .output()
    };
    let out = init(&[])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in ["ca", "node-1", "node-2", "admin", "auditor"] {
        let key = out_dir.join(format!("{name}.key"));
        assert!(out_dir.join(format!("{name}.pem")).exists(), "{name}.pem");
        assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600, "{name}.key is private");
    }

    let again = init(&[])?;
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");

    // More certificates later, under the same CA.
    let client = Command::new(holdfast())
        .args(["certs", "client", "--ca-dir"])
        .arg(&out_dir)
        .arg("passport-service")
        .output()?;
    assert!(client.status.success(), "{}", String::from_utf8_lossy(&client.stderr));
    assert!(out_dir.join("passport-service.pem").exists());
    let node = Command::new(holdfast())
        .args(["certs", "node", "--ca-dir"])
        .arg(&out_dir)
        .args(["--id", "3", "--hosts", "lviv-1.internal"])
        .output()?;
    assert!(node.status.success(), "{}", String::from_utf8_lossy(&node.stderr));
    let again = Command::new(holdfast()).args(["certs", "client", "--ca-dir"]).arg(&out_dir).arg("admin").output()?;
    assert!(!again.status.success(), "an existing client certificate is not replaced");
    Ok(())
}
