//! Crash at a failpoint, restart, check nothing acknowledged is lost (issue 11).
//!
//! Each test starts a single-member `retcd` (a test build: the `failpoints`
//! feature is on through the server's dev-dependency on `retcd-storage`) with
//! `FAILPOINTS` arming one crash point, puts distinct keys recording every
//! acknowledged (key, value, revision), triggers the operation the point sits
//! in until the process aborts there, checks from the log that it was the
//! failpoint that ended it, restarts it without `FAILPOINTS`, and checks:
//! every acknowledged put is there with its value and mod revision, the
//! revision did not go backwards, the member answers reads and a new put,
//! and after the compaction points the compacted revision is refused with
//! etcd's error while the compaction revision itself is readable.
//!
//! The snapshot install points run three members instead: one is stopped,
//! more entries than the leader keeps after a snapshot are written, the
//! member restarts armed, crashes installing the snapshot it is sent, and
//! after a restart without failpoints its HashKV at the last acknowledged
//! revision equals the first member's.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use retcd_api::etcdserverpb::{CompactionRequest, DefragmentRequest, PutRequest, RangeRequest};
use retcd_testkit::Cluster;
use tonic::transport::{Channel, Endpoint};

/// Upper bounds of the crash phase: writes and wall time.
const MAX_WRITES: usize = 2_000;
const MAX_CRASH_WAIT: Duration = Duration::from_secs(20);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What the client does besides the puts, to reach the failpoint.
#[derive(Clone, Copy, PartialEq)]
enum Trigger {
    /// Only puts (WAL, backend commit, raft snapshot points).
    Writes,
    /// A physical KV.Compact to the latest acknowledged revision every few puts.
    Compact,
    /// A Maintenance.Defragment every few puts.
    Defrag,
}

struct Acked {
    key: String,
    value: String,
    rev: i64,
}

async fn connect(endpoint: &str) -> Channel {
    Endpoint::from_shared(format!("http://{endpoint}")).unwrap().timeout(REQUEST_TIMEOUT).connect().await.unwrap()
}

