//! The repository's invariants, kept as tests (as rust-analyzer keeps its
//! tidy checks): the dependency rules between crates, and file headers.
//!
//! They read the repository, not xtask's code, so they pass or fail the same
//! whichever crate a change touched.

mod t10_deps;
mod t20_tidy;

use std::path::Path;
use std::process::Command;

/// The repository root, two levels above this crate.
fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("xtask lives two levels below the workspace root")
}

/// Runs a command in the repository root and returns its stdout, or panics
/// saying which command failed and why.
fn output_of(command: &mut Command) -> Vec<u8> {
    let shown = format!("{command:?}");
    let output = command
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|error| panic!("could not start {shown}: {error}"));
    assert!(output.status.success(), "{shown} failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}
