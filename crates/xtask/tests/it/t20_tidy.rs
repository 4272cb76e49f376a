//! Tidy checks over the source files themselves.

use std::process::Command;

/// Where the project's Rust code lives; missing directories are fine.
const SOURCE_DIRS: [&str; 3] = ["crates", "chaos", "bench"];

/// Every Rust file git knows of (committed or new, not ignored), so a file is
/// checked before its first commit.
fn rust_files() -> Vec<String> {
    let stdout = crate::output_of(
        Command::new("git").args(["ls-files", "--cached", "--others", "--exclude-standard", "--"]).args(SOURCE_DIRS),
    );
    String::from_utf8_lossy(&stdout).lines().filter(|path| path.ends_with(".rs")).map(str::to_owned).collect()
}

#[test]
fn every_rust_file_opens_with_a_doc_line() {
    let root = crate::workspace_root();
    let files = rust_files();
    assert!(!files.is_empty(), "found no Rust files under {SOURCE_DIRS:?}: is git working here?");
    let offenders: Vec<String> = files
        .into_iter()
        // A file deleted but not yet staged is still listed; skip it.
        .filter_map(|path| std::fs::read_to_string(root.join(&path)).ok().map(|text| (path, text)))
        .filter(|(_, text)| !text.starts_with("//!"))
        .map(|(path, _)| path)
        .collect();
    assert!(
        offenders.is_empty(),
        "rule broken: every .rs file opens with a `//!` line saying what it owns; these do not:\n  {}",
        offenders.join("\n  ")
    );
}
