//! Raft snapshots every `--snapshot-count` entries: snapshot files appear,
//! old ones are purged down to `--max-snapshots`, and a restart from a
//! snapshot plus the WAL after it keeps every key.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::{PutRequest, RangeRequest};
use retcd_testkit::{Kind, Server};

/// Names of the files ending in `ext` in the member's `subdir`, sorted.
fn files(server: &Server, subdir: &str, ext: &str) -> Vec<String> {
    let dir = server.data_dir().join("member").join(subdir);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(ext))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_are_taken_purged_and_restored() {
    let mut server = Server::start(
        Kind::Retcd,
        env!("CARGO_BIN_EXE_retcd").as_ref(),
        &["--snapshot-count", "20", "--max-snapshots", "2"],
    );
    let url = format!("http://{}", server.endpoint());
    let mut kv = KvClient::connect(url.clone()).await.unwrap();
    for i in 0..200 {
        let key = format!("k{i:03}").into_bytes();
        kv.put(PutRequest { key, value: format!("v{i}").into_bytes(), ..Default::default() }).await.unwrap();
    }
    // Snapshots are recorded by the raft thread shortly after the apply.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let names = loop {
        let names = files(&server, "snap", ".snap");
        if names.len() == 2 && names.last().is_some_and(|n| n.as_str() >= "0000000000000002-00000000000000b4") {
            break names;
        }
        assert!(std::time::Instant::now() < deadline, "snapshot files: {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The bootstrap snapshot (index 1) is long gone: only the newest two remain.
    assert!(!names.iter().any(|n| n.ends_with("0000000000000001.snap")), "{names:?}");

    assert_eq!(server.terminate(), Some(0));
    server.spawn();
    server.wait_ready(Duration::from_secs(30));
    let mut kv = KvClient::connect(url).await.unwrap();
    let all = kv
        .range(RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.count, 200);
    assert_eq!(all.kvs[199].value, b"v199");
    // 200 puts on an empty store: revision 201.
    assert_eq!(all.header.unwrap().revision, 201);
}

/// `--max-wals`: WAL segments wholly before the last snapshot are removed
/// down to the limit (the 64 MiB segments are filled with 1 MiB values), and
/// the member restarts from what is left with every key.
#[tokio::test(flavor = "multi_thread")]
async fn old_wal_segments_are_purged_to_max_wals() {
    let mut server = Server::start(
        Kind::Retcd,
        env!("CARGO_BIN_EXE_retcd").as_ref(),
        &["--snapshot-count", "10", "--max-wals", "1"],
    );
    let url = format!("http://{}", server.endpoint());
    let mut kv = KvClient::connect(url.clone()).await.unwrap();
    let value = vec![b'x'; 1024 * 1024];
    for i in 0..150 {
        let key = format!("big{i:03}").into_bytes();
        kv.put(PutRequest { key, value: value.clone(), ..Default::default() }).await.unwrap();
    }
    // 150 MiB of entries span three segments; the purge follows the snapshot
    // the raft thread records shortly after the apply.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let names = loop {
        let names = files(&server, "wal", ".wal");
        if !names.iter().any(|n| n.starts_with("0000000000000000-")) && names.len() <= 2 {
            break names;
        }
        assert!(std::time::Instant::now() < deadline, "WAL files never purged: {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!names.is_empty());

    assert_eq!(server.terminate(), Some(0));
    server.spawn();
    server.wait_ready(Duration::from_secs(30));
    let mut kv = KvClient::connect(url).await.unwrap();
    let all = kv
        .range(RangeRequest { key: b"big".to_vec(), range_end: b"bih".to_vec(), keys_only: true, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.count, 150);
}
