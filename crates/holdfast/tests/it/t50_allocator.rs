//! The `holdfast` binary's allocator: jemalloc, with the options built into
//! it (`JEMALLOC_SYS_WITH_MALLOC_CONF` in `.cargo/config.toml`).

use std::path::PathBuf;
use std::process::Command;

fn holdfast() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_holdfast"))
}

/// The built-in options reach the binary: a build without them (another
/// config, a renamed variable) would run with 4 KiB pages and say nothing.
#[test]
fn the_binary_asks_for_transparent_huge_pages() -> anyhow::Result<()> {
    // jemalloc prints its settings at exit when the environment asks it
    // to (under either name it may read); asking changes no other option.
    let out = Command::new(holdfast())
        .arg("--version")
        .env("MALLOC_CONF", "stats_print:true")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = String::from_utf8_lossy(&out.stderr);
    // What the build put in, whatever this host's kernel offers.
    for line in [r#"config.malloc_conf: "thp:always,metadata_thp:auto""#, r#"opt.metadata_thp: "auto""#] {
        assert!(stats.contains(line), "jemalloc runs without {line}:\n{stats}");
    }
    // In effect: "always", or "not supported" on a kernel without THP.
    assert!(
        [r#"opt.thp: "always""#, r#"opt.thp: "not supported""#].iter().any(|line| stats.contains(line)),
        "jemalloc does not ask for huge pages:\n{stats}"
    );
    Ok(())
}
