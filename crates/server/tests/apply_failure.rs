//! A storage error while applying stops the member; it never answers with,
//! or keeps, a result the other members do not have (issue 17).
//!
//! The `mvcc::read` error point (test builds only, see
//! `retcd_storage::failpoints`) makes the store's reads fail after a number
//! of them. Before the fix a failed read inside an applied txn compare took
//! the txn's failure branch on that member alone, and a failed read of a
//! put's previous value was answered as "no previous value"; in both cases
//! the entry was committed and the member went on.

#![allow(clippy::unwrap_used)]

use std::process::Child;
use std::time::{Duration, Instant};

use retcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use retcd_api::etcdserverpb::request_op::Request as Op;
use retcd_api::etcdserverpb::{
    Compare, HashKvRequest, MoveLeaderRequest, PutRequest, RangeRequest, RequestOp, StatusRequest, TxnRequest,
};
use retcd_testkit::Cluster;
use tonic::transport::{Channel, Endpoint};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_STOP_WAIT: Duration = Duration::from_secs(20);

async fn connect(endpoint: &str) -> Channel {
    Endpoint::from_shared(format!("http://{endpoint}")).unwrap().timeout(REQUEST_TIMEOUT).connect().await.unwrap()
}

fn put(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest { key: key.into(), value: value.into(), ..Default::default() })),
    }
}

/// `if value(/k) == expected then put /k = next else put /diverged`.
fn guarded_update(expected: &str, next: &str) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            key: b"/k".to_vec(),
            target: CompareTarget::Value as i32,
            result: CompareResult::Equal as i32,
            target_union: Some(TargetUnion::Value(expected.into())),
            ..Default::default()
        }],
        success: vec![put("/k", next)],
        failure: vec![put("/diverged", next)],
    }
}

/// Waits (bounded) for `child` to exit; its exit code.
fn wait_exit(child: &mut Child, log: impl Fn() -> String) -> Option<i32> {
    let deadline = Instant::now() + MAX_STOP_WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "the member did not stop; log:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_stopped_for_storage(log: &str) {
    assert!(log.contains("failpoint mvcc::read: failing"), "the error point never fired; log:\n{log}");
    assert!(
        log.contains("storage error") && log.contains("stopping the member"),
        "no clear message naming the failure; log:\n{log}"
    );
}

