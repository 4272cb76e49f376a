//! The prebuilt RocksDB that every build links, compiled once per machine.
//!
//! `librocksdb-sys` compiles RocksDB's C++ in its build script (about 15
//! minutes on two cores), and cargo reruns that script whenever the features
//! of its build-dependencies differ between invocations (`-p` subsets, test,
//! clippy). With `ROCKSDB_LIB_DIR` set it links a prebuilt `librocksdb.a`
//! instead and only runs bindgen, so xtask keeps one archive per
//! `librocksdb-sys` version (and instruction set, below) in a cache outside
//! the clone and sets that variable on every cargo command it runs.
//!
//! The archive is a release build: cc compiles C++ at the profile's
//! opt-level, so a dev-profile archive is `-O0 -g` and would make every
//! benchmark and test measure unoptimized RocksDB.
//!
//! On an x86-64 machine with SSE 4.2 and PCLMULQDQ (every x86-64 server CPU
//! since 2010) the C++ is compiled with both, as RocksDB's own build does:
//! without them RocksDB checksums every WAL record with a table-driven
//! CRC32C in software, which took 1.6-2.4 % of every node's CPU during
//! 64-client puts. Such an archive is cached under its own name, and the
//! binaries it links need those instructions.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{bail, ensure as check, Context, Result};

use crate::run::{cargo, run_step, workspace_root};

/// Overrides where the archives are kept, e.g. for a shared CI volume.
const CACHE_ENV: &str = "HOLDFAST_ROCKSDB_CACHE";
/// Under /var/tmp so it survives reboots and fresh clones alike.
const DEFAULT_CACHE: &str = "/var/tmp/holdfast-rocksdb";
const PACKAGE: &str = "librocksdb-sys";
const ARCHIVE: &str = "librocksdb.a";
/// Every `ar` archive starts with this.
const AR_MAGIC: &[u8; 8] = b"!<arch>\n";
/// A release archive of RocksDB 10.4 is a few tens of MB (a dev one near 1 GB);
/// anything under this is a stub or a truncated copy, not a RocksDB.
const MIN_ARCHIVE_BYTES: u64 = 10 << 20;
/// `librocksdb-sys` features that leave the C++ compile unchanged. The cache
/// builds the package alone (its default features), so any other feature the
/// workspace turns on would make the archive differ from what it expects.
const NEUTRAL_FEATURES: [&str; 4] = ["default", "static", "bindgen-runtime", "bindgen-static"];

/// A directory holding a plausible `librocksdb.a` for this workspace's `librocksdb-sys`.
#[derive(Debug)]
pub struct Prebuilt {
    dir: PathBuf,
}

impl Prebuilt {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `cargo` with the variables that make `librocksdb-sys` link this archive.
    /// ROCKSDB_STATIC picks the `.a`; without it the linker wants a `.so`.
    pub fn cargo(&self) -> Command {
        let mut command = cargo();
        command.env("ROCKSDB_LIB_DIR", &self.dir).env("ROCKSDB_STATIC", "1");
        command
    }
}

