//! Dependency rules over `cargo metadata`: arrows point down, and each heavy
//! or sensitive dependency has one owner.
//!
//! Only normal dependencies count: dev- and build-dependencies never end up
//! in the shipped binary, and tests may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// Internal dependencies each library may have. Crates not listed here
/// (testkit, binaries, chaos, bench) sit on top and may use any library.
const ALLOWED_INTERNAL: &[(&str, &[&str])] = &[
    ("holdfast-types", &[]),
    ("holdfast-proto", &[]),
    ("holdfast-crypto", &[]),
    ("holdfast-storage", &["holdfast-types"]),
    ("holdfast-client", &["holdfast-proto"]),
    ("holdfast-server", &["holdfast-types", "holdfast-proto", "holdfast-crypto", "holdfast-storage"]),
];

/// External crates with exactly one set of owners in the workspace: the
/// C++ build and on-disk format (rocksdb), the cipher (aes-gcm, aes), and
/// command-line parsing, which only binaries do.
const OWNERS: &[(&str, &[&str])] = &[
    ("rocksdb", &["holdfast-storage"]),
    ("aes-gcm", &["holdfast-crypto"]),
    ("aes", &["holdfast-crypto"]),
    ("clap", &["holdfast", "holdfastctl", "xtask", "holdfast-chaos", "holdfast-bench"]),
];

/// Crates that must never be linked into a package, even indirectly.
const FORBIDDEN_IN_CLOSURE: &[(&str, &[&str], &str)] = &[
    ("holdfastctl", &["rocksdb", "librocksdb-sys"], "the client CLI must build without the storage engine"),
    ("holdfast-client", &["openraft"], "the client knows nothing of consensus"),
];

/// The resolved graph: package name by id, and each package's normal deps.
struct Graph {
    members: BTreeSet<String>,
    names: BTreeMap<String, String>,
    normal_deps: BTreeMap<String, Vec<String>>,
}

impl Graph {
    fn load() -> Graph {
        let stdout = crate::output_of(Command::new(env!("CARGO")).args(["metadata", "--format-version", "1"]));
        let metadata: Value = serde_json::from_slice(&stdout).expect("cargo metadata prints JSON");
        let names = metadata["packages"]
            .as_array()
            .expect("cargo metadata lists packages")
            .iter()
            .map(|package| (string(&package["id"]), string(&package["name"])))
            .collect::<BTreeMap<_, _>>();
        let members = metadata["workspace_members"]
            .as_array()
            .expect("cargo metadata lists workspace members")
            .iter()
            .map(string)
            .collect();
        let normal_deps = metadata["resolve"]["nodes"]
            .as_array()
            .expect("cargo metadata has a resolve graph")
            .iter()
            .map(|node| {
                let deps = node["deps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|dep| is_normal(dep))
                    .map(|dep| string(&dep["pkg"]))
                    .collect();
                (string(&node["id"]), deps)
            })
            .collect();
        Graph { members, names, normal_deps }
    }

    fn name(&self, id: &str) -> &str {
        &self.names[id]
    }

    fn member_id(&self, name: &str) -> Option<&String> {
        self.members.iter().find(|id| self.name(id) == name)
    }

    /// Names of the direct normal dependencies of a package.
    fn direct(&self, id: &str) -> impl Iterator<Item = &str> {
        self.normal_deps[id].iter().map(|dep| self.name(dep))
    }

    /// Names of every package linked into `id` through normal dependencies.
    fn closure(&self, id: &str) -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![id];
        while let Some(next) = stack.pop() {
            for dep in &self.normal_deps[next] {
                if seen.insert(dep.as_str()) {
                    stack.push(dep);
                }
            }
        }
        seen.into_iter().map(|dep| self.name(dep)).collect()
    }
}

/// `dep_kinds` holds one entry per kind; `kind: null` means normal.
fn is_normal(dep: &Value) -> bool {
    dep["dep_kinds"].as_array().is_some_and(|kinds| kinds.iter().any(|kind| kind["kind"].is_null()))
}

fn string(value: &Value) -> String {
    value.as_str().expect("cargo metadata field is a string").to_owned()
}

/// `cargo metadata` resolves the whole graph (a few seconds): once per run.
fn graph() -> &'static Graph {
    static GRAPH: OnceLock<Graph> = OnceLock::new();
    GRAPH.get_or_init(Graph::load)
}

fn assert_no_violations(rule: &str, violations: Vec<String>) {
    assert!(violations.is_empty(), "rule broken: {rule}\n  {}", violations.join("\n  "));
}

#[test]
fn libraries_depend_only_on_lower_layers() {
    let graph = graph();
    let member_names: BTreeSet<&str> = graph.members.iter().map(|id| graph.name(id)).collect();
    let mut violations = Vec::new();
    for (crate_name, allowed) in ALLOWED_INTERNAL {
        let Some(id) = graph.member_id(crate_name) else {
            violations.push(format!("{crate_name} is not a workspace member any more; update ALLOWED_INTERNAL"));
            continue;
        };
        for dep in graph.direct(id).filter(|dep| member_names.contains(dep)) {
            if !allowed.contains(&dep) {
                violations
                    .push(format!("{crate_name} depends on {dep}, but may depend internally only on {allowed:?}"));
            }
        }
    }
    assert_no_violations("dependency arrows point down (types, proto, crypto → nothing internal; storage → types; client → proto; server → types, proto, crypto, storage)", violations);
}

#[test]
fn heavy_and_sensitive_dependencies_have_one_owner() {
    let graph = graph();
    let mut violations = Vec::new();
    for id in &graph.members {
        let crate_name = graph.name(id);
        for (owned, owners) in OWNERS {
            if graph.direct(id).any(|dep| dep == *owned) && !owners.contains(&crate_name) {
                violations.push(format!("{crate_name} depends directly on {owned}, which only {owners:?} may use"));
            }
        }
    }
    assert_no_violations("one owner for rocksdb (storage), aes-gcm (crypto) and clap (binaries)", violations);
}

#[test]
fn forbidden_crates_stay_out_of_closures() {
    let graph = graph();
    let mut violations = Vec::new();
    for (crate_name, forbidden, why) in FORBIDDEN_IN_CLOSURE {
        let Some(id) = graph.member_id(crate_name) else {
            violations.push(format!("{crate_name} is not a workspace member any more; update FORBIDDEN_IN_CLOSURE"));
            continue;
        };
        let closure = graph.closure(id);
        for banned in forbidden.iter().filter(|banned| closure.contains(*banned)) {
            violations.push(format!("{crate_name} links {banned} (through its dependencies): {why}"));
        }
    }
    assert_no_violations("no rocksdb under holdfastctl, no openraft under holdfast-client", violations);
}

#[test]
fn closure_walk_sees_transitive_dependencies() {
    // Guards the checker itself: a walk that stopped at direct deps would
    // make the closure rule pass vacuously. xtask reaches serde through serde_json.
    let graph = graph();
    let xtask = graph.member_id("xtask").expect("xtask is a member");
    assert!(!graph.direct(xtask).any(|dep| dep == "serde"));
    assert!(graph.closure(xtask).contains("serde"));
}