/// The whole scenario for the crash point `name` armed with `spec` (the
/// `fail` crate's action syntax, e.g. `5*off->return`).
fn crash_and_recover(name: &str, spec: &str, trigger: Trigger, extra_args: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut cluster = Cluster::new(env!("CARGO_BIN_EXE_retcd").as_ref(), 1, extra_args);
    cluster.member_env[0] = vec![("FAILPOINTS".into(), format!("{name}={spec}"))];
    cluster.start_all();
    let endpoint = cluster.members[0].endpoint();

    // Crash phase: write (and trigger) until the process is gone.
    let mut acked: Vec<Acked> = Vec::new();
    let mut compacted_to = 0i64;
    let started = Instant::now();
    let exited = rt.block_on(async {
        let ch = connect(&endpoint).await;
        let mut kv = KvClient::new(ch.clone());
        let mut maint = MaintenanceClient::new(ch);
        for i in 0..MAX_WRITES {
            if let Ok(Some(_)) = cluster.members[0].child.as_mut().unwrap().try_wait() {
                return true;
            }
            if started.elapsed() > MAX_CRASH_WAIT {
                return false;
            }
            let (key, value) = (format!("/fp/{i:05}"), format!("v{i}"));
            let put = PutRequest { key: key.clone().into(), value: value.clone().into(), ..Default::default() };
            if let Ok(resp) = kv.put(put).await {
                let rev = resp.into_inner().header.unwrap().revision;
                acked.push(Acked { key, value, rev });
            }
            if i % 10 == 9 {
                let top = acked.last().map_or(0, |a| a.rev);
                match trigger {
                    Trigger::Writes => {}
                    Trigger::Compact if top > compacted_to => {
                        let req = CompactionRequest { revision: top, physical: true };
                        // Proposed: whether or not it is acknowledged, it may
                        // be in the WAL and replayed after the crash.
                        compacted_to = top;
                        let _ = kv.compact(req).await;
                    }
                    Trigger::Compact => {}
                    Trigger::Defrag => {
                        let _ = maint.defragment(DefragmentRequest {}).await;
                    }
                }
            }
        }
        // Give an abort on the last request a moment to be reaped.
        tokio::time::sleep(Duration::from_millis(200)).await;
        matches!(cluster.members[0].child.as_mut().unwrap().try_wait(), Ok(Some(_)))
    });
    let log = cluster.members[0].log_text();
    assert!(exited, "{name}: the member did not crash ({} writes acknowledged); log:\n{log}", acked.len());
    let line = format!("failpoint {name}: crashing");
    assert!(log.contains(&line), "{name}: the member exited, but not at the failpoint; log:\n{log}");
    cluster.members[0].child = None;

    // Recovery phase: without FAILPOINTS.
    cluster.member_env[0].clear();
    cluster.spawn(0);
    cluster.wait_ready(0, Duration::from_secs(30));
    let top = acked.iter().map(|a| a.rev).max().unwrap_or(0);
    rt.block_on(async {
        let mut kv = KvClient::new(connect(&endpoint).await);
        for a in &acked {
            let req = RangeRequest { key: a.key.clone().into(), ..Default::default() };
            let resp = kv.range(req).await.unwrap().into_inner();
            let rev = resp.header.unwrap().revision;
            assert!(rev >= top, "{name}: revision went backwards: {rev} < acknowledged {top}");
            let kv1 = resp.kvs.first().unwrap_or_else(|| panic!("{name}: acknowledged put of {} lost", a.key));
            assert_eq!(kv1.value, a.value.as_bytes(), "{name}: {} has the wrong value", a.key);
            assert_eq!(kv1.mod_revision, a.rev, "{name}: {} has the wrong mod revision", a.key);
        }
        let put = PutRequest { key: b"/fp/after".to_vec(), value: b"x".to_vec(), ..Default::default() };
        let rev = kv.put(put).await.unwrap().into_inner().header.unwrap().revision;
        assert!(rev > top, "{name}: a new put got revision {rev}, not above {top}");
        if trigger == Trigger::Compact && compacted_to > 1 {
            // The compaction at the crash was proposed; its entry was applied
            // (the points sit in or after its apply), so replay redoes it.
            let old = RangeRequest { key: b"/fp/".to_vec(), revision: compacted_to - 1, ..Default::default() };
            let err = kv.range(old).await.unwrap_err();
            assert!(
                err.message().contains("mvcc: required revision has been compacted"),
                "{name}: a read below the compaction at {compacted_to} gave {err:?}"
            );
            let at = RangeRequest {
                key: b"/fp/".to_vec(),
                range_end: b"/fp0".to_vec(),
                revision: compacted_to,
                count_only: true,
                ..Default::default()
            };
            kv.range(at).await.unwrap();
        }
    });
    eprintln!("{name}: {} acknowledged writes survived the crash, revision {top}", acked.len());
}

#[test]
fn wal_before_fsync() {
    crash_and_recover("wal::before_fsync", "30*off->return", Trigger::Writes, &[]);
}

#[test]
fn wal_after_fsync() {
    crash_and_recover("wal::after_fsync", "30*off->return", Trigger::Writes, &[]);
}

#[test]
fn backend_before_commit() {
    crash_and_recover("backend::before_commit", "3*off->return", Trigger::Writes, &[]);
}

#[test]
fn backend_after_commit() {
    crash_and_recover("backend::after_commit", "3*off->return", Trigger::Writes, &[]);
}

#[test]
fn defrag_before_swap() {
    crash_and_recover("defrag::before_swap", "return", Trigger::Defrag, &[]);
}

#[test]
fn defrag_after_swap() {
    crash_and_recover("defrag::after_swap", "return", Trigger::Defrag, &[]);
}

#[test]
fn compact_after_index() {
    crash_and_recover("compact::after_index", "return", Trigger::Compact, &[]);
}

