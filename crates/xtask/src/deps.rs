//! System packages the build needs: found, or installed with apt-get.
//!
//! A fresh machine has none of them, and the project's own setup must
//! install what it needs, so `deps` runs first in every other command.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};

use crate::run::{describe, find_on_path};

/// What bindgen (librocksdb-sys), prost-build and jemalloc's build (make)
/// need. Installed together: apt-get skips what is present, and one
/// install step is easier to read.
const BUILD_PACKAGES: [&str; 4] = ["clang", "libclang-dev", "protobuf-compiler", "make"];

/// `apt-get update` is slow and needed once per run, however many installs follow.
static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Checks for clang, libclang, protoc and make; installs all of them if any is missing.
pub fn ensure_build_packages() -> Result<()> {
    let mut missing = Vec::new();
    report("clang", find_on_path("clang"), &mut missing);
    report("libclang", find_libclang(), &mut missing);
    report("protoc", find_on_path("protoc"), &mut missing);
    report("make", find_on_path("make"), &mut missing);
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask deps: missing {}", missing.join(", "));
    apt_install(&BUILD_PACKAGES)
}

/// etcd is the benchmark's peer: `bench` needs it, and so does the
/// benchmark's end-to-end test that `test` runs.
pub fn ensure_etcd() -> Result<()> {
    let mut missing = Vec::new();
    report("etcd", find_on_path("etcd"), &mut missing);
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&["etcd-server"])
}

fn report(what: &'static str, found: Option<PathBuf>, missing: &mut Vec<&'static str>) {
    match found {
        Some(path) => println!("xtask deps: {what} found at {}", path.display()),
        None => missing.push(what),
    }
}

/// bindgen loads libclang at build time. Debian puts it under
/// /usr/lib/llvm-N/lib; other layouts are found through the linker cache.
fn find_libclang() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LIBCLANG_PATH") {
        let dir = PathBuf::from(dir);
        if has_libclang(&dir) {
            return Some(dir);
        }
    }
    let llvm_dirs = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("llvm-"))
        .map(|entry| entry.path().join("lib"));
    let mut dirs: Vec<PathBuf> = llvm_dirs.collect();
    dirs.sort();
    if let Some(dir) = dirs.into_iter().rev().find(|dir| has_libclang(dir)) {
        return Some(dir);
    }
    libclang_from_ldconfig()
}

fn has_libclang(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| is_libclang(&entry.file_name().to_string_lossy()))
}

/// `libclang.so`, `libclang-14.so.1` — but not `libclang-cpp.so` or the
/// static `libclangAST.a`, which bindgen cannot load.
fn is_libclang(file_name: &str) -> bool {
    let Some(rest) = file_name.strip_prefix("libclang") else {
        return false;
    };
    (rest.starts_with(".so") || rest.starts_with('-')) && !rest.starts_with("-cpp") && rest.contains(".so")
}

fn libclang_from_ldconfig() -> Option<PathBuf> {
    let output = ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"]
        .iter()
        .find_map(|program| Command::new(program).arg("-p").output().ok())?;
    let listing = String::from_utf8_lossy(&output.stdout);
    listing
        .lines()
        .filter(|line| is_libclang(line.trim_start().split(' ').next().unwrap_or_default()))
        .find_map(|line| line.rsplit("=> ").next().map(|path| PathBuf::from(path.trim())))
}

/// `apt-get update` (once) and `apt-get install -y`, as root or through sudo.
fn apt_install(packages: &[&str]) -> Result<()> {
    if find_on_path("apt-get").is_none() {
        bail!("apt-get is not available; install these with your package manager: {}", packages.join(" "));
    }
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        apt_step(&["update"])?;
    }
    let mut args = vec!["install", "-y"];
    args.extend_from_slice(packages);
    apt_step(&args)
}

fn apt_step(args: &[&str]) -> Result<()> {
    let mut command = if is_root()? {
        let mut command = Command::new("apt-get");
        command.env("DEBIAN_FRONTEND", "noninteractive");
        command
    } else if find_on_path("sudo").is_some() {
        // sudo resets the environment; an assignment argument passes this one through.
        let mut command = Command::new("sudo");
        command.args(["DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        command
    } else {
        bail!("installing packages needs root, and sudo is not available");
    };
    command.args(args);
    println!("xtask deps: running {}", describe(&command));
    let status = command.status().with_context(|| format!("could not start {}", describe(&command)))?;
    if !status.success() {
        bail!("{} failed with {status}", describe(&command));
    }
    Ok(())
}

fn is_root() -> Result<bool> {
    let output = Command::new("id").arg("-u").output().context("running `id -u` to learn whether we are root")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::is_libclang;

    #[test]
    fn libclang_names() {
        for name in ["libclang.so", "libclang.so.1", "libclang-14.so.1", "libclang-14.0.6.so"] {
            assert!(is_libclang(name), "{name}");
        }
        for name in ["libclang-cpp.so.14", "libclangAST.a", "libclang-14.a", "libc.so"] {
            assert!(!is_libclang(name), "{name}");
        }
    }
}