/// The cached archive, building it first if this machine has none. Needs the
/// system packages from `deps` (clang for the C++, libclang for bindgen).
pub fn ensure() -> Result<Prebuilt> {
    let facts = workspace_facts()?;
    let cpu = CpuFlags::of_this_machine();
    let dir = cache_root().join(cache_key(&facts.version, cpu));
    let archive = dir.join(ARCHIVE);
    if is_plausible_archive(&archive) {
        println!("xtask rocksdb: using {}", archive.display());
        return Ok(Prebuilt { dir });
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // `cargo xtask demo` and plain `cargo build --release` leave a complete
    // optimized archive in the target dir; copying it saves the whole build.
    // Only a portable one: cargo compiles RocksDB for Rust's baseline x86-64.
    if cpu == CpuFlags::Portable {
        if let Some(found) = newest_complete_archive(&facts.target_dir.join("release").join("build")) {
            install(&found, &archive)?;
            println!("xtask rocksdb: reused the release build at {}; cached as {}", found.display(), archive.display());
            return Ok(Prebuilt { dir });
        }
    }

    println!("xtask rocksdb: building RocksDB once for this machine (~15-25 min on 2 cores) into {}", dir.display());
    // A target dir of its own: the build is unaffected by (and does not
    // disturb) the feature sets of the workspace's own builds.
    let build_target = dir.join("build-target");
    let mut command = cargo();
    command
        .args(["build", "--release", "-p", PACKAGE, "--target-dir"])
        .arg(&build_target)
        // Set, these would make librocksdb-sys skip the very build we want.
        .env_remove("ROCKSDB_LIB_DIR")
        .env_remove("ROCKSDB_STATIC");
    if let Some(flags) = cpu.cxx_flags() {
        // cc appends CXXFLAGS to every C++ compile it runs.
        let mut cxx = std::env::var("CXXFLAGS").unwrap_or_default();
        cxx.push_str(flags);
        command.env("CXXFLAGS", cxx.trim_start());
    }
    let status = run_step(&mut command)?;
    if !status.success() {
        bail!("building {PACKAGE} failed with {status}");
    }
    let built = newest_complete_archive(&build_target.join("release").join("build"))
        .with_context(|| format!("{PACKAGE} built, but no complete {ARCHIVE} is under {}", build_target.display()))?;
    install(&built, &archive)?;
    println!("xtask rocksdb: RocksDB built and cached as {}", archive.display());
    Ok(Prebuilt { dir })
}

/// The cached archive if it is there, without building: for `xtask env`,
/// whose stdout is eval'd and must not fill with a 20-minute build.
pub fn cached() -> Result<Prebuilt> {
    let facts = workspace_facts()?;
    let dir = cache_root().join(cache_key(&facts.version, CpuFlags::of_this_machine()));
    let archive = dir.join(ARCHIVE);
    check!(
        is_plausible_archive(&archive),
        "no prebuilt RocksDB at {} yet; `cargo xtask deps` builds it once (~15-25 min on 2 cores)",
        archive.display()
    );
    Ok(Prebuilt { dir })
}

/// Which instruction sets the C++ may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CpuFlags {
    /// Rust's baseline for the target (software CRC32C on x86-64).
    Portable,
    /// x86-64 with SSE 4.2 and PCLMULQDQ: RocksDB's hardware CRC32C.
    Crc32cHw,
}

impl CpuFlags {
    fn of_this_machine() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self::from_cpuinfo(std::env::consts::ARCH, &cpuinfo)
    }

    /// From the first processor's `flags` line of `/proc/cpuinfo`.
    fn from_cpuinfo(arch: &str, cpuinfo: &str) -> Self {
        let flags = cpuinfo.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == "flags").then_some(value)
        });
        let has = |flag: &str| flags.is_some_and(|flags| flags.split_whitespace().any(|f| f == flag));
        if arch == "x86_64" && has("sse4_2") && has("pclmulqdq") {
            CpuFlags::Crc32cHw
        } else {
            CpuFlags::Portable
        }
    }

    fn cxx_flags(self) -> Option<&'static str> {
        match self {
            CpuFlags::Portable => None,
            CpuFlags::Crc32cHw => Some(" -msse4.2 -mpclmul"),
        }
    }
}

/// The cache directory's name: the `librocksdb-sys` version, and what the
/// C++ was compiled for when that is not the portable baseline.
fn cache_key(version: &str, cpu: CpuFlags) -> String {
    match cpu {
        CpuFlags::Portable => version.to_owned(),
        CpuFlags::Crc32cHw => format!("{version}-crc32c"),
    }
}

fn cache_root() -> PathBuf {
    std::env::var_os(CACHE_ENV)
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CACHE), PathBuf::from)
}

/// What the cache needs from the resolved workspace.
#[derive(Debug, PartialEq)]
struct Facts {
    /// `librocksdb-sys`'s version, e.g. `0.17.3+10.4.2`: the cache key, since
    /// it pins both the RocksDB sources and the bindgen'd API.
    version: String,
    target_dir: PathBuf,
}

fn workspace_facts() -> Result<Facts> {
    // Full metadata (not --no-deps): librocksdb-sys is a dependency, and the
    // resolve holds the features the workspace turns on for it.
    let output = cargo()
        .args(["metadata", "--format-version", "1"])
        .current_dir(workspace_root())
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing cargo metadata output")?;
    facts_from(&metadata)
}