#[test]
fn compact_before_delete() {
    crash_and_recover("compact::before_delete", "return", Trigger::Compact, &[]);
}

#[test]
fn compact_after_delete() {
    crash_and_recover("compact::after_delete", "return", Trigger::Compact, &[]);
}

#[test]
fn snap_before_save() {
    crash_and_recover("snap::before_save", "1*off->return", Trigger::Writes, &["--snapshot-count", "50"]);
}

#[test]
fn snap_after_save() {
    crash_and_recover("snap::after_save", "1*off->return", Trigger::Writes, &["--snapshot-count", "50"]);
}

/// A follower that fell behind the leader's compacted log gets a snapshot,
/// crashes at `name` while installing it, and after a restart without
/// failpoints catches up to the same history as the leader.
fn follower_install_crash(name: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut cluster = Cluster::start(env!("CARGO_BIN_EXE_retcd").as_ref(), 3, &["--snapshot-count", "100"]);
    cluster.members[2].kill9();
    let endpoint = cluster.members[0].endpoint();
    // More than the 5000 entries the leader keeps after a snapshot, so the
    // stopped member can only catch up from a snapshot.
    let top = rt.block_on(async {
        let ch = connect(&endpoint).await;
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let mut kv = KvClient::new(ch.clone());
                tokio::spawn(async move {
                    let mut top = 0;
                    for i in 0..700 {
                        let put = PutRequest {
                            key: format!("/fp/{t}/{i:04}").into(),
                            value: b"v".to_vec(),
                            ..Default::default()
                        };
                        // The stopped member may have been the leader: retry
                        // (bounded) through the election.
                        for attempt in 0.. {
                            match kv.put(put.clone()).await {
                                Ok(r) => {
                                    top = top.max(r.into_inner().header.unwrap().revision);
                                    break;
                                }
                                Err(e) if attempt < 50 => {
                                    if attempt == 0 {
                                        eprintln!("put failed ({e}); retrying");
                                    }
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                }
                                Err(e) => panic!("put failed: {e}"),
                            }
                        }
                    }
                    top
                })
            })
            .collect();
        let mut top = 0;
        for t in tasks {
            top = top.max(t.await.unwrap());
        }
        top
    });
    cluster.member_env[2] = vec![("FAILPOINTS".into(), format!("{name}=return"))];
    cluster.spawn(2);
    let deadline = Instant::now() + MAX_CRASH_WAIT;
    while !matches!(cluster.members[2].child.as_mut().unwrap().try_wait(), Ok(Some(_))) {
        assert!(
            Instant::now() < deadline,
            "{name}: the follower did not crash; log:\n{}",
            cluster.members[2].log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = cluster.members[2].log_text();
    assert!(log.contains(&format!("failpoint {name}: crashing")), "{name}: exited, not at the failpoint; log:\n{log}");
    cluster.members[2].child = None;
    cluster.member_env[2].clear();
    cluster.spawn(2);
    cluster.wait_ready(2, Duration::from_secs(30));
    let follower = cluster.members[2].endpoint();
    rt.block_on(async {
        let hash = |ep: String| async move {
            let mut m = MaintenanceClient::new(connect(&ep).await);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match m.hash_kv(retcd_api::etcdserverpb::HashKvRequest { revision: top }).await {
                    Ok(r) => return r.into_inner().hash,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("hash_kv on {ep}: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("hash_kv on {ep}: {e}"),
                }
            }
        };
        let (leader_hash, follower_hash) = (hash(endpoint.clone()).await, hash(follower.clone()).await);
        assert_eq!(leader_hash, follower_hash, "{name}: the follower's history at {top} differs from the leader's");
    });
    eprintln!("{name}: the follower recovered to revision {top} with the leader's hash");
}

#[test]
fn snapshot_before_install() {
    follower_install_crash("snapshot::before_install");
}

#[test]
fn snapshot_after_install() {
    follower_install_crash("snapshot::after_install");
}
