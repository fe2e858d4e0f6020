//! Smoke test: `retcd-bench put` and `range` against a real retcd process,
//! checking the JSON summary (right total, no errors).
//!
//! Needs the `retcd` binary in target/<profile>/. `cargo test --workspace`
//! builds it (it is a target of retcd-server); when only this crate is tested
//! the test builds it first with the cargo running the tests.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use retcd_testkit::{wait_output, Kind, Server};

fn retcd_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|p| p.parent()).unwrap().to_path_buf();
    let bin = profile_dir.join("retcd");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "retcd-server", "--bin", "retcd"]).current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for retcd");
        assert!(status.success(), "cargo build -p retcd-server --bin retcd failed");
    }
    retcd_testkit::retcd_binary()
}

fn bench(endpoint: &str, args: &[&str]) -> serde_json::Value {
    let child = Command::new(env!("CARGO_BIN_EXE_retcd-bench"))
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .arg("--json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn retcd-bench");
    let out = wait_output(child, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "retcd-bench {args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\n{stderr}", String::from_utf8_lossy(&out.stdout)))
}

fn check(doc: &serde_json::Value, command: &str, total: u64) {
    assert_eq!(doc["command"], command, "{doc}");
    let r = &doc["reports"][0];
    assert_eq!(r["total"], total, "{doc}");
    assert_eq!(r["ok"], total, "{doc}");
    assert_eq!(r["errors"], 0, "{doc}");
    assert!(r["requests_per_sec"].as_f64().unwrap() > 0.0, "{doc}");
    let lat = &r["latency_ms"];
    let (p50, p99) = (lat["p50"].as_f64().unwrap(), lat["p99"].as_f64().unwrap());
    assert!(p50 > 0.0 && p50 <= p99, "{doc}");
}

#[test]
fn put_and_range_against_retcd() {
    let server = Server::start(Kind::Retcd, &retcd_path(), &[]);
    let ep = server.endpoint();

    let doc = bench(&ep, &["put", "--total", "200", "--clients", "4", "--key-space-size", "50"]);
    check(&doc, "put", 200);
    assert_eq!(doc["clients"], 4);

    // The puts above wrote 8-byte keys starting with bytes 0, 2, 4, ..., 98
    // (etcd's varint keys); a range over [\x01, \x7f) reads 49 of them.
    let doc = bench(&ep, &["range", "\u{1}", "\u{7f}", "--total", "200", "--clients", "4"]);
    check(&doc, "range", 200);
    let doc = bench(&ep, &["range", "foo", "--consistency", "s", "--total", "100", "--clients", "2", "--conns", "2"]);
    check(&doc, "range", 100);
}
