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
fn the_binary_backs_its_heap_with_transparent_huge_pages() -> anyhow::Result<()> {
    // jemalloc prints its settings at exit when the environment asks it
    // to; asking changes no other option.
    let out = Command::new(holdfast())
        .arg("--version")
        .env("MALLOC_CONF", "stats_print:true")
        .env_remove("_RJEM_MALLOC_CONF")
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = String::from_utf8_lossy(&out.stderr);
    for option in [r#"opt.thp: "always""#, r#"opt.metadata_thp: "auto""#] {
        assert!(stats.contains(option), "jemalloc runs without {option}:\n{stats}");
    }
    Ok(())
}