fn facts_from(metadata: &serde_json::Value) -> Result<Facts> {
    let packages = metadata["packages"].as_array().context("cargo metadata has no packages")?;
    let mut found = packages.iter().filter(|package| package["name"] == PACKAGE);
    let package = found.next().with_context(|| format!("{PACKAGE} is not in the dependency graph"))?;
    // Its `links = "rocksdb"` key already forbids two versions; say so if that changes.
    check!(found.next().is_none(), "more than one {PACKAGE} version in the dependency graph");
    let version = package["version"].as_str().with_context(|| format!("{PACKAGE} has no version"))?;
    // It becomes a directory name: keep it to what semver allows.
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-');
    check!(!version.is_empty() && version.chars().all(safe), "unexpected {PACKAGE} version {version:?}");

    let id = &package["id"];
    let nodes = metadata["resolve"]["nodes"].as_array().context("cargo metadata has no resolve")?;
    let features = nodes.iter().find(|node| &node["id"] == id).and_then(|node| node["features"].as_array());
    let unusual: Vec<&str> = features
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .filter(|feature| !NEUTRAL_FEATURES.contains(feature))
        .collect();
    check!(
        unusual.is_empty(),
        "the workspace enables {PACKAGE} features {unusual:?}, which change the C++ build; \
         teach xtask's rocksdb cache to build with them"
    );

    let target_dir = metadata["target_directory"].as_str().context("cargo metadata has no target_directory")?;
    Ok(Facts { version: version.to_owned(), target_dir: PathBuf::from(target_dir) })
}

/// Big enough and an `ar` archive: rules out stubs and empty files. Partial
/// copies cannot appear, as `install` renames only finished ones into place.
fn is_plausible_archive(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let big_enough = file.metadata().is_ok_and(|meta| meta.is_file() && meta.len() > MIN_ARCHIVE_BYTES);
    let mut magic = [0; AR_MAGIC.len()];
    big_enough && file.read_exact(&mut magic).is_ok() && &magic == AR_MAGIC
}

/// The newest `librocksdb-sys-*/out/librocksdb.a` under a cargo `build` dir
/// whose build script last finished by building it. Cargo keeps OUT_DIR
/// across reruns, so an archive can be stale or half-written (we found a
/// 500 MB one left by an interrupted build, under a script that later ran
/// in ROCKSDB_LIB_DIR mode); cc's closing `rustc-link-search=native=<OUT_DIR>`
/// line in the script's saved `output` shows the archive was completed.
fn newest_complete_archive(build_dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(build_dir).ok()?;
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&format!("{PACKAGE}-")))
        .filter_map(|entry| {
            let out = entry.path().join("out");
            let archive = out.join(ARCHIVE);
            let output = std::fs::read_to_string(entry.path().join("output")).ok()?;
            let search_line = format!("rustc-link-search=native={}", out.display());
            let complete = output.lines().any(|line| line.trim_end().ends_with(&search_line));
            let modified = std::fs::metadata(&archive).and_then(|meta| meta.modified()).ok()?;
            (complete && is_plausible_archive(&archive)).then_some((modified, archive))
        })
        .max_by_key(|(modified, _): &(SystemTime, PathBuf)| *modified)
        .map(|(_, archive)| archive)
}

