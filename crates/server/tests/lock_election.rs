//! The Lock and Election gRPC services: the same scenarios run on retcd and
//! (where installed) real etcd 3.4 and must give equal transcripts (lease
//! ids are chosen by the tests, so keys and revisions are comparable), and
//! etcdctl's `lock` and `elect` commands work against retcd.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::lease_client::LeaseClient;
use retcd_api::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, RangeRequest};
use retcd_api::v3electionpb::election_client::ElectionClient;
use retcd_api::v3electionpb::{CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest, ResignRequest};
use retcd_api::v3lockpb::lock_client::LockClient;
use retcd_api::v3lockpb::{LockRequest, UnlockRequest};
use retcd_testkit::{etcdctl_command, on_both, require_tool, wait_output, Kind, Server};
use tonic::transport::Channel;

const RETCD: &str = env!("CARGO_BIN_EXE_retcd");
/// Longest wait for any one step expected to complete.
const STEP: Duration = Duration::from_secs(15);
/// How long a step expected to block is watched before calling it blocked.
const BLOCKED: Duration = Duration::from_millis(500);

async fn grant(ch: &Channel, id: i64, ttl: i64) {
    LeaseClient::new(ch.clone()).lease_grant(LeaseGrantRequest { id, ttl }).await.unwrap();
}

async fn revoke(ch: &Channel, id: i64) {
    LeaseClient::new(ch.clone()).lease_revoke(LeaseRevokeRequest { id }).await.unwrap();
}

fn err(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f).await.unwrap_or_else(|_| panic!("{what}: no answer within {STEP:?}"))
}

