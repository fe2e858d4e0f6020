//! v3 discovery (etcd 3.6's `--discovery-endpoints` / `--discovery-token`):
//! three members bootstrap by registering on a separate one-member retcd;
//! a fourth member with the same token is refused; a token without a size
//! key and half-given flags fail with etcd's texts.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use retcd_api::etcdserverpb::cluster_client::ClusterClient;
use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::{MemberListRequest, PutRequest, RangeRequest};
use retcd_testkit::{free_port, require_tool, spawn_logged, wait_output, Cluster, Kind, MemberSpec, Server};
use tonic::transport::Channel;

fn retcd() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_retcd").as_ref()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn channel(url: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(url.to_string()).unwrap().timeout(Duration::from_secs(5)).connect_lazy()
}

/// The flags that make a member bootstrap through v3 discovery.
fn discovery_flags(discovery: &str, token: &str) -> Vec<String> {
    ["--discovery-endpoints", discovery, "--discovery-token", token].map(String::from).to_vec()
}

/// Runs a member named `name` on fresh ports and data dir with `flags`,
/// expected to exit; returns (exit code, stderr).
fn run_to_exit(name: &str, flags: &[String]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let child = MemberSpec::new(retcd(), name, free_port(), free_port(), &dir.path().join("data"))
        .args(flags)
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(60));
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn three_members_bootstrap_through_v3_discovery_and_a_fourth_is_refused() {
    let service = Server::start(Kind::Retcd, retcd(), &[]);
    bootstrap_three_then_refuse_a_fourth(&service.endpoint(), "v3-token-1");
}

/// The discovery service is real etcd 3.4: registration uses only etcd's
/// v3 API.
#[test]
fn v3_discovery_works_on_real_etcd() {
    let Some(etcd) = require_tool("etcd") else { return };
    let service = Server::start(Kind::Etcd, &etcd, &[]);
    bootstrap_three_then_refuse_a_fourth(&service.endpoint(), "v3-token-etcd");
}