/// Copies to a temporary name beside `dest`, then renames: readers (another
/// xtask, a build) see the old state or the whole archive, never a part.
fn install(source: &Path, dest: &Path) -> Result<()> {
    let temporary = dest.with_extension(format!("a.partial-{}", std::process::id()));
    std::fs::copy(source, &temporary)
        .with_context(|| format!("copying {} to {}", source.display(), temporary.display()))?;
    std::fs::rename(&temporary, dest).with_context(|| format!("renaming {} to {}", temporary.display(), dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A fresh scratch directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-rocksdb-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    /// A sparse file: large without costing disk or time.
    fn write_file(path: &Path, head: &[u8], len: u64) {
        std::fs::write(path, head).expect("write file");
        std::fs::OpenOptions::new().write(true).open(path).and_then(|file| file.set_len(len)).expect("extend file");
    }

    #[test]
    fn plausible_archive_needs_magic_and_size() {
        let dir = scratch("plausible");
        let big = MIN_ARCHIVE_BYTES + 1;
        let cases: [(&str, &[u8], u64, bool); 4] = [
            ("good.a", AR_MAGIC, big, true),
            ("small.a", AR_MAGIC, 1 << 20, false),
            ("elf.a", b"\x7fELF\x02\x01\x01\x00", big, false),
            ("empty.a", b"", 0, false),
        ];
        for (name, head, len, expected) in cases {
            let path = dir.join(name);
            write_file(&path, head, len);
            assert_eq!(is_plausible_archive(&path), expected, "{name}");
        }
        assert!(!is_plausible_archive(&dir.join("missing.a")));
        assert!(!is_plausible_archive(&dir), "a directory is not an archive");
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    fn metadata(version: &str, features: &[&str]) -> serde_json::Value {
        let id = format!("registry+https://github.com/rust-lang/crates.io-index#librocksdb-sys@{version}");
        json!({
            "packages": [
                {"name": "rocksdb", "version": "0.24.0", "id": "rocksdb-id"},
                {"name": "librocksdb-sys", "version": version, "id": id},
            ],
            "resolve": {"nodes": [
                {"id": "rocksdb-id", "features": ["bindgen-runtime"]},
                {"id": id, "features": features},
            ]},
            "target_directory": "/var/tmp/holdfast-target",
        })
    }

    #[test]
    fn version_comes_from_the_resolved_package() {
        let facts = facts_from(&metadata("0.17.3+10.4.2", &["bindgen-runtime", "static"])).expect("facts");
        assert_eq!(
            facts,
            Facts { version: "0.17.3+10.4.2".to_owned(), target_dir: PathBuf::from("/var/tmp/holdfast-target") }
        );
    }

    #[test]
    fn hardware_crc32c_only_where_the_cpu_has_both_instruction_sets() {
        let cpuinfo = |flags: &str| format!("processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\n");
        let both = cpuinfo("fpu sse2 sse4_1 sse4_2 pclmulqdq avx2");
        assert_eq!(CpuFlags::from_cpuinfo("x86_64", &both), CpuFlags::Crc32cHw);
        assert_eq!(CpuFlags::from_cpuinfo("aarch64", &both), CpuFlags::Portable);
        assert_eq!(CpuFlags::from_cpuinfo("x86_64", &cpuinfo("fpu sse2 sse4_2")), CpuFlags::Portable);
        // A flag's name inside another's is not the flag.
        assert_eq!(CpuFlags::from_cpuinfo("x86_64", &cpuinfo("sse4_2x pclmulqdq")), CpuFlags::Portable);
        assert_eq!(CpuFlags::from_cpuinfo("x86_64", ""), CpuFlags::Portable);
        assert_eq!(cache_key("0.17.3+10.4.2", CpuFlags::Portable), "0.17.3+10.4.2");
        assert_eq!(cache_key("0.17.3+10.4.2", CpuFlags::Crc32cHw), "0.17.3+10.4.2-crc32c");
        assert_eq!(CpuFlags::Crc32cHw.cxx_flags(), Some(" -msse4.2 -mpclmul"));
    }

    #[test]
    fn odd_versions_and_features_are_refused() {
        assert!(facts_from(&metadata("../../etc", &[])).is_err());
        assert!(facts_from(&metadata("", &[])).is_err());
        let error = facts_from(&metadata("0.17.3+10.4.2", &["static", "snappy"])).expect_err("snappy changes the C++");
        assert!(format!("{error:#}").contains("snappy"), "{error:#}");
        assert!(facts_from(&json!({"packages": [], "target_directory": "/t"})).is_err());
    }

    #[test]
    fn only_completed_archives_are_reused() {
        let build = scratch("complete");
        let make = |name: &str, output: &str| {
            let out = build.join(name).join("out");
            std::fs::create_dir_all(&out).expect("create out dir");
            write_file(&out.join(ARCHIVE), AR_MAGIC, MIN_ARCHIVE_BYTES + 1);
            let output = output.replace("{out}", &out.display().to_string());
            std::fs::write(build.join(name).join("output"), output).expect("write output");
            out.join(ARCHIVE)
        };
        let complete =
            make("librocksdb-sys-aaa", "cargo:rustc-link-lib=static=rocksdb\ncargo:rustc-link-search=native={out}\n");
        // Reran with ROCKSDB_LIB_DIR set: the archive left in out/ may be partial.
        make("librocksdb-sys-bbb", "cargo:rustc-link-search=native=/var/tmp/holdfast-rocksdb/x\n");
        make("other-ccc", "cargo:rustc-link-search=native={out}\n");
        assert_eq!(newest_complete_archive(&build), Some(complete));
        assert_eq!(newest_complete_archive(&build.join("missing")), None);
        std::fs::remove_dir_all(build).expect("clean up");
    }
}
