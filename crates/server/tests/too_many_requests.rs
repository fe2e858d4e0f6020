//! etcd's guard against an apply loop falling behind: when committed runs
//! more than 5000 entries ahead of applied, new proposals get `etcdserver:
//! too many requests`; once apply catches up, writes are accepted again.
//!
//! Applying is held back with the debug-build hook `RETCD_TEST_PAUSE_APPLY`
//! (applying waits while the named file exists), so the gap is made
//! deterministically rather than by racing a slow disk.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use retcd_api::etcdserverpb::{PutRequest, StatusRequest};
use retcd_testkit::{Kind, Server};
use tonic::transport::Channel;

/// In-flight puts, spread over connections (each carries at most a few
/// hundred concurrent streams).
const IN_FLIGHT: usize = 5300;
const CONNECTIONS: usize = 40;

async fn gap(m: &mut MaintenanceClient<Channel>) -> u64 {
    let s = m.status(StatusRequest {}).await.unwrap().into_inner();
    s.raft_index - s.raft_applied_index
}

#[tokio::test(flavor = "multi_thread")]
async fn proposals_are_refused_while_apply_is_far_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pause = dir.path().join("pause-apply");
    // Inherited by the server process; this test binary runs nothing else.
    std::env::set_var("RETCD_TEST_PAUSE_APPLY", &pause);
    let server = Server::start_in_runtime(Kind::Retcd, env!("CARGO_BIN_EXE_retcd"), &[]);
    std::env::remove_var("RETCD_TEST_PAUSE_APPLY");
    // The server waited for its own start-up entries: nothing is pending.
    let url = format!("http://{}", server.endpoint());
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap());
    }
    let mut m = MaintenanceClient::new(channels[0].clone());
    assert_eq!(gap(&mut m).await, 0);
    std::fs::write(&pause, b"paused").unwrap();

    let mut writers = Vec::new();
    for i in 0..IN_FLIGHT {
        let mut kv = KvClient::new(channels[i % CONNECTIONS].clone());
        writers.push(tokio::spawn(async move {
            let key = format!("k{i:05}").into_bytes();
            kv.put(PutRequest { key, value: b"v".to_vec(), ..Default::default() }).await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while gap(&mut m).await <= 5000 {
        assert!(Instant::now() < deadline, "the gap never passed 5000 (now {})", gap(&mut m).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut kv = KvClient::new(channels[0].clone());
    let refused =
        kv.put(PutRequest { key: b"one-more".to_vec(), value: b"v".to_vec(), ..Default::default() }).await.unwrap_err();
    assert_eq!(refused.message(), "etcdserver: too many requests");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);

    // Apply catches up; the paused puts are applied (some of their callers
    // may have timed out waiting) and new writes pass.
    std::fs::remove_file(&pause).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while gap(&mut m).await > 0 {
        assert!(Instant::now() < deadline, "apply never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kv.put(PutRequest { key: b"after".to_vec(), value: b"v".to_vec(), ..Default::default() }).await.unwrap();
    // A writer whose put reached the server after the gap passed 5000 was
    // refused like the extra one; the others were applied or timed out.
    for w in writers {
        match w.await.unwrap() {
            Ok(_) => {}
            Err(e) => assert!(
                ["etcdserver: request timed out", "etcdserver: too many requests"].contains(&e.message()),
                "{e:?}"
            ),
        }
    }
}