/// Members started while the discovery service is down retry (with
/// backoff) and bootstrap once it is back.
#[test]
fn members_wait_for_a_discovery_service_that_is_down() {
    let mut service = Server::start(Kind::Retcd, retcd(), &[]);
    let discovery = service.endpoint();
    let token = "down";
    rt_put(&discovery, &format!("/_etcd/registry/{token}/_config/size"), "3");
    service.kill9();
    let mut cluster = Cluster::new(retcd(), 3, &[]);
    for i in 0..3 {
        spawn_member_with(&mut cluster, i, &discovery, token, &["--discovery-request-timeout", "1s"]);
    }
    // The service comes back once a member has given up a request and
    // scheduled a retry (bounded wait).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cluster.members.iter().any(|m| m.log_text().contains("retry connecting to discovery service")) {
        assert!(std::time::Instant::now() < deadline, "no member retried; log:\n{}", cluster.members[0].log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    service.spawn();
    service.wait_ready(Duration::from_secs(30));
    for i in 0..3 {
        cluster.wait_ready(i, Duration::from_secs(90));
    }
    let list = runtime().block_on(async {
        ClusterClient::new(channel(&cluster.members[1].url()))
            .member_list(MemberListRequest {})
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(list.members.len(), 3);
}

fn spawn_member(cluster: &mut Cluster, i: usize, discovery: &str, token: &str) {
    spawn_member_with(cluster, i, discovery, token, &[]);
}

fn spawn_member_with(cluster: &mut Cluster, i: usize, discovery: &str, token: &str, extra: &[&str]) {
    let m = &mut cluster.members[i];
    let mut cmd = m.spec(retcd()).args(discovery_flags(discovery, token)).args(extra).command();
    m.child = Some(spawn_logged(&mut cmd, &m.log));
}

fn bootstrap_three_then_refuse_a_fourth(discovery: &str, token: &str) {
    let discovery = discovery.to_string();
    rt_put(&discovery, &format!("/_etcd/registry/{token}/_config/size"), "3");
    let rt = runtime();

    let mut cluster = Cluster::new(retcd(), 3, &[]);
    for i in 0..3 {
        spawn_member(&mut cluster, i, &discovery, token);
        // Registrations arrive at different times; the first two wait.
        std::thread::sleep(Duration::from_millis(300));
    }
    for i in 0..3 {
        cluster.wait_ready(i, Duration::from_secs(60));
    }

    rt.block_on(async {
        // The registry holds one key per member, named by its id, holding
        // its name and peer URL.
        let prefix = format!("/_etcd/registry/{token}/members/");
        let mut end = prefix.clone().into_bytes();
        *end.last_mut().unwrap() += 1;
        let got = KvClient::new(channel(&format!("http://{discovery}")))
            .range(RangeRequest { key: prefix.clone().into_bytes(), range_end: end, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        let mut registered: Vec<(String, String)> = got
            .kvs
            .iter()
            .map(|kv| {
                let key = String::from_utf8(kv.key.clone()).unwrap();
                (key.trim_start_matches(&prefix).to_string(), String::from_utf8(kv.value.clone()).unwrap())
            })
            .collect();
        registered.sort();

        for m in &cluster.members {
            let list =
                ClusterClient::new(channel(&m.url())).member_list(MemberListRequest {}).await.unwrap().into_inner();
            let mut seen: Vec<(String, String)> = list
                .members
                .iter()
                .map(|x| (format!("{:x}", x.id), format!("{}={}", x.name, x.peer_ur_ls.join(","))))
                .collect();
            seen.sort();
            assert_eq!(seen, registered, "member list on {} vs the registry", m.name);
        }
        let expected: Vec<String> =
            cluster.members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect();
        let mut values: Vec<String> = registered.iter().map(|(_, v)| v.clone()).collect();
        values.sort();
        assert_eq!(values, expected);

        KvClient::new(channel(&cluster.members[0].url()))
            .put(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() })
            .await
            .unwrap();
        let got = KvClient::new(channel(&cluster.members[2].url()))
            .range(RangeRequest { key: b"k".to_vec(), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(got.into_inner().kvs[0].value, b"v");
    });

    // A fourth member with the same token: the cluster is full.
    let (code, err) = run_to_exit("m4", &discovery_flags(&discovery, token));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("failed to join discovery cluster (discovery: cluster is full)"), "{err}");
}

#[test]
fn missing_size_key_and_half_given_flags_are_refused() {
    let service = Server::start(Kind::Retcd, retcd(), &[]);
    let discovery = service.endpoint();
    let (code, err) = run_to_exit("m1", &discovery_flags(&discovery, "no-size-here"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("failed to join discovery cluster (discovery: size key not found)"), "{err}");

    rt_put(&discovery, "/_etcd/registry/bad-size/_config/size", "three");
    let (code, err) = run_to_exit("m1", &discovery_flags(&discovery, "bad-size"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("discovery: size key is bad"), "{err}");

    let mut flags = discovery_flags(&discovery, "t");
    flags.truncate(flags.len() - 2);
    let (code, err) = run_to_exit("m1", &flags);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("both --discovery-token and --discovery-endpoints must be set"), "{err}");

    let mut flags = discovery_flags(&discovery, "t");
    flags.extend(["--initial-cluster".to_string(), "m1=http://127.0.0.1:1".to_string()]);
    let (code, err) = run_to_exit("m1", &flags);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("Choose one of \"initial-cluster\", \"discovery\", \"discovery-endpoints\" or \"discovery-srv\""),
        "{err}"
    );
}

fn rt_put(endpoint: &str, key: &str, value: &str) {
    runtime().block_on(async {
        KvClient::new(channel(&format!("http://{endpoint}")))
            .put(PutRequest { key: key.into(), value: value.into(), ..Default::default() })
            .await
            .unwrap();
    });
}

/// A discovery service with auth enabled: `--discovery-user` and
/// `--discovery-password` log in; a wrong password fails at once with
/// etcd's error instead of retrying.
#[test]
fn discovery_with_auth() {
    use retcd_api::etcdserverpb::auth_client::AuthClient;
    use retcd_api::etcdserverpb::{AuthEnableRequest, AuthUserAddRequest, AuthUserGrantRoleRequest};
    let service = Server::start(Kind::Retcd, retcd(), &["--bcrypt-cost", "4"]);
    let discovery = service.endpoint();
    let token = "with-auth";
    rt_put(&discovery, &format!("/_etcd/registry/{token}/_config/size"), "1");
    runtime().block_on(async {
        let mut auth = AuthClient::new(channel(&format!("http://{discovery}")));
        auth.user_add(AuthUserAddRequest { name: "root".into(), password: "pw".into(), options: None }).await.unwrap();
        auth.user_grant_role(AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }).await.unwrap();
        auth.auth_enable(AuthEnableRequest {}).await.unwrap();
    });

    let mut flags = discovery_flags(&discovery, token);
    flags.extend(["--discovery-user", "root", "--discovery-password", "wrong"].map(String::from));
    let (code, err) = run_to_exit("m1", &flags);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "failed to join discovery cluster (etcdserver: authentication failed, invalid user ID or password)"
        ),
        "{err}"
    );

    let mut cluster = Cluster::new(retcd(), 1, &[]);
    spawn_member_with(&mut cluster, 0, &discovery, token, &["--discovery-user", "root", "--discovery-password", "pw"]);
    cluster.wait_ready(0, Duration::from_secs(60));
}
