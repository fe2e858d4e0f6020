//! Peer TLS: three members on `https://` peer URLs with mutual TLS
//! (`--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file`,
//! `--peer-client-cert-auth`, `--peer-cert-allowed-cn`) elect a leader and
//! replicate a write. A fourth member added with `member add` but holding a
//! certificate from another CA, or one from the right CA with the wrong
//! common name, cannot join: it stops with a clear error, the members log the
//! refused handshake, and the cluster keeps serving. Certificates are made
//! in the test.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use retcd_testkit::pki::Pki;
use retcd_testkit::{etcdctl, etcdctl_reconfigure, free_port, require_tool, spawn_logged, Cluster, MemberSpec};

fn retcd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_retcd"))
}

fn peer_flags(pki: &Pki, name: &str) -> Vec<String> {
    vec![
        "--peer-cert-file".into(),
        pki.path(&format!("{name}.pem")),
        "--peer-key-file".into(),
        pki.path(&format!("{name}-key.pem")),
        "--peer-trusted-ca-file".into(),
        pki.path("ca.pem"),
        "--peer-client-cert-auth".into(),
        "--peer-cert-allowed-cn=retcd-peer".into(),
    ]
}

fn text(o: &std::process::Output) -> String {
    format!("{:?}: {}{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Waits (bounded) for `child` to exit; None if it is still running.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn three_members_over_peer_mutual_tls() {
    if require_tool("etcdctl").is_none() {
        return;
    }
    let pki = Pki::new("retcd peer CA");
    for i in 1..=3 {
        pki.issue(&format!("m{i}"), &["127.0.0.1", "localhost"], "retcd-peer");
    }
    // Right CA, wrong common name.
    pki.issue("wrong-cn", &["127.0.0.1", "localhost"], "someone-else");
    let other = Pki::new("another CA");
    other.issue("m4", &["127.0.0.1", "localhost"], "retcd-peer");

    let mut cluster = Cluster::new(retcd(), 3, &[]);
    cluster.peer_scheme = "https".into();
    cluster.member_args = (1..=3).map(|i| peer_flags(&pki, &format!("m{i}"))).collect();
    cluster.start_all();

    let members = etcdctl(&cluster.members[0].endpoint(), &["member", "list"], None);
    assert!(members.status.success(), "{}", text(&members));
    assert_eq!(
        String::from_utf8_lossy(&members.stdout).matches(", https://127.0.0.1:").count(),
        3,
        "{}",
        text(&members)
    );
    let put = etcdctl(&cluster.members[0].endpoint(), &["put", "over-tls", "yes"], None);
    assert!(put.status.success(), "{}", text(&put));
    for m in &cluster.members {
        let got = etcdctl(&m.endpoint(), &["get", "over-tls", "--print-value-only"], None);
        assert_eq!(String::from_utf8_lossy(&got.stdout), "yes\n", "{}: {}", m.name, text(&got));
    }

    // Intruders: added as members, then started with a bad certificate.
    for (attempt, (cert_dir, cert_name)) in [(&other, "m4"), (&pki, "wrong-cn")].into_iter().enumerate() {
        let name = format!("intruder{attempt}");
        let (peer_port, client_port) = (free_port(), free_port());
        let peer_url = format!("https://127.0.0.1:{peer_port}");
        let add = etcdctl_reconfigure(
            &cluster.members[0].endpoint(),
            &["member", "add", &name, &format!("--peer-urls={peer_url}")],
        );
        assert!(add.status.success(), "{}", text(&add));
        let initial = format!("{},{name}={peer_url}", cluster.initial_cluster());
        let dir = cluster.dir.path().join(format!("{name}.etcd"));
        let mut cmd = MemberSpec::new(retcd(), &name, client_port, peer_port, &dir)
            .peer_scheme("https")
            .initial_cluster(&initial)
            .args(["--initial-cluster-state", "existing", "--initial-cluster-token", &cluster.token])
            .args(peer_flags(cert_dir, cert_name))
            .command();
        let log = cluster.dir.path().join(format!("{name}.log"));
        let mut child = spawn_logged(&mut cmd, &log);
        let status = wait_exit(&mut child, Duration::from_secs(60));
        let _ = child.kill();
        let _ = child.wait();
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(status.is_some_and(|s| !s.success()), "{name} was not refused; log:\n{log_text}");
        assert!(log_text.contains("could not retrieve cluster information"), "{name}: unclear error:\n{log_text}");

        // The members saw the refused handshake, and still serve writes.
        let refused = cluster.members.iter().any(|m| m.log_text().contains("TLS handshake"));
        assert!(refused, "no member logged the refused handshake of {name}");
        let put = etcdctl(&cluster.members[1].endpoint(), &["put", &format!("after-{name}"), "ok"], None);
        assert!(put.status.success(), "{}", text(&put));
        let got =
            etcdctl(&cluster.members[2].endpoint(), &["get", &format!("after-{name}"), "--print-value-only"], None);
        assert_eq!(String::from_utf8_lossy(&got.stdout), "ok\n", "{}", text(&got));
        // Remove the never-started member again, so quorum stays at three.
        let list = etcdctl(&cluster.members[0].endpoint(), &["member", "list"], None);
        // (A member that never started is listed without a name.)
        let line = String::from_utf8_lossy(&list.stdout).lines().find(|l| l.contains(&peer_url)).map(str::to_string);
        let id = line.and_then(|l| l.split(',').next().map(str::to_string)).unwrap();
        let rm = etcdctl(&cluster.members[0].endpoint(), &["member", "remove", &id], None);
        assert!(rm.status.success(), "{}", text(&rm));
    }
}

#[test]
fn https_peer_url_needs_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let initial = format!("default=https://127.0.0.1:{peer}");
    let mut cmd = MemberSpec::new(retcd(), "default", client, peer, &dir.path().join("d"))
        .peer_scheme("https")
        .initial_cluster(&initial)
        .command();
    let log = dir.path().join("log");
    let mut child = spawn_logged(&mut cmd, &log);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.is_some_and(|s| !s.success()), "{log_text}");
    assert!(
        log_text
            .contains(&format!("cannot listen on TLS for 127.0.0.1:{peer}: KeyFile and CertFile are not presented")),
        "{log_text}"
    );
}

/// `--peer-auto-tls`: each member makes its own self-signed certificate;
/// peers encrypt without verifying each other (as etcd), and the cluster
/// works.
#[test]
fn peer_auto_tls_cluster_replicates() {
    if require_tool("etcdctl").is_none() {
        return;
    }
    let mut cluster = Cluster::new(retcd(), 3, &["--peer-auto-tls"]);
    cluster.peer_scheme = "https".into();
    cluster.start_all();
    let put = etcdctl(&cluster.members[0].endpoint(), &["put", "auto", "tls"], None);
    assert!(put.status.success(), "{}", text(&put));
    for m in &cluster.members {
        let got = etcdctl(&m.endpoint(), &["get", "auto", "--print-value-only"], None);
        assert_eq!(String::from_utf8_lossy(&got.stdout), "tls\n", "{}: {}", m.name, text(&got));
        assert!(m.data_dir.join("fixtures/peer/cert.pem").exists(), "{}: no generated certificate", m.name);
    }
}
