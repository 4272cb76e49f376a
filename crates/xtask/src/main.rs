//! cargo xtask: installs what the build needs, then runs demo, test, lint or bench.
//!
//! Each command is a short script over `cargo` and `apt-get`; it prints every
//! step it takes, so a failure shows which step broke.
//!
//! Every cargo command xtask runs links the machine's prebuilt RocksDB (see
//! `rocksdb`). For plain cargo commands to do the same, and so not rebuild
//! RocksDB from source, run `eval "$(cargo xtask env)"` in the shell first.

mod deps;
mod rocksdb;
mod run;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::rocksdb::Prebuilt;
use crate::run::{cargo, run_step, workspace_root};

/// The target dir `env` suggests when none is set: the one .ci/run uses, so
/// local and CI builds share their build output.
const DEFAULT_TARGET_DIR: &str = "/var/tmp/holdfast-target";

const USAGE: &str = "\
usage: cargo xtask <command> [args...]

commands:
  deps             install the system packages the build and tests need (clang, libclang,
                   protoc, etcd) and build RocksDB once for this machine
  env              print `export ROCKSDB_LIB_DIR=...` for plain cargo: eval \"$(cargo xtask env)\"
  demo [args...]   build release binaries, then run `holdfast demo [args...]`
  test [args...]   build the binaries, then `cargo test --workspace [args...]`
  lint             `cargo fmt --check` and `cargo clippy -D warnings`
  bench [args...]  install etcd too, then `holdfast-bench compare [args...]`";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let command = args.next().and_then(|c| c.into_string().ok());
    let rest: Vec<OsString> = args.collect();
    let result = match command.as_deref() {
        Some("deps") => prepare().and_then(|_| deps::ensure_etcd()).map(|_| ExitCode::SUCCESS),
        Some("env") => env(),
        Some("demo") => demo(&rest),
        Some("test") => test(&rest),
        Some("lint") => lint(),
        Some("bench") => bench(&rest),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!("{USAGE}");
            Ok(ExitCode::from(2))
        }
    };
    result.unwrap_or_else(|error| {
        eprintln!("xtask: error: {error:#}");
        ExitCode::FAILURE
    })
}

/// Builds release binaries and replaces this process with `holdfast demo`, so
/// Ctrl-C reaches the demo directly and stops the cluster it started.
fn demo(args: &[OsString]) -> Result<ExitCode> {
    let rocksdb = prepare()?;
    let status = run_step(rocksdb.cargo().args(["build", "--release", "-p", "holdfast", "-p", "holdfastctl"]))?;
    if !status.success() {
        return Ok(exit_code_of(status));
    }
    let bin_dir = target_dir()?.join("release");
    let path = prepend_path(&bin_dir)?;
    println!(
        "xtask: binaries are in {dir}; to use holdfastctl from another shell: export PATH={dir}:$PATH",
        dir = bin_dir.display()
    );
    let mut demo = std::process::Command::new(bin_dir.join("holdfast"));
    demo.arg("demo").args(args).env("PATH", path);
    exec(demo)
}

/// Builds the binaries first: integration tests spawn the real `holdfast` and
/// `holdfastctl`, and `cargo test` does not build binaries of other packages.
/// The whole workspace, not a `-p` subset: a subset unifies features
/// differently, so `cargo test --workspace` would then rebuild shared crates.
fn test(args: &[OsString]) -> Result<ExitCode> {
    let rocksdb = prepare()?;
    // holdfast-bench's end-to-end test starts an etcd cluster.
    deps::ensure_etcd()?;
    let status = run_step(rocksdb.cargo().args(["build", "--workspace", "--bins"]))?;
    if !status.success() {
        return Ok(exit_code_of(status));
    }
    let status = run_step(rocksdb.cargo().args(["test", "--workspace"]).args(args))?;
    Ok(exit_code_of(status))
}

