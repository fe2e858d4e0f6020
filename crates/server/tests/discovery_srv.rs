//! `--discovery-srv`: members bootstrap from SRV records served by a DNS
//! server the test runs on loopback (named by `RETCD_DNS_SERVER`), find
//! themselves by resolving the records' targets, and refuse to start when
//! the records do not list them.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use retcd_api::etcdserverpb::cluster_client::ClusterClient;
use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::{MemberListRequest, PutRequest, RangeRequest};
use retcd_testkit::dns::{DnsServer, Record};
use retcd_testkit::{free_port, spawn_srv_member, srv_cluster, wait_output, Cluster, DNS_SERVER_ENV};

fn retcd() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_retcd").as_ref()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// (name, sorted peer URLs) of every member, as `url` reports them.
async fn members(url: &str) -> Vec<(String, Vec<String>)> {
    let ch = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let resp = ClusterClient::new(ch).member_list(MemberListRequest {}).await.unwrap();
    let mut out: Vec<(String, Vec<String>)> =
        resp.into_inner().members.into_iter().map(|m| (m.name, m.peer_ur_ls)).collect();
    out.sort();
    out
}

#[test]
fn three_members_bootstrap_from_srv_records() {
    let domain = "retcd-srv.test";
    let (mut cluster, dns) = srv_cluster(retcd(), 3, domain);
    for i in 0..3 {
        spawn_srv_member(&mut cluster, i, domain, &dns, &[]);
    }
    for i in 0..3 {
        cluster.wait_ready(i, Duration::from_secs(60));
    }
    assert!(dns.queries.load(Ordering::Relaxed) >= 3, "the members did not ask the test's DNS server");
    let expected: Vec<(String, Vec<String>)> =
        cluster.members.iter().map(|m| (m.name.clone(), vec![format!("http://localhost:{}", m.peer_port)])).collect();
    let rt = runtime();
    rt.block_on(async {
        // Every member sees the same three members, named after the
        // members themselves, with the peer URLs from the SRV records.
        for m in &cluster.members {
            assert_eq!(members(&m.url()).await, expected, "member list on {}", m.name);
        }
        let first = tonic::transport::Endpoint::from_shared(cluster.members[0].url()).unwrap().connect_lazy();
        KvClient::new(first)
            .put(PutRequest { key: b"srv".to_vec(), value: b"works".to_vec(), ..Default::default() })
            .await
            .unwrap();
        let last = tonic::transport::Endpoint::from_shared(cluster.members[2].url()).unwrap().connect_lazy();
        let got = KvClient::new(last).range(RangeRequest { key: b"srv".to_vec(), ..Default::default() }).await.unwrap();
        assert_eq!(got.into_inner().kvs[0].value, b"works");
    });
    // A restart needs no DNS: the members come from the data dir.
    drop(dns);
    cluster.members[1].kill9();
    let unused = DnsServer::start(Vec::new());
    spawn_srv_member(&mut cluster, 1, domain, &unused, &[]);
    cluster.wait_ready(1, Duration::from_secs(60));
    assert_eq!(unused.queries.load(Ordering::Relaxed), 0, "a restarted member looked up SRV records");
}

/// One member whose SRV record (with `--discovery-srv-name`'s suffix) names
/// a host only the test's DNS server knows: it matches itself through the
/// A record, and keeps the record's host name as its peer URL.
#[test]
fn member_matches_itself_through_dns_a_records_and_service_name() {
    let domain = "retcd-one.test";
    let mut cluster = Cluster::new(retcd(), 1, &[]);
    let peer_port = cluster.members[0].peer_port;
    let dns = DnsServer::start(vec![
        Record::srv(&format!("_etcd-server-prod._tcp.{domain}"), "m1.retcd-one.test.", peer_port),
        Record::addr("m1.retcd-one.test", IpAddr::from([127, 0, 0, 1])),
    ]);
    spawn_srv_member(&mut cluster, 0, domain, &dns, &["--discovery-srv-name", "prod"]);
    cluster.wait_ready(0, Duration::from_secs(60));
    let got = runtime().block_on(members(&cluster.members[0].url()));
    assert_eq!(got, vec![("m1".to_string(), vec![format!("http://m1.retcd-one.test:{peer_port}")])]);
}

/// Runs retcd with `args` against `dns`; returns (exit code, stderr).
fn run_failing(dns: &DnsServer, args: &[&str]) -> (Option<i32>, String) {
    run_with_dns_env(&dns.addr.to_string(), args)
}

fn run_with_dns_env(dns_env: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(retcd())
        .env(DNS_SERVER_ENV, dns_env)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(30));
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn members_the_records_do_not_list_are_refused() {
    let domain = "retcd-bad.test";
    let (client, peer, other) = (free_port(), free_port(), free_port());
    let dns = DnsServer::start(vec![
        Record::srv(&format!("_etcd-server._tcp.{domain}"), "localhost.", other),
        Record::srv(&format!("_etcd-server-ssl._tcp.tls.{domain}"), "localhost.", peer),
    ]);
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let base = [
        "--name",
        "lost",
        "--listen-client-urls",
        &client_url,
        "--advertise-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
    ];
    let mut args = base.to_vec();
    args.extend(["--discovery-srv", domain]);
    let (code, err) = run_failing(&dns, &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot find local etcd member \"lost\" in SRV records"), "{err}");

    // A domain without records: both lookups' errors, Go's wording.
    let mut args = base.to_vec();
    args.extend(["--discovery-srv", "nothing.test"]);
    let (code, err) = run_failing(&dns, &args);
    assert_eq!(code, Some(1), "{err}");
    let want = format!(
        "error querying DNS SRV records for _etcd-server-ssl lookup _etcd-server-ssl._tcp.nothing.test on {}: no such host",
        dns.addr
    );
    assert!(err.contains(&want), "{err}");

    // The record matching this member is https while it advertises http.
    let tls_domain = format!("tls.{domain}");
    let mut args = base.to_vec();
    args.extend(["--discovery-srv", &tls_domain]);
    let (code, err) = run_failing(&dns, &args);
    assert_eq!(code, Some(1), "{err}");
    let want = format!(
        "error querying DNS SRV records for _etcd-server-ssl bootstrap at https://localhost:{peer} from DNS for \
         etcd-server-ssl has scheme mismatch with expected peer {peer_url}"
    );
    assert!(err.contains(&want), "{err}");

    // A nameserver override that names no address.
    let mut args = base.to_vec();
    args.extend(["--discovery-srv", domain]);
    let (code, err) = run_with_dns_env("not-an-address", &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("RETCD_DNS_SERVER=\"not-an-address\": not an address of the form host:port"), "{err}");

    // Two ways to bootstrap at once: etcd's text.
    let initial = format!("lost={peer_url}");
    let mut args = base.to_vec();
    args.extend(["--discovery-srv", domain, "--initial-cluster", &initial]);
    let (code, err) = run_failing(&dns, &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("multiple discovery or bootstrap flags are set"), "{err}");
}
