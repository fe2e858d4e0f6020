//! retcd-client against real processes: failover across a three-member
//! retcd cluster (a member killed with SIGKILL under a running watch),
//! retries past a dead endpoint, lease keep-alive, and username/password
//! auth against real etcd.
//!
//! Every wait is bounded; processes are killed and temp dirs removed on drop.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use retcd_client::{prefix_end, Client, Config, EtcdError, WatchCreateRequest};
use retcd_testkit::{free_port, require_tool, Cluster, Kind, Server};

/// Waits (bounded) until `client` serves a linearizable read.
async fn wait_serving(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get("probe").await.is_err() {
        assert!(Instant::now() < deadline, "cluster never served a read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reads_and_writes_survive_a_killed_member() {
    let Some(bin) = retcd_testkit::retcd_binary_if_built() else { return };
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(&bin, 3, &[]));
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint()).collect();

    // Find a follower: the watch will start there and that member dies.
    let probe = Client::new(Config::new(endpoints.clone()).request_timeout(Duration::from_secs(10))).unwrap();
    wait_serving(&probe).await;
    let mut follower = None;
    for (i, ep) in endpoints.iter().enumerate() {
        let st = probe.for_endpoint(ep).unwrap().status().await.unwrap();
        if st.header.unwrap().member_id != st.leader {
            follower = Some(i);
            break;
        }
    }
    let victim = follower.expect("a three-member cluster has followers");
    let mut ordered = vec![endpoints[victim].clone()];
    ordered.extend(endpoints.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, e)| e.clone()));

    let client = Client::new(Config::new(ordered.clone()).request_timeout(Duration::from_secs(10))).unwrap();
    let req = WatchCreateRequest { key: b"fo/".to_vec(), range_end: prefix_end(b"fo/"), ..Default::default() };
    let mut watch = client.watch(req).await.unwrap();
    assert_eq!(watch.endpoint(), ordered[0], "the first call goes to the first endpoint");

    const N: usize = 60;
    const KILL_AT: usize = 20;
    let mut put_revs = Vec::new();
    for i in 0..N {
        if i == KILL_AT {
            cluster.members[victim].kill9();
            // Let the client's connections see the member go away.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let key = format!("fo/{i:03}");
        let resp = client.put(key.clone(), format!("v{i}")).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
        put_revs.push(resp.header.unwrap().revision);
        let got = client.get(key.clone()).await.unwrap_or_else(|e| panic!("get {key}: {e}"));
        assert_eq!(got.kvs.len(), 1, "{key} not readable");
    }

    // Every event exactly once, in revision order, across the failover.
    let revs = collect_events(&mut watch, N).await;
    assert_eq!(revs, put_revs, "events must match the puts' revisions");
    assert_ne!(watch.endpoint(), ordered[0], "the watch moved off the killed member");
    // Nothing extra arrives.
    let extra = tokio::time::timeout(Duration::from_millis(500), watch.next()).await;
    assert!(extra.is_err(), "unexpected extra watch response: {extra:?}");
}