/// Runs both checks even when the first fails, so one run reports everything.
fn lint() -> Result<ExitCode> {
    let rocksdb = prepare()?;
    let format = run_step(cargo().args(["fmt", "--all", "--", "--check"]))?;
    let clippy = run_step(rocksdb.cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    match (format.success(), clippy.success()) {
        (true, true) => Ok(ExitCode::SUCCESS),
        (false, _) => {
            eprintln!("xtask: formatting differs; `cargo fmt --all` fixes it");
            Ok(ExitCode::FAILURE)
        }
        (true, false) => Ok(exit_code_of(clippy)),
    }
}

fn bench(args: &[OsString]) -> Result<ExitCode> {
    const BENCH_PACKAGE: &str = "holdfast-bench";
    let rocksdb = prepare()?;
    deps::ensure_etcd()?;
    if !workspace_packages()?.iter().any(|name| name == BENCH_PACKAGE) {
        bail!("package {BENCH_PACKAGE} is not in the workspace yet (it will live in bench/)");
    }
    // `compare` starts the `holdfast` binary next to its own, and `cargo run`
    // builds only the package it runs.
    let status = run_step(rocksdb.cargo().args(["build", "--release", "-p", "holdfast", "-p", BENCH_PACKAGE]))?;
    if !status.success() {
        return Ok(exit_code_of(status));
    }
    let status = run_step(rocksdb.cargo().args(["run", "--release", "-p", BENCH_PACKAGE, "--", "compare"]).args(args))?;
    Ok(exit_code_of(status))
}

/// What any build needs, in order: system packages (bindgen needs libclang
/// even when RocksDB comes prebuilt), then the prebuilt RocksDB itself.
fn prepare() -> Result<Prebuilt> {
    deps::ensure_build_packages()?;
    rocksdb::ensure()
}

/// Prints shell lines that give plain cargo commands what xtask's own get:
/// the prebuilt RocksDB, and one shared target dir. Only the `export` line
/// and a comment go to stdout, as the output is meant for `eval`; it never
/// builds (that would hide a long build inside an eval).
fn env() -> Result<ExitCode> {
    let rocksdb = rocksdb::cached()?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_TARGET_DIR), PathBuf::from);
    println!(
        "export ROCKSDB_LIB_DIR={} ROCKSDB_STATIC=1 CARGO_TARGET_DIR={}",
        shell_quote(rocksdb.dir()),
        shell_quote(&target_dir)
    );
    println!("# apply with: eval \"$(cargo xtask env)\" -- then plain cargo links the prebuilt RocksDB");
    Ok(ExitCode::SUCCESS)
}

/// Single-quoted for sh, so any path survives `eval`.
fn shell_quote(path: &std::path::Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Where cargo puts build output, honouring CARGO_TARGET_DIR and config files:
/// cargo itself is the only reliable source.
fn target_dir() -> Result<PathBuf> {
    let metadata = workspace_metadata()?;
    let dir = metadata["target_directory"].as_str().context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(dir))
}

fn workspace_packages() -> Result<Vec<String>> {
    let metadata = workspace_metadata()?;
    let packages = metadata["packages"].as_array().context("cargo metadata has no packages")?;
    Ok(packages.iter().filter_map(|package| package["name"].as_str().map(str::to_owned)).collect())
}

fn workspace_metadata() -> Result<serde_json::Value> {
    let output = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    serde_json::from_slice(&output.stdout).context("parsing cargo metadata output")
}

fn prepend_path(dir: &std::path::Path) -> Result<OsString> {
    let old = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&old));
    std::env::join_paths(dirs).context("the binary directory cannot go on PATH")
}

#[cfg(unix)]
fn exec(mut command: std::process::Command) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    // `exec` only returns on failure.
    let error = command.exec();
    Err(error).with_context(|| format!("starting {:?}", command.get_program()))
}

#[cfg(not(unix))]
fn exec(mut command: std::process::Command) -> Result<ExitCode> {
    let status = run_step(&mut command)?;
    Ok(exit_code_of(status))
}

/// The child's exit code, so callers (CI) see what the child said. A child
/// killed by a signal has no code: report plain failure.
fn exit_code_of(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}