/// True if the task is still running after [`BLOCKED`].
async fn still_blocked<T>(task: &tokio::task::JoinHandle<T>) -> bool {
    tokio::time::sleep(BLOCKED).await;
    !task.is_finished()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contending_lockers_never_hold_the_lock_together() {
    let got = on_both("lock contention", RETCD, &[], |ch| async move {
        let held = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for lease in [0x2329_i64, 0x232a] {
            grant(&ch, lease, 60).await;
            let (ch, held, rounds) = (ch.clone(), held.clone(), rounds.clone());
            tasks.push(tokio::spawn(async move {
                let mut keys = Vec::new();
                for _ in 0..5 {
                    let lock = LockRequest { name: b"mtx".to_vec(), lease };
                    let r = within("lock", LockClient::new(ch.clone()).lock(lock)).await.unwrap().into_inner();
                    assert!(!held.swap(true, Ordering::SeqCst), "two holders of one lock");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    held.store(false, Ordering::SeqCst);
                    rounds.fetch_add(1, Ordering::SeqCst);
                    keys.push(text(&r.key));
                    LockClient::new(ch.clone()).unlock(UnlockRequest { key: r.key }).await.unwrap();
                }
                keys
            }));
        }
        let mut keys = Vec::new();
        for t in tasks {
            keys.push(within("lockers", t).await.unwrap());
        }
        (rounds.load(Ordering::SeqCst), keys)
    })
    .await;
    assert_eq!(got.0, 10);
    assert_eq!(got.1[0][0], "mtx/2329");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_waits_for_the_holder_and_cleans_up() {
    on_both("lock wait", RETCD, &[], |ch| async move {
        let mut log = Vec::new();
        grant(&ch, 0x238d, 60).await;
        grant(&ch, 0x238e, 60).await;
        let a = LockClient::new(ch.clone()).lock(LockRequest { name: b"l".to_vec(), lease: 0x238d }).await.unwrap();
        let a = a.into_inner();
        log.push(format!("A {} rev {}", text(&a.key), a.header.unwrap().revision));

        let ch2 = ch.clone();
        let b =
            tokio::spawn(
                async move { LockClient::new(ch2).lock(LockRequest { name: b"l".to_vec(), lease: 0x238e }).await },
            );
        log.push(format!("B blocked while A holds: {}", still_blocked(&b).await));
        // A's lease goes: its key with it, and B holds the lock.
        revoke(&ch, 0x238d).await;
        let b = within("B", b).await.unwrap().unwrap().into_inner();
        log.push(format!("B {} rev {}", text(&b.key), b.header.unwrap().revision));

        // A waiter whose caller gives up takes its key away with it.
        grant(&ch, 0x238f, 60).await;
        let mut locker = LockClient::new(ch.clone());
        let c = locker.lock(LockRequest { name: b"l".to_vec(), lease: 0x238f });
        log.push(format!("C gave up: {}", tokio::time::timeout(BLOCKED, c).await.is_err()));
        let mut keys = Vec::new();
        for _ in 0..50 {
            let r = KvClient::new(ch.clone())
                .range(RangeRequest { key: b"l/".to_vec(), range_end: b"l0".to_vec(), ..Default::default() })
                .await
                .unwrap()
                .into_inner();
            keys = r.kvs.iter().map(|kv| text(&kv.key)).collect::<Vec<_>>();
            if keys.len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        log.push(format!("keys after C gave up: {keys:?}"));
        let unlocked = LockClient::new(ch.clone()).unlock(UnlockRequest { key: b.key }).await.unwrap();
        log.push(format!("unlock rev {}", unlocked.into_inner().header.unwrap().revision));

        // No lease: the server grants one (60 s) for the lock key.
        let auto = LockClient::new(ch.clone()).lock(LockRequest { name: b"auto".to_vec(), lease: 0 }).await.unwrap();
        let key = text(&auto.into_inner().key);
        let hex = key.strip_prefix("auto/").unwrap();
        let id = i64::from_str_radix(hex, 16).unwrap();
        let ttl = LeaseClient::new(ch.clone())
            .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
            .await
            .unwrap()
            .into_inner();
        log.push(format!(
            "auto lease granted {} keys {:?}",
            ttl.granted_ttl,
            ttl.keys.iter().map(|k| text(k)).collect::<Vec<_>>().len()
        ));

        // A lease that does not exist.
        let bad = LockClient::new(ch.clone()).lock(LockRequest { name: b"l".to_vec(), lease: 0x9999 }).await;
        log.push(format!("bad lease: {}", bad.map(|_| "ok".to_string()).unwrap_or_else(err)));
        log
    })
    .await;
}

fn leader_key(l: &LeaderKey) -> String {
    format!("{} {} rev {} lease {:x}", text(&l.name), text(&l.key), l.rev, l.lease)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn election_campaign_proclaim_observe_resign() {
    let log = on_both("election", RETCD, &[], |ch| async move {
        let mut log = Vec::new();
        let el = || ElectionClient::new(ch.clone());
        grant(&ch, 0x2441, 60).await;
        grant(&ch, 0x2442, 60).await;
        let none = el().leader(LeaderRequest { name: b"e".to_vec() }).await;
        log.push(format!("leader before: {}", none.map(|_| "some".to_string()).unwrap_or_else(err)));

        let a = el().campaign(CampaignRequest { name: b"e".to_vec(), lease: 0x2441, value: b"a".to_vec() }).await;
        let a = a.unwrap().into_inner();
        let a_leader = a.leader.unwrap();
        log.push(format!("A leads: {} (rev {})", leader_key(&a_leader), a.header.unwrap().revision));

        let mut observe = el().observe(LeaderRequest { name: b"e".to_vec() }).await.unwrap().into_inner();
        let seen = |r: retcd_api::v3electionpb::LeaderResponse| {
            let kv = r.kv.unwrap();
            format!("observed {}={} at {}", text(&kv.key), text(&kv.value), r.header.unwrap().revision)
        };
        log.push(seen(within("observe", observe.message()).await.unwrap().unwrap()));

        let ch2 = ch.clone();
        let b = tokio::spawn(async move {
            ElectionClient::new(ch2)
                .campaign(CampaignRequest { name: b"e".to_vec(), lease: 0x2442, value: b"b".to_vec() })
                .await
        });
        log.push(format!("B blocked while A leads: {}", still_blocked(&b).await));

        let p = el().proclaim(ProclaimRequest { leader: Some(a_leader.clone()), value: b"a2".to_vec() }).await;
        log.push(format!("A proclaims: rev {}", p.unwrap().into_inner().header.unwrap().revision));
        log.push(seen(within("observe", observe.message()).await.unwrap().unwrap()));
        let l = el().leader(LeaderRequest { name: b"e".to_vec() }).await.unwrap().into_inner();
        log.push(format!("leader: {}", text(&l.kv.unwrap().value)));

        let r = el().resign(ResignRequest { leader: Some(a_leader.clone()) }).await.unwrap().into_inner();
        log.push(format!("A resigns: rev {}", r.header.unwrap().revision));
        let b = within("B", b).await.unwrap().unwrap().into_inner();
        let b_leader = b.leader.unwrap();
        log.push(format!("B leads: {}", leader_key(&b_leader)));
        log.push(seen(within("observe", observe.message()).await.unwrap().unwrap()));

        let stale = el().proclaim(ProclaimRequest { leader: Some(a_leader), value: b"x".to_vec() }).await;
        log.push(format!("stale proclaim: {}", stale.map(|_| "ok".to_string()).unwrap_or_else(err)));
        let missing = el().proclaim(ProclaimRequest { leader: None, value: b"x".to_vec() }).await;
        log.push(format!("no leader key: {}", missing.map(|_| "ok".to_string()).unwrap_or_else(err)));
        // A candidate whose caller gives up resigns (its key goes).
        grant(&ch, 0x2443, 60).await;
        let mut quitter = el();
        let c = quitter.campaign(CampaignRequest { name: b"e".to_vec(), lease: 0x2443, value: b"c".to_vec() });
        log.push(format!("C gave up: {}", tokio::time::timeout(BLOCKED, c).await.is_err()));
        let mut keys = Vec::new();
        for _ in 0..50 {
            let r = KvClient::new(ch.clone())
                .range(RangeRequest { key: b"e/".to_vec(), range_end: b"e0".to_vec(), ..Default::default() })
                .await
                .unwrap()
                .into_inner();
            keys = r.kvs.iter().map(|kv| text(&kv.key)).collect::<Vec<_>>();
            if keys.len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        log.push(format!("keys after C gave up: {keys:?}"));

        el().resign(ResignRequest { leader: Some(b_leader) }).await.unwrap();
        let none = el().leader(LeaderRequest { name: b"e".to_vec() }).await;
        log.push(format!("leader after: {}", none.map(|_| "some".to_string()).unwrap_or_else(err)));

        // Observing an election nobody leads yet waits for the first leader.
        // (etcd sends the stream's headers with its first message, so the
        // observe call itself only returns once there is a leader.)
        let ch3 = ch.clone();
        let waiting = tokio::spawn(async move {
            let mut stream =
                ElectionClient::new(ch3).observe(LeaderRequest { name: b"e".to_vec() }).await?.into_inner();
            stream.message().await
        });
        tokio::time::sleep(BLOCKED).await;
        let mut candidate = el();
        let d = candidate.campaign(CampaignRequest { name: b"e".to_vec(), lease: 0x2441, value: b"d".to_vec() });
        let d = within("D", d).await.unwrap().into_inner();
        log.push(format!("D leads: {}", leader_key(&d.leader.unwrap())));
        log.push(seen(within("observe", waiting).await.unwrap().unwrap().unwrap()));
        log
    })
    .await;
    assert!(log.iter().any(|l| l == "stale proclaim: Unknown: election: not leader"), "{log:#?}");
}

/// The first `n` lines a child prints (bounded in time), then kills it.
fn first_lines(mut child: Child, n: usize) -> Vec<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while lines.len() < n {
        match rx.recv_timeout(STEP) {
            Ok(l) => lines.push(l),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcdctl_lock_and_elect_work_against_retcd() {
    if require_tool("etcdctl").is_none() {
        return;
    }
    let server = Server::start_in_runtime(Kind::Retcd, RETCD, &[]);
    let ch = server.connect().await;
    let ep = server.endpoint();

    // etcdctl lock runs the command while it holds the lock.
    let out = tokio::task::block_in_place(|| {
        let cmd = etcdctl_command(&ep, &["lock", "free", "--", "echo", "locked"]).stdout(Stdio::piped()).spawn();
        wait_output(cmd.unwrap(), STEP)
    });
    assert_eq!(text(&out.stdout), "locked\n", "{}", text(&out.stderr));

    // ... and waits while someone else holds it.
    grant(&ch, 0x2501, 60).await;
    let held = LockClient::new(ch.clone()).lock(LockRequest { name: b"held".to_vec(), lease: 0x2501 }).await.unwrap();
    let mut waiter = etcdctl_command(&ep, &["lock", "held", "--", "echo", "second"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(waiter.try_wait().unwrap().is_none(), "etcdctl lock did not wait for the holder");
    LockClient::new(ch.clone()).unlock(UnlockRequest { key: held.into_inner().key }).await.unwrap();
    let out = tokio::task::block_in_place(|| wait_output(waiter, STEP));
    assert_eq!(text(&out.stdout), "second\n", "{}", text(&out.stderr));

    // etcdctl elect campaigns (printing its key and value), elect -l
    // observes the leader.
    let candidate = etcdctl_command(&ep, &["elect", "el", "v1"]).stdout(Stdio::piped()).spawn().unwrap();
    let campaign = tokio::task::block_in_place(|| first_lines(candidate, 2));
    assert_eq!(campaign.len(), 2, "{campaign:?}");
    assert!(campaign[0].starts_with("el/"), "{campaign:?}");
    assert_eq!(campaign[1], "v1");
    // The candidate is gone (killed) but its lease keeps the key: observe
    // still sees it as the leader.
    let observer = etcdctl_command(&ep, &["elect", "-l", "el"]).stdout(Stdio::piped()).spawn().unwrap();
    let observed = tokio::task::block_in_place(|| first_lines(observer, 2));
    assert_eq!(observed, campaign);
}