/// Collects `n` watch events (bounded) and checks each arrives once, in
/// contiguous revision order; returns their revisions.
async fn collect_events(watch: &mut retcd_client::Watcher, n: usize) -> Vec<i64> {
    let mut revs = Vec::new();
    let mut keys = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while revs.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let resp = tokio::time::timeout(left, watch.next())
            .await
            .unwrap_or_else(|_| panic!("watch stalled after {} events", revs.len()))
            .expect("watch ended")
            .expect("watch error");
        for ev in resp.events {
            let kv = ev.kv.unwrap();
            assert!(keys.insert(kv.key.clone()), "event for {:?} delivered twice", String::from_utf8_lossy(&kv.key));
            revs.push(kv.mod_revision);
        }
    }
    assert!(revs.windows(2).all(|w| w[1] == w[0] + 1), "revisions not contiguous: {revs:?}");
    revs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_wait_out_a_leader_election() {
    let Some(bin) = retcd_testkit::retcd_binary_if_built() else { return };
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(&bin, 3, &[]));
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint()).collect();
    let client = Client::new(Config::new(endpoints.clone()).request_timeout(Duration::from_secs(15))).unwrap();
    wait_serving(&client).await;
    let mut leader = None;
    for (i, ep) in endpoints.iter().enumerate() {
        let st = client.for_endpoint(ep).unwrap().status().await.unwrap();
        if st.header.unwrap().member_id == st.leader {
            leader = Some(i);
        }
    }
    let leader = leader.expect("a leader");
    // Watch from a follower, so the watch itself does not have to move.
    let follower = (leader + 1) % 3;
    let watch_client = client.for_endpoint(&endpoints[follower]).unwrap();
    let req = WatchCreateRequest { key: b"le/".to_vec(), range_end: prefix_end(b"le/"), ..Default::default() };
    let mut watch = watch_client.watch(req).await.unwrap();
    for i in 0..10 {
        client.put(format!("le/{i:02}"), "before").await.unwrap();
    }
    cluster.members[leader].kill9();
    let killed = Instant::now();
    // Linearizable reads are retried (any endpoint, any Unavailable) until
    // the survivors elect a leader.
    for i in 0..10 {
        let got = client.get(format!("le/{i:02}")).await.unwrap_or_else(|e| panic!("read {i} after leader loss: {e}"));
        assert_eq!(got.kvs[0].value, b"before");
    }
    eprintln!("reads served again {:?} after the leader was killed", killed.elapsed());
    // A read succeeded, so there is a leader again: writes go through.
    for i in 10..20 {
        client.put(format!("le/{i:02}"), "after").await.unwrap_or_else(|e| panic!("put {i}: {e}"));
    }
    let revs = collect_events(&mut watch, 20).await;
    assert_eq!(revs.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_endpoint_is_skipped_and_keep_alive_renews() {
    let Some(bin) = retcd_testkit::retcd_binary_if_built() else { return };
    let server = Server::start_in_runtime(Kind::Retcd, &bin, &[]);
    let dead = format!("127.0.0.1:{}", free_port());
    let cfg = Config::new([dead, server.endpoint()]).request_timeout(Duration::from_secs(10));
    let client = Client::new(cfg).unwrap();
    wait_serving(&client).await;
    // Writes too: a refused connection proves the request was never sent.
    for i in 0..6 {
        client.put(format!("k{i}"), "v").await.unwrap();
    }
    assert_eq!(client.get_prefix("k").await.unwrap().count, 6);

    let lease = client.lease_grant(3, 0).await.unwrap();
    let mut ka = client.lease_keep_alive(lease.id);
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(5), ka.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(r.id, lease.id);
        assert!(r.ttl > 0);
    }
    drop(ka);
    let once = client.lease_keep_alive_once(lease.id).await.unwrap();
    assert_eq!(once.ttl, 3);
    client.lease_revoke(lease.id).await.unwrap();
    let err = client.lease_revoke(lease.id).await.unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdError::LeaseNotFound), "{err}");
    assert_eq!(err.to_string(), "etcdserver: requested lease not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_and_password_against_etcd() {
    let Some(etcd) = require_tool("etcd") else { return };
    if require_tool("etcdctl").is_none() {
        return;
    }
    let server = tokio::task::block_in_place(|| Server::start(Kind::Etcd, &etcd, &[]));
    let plain = Client::new(Config::new([server.endpoint()]).request_timeout(Duration::from_secs(10))).unwrap();
    wait_serving(&plain).await;
    for args in [&["user", "add", "root:rootpw"][..], &["user", "grant-role", "root", "root"], &["auth", "enable"]] {
        let out = tokio::task::block_in_place(|| server.etcdctl(args));
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let err = plain.put("k", "v").await.unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdError::UserEmpty), "{err}");

    let cfg = Config::new([server.endpoint()]).request_timeout(Duration::from_secs(10)).credentials("root", "rootpw");
    let authed = Client::new(cfg).unwrap();
    authed.put("k", "v").await.unwrap();
    assert_eq!(authed.get("k").await.unwrap().kvs[0].value, b"v");

    let bad = Client::new(Config::new([server.endpoint()]).credentials("root", "wrong")).unwrap();
    let err = bad.get("k").await.unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdError::AuthFailed), "{err}");
}