async fn hash_at(endpoint: &str, rev: i64) -> u32 {
    let mut m = MaintenanceClient::new(connect(endpoint).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match m.hash_kv(HashKvRequest { revision: rev }).await {
            Ok(r) => return r.into_inner().hash,
            Err(e) if Instant::now() < deadline => {
                eprintln!("hash_kv on {endpoint}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("hash_kv on {endpoint}: {e}"),
        }
    }
}

/// Makes sure the member at `avoid` does not lead (so that stopping it
/// needs no election while the test writes).
async fn lead_elsewhere(endpoints: &[String], avoid: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut ids = Vec::new();
        let mut leader = 0;
        for ep in endpoints {
            let s = MaintenanceClient::new(connect(ep).await).status(StatusRequest {}).await.unwrap().into_inner();
            ids.push(s.header.unwrap().member_id);
            leader = s.leader;
        }
        if leader != ids[avoid] {
            return;
        }
        let target = ids[(avoid + 1) % ids.len()];
        let mut on_leader = MaintenanceClient::new(connect(&endpoints[avoid]).await);
        let moved = on_leader.move_leader(MoveLeaderRequest { target_id: target }).await;
        assert!(moved.is_ok() || Instant::now() < deadline, "cannot move the leadership: {moved:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A follower whose reads fail while applying guarded txns stops (exit 1,
/// with the reason in its log) instead of taking the other branch; the
/// others go on, and once restarted without the error it replays the log
/// to the same history as the leader.
#[test]
fn a_member_whose_store_fails_while_applying_stops_instead_of_diverging() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut cluster = Cluster::new(env!("CARGO_BIN_EXE_retcd").as_ref(), 3, &[]);
    cluster.member_env[2] = vec![("FAILPOINTS".into(), "mvcc::read=20*off->return".into())];
    cluster.start_all();
    let endpoint = cluster.members[0].endpoint();
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint()).collect();
    let top = rt.block_on(async {
        lead_elsewhere(&endpoints, 2).await;
        let mut kv = KvClient::new(connect(&endpoint).await);
        kv.put(PutRequest { key: b"/k".to_vec(), value: b"v0".to_vec(), ..Default::default() }).await.unwrap();
        let mut top = 0;
        for i in 1..=60 {
            let resp = kv.txn(guarded_update(&format!("v{}", i - 1), &format!("v{i}"))).await.unwrap().into_inner();
            assert!(resp.succeeded, "txn {i} took the failure branch on the leader");
            top = resp.header.unwrap().revision;
        }
        top
    });
    let m = &mut cluster.members[2];
    let log_path = m.log.clone();
    let code = wait_exit(m.child.as_mut().unwrap(), || std::fs::read_to_string(&log_path).unwrap_or_default());
    let log = m.log_text();
    assert_eq!(code, Some(1), "a member stopped by a storage error exits 1; log:\n{log}");
    assert_stopped_for_storage(&log);
    m.child = None;

    // The other two still form a quorum.
    rt.block_on(async {
        let mut kv = KvClient::new(connect(&endpoint).await);
        kv.put(PutRequest { key: b"/after".to_vec(), value: b"x".to_vec(), ..Default::default() }).await.unwrap();
    });

    cluster.member_env[2].clear();
    cluster.spawn(2);
    cluster.wait_ready(2, Duration::from_secs(30));
    let follower = cluster.members[2].endpoint();
    rt.block_on(async {
        let mut kv = KvClient::new(connect(&follower).await);
        let diverged = RangeRequest { key: b"/diverged".to_vec(), ..Default::default() };
        assert!(kv.range(diverged).await.unwrap().into_inner().kvs.is_empty(), "the member took a failure branch");
        let k = kv.range(RangeRequest { key: b"/k".to_vec(), ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(k.kvs[0].value, b"v60");
        assert_eq!(hash_at(&endpoint, top).await, hash_at(&follower, top).await, "histories differ at {top}");
    });
}

/// On a single member, a put whose previous value cannot be read is not
/// acknowledged (before the fix it was, without its prev_kv); the member
/// stops, and after a restart the committed put is applied exactly once.
#[test]
fn a_put_whose_previous_value_cannot_be_read_is_not_acknowledged() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut cluster = Cluster::new(env!("CARGO_BIN_EXE_retcd").as_ref(), 1, &[]);
    cluster.member_env[0] = vec![("FAILPOINTS".into(), "mvcc::read=10*off->return".into())];
    cluster.start_all();
    let endpoint = cluster.members[0].endpoint();
    let acked = rt.block_on(async {
        let mut kv = KvClient::new(connect(&endpoint).await);
        let mut acked = 0i64;
        for i in 0..40 {
            let put =
                PutRequest { key: b"/k".to_vec(), value: format!("v{i}").into(), prev_kv: true, ..Default::default() };
            match kv.put(put).await {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    if i > 0 {
                        let prev = resp.prev_kv.unwrap_or_else(|| panic!("put {i} acknowledged without its prev_kv"));
                        assert_eq!(prev.value, format!("v{}", i - 1).as_bytes());
                    }
                    acked += 1;
                }
                Err(_) => break,
            }
        }
        acked
    });
    let m = &mut cluster.members[0];
    let log_path = m.log.clone();
    let code = wait_exit(m.child.as_mut().unwrap(), || std::fs::read_to_string(&log_path).unwrap_or_default());
    let log = m.log_text();
    assert_eq!(code, Some(1), "log:\n{log}");
    assert_stopped_for_storage(&log);
    m.child = None;

    cluster.member_env[0].clear();
    cluster.spawn(0);
    cluster.wait_ready(0, Duration::from_secs(30));
    rt.block_on(async {
        let mut kv = KvClient::new(connect(&endpoint).await);
        let k = kv.range(RangeRequest { key: b"/k".to_vec(), ..Default::default() }).await.unwrap().into_inner();
        let kv1 = &k.kvs[0];
        // Every acknowledged put, and the one that failed (it was committed),
        // each applied once.
        assert_eq!(kv1.version, acked + 1, "value {:?}", String::from_utf8_lossy(&kv1.value));
        assert_eq!(kv1.value, format!("v{acked}").as_bytes());
    });
}
