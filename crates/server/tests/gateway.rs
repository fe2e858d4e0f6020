//! The JSON gateway, curl against real etcd 3.4 and retcd: one scenario of
//! HTTP requests runs against both servers (fresh, single member), and the
//! transcripts of (path, HTTP status, JSON body) must be equal once the
//! values that must differ are masked (cluster/member/lease ids, raft
//! terms and indexes, db sizes, hashes, URLs).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use retcd_testkit::{require_tool, Kind, Server};
use serde_json::Value;

const RETCD: &str = env!("CARGO_BIN_EXE_retcd");

/// Fields whose values differ between two fresh servers by design.
const MASKED: &[&str] = &[
    "cluster_id",
    "member_id",
    "raft_term",
    "ID",
    "leader",
    "lease",
    "dbSize",
    "dbSizeInUse",
    "raftIndex",
    "raftAppliedIndex",
    "raftTerm",
    "hash",
    "peerURLs",
    "clientURLs",
];

fn mask(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if MASKED.contains(&k.as_str()) {
                    *val = Value::String("<masked>".into());
                } else {
                    mask(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

/// A JSON body (masked), or the raw text if it is not JSON.
fn parse(body: &str) -> Value {
    match serde_json::from_str::<Value>(body) {
        Ok(mut v) => {
            mask(&mut v);
            v
        }
        Err(_) => Value::String(body.to_string()),
    }
}

/// One exchange: what was asked, and the status and body that came back.
#[derive(Debug, PartialEq)]
struct Exchange {
    what: String,
    status: u16,
    body: Value,
}

struct Http {
    base: String,
    log: Vec<Exchange>,
}

impl Http {
    fn new(server: &Server) -> Http {
        Http { base: format!("http://{}", server.endpoint()), log: Vec::new() }
    }

    /// `curl -X <method> <base>/<path> -d <body>`: status and body text.
    fn raw(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "20", "-X", method, "-w", "\n%{http_code}"])
            .arg(format!("{}/{path}", self.base))
            .args(["-d", body])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.parse().unwrap(), body.to_string())
    }

    /// POSTs a body too large for a command line (from a file); records
    /// the status and the error body.
    fn post_large(&mut self, path: &str, what: &str, body: &str) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), body).unwrap();
        let out = Command::new("curl")
            .args(["-s", "--max-time", "20", "-X", "POST", "-w", "\n%{http_code}"])
            .arg(format!("{}/{path}", self.base))
            .arg("--data-binary")
            .arg(format!("@{}", file.path().display()))
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, status) = text.rsplit_once('\n').unwrap();
        self.log.push(Exchange { what: format!("{path} {what}"), status: status.parse().unwrap(), body: parse(body) });
    }

    /// POSTs and records the exchange; returns the unmasked JSON body.
    fn post(&mut self, path: &str, body: &str) -> Value {
        let (status, text) = self.raw("POST", path, body);
        self.log.push(Exchange { what: format!("{path} {body}"), status, body: parse(&text) });
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// POSTs to a streaming path and records the first `n` lines (curl is
    /// stopped then, or after `limit`).
    fn stream(&mut self, path: &str, body: &str, n: usize, limit: Duration) -> Vec<Value> {
        let mut child = Command::new("curl")
            .args(["-s", "-N", "--max-time", "20", "-X", "POST"])
            .arg(format!("{}/{path}", self.base))
            .args(["-d", body])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let deadline = std::time::Instant::now() + limit;
        while lines.len() < n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let values: Vec<Value> = lines.iter().map(|l| parse(l)).collect();
        self.log.push(Exchange { what: format!("{path} {body} (stream)"), status: 0, body: Value::Array(values) });
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or(Value::Null)).collect()
    }
}

