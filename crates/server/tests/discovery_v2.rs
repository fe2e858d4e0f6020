//! The v2 keys API (`--enable-v2`) and etcd's v2 discovery protocol
//! (`--discovery`), both ways round:
//!
//! - retcd's `/v2/keys` answers as etcd 3.4's does (same statuses and JSON,
//!   indexes compared relative to each server's starting index), expires
//!   TTLs and wakes `wait=true` watchers;
//! - three retcd members bootstrap through a token on a retcd service and
//!   on a real etcd service; a fourth member, a second cluster and a member
//!   re-registering are refused with etcd's messages;
//! - three real etcd members bootstrap through retcd's service;
//! - members started while the service is down retry until it is back.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use retcd_testkit::{free_port, kill_and_wait, require_tool, retcd_binary, spawn_logged, wait_output, Kind, Server};
use serde_json::Value;

/// One HTTP/1.1 request over a fresh connection; (status, headers, body).
fn http(port: u16, method: &str, path: &str, form: Option<&str>) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = form.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if form.is_some() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = head.to_ascii_lowercase();
    let body = if headers.contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_string() };
    (status, headers, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn header(headers: &str, name: &str) -> Option<String> {
    headers.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).map(|v| v.trim().to_string()))
}

/// Makes a body comparable across servers: indexes relative to `base`,
/// in-order key names too, expirations and TTLs dropped (clock-dependent).
fn normalize(v: &mut Value, base: u64) {
    match v {
        Value::Object(m) => {
            m.remove("expiration");
            m.remove("ttl");
            for (k, x) in m.iter_mut() {
                match (k.as_str(), x.as_u64()) {
                    ("modifiedIndex" | "createdIndex" | "index", Some(n)) => *x = Value::from(n.saturating_sub(base)),
                    _ => normalize(x, base),
                }
            }
            if let Some(Value::String(key)) = m.get_mut("key") {
                if let Some((dir, last)) = key.rsplit_once('/') {
                    if last.len() == 20 && last.bytes().all(|b| b.is_ascii_digit()) {
                        let n: u64 = last.parse().unwrap();
                        *key = format!("{dir}/<{}>", n - base);
                    }
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| normalize(x, base)),
        _ => {}
    }
}

/// The v2 requests compared between etcd and retcd.
const SCRIPT: &[(&str, &str, Option<&str>)] = &[
    ("PUT", "/v2/keys/foo", Some("value=bar")),
    ("GET", "/v2/keys/foo", None),
    ("PUT", "/v2/keys/foo", Some("value=baz")),
    ("PUT", "/v2/keys/foo?prevExist=false", Some("value=x")),
    ("PUT", "/v2/keys/foo?prevExist=true", Some("value=upd")),
    ("PUT", "/v2/keys/foo?prevValue=nope", Some("value=x")),
    ("PUT", "/v2/keys/foo?prevValue=upd", Some("value=cas")),
    ("PUT", "/v2/keys/missing?prevExist=true", Some("value=x")),
    ("PUT", "/v2/keys/new?prevExist=false", Some("value=created")),
    ("PUT", "/v2/keys/dir/a/b", Some("value=1")),
    ("PUT", "/v2/keys/dir/a/c", Some("value=2")),
    ("PUT", "/v2/keys/dir/_hidden", Some("value=h")),
    ("GET", "/v2/keys/dir?recursive=true&sorted=true", None),
    ("GET", "/v2/keys/dir", None),
    ("GET", "/v2/keys/dir/a/b/c", None),
    ("PUT", "/v2/keys/foo/x", Some("value=1")),
    ("PUT", "/v2/keys/dir", Some("value=1")),
    ("PUT", "/v2/keys/emptydir?dir=true", None),
    ("PUT", "/v2/keys/emptydir?dir=true", None),
    ("POST", "/v2/keys/queue", Some("value=job1")),
    ("POST", "/v2/keys/queue", Some("value=job2")),
    ("GET", "/v2/keys/queue?sorted=true", None),
    ("DELETE", "/v2/keys/dir", None),
    ("DELETE", "/v2/keys/dir?dir=true", None),
    ("DELETE", "/v2/keys/emptydir?dir=true", None),
    ("DELETE", "/v2/keys/foo?prevValue=nope", None),
    ("DELETE", "/v2/keys/foo?prevValue=cas", None),
    ("DELETE", "/v2/keys/dir?recursive=true", None),
    ("DELETE", "/v2/keys/", None),
    ("PUT", "/v2/keys/", Some("value=x")),
    ("GET", "/v2/keys/nope", None),
    ("PUT", "/v2/keys/t?ttl=abc", Some("value=1")),
    ("PUT", "/v2/keys/t?prevIndex=abc", Some("value=1")),
    ("PUT", "/v2/keys/t?dir=maybe", Some("value=1")),
    ("PUT", "/v2/keys/t?prevValue=", Some("value=1")),
    ("PUT", "/v2/keys/t?wait=true", Some("value=1")),
    ("PUT", "/v2/keys/t?ttl=100", Some("value=1")),
    ("PUT", "/v2/keys/t?refresh=true", None),
    ("GET", "/v2/keys/?recursive=true&sorted=true", None),
];

/// The v2 index once the server stopped writing on its own: etcd records
/// its members and the cluster version in its v2 store (not under
/// `/v2/keys`) for a moment after it starts serving.
fn quiet_index(port: u16) -> u64 {
    let index = || {
        let (_, headers, _) = http(port, "GET", "/v2/keys/", None);
        header(&headers, "x-etcd-index").unwrap().parse::<u64>().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http(port, "GET", "/version", None).2.contains("\"etcdcluster\":\"3.4.0\"") {
        assert!(Instant::now() < deadline, "cluster version never decided");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut last = index();
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let now = index();
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "the v2 index keeps moving");
        last = now;
    }
}

fn transcript(port: u16) -> Vec<(u16, Value)> {
    let base = quiet_index(port);
    SCRIPT
        .iter()
        .map(|(method, path, form)| {
            let (status, _, body) = http(port, method, path, *form);
            let mut v: Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: body {body:?}"));
            normalize(&mut v, base);
            (status, v)
        })
        .collect()
}

#[test]
fn v2_keys_answer_as_etcd() {
    let retcd = Server::start(Kind::Retcd, &retcd_binary(), &["--enable-v2"]);
    let ours = transcript(retcd.client_port);
    // The TTL is reported and the node expires: the leader proposes it.
    let (status, _, body) = http(retcd.client_port, "PUT", "/v2/keys/short?ttl=1", Some("value=v"));
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["node"]["ttl"], 1, "{body}");
    assert!(created["node"]["expiration"].as_str().unwrap().ends_with('Z'), "{body}");
    let wait_index = created["node"]["modifiedIndex"].as_u64().unwrap() + 1;
    let (status, _, body) =
        http(retcd.client_port, "GET", &format!("/v2/keys/short?wait=true&waitIndex={wait_index}"), None);
    assert_eq!(status, 200, "{body}");
    let expired: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(expired["action"], "expire", "{body}");
    assert_eq!(http(retcd.client_port, "GET", "/v2/keys/short", None).0, 404);
    // Without --enable-v2 there is no v2 API.
    let plain = Server::start(Kind::Retcd, &retcd_binary(), &[]);
    let (_, _, body) = http(plain.client_port, "PUT", "/v2/keys/k", Some("value=v"));
    assert!(!body.contains("\"action\""), "{body}");
    drop(plain);

    let Some(etcd) = require_tool("etcd") else { return };
    let etcd = Server::start(Kind::Etcd, &etcd, &["--enable-v2"]);
    let theirs = transcript(etcd.client_port);
    for (i, ((ours, theirs), (method, path, _))) in ours.iter().zip(&theirs).zip(SCRIPT).enumerate() {
        assert_eq!(ours, theirs, "request {i}: {method} {path}");
    }
}

#[test]
fn v2_watch_waits_for_the_next_change() {
    let retcd = Server::start(Kind::Retcd, &retcd_binary(), &["--enable-v2"]);
    let port = retcd.client_port;
    assert_eq!(http(port, "PUT", "/v2/keys/w/_config", Some("value=hidden")).0, 201);
    let (_, headers, _) = http(port, "GET", "/v2/keys/", None);
    let index: u64 = header(&headers, "x-etcd-index").unwrap().parse().unwrap();
    let waiter = std::thread::spawn(move || http(port, "GET", "/v2/keys/w?wait=true&recursive=true", None));
    // Hidden keys do not wake recursive watchers; the next plain key does.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(http(port, "PUT", "/v2/keys/w/_config", Some("value=again")).0, 200);
    assert_eq!(http(port, "PUT", "/v2/keys/w/member", Some("value=m")).0, 201);
    let (status, _, body) = waiter.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["node"]["key"], "/w/member", "{body}");
    // A waitIndex in the past is answered from the history at once.
    let (_, _, body) = http(port, "GET", &format!("/v2/keys/w/_config?wait=true&waitIndex={}", index + 1), None);
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["node"]["value"], "again", "{body}");
}

