//! The workspace's shape: dependencies point one way (server -> protocol, server -> engine),
//! the engine knows no protocol, and the protocol crate does no IO (no tokio, no sockets).

use std::process::Command;

fn metadata() -> serde_json::Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// Names of a package's normal (non-dev) dependencies.
fn deps(meta: &serde_json::Value, package: &str) -> Vec<String> {
    let pkg = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == package))
        .unwrap_or_else(|| panic!("no package {package}"));
    pkg["dependencies"]
        .as_array()
        .map(|ds| {
            ds.iter().filter(|d| d["kind"].is_null()).filter_map(|d| d["name"].as_str().map(str::to_string)).collect()
        })
        .unwrap_or_default()
}

#[test]
fn dependencies_point_one_way() {
    let meta = metadata();
    let engine = deps(&meta, "postlog-engine");
    let protocol = deps(&meta, "postlog-protocol");
    let server = deps(&meta, "postlog-server");
    for forbidden in ["postlog-protocol", "postlog-server"] {
        assert!(!engine.iter().any(|d| d == forbidden), "the engine depends on {forbidden}");
    }
    for forbidden in ["postlog-engine", "postlog-server", "tokio", "mio", "socket2", "rustls", "tokio-rustls"] {
        assert!(!protocol.iter().any(|d| d == forbidden), "the protocol crate depends on {forbidden}");
    }
    for needed in ["postlog-engine", "postlog-protocol"] {
        assert!(server.iter().any(|d| d == needed), "the server does not depend on {needed}");
    }
}