fn b64(s: &str) -> String {
    // Small, dependency-free standard base64 for test keys and values.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &c)| acc | (u32::from(c) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The KV, watch, lease, cluster and maintenance paths, with errors.
fn scenario(server: &Server) -> Vec<Exchange> {
    let mut h = Http::new(server);
    let (key, bar) = (b64("foo"), b64("bar"));
    h.post("v3/kv/put", &format!(r#"{{"key":"{key}","value":"{bar}"}}"#));
    h.post("v3/kv/put", &format!(r#"{{"key":"{key}","value":"{}","prev_kv":true}}"#, b64("bar2")));
    for k in ["foo/a", "foo/b", "foo/c"] {
        h.post("v3/kv/put", &format!(r#"{{"key":"{}","value":"{}"}}"#, b64(k), b64(k)));
    }
    h.post("v3/kv/range", &format!(r#"{{"key":"{key}"}}"#));
    h.post("v3beta/kv/range", &format!(r#"{{"key":"{key}"}}"#));
    h.post("v3/kv/range", &format!(r#"{{"key":"{}","range_end":"{}","limit":2}}"#, b64("foo/"), b64("foo0")));
    h.post(
        "v3/kv/range",
        &format!(
            r#"{{"key":"{}","range_end":"{}","sort_order":"DESCEND","sort_target":"KEY","keys_only":true}}"#,
            b64("foo/"),
            b64("foo0")
        ),
    );
    h.post("v3/kv/range", &format!(r#"{{"key":"{}","rangeEnd":"{}","countOnly":true}}"#, b64("foo/"), b64("foo0")));
    h.post("v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64("missing")));
    h.post("v3/kv/deleterange", &format!(r#"{{"key":"{}","prev_kv":true}}"#, b64("foo/a")));
    h.post(
        "v3/kv/txn",
        &format!(
            r#"{{"compare":[{{"key":"{key}","result":"EQUAL","target":"VALUE","value":"{}"}}],
                "success":[{{"request_range":{{"key":"{key}"}}}},{{"request_put":{{"key":"{key}","value":"{}"}}}}],
                "failure":[{{"request_delete_range":{{"key":"{key}"}}}}]}}"#,
            b64("bar2"),
            b64("bar3")
        ),
    );
    h.post(
        "v3/kv/txn",
        &format!(
            r#"{{"compare":[{{"key":"{key}","result":"GREATER","target":"VERSION","version":"10"}}],
                "failure":[{{"request_range":{{"key":"{}","range_end":"{}","count_only":true}}}}]}}"#,
            b64("foo/"),
            b64("foo0")
        ),
    );
    // Watch from a past revision: created, then the history, one object per line.
    h.stream(
        "v3/watch",
        &format!(r#"{{"create_request":{{"key":"{key}","start_revision":2}}}}"#),
        2,
        Duration::from_secs(10),
    );
    h.stream(
        "v3/watch",
        &format!(
            r#"{{"create_request":{{"key":"{}","range_end":"{}","start_revision":4,"prev_kv":true}}}}"#,
            b64("foo/"),
            b64("foo0")
        ),
        2,
        Duration::from_secs(10),
    );
    h.post("v3/kv/compaction", r#"{"revision":"4"}"#);
    // Errors: compacted and future revisions, compacting again, no key.
    h.post("v3/kv/range", &format!(r#"{{"key":"{key}","revision":"3"}}"#));
    h.post("v3/kv/range", &format!(r#"{{"key":"{key}","revision":100}}"#));
    h.post("v3/kv/compaction", r#"{"revision":"2"}"#);
    h.post("v3/kv/range", "{}");
    h.stream(
        "v3/watch",
        &format!(r#"{{"create_request":{{"key":"{key}","start_revision":2}}}}"#),
        2,
        Duration::from_secs(10),
    );

    // Leases (explicit ids, so both servers agree on them).
    h.post("v3/lease/grant", r#"{"TTL":60,"ID":7001}"#);
    h.post("v3/lease/grant", r#"{"TTL":"120","ID":"7002"}"#);
    h.post("v3/lease/grant", r#"{"TTL":60,"ID":7001}"#);
    h.post("v3/kv/put", &format!(r#"{{"key":"{}","value":"{bar}","lease":7001}}"#, b64("leased")));
    let ttl = h.post("v3/lease/timetolive", r#"{"ID":7001,"keys":true}"#);
    assert!(ttl["TTL"].as_str().unwrap().parse::<i64>().unwrap() > 50, "{ttl}");
    h.post("v3/kv/lease/timetolive", r#"{"ID":"7002"}"#);
    let leases = h.post("v3/lease/leases", "{}");
    assert_eq!(leases["leases"].as_array().map(Vec::len), Some(2), "{leases}");
    h.post("v3/kv/lease/leases", "");
    h.stream("v3/lease/keepalive", r#"{"ID":7001}"#, 1, Duration::from_secs(10));
    h.post("v3/lease/revoke", r#"{"ID":7001}"#);
    h.post("v3/kv/lease/revoke", r#"{"ID":7001}"#);
    h.post("v3/lease/timetolive", r#"{"ID":7001}"#);
    h.post("v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64("leased")));

    // Cluster and maintenance.
    h.post("v3/cluster/member/list", "{}");
    h.post("v3/maintenance/status", "{}");
    h.post("v3/maintenance/alarm", "{}");
    h.post("v3/maintenance/hash", "{}");

    // Bad requests: only the status and gRPC code are etcd's (the JSON
    // parser's message is Go's there).
    for (path, body) in [("v3/kv/range", "{bad"), ("v3/kv/range", r#"{"key":"!!"}"#)] {
        let (status, text) = h.raw("POST", path, body);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"], v["message"], "{text}");
        h.log.push(Exchange { what: format!("{path} {body}"), status, body: v["code"].clone() });
    }
    // Oversized: over --max-request-bytes (etcd's error), and over the gRPC
    // receive limit behind etcd's gateway (grpc-go's).
    for size in [1_700_000, 2_200_000] {
        let value = b64(&"x".repeat(size));
        h.post_large(
            "v3/kv/put",
            &format!("{size} bytes"),
            &format!(r#"{{"key":"{}","value":"{value}"}}"#, b64("big")),
        );
    }
    let (status, text) = h.raw("POST", "v3/no/such/path", "{}");
    h.log.push(Exchange { what: "unknown path".into(), status, body: Value::String(text) });
    for (method, path) in [
        ("GET", "v3/kv/range"),
        ("PUT", "v3beta/watch"),
        ("GET", "v3/no/such/path"),
        ("POST", "v3/"),
        ("POST", "v3/kv/range/extra"),
        ("OPTIONS", "v3/kv/range"),
    ] {
        let (status, text) = h.raw(method, path, "");
        h.log.push(Exchange { what: format!("{method} {path}"), status, body: Value::String(text) });
    }
    h.log
}

#[test]
fn gateway_matches_etcd() {
    if require_tool("curl").is_none() {
        return;
    }
    let retcd = Server::start(Kind::Retcd, std::path::Path::new(RETCD), &[]);
    let got = scenario(&retcd);
    drop(retcd);
    // Sanity on retcd alone, so the test means something without etcd too.
    assert_eq!(got[0].status, 200);
    assert_eq!(got[0].body["header"]["revision"], "2");
    let Some(etcd_bin) = require_tool("etcd") else { return };
    let etcd = Server::start(Kind::Etcd, &etcd_bin, &[]);
    let want = scenario(&etcd);
    drop(etcd);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "retcd (left) differs from etcd (right)");
    }
}

/// The lock and election paths through the gateway.
fn lock_election_scenario(server: &Server) -> Vec<Exchange> {
    let mut h = Http::new(server);
    let name = b64("gwlock");
    h.post("v3/lease/grant", r#"{"TTL":60,"ID":"9501"}"#);
    h.post("v3/lease/grant", r#"{"TTL":60,"ID":"9502"}"#);
    let lock = h.post("v3/lock/lock", &format!(r#"{{"name":"{name}","lease":"9501"}}"#));
    h.post("v3/lock/unlock", &format!(r#"{{"key":"{}"}}"#, lock["key"].as_str().unwrap()));

    let el = b64("gwelect");
    h.post("v3/election/leader", &format!(r#"{{"name":"{el}"}}"#));
    let won = h.post("v3/election/campaign", &format!(r#"{{"name":"{el}","lease":"9502","value":"{}"}}"#, b64("v1")));
    let leader = won["leader"].to_string();
    h.post("v3/election/proclaim", &format!(r#"{{"leader":{leader},"value":"{}"}}"#, b64("v2")));
    h.post("v3/election/leader", &format!(r#"{{"name":"{el}"}}"#));
    h.stream("v3/election/observe", &format!(r#"{{"name":"{el}"}}"#), 1, Duration::from_secs(10));
    h.post("v3/election/proclaim", &format!(r#"{{"value":"{}"}}"#, b64("v3")));
    h.post("v3/election/resign", &format!(r#"{{"leader":{leader}}}"#));
    h.post("v3/election/proclaim", &format!(r#"{{"leader":{leader},"value":"{}"}}"#, b64("v4")));
    h.post("v3beta/election/leader", &format!(r#"{{"name":"{el}"}}"#));
    h.log
}

#[test]
fn gateway_lock_and_election_match_etcd() {
    if require_tool("curl").is_none() {
        return;
    }
    let retcd = Server::start(Kind::Retcd, std::path::Path::new(RETCD), &[]);
    let got = lock_election_scenario(&retcd);
    drop(retcd);
    assert_eq!(got[2].status, 200, "{:?}", got[2]);
    let Some(etcd_bin) = require_tool("etcd") else { return };
    let etcd = Server::start(Kind::Etcd, &etcd_bin, &[]);
    let want = lock_election_scenario(&etcd);
    drop(etcd);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "retcd (left) differs from etcd (right)");
    }
}