// ---------------------------------------------------------------- discovery

/// One member started with `--discovery`.
struct DiscMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Drop for DiscMember {
    fn drop(&mut self) {
        kill_and_wait(&mut self.child);
    }
}

fn discovery_command(binary: &Path, dir: &Path, name: &str, client: u16, peer: u16, durl: &str) -> Command {
    let client = format!("http://127.0.0.1:{client}");
    let peer = format!("http://127.0.0.1:{peer}");
    let mut cmd = Command::new(binary);
    cmd.arg("--name")
        .arg(name)
        .arg("--data-dir")
        .arg(dir.join(format!("{name}.etcd")))
        .arg("--listen-client-urls")
        .arg(&client)
        .arg("--advertise-client-urls")
        .arg(&client)
        .arg("--listen-peer-urls")
        .arg(&peer)
        .arg("--initial-advertise-peer-urls")
        .arg(&peer)
        .arg("--discovery")
        .arg(durl);
    cmd
}

fn spawn_members(binary: &Path, dir: &Path, prefix: &str, n: usize, durl: &str) -> Vec<DiscMember> {
    (1..=n)
        .map(|i| {
            let name = format!("{prefix}{i}");
            let (client_port, peer_port) = (free_port(), free_port());
            let log = dir.join(format!("{name}.log"));
            let mut cmd = discovery_command(binary, dir, &name, client_port, peer_port, durl);
            let child = Some(spawn_logged(&mut cmd, &log));
            DiscMember { name, client_port, peer_port, log, child }
        })
        .collect()
}

