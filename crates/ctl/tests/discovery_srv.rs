//! `retcdctl --discovery-srv`: endpoints come from `_etcd-client._tcp`
//! records (served by a DNS server the test runs on loopback, named by
//! `RETCD_DNS_SERVER`) of a cluster that itself bootstrapped from SRV
//! records; `--insecure-discovery=false` drops http endpoints as etcdctl does.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use retcd_testkit::{spawn_srv_member, srv_cluster, wait_output, DNS_SERVER_ENV};

const RETCDCTL: &str = env!("CARGO_BIN_EXE_retcdctl");

/// `retcdctl` with no `--endpoints` (its default, 127.0.0.1:2379, is not a
/// member) and the DNS server `dns`.
fn retcdctl(dns: &str, args: &[&str]) -> Output {
    let child = Command::new(RETCDCTL)
        .env(DNS_SERVER_ENV, dns)
        .env_remove("ETCDCTL_ENDPOINTS")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(30))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn retcdctl_reaches_a_cluster_through_srv_records() {
    let Some(retcd) = retcd_testkit::retcd_binary_if_built() else { return };
    let domain = "retcdctl-srv.test";
    let (mut cluster, dns) = srv_cluster(&retcd, 3, domain);
    for i in 0..3 {
        spawn_srv_member(&mut cluster, i, domain, &dns, &[]);
    }
    for i in 0..3 {
        cluster.wait_ready(i, Duration::from_secs(60));
    }
    let dns_addr = dns.addr.to_string();

    let out = retcdctl(&dns_addr, &["--discovery-srv", domain, "put", "found", "by-srv"]);
    assert!(out.status.success(), "put: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "OK\n");
    let out = retcdctl(&dns_addr, &["-d", domain, "get", "found"]);
    assert!(out.status.success(), "get: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "found\nby-srv\n");

    let out = retcdctl(&dns_addr, &["-d", domain, "member", "list"]);
    assert!(out.status.success(), "member list: {}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    for m in &cluster.members {
        let line = format!(
            ", started, {}, http://localhost:{}, http://127.0.0.1:{}, false",
            m.name, m.peer_port, m.client_port
        );
        assert!(listed.contains(&line), "no {line:?} in\n{listed}");
    }

    // Per-endpoint commands use the discovered endpoints too.
    let out = retcdctl(&dns_addr, &["-d", domain, "endpoint", "health"]);
    assert!(
        out.status.success(),
        "endpoint health: {}\nlogs:\n{}",
        text(&out.stderr),
        cluster.members.iter().map(|m| format!("== {}\n{}", m.name, m.log_text())).collect::<String>()
    );
    let both = text(&out.stdout) + &text(&out.stderr);
    for m in &cluster.members {
        let line = format!("http://localhost:{} is healthy", m.client_port);
        assert!(both.contains(&line), "no {line:?} in\n{both}");
    }

    // Secure discovery only: every record is http, so all are dropped (one
    // notice each) and the default endpoint, where nothing listens, is used.
    let out = retcdctl(
        &dns_addr,
        &[
            "-d",
            domain,
            "--insecure-discovery=false",
            "--dial-timeout",
            "300ms",
            "--command-timeout",
            "1s",
            "get",
            "found",
        ],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    let first = &cluster.members[0];
    let notice = format!("ignoring discovered insecure endpoint \"http://localhost:{}\"", first.client_port);
    assert!(err.contains(&notice), "{err}");

    // A domain with no records: etcdctl's text for both failed lookups.
    let out = retcdctl(&dns_addr, &["-d", "nothing.test", "get", "found"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("Error: dns lookup errors: lookup _etcd-client-ssl._tcp.nothing.test on "), "{err}");
}
