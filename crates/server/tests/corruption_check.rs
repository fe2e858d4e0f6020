//! Corruption checks: one member's stored value is altered behind its back
//! (while it is stopped). Restarted with `--experimental-initial-corrupt-check`
//! it refuses to serve; restarted without, the leader's periodic check
//! (`--experimental-corrupt-check-time`) raises the CORRUPT alarm for it and
//! the cluster refuses writes with etcd's error.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use prost::Message as _;
use retcd_api::etcdserverpb::alarm_request::AlarmAction;
use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use retcd_api::etcdserverpb::{AlarmRequest, AlarmType, PutRequest, StatusRequest};
use retcd_api::mvccpb::KeyValue;
use retcd_storage::backend::{Backend, Table};
use retcd_testkit::{wait_output, Cluster};

fn retcd() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_retcd").as_ref()
}

/// Rewrites the value of every stored revision of `key` in a stopped
/// member's backend.
fn alter_value(data_dir: &std::path::Path, key: &[u8]) {
    let backend = Backend::open(&data_dir.join("member").join("retcd.db")).unwrap();
    let mut changed = 0;
    {
        let records = backend.range(Table::Key, &[], None, 0).unwrap();
        let mut btx = backend.batch_tx();
        for (rev, bytes) in records {
            let mut kv = KeyValue::decode(bytes.as_slice()).unwrap();
            if kv.key == key {
                kv.value = b"tampered".to_vec();
                btx.put(Table::Key, &rev, &kv.encode_to_vec());
                changed += 1;
            }
        }
    }
    backend.commit().unwrap();
    assert!(changed > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_with_altered_data_is_caught() {
    let mut cluster = Cluster::start(retcd(), 3, &["--experimental-corrupt-check-time", "500ms"]);
    let mut kv = KvClient::connect(cluster.members[0].url()).await.unwrap();
    for i in 0..20 {
        kv.put(PutRequest { key: format!("k{i}").into_bytes(), value: b"v".to_vec(), ..Default::default() })
            .await
            .unwrap();
    }
    // Let the last member apply everything, then stop it and alter it.
    let victim = 2;
    let url = cluster.members[victim].url();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = MaintenanceClient::connect(url.clone()).await.unwrap().status(StatusRequest {}).await.unwrap();
        let s = s.into_inner();
        if s.header.unwrap().revision == 21 {
            break;
        }
        assert!(Instant::now() < deadline, "member never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim_id = {
        let mut m = MaintenanceClient::connect(url.clone()).await.unwrap();
        m.status(StatusRequest {}).await.unwrap().into_inner().header.unwrap().member_id
    };
    // A graceful stop commits the backend (a SIGKILL could leave the last
    // writes only in the WAL, where the alteration would not reach them).
    let child = cluster.members[victim].child.take().unwrap();
    std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert_eq!(wait_output(child, Duration::from_secs(20)).status.code(), Some(0));
    alter_value(&cluster.members[victim].data_dir, b"k7");

    // With the initial check it refuses to start.
    let m = &cluster.members[victim];
    let out = wait_output(
        m.spec(retcd())
            .initial_cluster(&cluster.initial_cluster())
            .args(["--initial-cluster-token", &cluster.token, "--experimental-initial-corrupt-check"])
            .command()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{victim_id:x} found data inconsistency with peers")), "{stderr}");

    // Without it, it starts; the leader's check raises CORRUPT for it.
    cluster.spawn(victim);
    cluster.wait_ready(victim, Duration::from_secs(60));
    let mut m = MaintenanceClient::connect(cluster.members[0].url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let alarms = loop {
        let list = AlarmRequest { action: AlarmAction::Get as i32, member_id: 0, alarm: AlarmType::None as i32 };
        let alarms = m.alarm(list).await.unwrap().into_inner().alarms;
        if !alarms.is_empty() {
            break alarms;
        }
        assert!(Instant::now() < deadline, "no alarm raised");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!((alarms[0].member_id, alarms[0].alarm), (victim_id, AlarmType::Corrupt as i32));
    let err =
        kv.put(PutRequest { key: b"after".to_vec(), value: b"v".to_vec(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.message(), "etcdserver: corrupt cluster");
}