/// Runs one member that must fail; returns its output.
fn run_refused(binary: &Path, dir: &Path, name: &str, durl: &str, extra: &[&str]) -> Output {
    let mut cmd = discovery_command(binary, dir, name, free_port(), free_port(), durl);
    cmd.args(extra).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped());
    cmd.stderr(std::process::Stdio::piped());
    let out = wait_output(cmd.spawn().unwrap(), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{name} should fail; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `retcd discovery new` against a v2 keys service.
fn new_token(service_port: u16, size: usize) -> String {
    let out = Command::new(retcd_binary())
        .args(["discovery", "new", "--size", &size.to_string(), "--endpoint"])
        .arg(format!("http://127.0.0.1:{service_port}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(url.starts_with(&format!("http://127.0.0.1:{service_port}/v2/keys/discovery/")), "{url}");
    url
}

/// Waits until every member answers `etcdctl member list` with `n`
/// started members; returns (name, hex id, peer URL) of each.
fn wait_cluster(members: &mut [DiscMember], n: usize) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    loop {
        for m in members.iter_mut() {
            if let Some(Ok(Some(status))) = m.child.as_mut().map(Child::try_wait) {
                panic!("{} exited ({status}):\n{}", m.name, std::fs::read_to_string(&m.log).unwrap_or_default());
            }
        }
        let lists: Vec<Option<String>> = members
            .iter()
            .map(|m| {
                let out = retcd_testkit::etcdctl(&format!("127.0.0.1:{}", m.client_port), &["member", "list"], None);
                out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            })
            .collect();
        if let Some(Some(first)) = lists.first() {
            let rows: Vec<(String, String, String)> = first
                .lines()
                .map(|l| l.split(", ").map(str::to_string).collect::<Vec<_>>())
                .filter(|f| f.len() >= 4 && f[1] == "started")
                .map(|f| (f[2].clone(), f[0].clone(), f[3].clone()))
                .collect();
            if rows.len() == n && lists.iter().all(|l| l.as_deref() == Some(first.as_str())) {
                return rows;
            }
            last = first.clone();
        }
        assert!(Instant::now() < deadline, "cluster did not form; last member list:\n{last}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Bootstraps three members of `binary` through `durl` and checks the
/// cluster: names, and ids derived as etcd derives them with the discovery
/// URL as the cluster token.
fn bootstrap_three(binary: &Path, dir: &Path, durl: &str) -> Vec<DiscMember> {
    let mut members = spawn_members(binary, dir, "m", 3, durl);
    let rows = wait_cluster(&mut members, 3);
    for m in &members {
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let row = rows.iter().find(|r| r.0 == m.name).unwrap_or_else(|| panic!("{} missing: {rows:?}", m.name));
        assert_eq!(row.2, peer);
        let id = retcd_server::ids::member_id(std::slice::from_ref(&peer), durl);
        assert_eq!(row.1, format!("{id:x}"), "member id of {}", m.name);
    }
    members
}

/// The refusals: a fourth member, a second cluster on the same token, a
/// member registering again with a fresh data dir.
fn check_refusals(dir: &Path, durl: &str, first: &DiscMember) {
    let retcd = retcd_binary();
    let out = run_refused(&retcd, dir, "m4", durl, &["--discovery-fallback", "exit"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed to join discovery cluster (discovery: cluster is full)"), "{err}");
    // With etcd's default fallback (proxy) the member still exits: retcd
    // has no v2 proxy, and says so.
    let out = run_refused(&retcd, dir, "m5", durl, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("discovery: cluster is full") && err.contains("does not implement"), "{err}");
    // A second cluster of three on the same token: every member refused.
    let second: Vec<_> = (1..=3)
        .map(|i| {
            let d = dir.to_path_buf();
            let durl = durl.to_string();
            std::thread::spawn(move || {
                let out =
                    run_refused(&retcd_binary(), &d, &format!("second{i}"), &durl, &["--discovery-fallback=exit"]);
                String::from_utf8_lossy(&out.stderr).into_owned()
            })
        })
        .collect();
    for t in second {
        let err = t.join().unwrap();
        assert!(err.contains("discovery: cluster is full"), "{err}");
    }
    // A member of the cluster started again without its data dir: its id is
    // registered already.
    let fresh = dir.join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let mut cmd = discovery_command(&retcd, &fresh, &first.name, free_port(), first.peer_port, durl);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let out = wait_output(cmd.spawn().unwrap(), Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("discovery: found duplicate id") && err.contains("previously registered"), "{err}");
}

#[test]
fn retcd_members_bootstrap_through_retcd_service() {
    let service = Server::start(Kind::Retcd, &retcd_binary(), &["--enable-v2"]);
    let durl = new_token(service.client_port, 3);
    let dir = tempfile::tempdir().unwrap();
    let members = bootstrap_three(&retcd_binary(), dir.path(), &durl);
    // The registrations are on the service: three members, the size key.
    let (_, _, body) = http(service.client_port, "GET", &format!("{}?recursive=true", durl_path(&durl)), None);
    let v: Value = serde_json::from_str(&body).unwrap();
    let registered = v["node"]["nodes"].as_array().unwrap();
    assert_eq!(registered.len(), 3, "{body}");
    check_refusals(dir.path(), &durl, &members[0]);
    // A token without a size key.
    let bad = format!("{}/v2/keys/discovery/notoken", durl.split("/v2/").next().unwrap());
    let out = run_refused(&retcd_binary(), dir.path(), "x", &bad, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("discovery: size key not found"));
    // A size that is not a number.
    assert_eq!(http(service.client_port, "PUT", "/v2/keys/discovery/badsize/_config/size", Some("value=three")).0, 201);
    let bad = bad.replace("notoken", "badsize");
    let out = run_refused(&retcd_binary(), dir.path(), "y", &bad, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("discovery: size key is bad"));
    // Not a v2 keys service: a member started without --enable-v2.
    let not_v2 = format!("http://127.0.0.1:{}/v2/keys/discovery/x", members[1].client_port);
    let out = run_refused(&retcd_binary(), dir.path(), "z", &not_v2, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed to join discovery cluster (discovery: bad discovery endpoint)"), "{err}");
}

#[test]
fn retcd_members_bootstrap_through_etcd_service() {
    let Some(etcd) = require_tool("etcd") else { return };
    let service = Server::start(Kind::Etcd, &etcd, &["--enable-v2"]);
    let durl = new_token(service.client_port, 3);
    let dir = tempfile::tempdir().unwrap();
    let members = bootstrap_three(&retcd_binary(), dir.path(), &durl);
    check_refusals(dir.path(), &durl, &members[0]);
}

#[test]
fn etcd_members_bootstrap_through_retcd_service() {
    let Some(etcd) = require_tool("etcd") else { return };
    let service = Server::start(Kind::Retcd, &retcd_binary(), &["--enable-v2"]);
    let durl = new_token(service.client_port, 3);
    let dir = tempfile::tempdir().unwrap();
    let _members = bootstrap_three(&etcd, dir.path(), &durl);
    // etcd refuses a fourth member as well, through retcd's answers.
    let mut cmd = discovery_command(&etcd, dir.path(), "m4", free_port(), free_port(), &durl);
    cmd.args(["--discovery-fallback", "exit"]).stdout(std::process::Stdio::piped());
    cmd.stderr(std::process::Stdio::piped());
    let out = wait_output(cmd.spawn().unwrap(), Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("discovery: cluster is full"), "{err}");
}

#[test]
fn members_wait_for_a_restarting_service() {
    let mut service = Server::start(Kind::Retcd, &retcd_binary(), &["--enable-v2"]);
    let durl = new_token(service.client_port, 3);
    // The service goes away before the members start, and comes back (same
    // port and data) while they retry.
    assert_eq!(service.terminate(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let mut members = spawn_members(&retcd_binary(), dir.path(), "m", 3, &durl);
    std::thread::sleep(Duration::from_secs(2));
    service.spawn();
    service.wait_ready(Duration::from_secs(30));
    wait_cluster(&mut members, 3);
    let log = std::fs::read_to_string(&members[0].log).unwrap();
    assert!(log.contains("retrying in"), "{log}");
}

fn durl_path(durl: &str) -> String {
    let rest = durl.strip_prefix("http://").unwrap();
    rest[rest.find('/').unwrap()..].to_string()
}

#[test]
fn v2_store_is_replicated() {
    let mut cluster = retcd_testkit::Cluster::new(&retcd_binary(), 3, &["--enable-v2"]);
    cluster.start_all();
    let ports: Vec<u16> = cluster.members.iter().map(|m| m.client_port).collect();
    let (status, _, body) = http(ports[0], "PUT", "/v2/keys/r/a", Some("value=1"));
    assert_eq!(status, 201, "{body}");
    // A follower's watcher sees a change proposed through another member.
    let (_, headers, _) = http(ports[2], "GET", "/v2/keys/?quorum=true", None);
    let index: u64 = header(&headers, "x-etcd-index").unwrap().parse().unwrap();
    let p2 = ports[2];
    let waiter = std::thread::spawn(move || {
        http(p2, "GET", &format!("/v2/keys/r?wait=true&recursive=true&waitIndex={}", index + 1), None)
    });
    assert_eq!(http(ports[1], "PUT", "/v2/keys/r/b?ttl=1", Some("value=2")).0, 201);
    let (_, _, body) = waiter.join().unwrap();
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["node"]["key"], "/r/b", "{body}");
    // Every member has the same nodes, and the TTL expires everywhere.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let bodies: Vec<String> = ports.iter().map(|p| http(*p, "GET", "/v2/keys/r?quorum=true", None).2).collect();
        let gone = bodies.iter().all(|b| b.contains("/r/a") && !b.contains("/r/b"));
        if gone {
            break;
        }
        assert!(Instant::now() < deadline, "r/b did not expire everywhere: {bodies:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // /v2/members lists the three members as etcd's v2 API does.
    let (status, headers, body) = http(ports[1], "GET", "/v2/members", None);
    assert_eq!(status, 200);
    assert!(header(&headers, "x-etcd-cluster-id").is_some(), "{headers}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{body}");
    assert!(body.starts_with(r#"{"members":[{"id":""#), "{body}");
    assert!(members.iter().all(|m| m["peerURLs"].as_array().is_some_and(|a| a.len() == 1)), "{body}");
}

/// A minimal HTTP forward proxy: requests with an absolute URL are sent
/// on to their host; counts what it forwarded.
fn start_proxy() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { return };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let (line, rest) = text.split_once("\r\n").unwrap();
                let mut parts = line.split(' ');
                let (method, url) = (parts.next().unwrap(), parts.next().unwrap());
                let Some(target) = url.strip_prefix("http://") else { return };
                let slash = target.find('/').unwrap_or(target.len());
                let (host, path) = target.split_at(slash);
                let Ok(mut upstream) = std::net::TcpStream::connect(host) else { return };
                seen.fetch_add(1, Ordering::SeqCst);
                let head = format!("{method} {path} HTTP/1.1\r\n{rest}");
                upstream.write_all(head.as_bytes()).unwrap();
                let mut up_read = upstream.try_clone().unwrap();
                let mut client_write = client.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client, &mut upstream);
                });
                let _ = std::io::copy(&mut up_read, &mut client_write);
                let _ = client_write.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (port, count)
}

#[test]
fn discovery_through_a_proxy() {
    let service = Server::start(Kind::Retcd, &retcd_binary(), &["--enable-v2"]);
    let durl = new_token(service.client_port, 3);
    let (proxy_port, forwarded) = start_proxy();
    let dir = tempfile::tempdir().unwrap();
    let mut members: Vec<DiscMember> = (1..=3)
        .map(|i| {
            let name = format!("p{i}");
            let (client_port, peer_port) = (free_port(), free_port());
            let log = dir.path().join(format!("{name}.log"));
            let mut cmd = discovery_command(&retcd_binary(), dir.path(), &name, client_port, peer_port, &durl);
            // Without a scheme, as etcd accepts it.
            cmd.arg("--discovery-proxy").arg(format!("127.0.0.1:{proxy_port}"));
            let child = Some(spawn_logged(&mut cmd, &log));
            DiscMember { name, client_port, peer_port, log, child }
        })
        .collect();
    wait_cluster(&mut members, 3);
    // Each member: size, listing, registration, listing again, waits.
    assert!(forwarded.load(std::sync::atomic::Ordering::SeqCst) >= 12);
}

#[test]
fn waiting_members_survive_a_service_restart() {
    let mut service = Server::start(Kind::Retcd, &retcd_binary(), &["--enable-v2"]);
    let durl = new_token(service.client_port, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut members = spawn_members(&retcd_binary(), dir.path(), "m", 2, &durl);
    // Both registered and now wait for the third.
    let listing = format!("{}?recursive=true", durl_path(&durl));
    let deadline = Instant::now() + Duration::from_secs(30);
    let registered = |port: u16| {
        let v: Value = serde_json::from_str(&http(port, "GET", &listing, None).2).unwrap();
        v["node"]["nodes"].as_array().map_or(0, Vec::len)
    };
    while registered(service.client_port) < 2 {
        assert!(Instant::now() < deadline, "members did not register");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The service restarts (its event history is gone); the third member
    // registers afterwards, and the two waiting ones still see it.
    assert_eq!(service.terminate(), Some(0));
    service.spawn();
    service.wait_ready(Duration::from_secs(30));
    let third = spawn_members(&retcd_binary(), dir.path(), "late", 1, &durl);
    members.extend(third);
    wait_cluster(&mut members, 3);
}
