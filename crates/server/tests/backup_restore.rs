//! Backups: real `etcdctl snapshot save` takes a snapshot from a member of a
//! three-member cluster while a client writes; the file is restored into the
//! data dirs of a new three-member cluster, which starts with every key
//! acknowledged before the snapshot, agrees on its contents, and takes new
//! writes. A damaged snapshot file is refused.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use retcd_api::etcdserverpb::{HashKvRequest, PutRequest, RangeRequest};
use retcd_testkit::{etcdctl, require_tool, Cluster};

fn retcd() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_retcd").as_ref()
}

async fn kv(url: &str) -> KvClient<tonic::transport::Channel> {
    let ch = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    KvClient::new(ch)
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_saved_under_load_restores_into_a_new_cluster() {
    if require_tool("etcdctl").is_none() {
        return;
    }
    let source = Cluster::start(retcd(), 3, &[]);
    let url = source.members[0].url();

    // A writer on another member, until told to stop (bounded).
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, url) = (acked.clone(), stop.clone(), source.members[1].url());
        tokio::spawn(async move {
            let mut c = kv(&url).await;
            for i in 0..20_000usize {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("key-{i:05}").into_bytes();
                c.put(PutRequest { key, value: format!("value-{i}").into_bytes(), ..Default::default() })
                    .await
                    .unwrap();
                acked.store(i + 1, Ordering::Release);
            }
        })
    };
    while acked.load(Ordering::Acquire) < 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Everything acknowledged so far is applied on member 0 once a
    // linearizable read there returns; the snapshot is taken after it.
    let before = acked.load(Ordering::Acquire);
    kv(&url).await.range(RangeRequest { key: b"key-".to_vec(), ..Default::default() }).await.unwrap();
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("backup.db");
    let saved = etcdctl(&source.members[0].endpoint(), &["snapshot", "save", file.to_str().unwrap()], None);
    assert!(saved.status.success(), "{saved:?}");
    assert_eq!(String::from_utf8_lossy(&saved.stdout), format!("Snapshot saved at {}\n", file.display()));
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    drop(source);

    // A damaged copy is refused.
    let damaged = file.with_extension("damaged");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&damaged, &bytes).unwrap();
    let err = retcd_storage::backup::restore(&damaged, &damaged.with_extension("dir"), false).unwrap_err();
    assert!(err.to_string().starts_with("expected sha256 "), "{err}");

    let mut restored = Cluster::new(retcd(), 3, &[]);
    for m in &restored.members {
        retcd_storage::backup::restore(&file, &m.data_dir, false).unwrap();
    }
    restored.start_all();
    let mut hashes = Vec::new();
    for m in &restored.members {
        let got = kv(&m.url())
            .await
            .range(RangeRequest { key: b"key-".to_vec(), range_end: b"key.".to_vec(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert!(got.count as usize >= before, "{} keys restored, {before} acknowledged before the snapshot", got.count);
        for (i, kv) in got.kvs.iter().enumerate() {
            assert_eq!(kv.key, format!("key-{i:05}").into_bytes());
            assert_eq!(kv.value, format!("value-{i}").into_bytes());
        }
        let mut m = MaintenanceClient::connect(m.url()).await.unwrap();
        let h = m.hash_kv(HashKvRequest { revision: 0 }).await.unwrap().into_inner();
        hashes.push((h.hash, h.header.unwrap().revision));
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "members differ: {hashes:?}");
    kv(&restored.members[2].url())
        .await
        .put(PutRequest { key: b"after-restore".to_vec(), value: b"1".to_vec(), ..Default::default() })
        .await
        .unwrap();
    let members = etcdctl(&restored.members[0].endpoint(), &["member", "list"], None);
    let listed = String::from_utf8_lossy(&members.stdout);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    for m in &restored.members {
        assert!(listed.contains(&format!("http://127.0.0.1:{}", m.peer_port)), "{listed}");
    }
}
