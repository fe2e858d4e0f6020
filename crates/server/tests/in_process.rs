//! The in-process cluster ([`retcd_server::integration::Cluster`]): three
//! members in this test's process elect one leader, replicate, survive a
//! stopped leader, catch a restarted member up, and a removed member stops
//! itself without ending the process (the stop signal, not `exit`).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use retcd_api::etcdserverpb::cluster_client::ClusterClient;
use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use retcd_api::etcdserverpb::{HashKvRequest, MemberRemoveRequest, PutRequest, RangeRequest};
use retcd_server::integration::Cluster;
use retcd_server::stop::StopReason;
use tonic::transport::Channel;

const ELECTION_WAIT: Duration = Duration::from_secs(10);

async fn kv(cluster: &Cluster, i: usize) -> KvClient<Channel> {
    KvClient::connect(cluster.client_url(i).to_string()).await.unwrap()
}

async fn put(cluster: &Cluster, i: usize, key: &str, value: &str) -> i64 {
    let req = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
    kv(cluster, i).await.put(req).await.unwrap().into_inner().header.unwrap().revision
}

/// (value, mod revision) of `key` read through member `i`.
async fn get(cluster: &Cluster, i: usize, key: &str, serializable: bool) -> Option<(Vec<u8>, i64)> {
    let req = RangeRequest { key: key.into(), serializable, ..Default::default() };
    let resp = kv(cluster, i).await.range(req).await.unwrap().into_inner();
    resp.kvs.first().map(|kv| (kv.value.clone(), kv.mod_revision))
}

/// (hash, revision) of member `i`'s key space at `rev` (0: its current one).
async fn hash_kv(cluster: &Cluster, i: usize, rev: i64) -> (u32, i64) {
    let mut m = MaintenanceClient::connect(cluster.client_url(i).to_string()).await.unwrap();
    let resp = m.hash_kv(HashKvRequest { revision: rev }).await.unwrap().into_inner();
    (resp.hash, resp.header.unwrap().revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_one_leader_and_every_member_reads_every_write() {
    let cluster = Cluster::start(3).await.unwrap();
    let leader = cluster.wait_leader(ELECTION_WAIT).await.expect("one leader the members agree on");
    let terms: Vec<u64> = (0..3).map(|i| cluster.server(i).unwrap().raft.term()).collect();
    assert!(terms.iter().all(|t| *t == terms[0]), "members in different terms: {terms:?}");

    // Written through each member in turn (followers forward to the leader).
    let mut revs = Vec::new();
    for i in 0..3 {
        revs.push(put(&cluster, i, &format!("k{i}"), &format!("v{i}")).await);
    }
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "revisions not increasing: {revs:?}");
    for reader in 0..3 {
        for (i, rev) in revs.iter().enumerate() {
            let got = get(&cluster, reader, &format!("k{i}"), false).await;
            assert_eq!(got, Some((format!("v{i}").into_bytes(), *rev)), "k{i} read through member {reader}");
        }
    }
    assert_eq!(cluster.leader(), Some(leader), "leadership moved without a fault");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_is_replaced_and_catches_up_after_a_restart() {
    let mut cluster = Cluster::start(3).await.unwrap();
    let old = cluster.wait_leader(ELECTION_WAIT).await.unwrap();
    let first = put(&cluster, old, "before", "1").await;
    cluster.stop(old).await;

    let new = cluster.wait_leader(ELECTION_WAIT).await.expect("the two others elect a leader");
    assert_ne!(new, old);
    let mut last = first;
    for n in 0..50 {
        last = put(&cluster, new, &format!("after/{n:02}"), "x").await;
    }
    assert_eq!(last, first + 50);

    cluster.restart(old).await.unwrap();
    // A serializable read answers from the member's own store: it has
    // caught up once it sees the last write at its revision.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while get(&cluster, old, "after/49", true).await.map(|(_, rev)| rev) != Some(last) {
        assert!(tokio::time::Instant::now() < deadline, "restarted member never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hashes: Vec<(u32, i64)> = futures::future::join_all((0..3).map(|i| hash_kv(&cluster, i, last))).await;
    assert!(hashes.iter().all(|h| h.0 == hashes[0].0), "key spaces differ at revision {last}: {hashes:?}");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_stops_itself_and_the_process_goes_on() {
    let mut cluster = Cluster::start(3).await.unwrap();
    let leader = cluster.wait_leader(ELECTION_WAIT).await.unwrap();
    let removed = (leader + 1) % 3;
    let id = cluster.server(removed).unwrap().settings.member_id;

    let members = ClusterClient::connect(cluster.client_url(leader).to_string()).await.unwrap();
    // Refused as unhealthy until the links are 5 s old, as etcd's.
    retcd_testkit::reconfigure(|| {
        let mut members = members.clone();
        async move { members.member_remove(MemberRemoveRequest { id }).await }
    })
    .await
    .unwrap();

    let etcd = cluster.take(removed).unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), etcd.stopped()).await;
    assert_eq!(reason.ok(), Some(StopReason::Removed));
    etcd.stop().await;

    // The two left are a cluster of two and go on serving writes.
    let rev = put(&cluster, leader, "after-removal", "ok").await;
    let other = (0..3).find(|i| *i != leader && *i != removed).unwrap();
    assert_eq!(get(&cluster, other, "after-removal", false).await, Some((b"ok".to_vec(), rev)));
    cluster.stop_all().await;
}
