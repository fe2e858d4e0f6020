//! A member whose static bootstrap configuration does not describe it (its
//! name is not in `--initial-cluster`, or its entry there does not list its
//! advertised peer URLs) refuses to start, with etcd's error text.
//!
//! Each case runs real etcd and retcd with the same flags (sequentially, on
//! the same free ports) and expects both to exit with status 1 and retcd's
//! stderr to carry the message etcd logs.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use retcd_testkit::{free_port, require_tool, retcd_binary, wait_output};

/// Runs `binary` with `args` plus a fresh data dir; returns (exit code, stderr).
fn run(binary: &Path, args: &[String]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(binary)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(20));
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The text of etcd's fatal log line ("... C | etcdmain: <text>").
fn etcd_fatal(stderr: &str) -> String {
    let line = stderr.lines().find(|l| l.contains(" C | ")).unwrap_or_else(|| panic!("no fatal line in:\n{stderr}"));
    line.split_once("etcdmain: ").map(|(_, t)| t.to_string()).unwrap_or_else(|| panic!("unexpected line {line}"))
}

fn compare(args: Vec<String>, expected: &str) {
    let Some(etcd) = require_tool("etcd") else { return };
    let (etcd_code, etcd_err) = run(&etcd, &args);
    let etcd_text = etcd_fatal(&etcd_err);
    assert_eq!(etcd_text, expected, "etcd's own message changed");
    let (code, err) = run(&retcd_binary(), &args);
    assert_eq!(code, etcd_code, "exit code; stderr:\n{err}");
    assert_eq!(code, Some(1));
    assert!(err.contains(&etcd_text), "retcd's stderr lacks etcd's message {etcd_text:?}:\n{err}");
}

fn base_args(name: &str, client: u16, advertise_peer: u16, initial_cluster: &str) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client}");
    vec![
        "--name".into(),
        name.into(),
        "--listen-client-urls".into(),
        client.clone(),
        "--advertise-client-urls".into(),
        client,
        "--listen-peer-urls".into(),
        format!("http://127.0.0.1:{advertise_peer}"),
        "--initial-advertise-peer-urls".into(),
        format!("http://127.0.0.1:{advertise_peer}"),
        "--initial-cluster".into(),
        initial_cluster.into(),
    ]
}

#[test]
fn name_missing_from_initial_cluster_is_refused() {
    let (client, peer) = (free_port(), free_port());
    let cluster = format!("other=http://127.0.0.1:{peer}");
    compare(
        base_args("infra9", client, peer, &cluster),
        "couldn't find local name \"infra9\" in the initial cluster configuration",
    );
}

#[test]
fn peer_urls_not_matching_the_initial_cluster_are_refused() {
    let (client, peer, listed) = (free_port(), free_port(), free_port());
    let cluster = format!("infra0=http://127.0.0.1:{listed}");
    compare(
        base_args("infra0", client, peer, &cluster),
        &format!(
            "--initial-cluster has infra0=http://127.0.0.1:{listed} but missing from \
             --initial-advertise-peer-urls=http://127.0.0.1:{peer} \
             (resolved urls: \"http://127.0.0.1:{peer}\" != \"http://127.0.0.1:{listed}\")"
        ),
    );
}

/// The test harness itself: a member whose client port was taken between
/// choosing it and binding it (another process won the race) exits with
/// "Address already in use"; `Cluster::start_all` then starts the fresh
/// cluster again on new ports instead of failing the test.
#[test]
fn a_fresh_test_cluster_survives_a_taken_port() {
    let mut cluster = retcd_testkit::Cluster::new(&retcd_binary(), 1, &[]);
    let taken = cluster.members[0].client_port;
    // Bound, not listening: connections are refused, binds collide.
    let squatter = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    match squatter.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], taken)).into()) {
        // Another process took it first: taken all the same, which is the case tested.
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
        other => other.unwrap(),
    }
    cluster.start_all();
    assert_ne!(cluster.members[0].client_port, taken);
    assert!(cluster.members[0].is_running());
}
