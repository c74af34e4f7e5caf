//! The walls of the design, checked over `cargo metadata`: the pure cores have no async
//! runtime, gRPC, HTTP or socket crate anywhere in their (normal) dependency trees, and the
//! wire types depend on the cores, never the reverse.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// Crates that do I/O or run an event loop: none may sit under a core.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "tokio-util",
    "tokio-stream",
    "mio",
    "socket2",
    "tonic",
    "hyper",
    "h2",
    "axum",
    "async-std",
    "ezk-sip-core",
    "ezk-sip-ua",
    "milliwatt-proto",
    "milliwatt-common",
];

struct Graph {
    /// package id -> name
    names: HashMap<String, String>,
    /// package id -> normal (non-dev, non-build) dependency ids
    deps: HashMap<String, Vec<String>>,
}

fn graph() -> Graph {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let names = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let deps = v["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let normal = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| d["pkg"].as_str().unwrap().to_string())
                .collect();
            (n["id"].as_str().unwrap().to_string(), normal)
        })
        .collect();
    Graph { names, deps }
}

impl Graph {
    fn id(&self, name: &str) -> String {
        self.names
            .iter()
            .find(|(_, n)| *n == name)
            .unwrap_or_else(|| panic!("no package {name} in the workspace"))
            .0
            .clone()
    }

    /// Every package `name` depends on, directly or not (normal dependencies only).
    fn tree(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![self.id(name)];
        while let Some(id) = todo.pop() {
            for d in self.deps.get(&id).into_iter().flatten() {
                if seen.insert(self.names[d].clone()) {
                    todo.push(d.clone());
                }
            }
        }
        seen
    }
}

#[test]
fn the_cores_do_no_io() {
    let g = graph();
    for core in ["milliwatt-media-core", "milliwatt-signaling-core"] {
        let tree = g.tree(core);
        let bad: Vec<&&str> = FORBIDDEN.iter().filter(|f| tree.contains(**f)).collect();
        assert!(
            bad.is_empty(),
            "{core} depends on {bad:?} (its tree: {tree:?})"
        );
    }
}

#[test]
fn the_wire_types_depend_on_the_cores_and_the_shells_on_both() {
    let g = graph();
    let proto = g.tree("milliwatt-proto");
    assert!(proto.contains("milliwatt-media-core") && proto.contains("milliwatt-signaling-core"));
    for shell in ["milliwatt-media", "milliwatt-signaling"] {
        let t = g.tree(shell);
        assert!(t.contains("milliwatt-proto"), "{shell}");
    }
    assert!(g
        .tree("milliwatt-signaling")
        .contains("milliwatt-signaling-core"));
    assert!(g.tree("milliwatt-media").contains("milliwatt-media-core"));
    // And the check itself can fail: a shell's tree does hold the forbidden crates.
    assert!(g.tree("milliwatt-media").contains("tokio"));
}
