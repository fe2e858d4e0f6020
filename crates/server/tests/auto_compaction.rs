//! `--auto-compaction-mode` / `--auto-compaction-retention`: the leader
//! compacts on its own, keeping the retention's worth of history.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::{PutRequest, RangeRequest};
use retcd_testkit::{Kind, Server};
use tonic::transport::Channel;

fn retcd() -> &'static str {
    env!("CARGO_BIN_EXE_retcd")
}

async fn put_n(kv: &mut KvClient<Channel>, n: usize) -> i64 {
    let mut rev = 0;
    for i in 0..n {
        let r = kv.put(PutRequest { key: b"k".to_vec(), value: format!("{i}").into_bytes(), ..Default::default() });
        rev = r.await.unwrap().into_inner().header.unwrap().revision;
    }
    rev
}

/// Whether reading at `rev` is refused as compacted.
async fn compacted(kv: &mut KvClient<Channel>, rev: i64) -> bool {
    match kv.range(RangeRequest { key: b"k".to_vec(), revision: rev, ..Default::default() }).await {
        Ok(_) => false,
        Err(e) => {
            assert_eq!(e.message(), "etcdserver: mvcc: required revision has been compacted");
            true
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn periodic_mode_compacts_history_older_than_the_period() {
    let server = Server::start_in_runtime(
        Kind::Retcd,
        retcd(),
        &["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s"],
    );
    let mut kv = KvClient::new(server.connect().await);
    let old = put_n(&mut kv, 10).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !compacted(&mut kv, old - 1).await {
        assert!(Instant::now() < deadline, "revision {} never compacted", old - 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The latest value is kept.
    let got = kv.range(RangeRequest { key: b"k".to_vec(), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(got.kvs[0].value, b"9");
}

#[tokio::test(flavor = "multi_thread")]
async fn revision_mode_keeps_the_last_n_revisions() {
    // Debug builds shorten etcd's five-minute check interval for tests.
    std::env::set_var("RETCD_TEST_REVISION_COMPACT_INTERVAL_MS", "200");
    let server = Server::start_in_runtime(
        Kind::Retcd,
        retcd(),
        &["--auto-compaction-mode", "revision", "--auto-compaction-retention", "5"],
    );
    let mut kv = KvClient::new(server.connect().await);
    let rev = put_n(&mut kv, 20).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !compacted(&mut kv, rev - 6).await {
        assert!(Instant::now() < deadline, "revision {} never compacted", rev - 6);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Exactly the retention is kept: current - 5 is the compaction point.
    assert!(!compacted(&mut kv, rev - 5).await);
}

#[test]
fn a_bad_retention_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(retcd())
        .args(["--data-dir", dir.path().join("d").to_str().unwrap()])
        .args(["--listen-client-urls", &format!("http://127.0.0.1:{}", retcd_testkit::free_port())])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{}", retcd_testkit::free_port())])
        .args(["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "abc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error parsing CompactionRetention"), "{stderr}");
}
