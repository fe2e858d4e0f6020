//! The Lease service over gRPC, checked against real etcd where etcd is
//! installed: scenarios run against both servers with the same assertions,
//! and their normalized transcripts (server-chosen ids, cluster/member ids,
//! raft terms and remaining TTLs left out) must be equal.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::lease_client::LeaseClient;
use retcd_api::etcdserverpb::watch_client::WatchClient;
use retcd_api::etcdserverpb::watch_request::RequestUnion;
use retcd_api::etcdserverpb::{
    DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest, RangeRequest, WatchCreateRequest,
    WatchRequest, WatchResponse,
};
use retcd_api::mvccpb::event::EventType;
use retcd_testkit::{on_both, require_tool, Kind, Server};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

/// Longest wait for any one expected response.
const STEP: Duration = Duration::from_secs(10);
const LEASE_EXISTS: &str = "etcdserver: lease already exists";
const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
const TTL_TOO_LARGE: &str = "etcdserver: too large lease TTL";
/// etcd's MaxLeaseTTL.
const MAX_LEASE_TTL: i64 = 9_000_000_000;

// ---------------------------------------------------------------- servers

const RETCD: &str = env!("CARGO_BIN_EXE_retcd");

fn start(kind: Kind, args: &[&str]) -> Server {
    Server::start_in_runtime(kind, RETCD, args)
}

// ---------------------------------------------------------------- helpers

fn lease(ch: &Channel) -> LeaseClient<Channel> {
    LeaseClient::new(ch.clone())
}

fn kv(ch: &Channel) -> KvClient<Channel> {
    KvClient::new(ch.clone())
}

fn err(s: tonic::Status) -> (Code, String) {
    (s.code(), s.message().to_string())
}

/// Grants; Ok((id, ttl)) or the error's (code, message).
async fn grant(ch: &Channel, id: i64, ttl: i64) -> Result<(i64, i64), (Code, String)> {
    let r = lease(ch).lease_grant(LeaseGrantRequest { id, ttl }).await.map_err(err)?.into_inner();
    assert_eq!(r.error, "");
    Ok((r.id, r.ttl))
}

async fn revoke(ch: &Channel, id: i64) -> Result<i64, (Code, String)> {
    let r = lease(ch).lease_revoke(LeaseRevokeRequest { id }).await.map_err(err)?.into_inner();
    Ok(r.header.unwrap().revision)
}

async fn ttl(ch: &Channel, id: i64, keys: bool) -> LeaseTimeToLiveResponse {
    let mut r = lease(ch).lease_time_to_live(LeaseTimeToLiveRequest { id, keys }).await.unwrap().into_inner();
    // etcd lists a lease's keys in map order.
    r.keys.sort();
    r
}

/// The ids of every lease, sorted (etcd lists them in map order).
async fn leases(ch: &Channel) -> Vec<i64> {
    let r = lease(ch).lease_leases(LeaseLeasesRequest {}).await.unwrap().into_inner();
    let mut ids: Vec<i64> = r.leases.iter().map(|l| l.id).collect();
    ids.sort_unstable();
    ids
}

async fn put(ch: &Channel, key: &str, lease_id: i64) -> Result<i64, (Code, String)> {
    let req = PutRequest { key: key.into(), value: b"v".to_vec(), lease: lease_id, ..Default::default() };
    let r = kv(ch).put(req).await.map_err(err)?.into_inner();
    Ok(r.header.unwrap().revision)
}

/// (key, lease) of every key under `prefix`.
async fn keys_under(ch: &Channel, prefix: &str) -> Vec<(String, i64)> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let r = kv(ch).range(RangeRequest { key: prefix.into(), range_end: end, ..Default::default() }).await.unwrap();
    r.into_inner().kvs.into_iter().map(|kv| (String::from_utf8(kv.key).unwrap(), kv.lease)).collect()
}

fn strs(keys: &[Vec<u8>]) -> Vec<String> {
    keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect()
}

/// A keep-alive stream.
struct KeepAlive {
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    rx: tonic::Streaming<LeaseKeepAliveResponse>,
}

impl KeepAlive {
    /// Opens the stream with a first keep-alive for `id` (grpc-go sends the
    /// response headers with the first response only).
    async fn open(ch: &Channel, id: i64) -> KeepAlive {
        let (tx, rx) = mpsc::channel(64);
        tx.send(LeaseKeepAliveRequest { id }).await.unwrap();
        let mut client = lease(ch);
        let call = tokio::time::timeout(STEP, client.lease_keep_alive(ReceiverStream::new(rx)));
        let rx = call.await.expect("keep-alive call timed out").expect("keep-alive call").into_inner();
        KeepAlive { tx, rx }
    }

    async fn next(&mut self) -> LeaseKeepAliveResponse {
        match tokio::time::timeout(STEP, self.rx.message()).await {
            Ok(Ok(Some(r))) => r,
            other => panic!("no keep-alive response: {other:?}"),
        }
    }

    async fn renew(&mut self, id: i64) -> LeaseKeepAliveResponse {
        self.tx.send(LeaseKeepAliveRequest { id }).await.unwrap();
        self.next().await
    }
}

/// A watch stream on every key under `prefix`.
struct Watch {
    _tx: mpsc::Sender<WatchRequest>,
    rx: tonic::Streaming<WatchResponse>,
}

impl Watch {
    /// Opens the stream and reads the watch's "created" response.
    async fn prefix(ch: &Channel, prefix: &str) -> Watch {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().unwrap() += 1;
        let create = WatchCreateRequest { key: prefix.into(), range_end: end, ..Default::default() };
        let (tx, rx) = mpsc::channel(4);
        tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.unwrap();
        let mut client = WatchClient::new(ch.clone());
        let call = client.watch(ReceiverStream::new(rx));
        let rx = tokio::time::timeout(STEP, call).await.unwrap().unwrap().into_inner();
        let mut w = Watch { _tx: tx, rx };
        let created = w.next(STEP).await.expect("created");
        assert!(created.created);
        w
    }

    async fn next(&mut self, wait: Duration) -> Option<WatchResponse> {
        match tokio::time::timeout(wait, self.rx.message()).await {
            Err(_) => None,
            Ok(Ok(Some(r))) => Some(r),
            Ok(other) => panic!("watch stream ended: {other:?}"),
        }
    }
}

/// (type, key, mod_revision) of each event.
fn events(r: &WatchResponse) -> Vec<(&'static str, String, i64)> {
    r.events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            let t = if e.r#type == EventType::Delete as i32 { "DELETE" } else { "PUT" };
            (t, String::from_utf8_lossy(&kv.key).into_owned(), kv.mod_revision)
        })
        .collect()
}

// ---------------------------------------------------------------- tests

/// Server-chosen ids are positive, client-chosen ids are kept, a duplicate
/// id and a TTL above etcd's MaxLeaseTTL are refused with etcd's errors, a
/// TTL of exactly MaxLeaseTTL is granted.
#[tokio::test(flavor = "multi_thread")]
async fn grant_ids_duplicates_and_ttl_limits() {
    on_both("grant", RETCD, &[], |ch| async move {
        let mut t = Vec::new();
        let (auto, granted) = grant(&ch, 0, 30).await.unwrap();
        assert!(auto > 0, "server-chosen id {auto} must be positive");
        assert_eq!(granted, 30);
        let (auto2, _) = grant(&ch, 0, 30).await.unwrap();
        assert!(auto2 > 0 && auto2 != auto);
        t.push(grant(&ch, 1000, 30).await);
        assert_eq!(t[0], Ok((1000, 30)));
        t.push(grant(&ch, 1000, 60).await);
        assert_eq!(t[1], Err((Code::FailedPrecondition, LEASE_EXISTS.to_string())));
        t.push(grant(&ch, 1001, MAX_LEASE_TTL + 1).await);
        assert_eq!(t[2], Err((Code::OutOfRange, TTL_TOO_LARGE.to_string())));
        t.push(grant(&ch, 1002, MAX_LEASE_TTL).await);
        assert_eq!(t[3], Ok((1002, MAX_LEASE_TTL)));
        t.push(grant(&ch, -5, 30).await);
        t.push(grant(&ch, auto, 30).await);
        assert_eq!(t[5], Err((Code::FailedPrecondition, LEASE_EXISTS.to_string())), "server-chosen ids are taken too");

        let huge = ttl(&ch, 1002, false).await;
        assert_eq!(huge.granted_ttl, MAX_LEASE_TTL);
        assert!(huge.ttl > MAX_LEASE_TTL - 5, "{huge:?}");
        let mut ids = leases(&ch).await;
        ids.retain(|id| *id != auto && *id != auto2);
        let r = lease(&ch).lease_grant(LeaseGrantRequest { id: 1003, ttl: 30 }).await.unwrap().into_inner();
        assert_eq!(r.header.unwrap().revision, 1, "a grant is not a revision");
        (t, ids)
    })
    .await;
}

/// etcd's minimum TTL, ceil(1.5 election timeouts) counted in whole election
/// ticks: a shorter requested TTL (also 0 or negative) is raised to it.
async fn minimum_ttl_case(args: &[&str], min: i64) {
    on_both("min ttl", RETCD, args, |ch| async move {
        let mut t = Vec::new();
        for (i, requested) in [1, 0, -1, min - 1, min, min + 1].into_iter().enumerate() {
            let id = 10 + i as i64;
            let (_, granted) = grant(&ch, id, requested).await.unwrap();
            assert_eq!(granted, requested.max(min), "requested {requested}");
            let r = ttl(&ch, id, false).await;
            assert_eq!(r.granted_ttl, granted);
            assert!(r.ttl <= granted && r.ttl >= granted - 1, "{r:?}");
            t.push((requested, granted));
        }
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ttl_below_minimum_is_raised() {
    // Defaults: 100 ms heartbeat, 1000 ms election timeout: 15 ticks = 1.5 s -> 2 s.
    minimum_ttl_case(&[], 2).await;
    // 200 ms / 2000 ms: 15 ticks = 3 s.
    minimum_ttl_case(&["--heartbeat-interval", "200", "--election-timeout", "2000"], 3).await;
}

/// etcd counts the minimum in whole election ticks: with a 300 ms heartbeat
/// and a 2100 ms election timeout that is 7 ticks, (3 * 7) / 2 = 10 ticks =
/// 3 s; 1.5 x 2100 ms rounded up would be 4 s.
#[tokio::test(flavor = "multi_thread")]
async fn minimum_ttl_counts_whole_election_ticks() {
    minimum_ttl_case(&["--heartbeat-interval", "300", "--election-timeout", "2100"], 3).await;
}

/// Revoking a lease deletes all its keys in one revision: one watch response
/// with every DELETE at that revision, in key order; keys without the lease
/// stay; the lease is gone afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn revoke_deletes_attached_keys_in_one_revision() {
    // The transcript (with the failed calls' errors) is compared by on_both.
    let _ = on_both("revoke", RETCD, &[], |ch| async move {
        assert_eq!(grant(&ch, 77, 60).await, Ok((77, 60)));
        for (i, k) in ["r/c", "r/a", "r/e", "r/b", "r/d"].iter().enumerate() {
            assert_eq!(put(&ch, k, 77).await, Ok(2 + i as i64));
        }
        assert_eq!(put(&ch, "r/free", 0).await, Ok(7));
        let mut w = Watch::prefix(&ch, "r/").await;
        let rev = revoke(&ch, 77).await.unwrap();
        assert_eq!(rev, 8, "one revision for all the deletes");
        let resp = w.next(STEP).await.expect("delete events");
        let evs = events(&resp);
        let want: Vec<_> = ["r/a", "r/b", "r/c", "r/d", "r/e"].iter().map(|k| ("DELETE", k.to_string(), 8)).collect();
        assert_eq!(evs, want);
        assert_eq!(resp.header.as_ref().unwrap().revision, 8);
        assert!(w.next(Duration::from_millis(300)).await.is_none(), "one response");
        assert_eq!(keys_under(&ch, "r/").await, vec![("r/free".to_string(), 0)]);

        let gone = ttl(&ch, 77, true).await;
        assert_eq!((gone.ttl, gone.granted_ttl, gone.keys.len()), (-1, 0, 0));
        let again = revoke(&ch, 77).await;
        assert_eq!(again, Err((Code::NotFound, LEASE_NOT_FOUND.to_string())));
        let attach = put(&ch, "r/x", 77).await;
        assert_eq!(attach, Err((Code::NotFound, LEASE_NOT_FOUND.to_string())));
        // A lease without keys: revoking it is no revision.
        assert_eq!(grant(&ch, 78, 60).await, Ok((78, 60)));
        assert_eq!(revoke(&ch, 78).await, Ok(8));
        assert!(w.next(Duration::from_millis(300)).await.is_none());
        (evs, again, attach)
    })
    .await;
}

/// A keep-alive renews the lease to its granted TTL and answers with it; an
/// unknown lease is answered TTL 0 (no error), and the stream goes on.
#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_renews_and_answers_unknown_leases() {
    on_both("keep-alive", RETCD, &[], |ch| async move {
        assert_eq!(grant(&ch, 42, 10).await, Ok((42, 10)));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let before = ttl(&ch, 42, false).await;
        assert!(before.ttl <= 8, "{before:?}");

        let mut ka = KeepAlive::open(&ch, 42).await;
        let first = ka.next().await;
        assert_eq!((first.id, first.ttl), (42, 10));
        let after = ttl(&ch, 42, false).await;
        assert!(after.ttl >= 9, "renewed to the granted TTL: {after:?}");
        let unknown = ka.renew(4242).await;
        assert_eq!((unknown.id, unknown.ttl), (4242, 0));
        let again = ka.renew(42).await;
        assert_eq!((again.id, again.ttl), (42, 10));
        // A revoked lease is unknown too.
        revoke(&ch, 42).await.unwrap();
        let revoked = ka.renew(42).await;
        assert_eq!((revoked.id, revoked.ttl), (42, 0));
        [first, unknown, again, revoked].map(|r| (r.id, r.ttl, r.header.unwrap().revision))
    })
    .await;
}

/// TimeToLive: granted and remaining TTL, the attached keys only when asked
/// for (following puts, deletes and lease changes), and TTL -1 without an
/// error for an unknown lease.
#[tokio::test(flavor = "multi_thread")]
async fn time_to_live_with_and_without_keys() {
    on_both("time to live", RETCD, &[], |ch| async move {
        assert_eq!(grant(&ch, 7, 60).await, Ok((7, 60)));
        assert_eq!(grant(&ch, 9, 60).await, Ok((9, 60)));
        put(&ch, "t/k2", 7).await.unwrap();
        put(&ch, "t/k1", 7).await.unwrap();
        let mut t = Vec::new();

        let plain = ttl(&ch, 7, false).await;
        assert_eq!((plain.id, plain.granted_ttl, plain.keys.len()), (7, 60, 0));
        assert!((58..=60).contains(&plain.ttl), "{plain:?}");
        let with = ttl(&ch, 7, true).await;
        assert_eq!(strs(&with.keys), vec!["t/k1", "t/k2"]);
        t.push(strs(&with.keys));

        for keys in [false, true] {
            let r = ttl(&ch, 8, keys).await;
            assert_eq!((r.id, r.ttl, r.granted_ttl, r.keys.len()), (8, -1, 0, 0), "{r:?}");
            assert_eq!(r.header.unwrap().revision, 3);
        }

        kv(&ch).delete_range(DeleteRangeRequest { key: "t/k1".into(), ..Default::default() }).await.unwrap();
        t.push(strs(&ttl(&ch, 7, true).await.keys));
        assert_eq!(t[1], vec!["t/k2"]);
        put(&ch, "t/k2", 0).await.unwrap();
        t.push(strs(&ttl(&ch, 7, true).await.keys));
        assert!(t[2].is_empty(), "overwritten without the lease: detached");
        put(&ch, "t/k3", 7).await.unwrap();
        put(&ch, "t/k3", 9).await.unwrap();
        t.push(strs(&ttl(&ch, 7, true).await.keys));
        t.push(strs(&ttl(&ch, 9, true).await.keys));
        assert_eq!((t[3].len(), t[4].clone()), (0, vec!["t/k3".to_string()]), "moved to lease 9");
        assert_eq!(keys_under(&ch, "t/").await, vec![("t/k2".to_string(), 0), ("t/k3".to_string(), 9)]);
        t
    })
    .await;
}

/// Leases lists every lease, and forgets revoked ones.
#[tokio::test(flavor = "multi_thread")]
async fn leases_lists_every_lease() {
    on_both("leases", RETCD, &[], |ch| async move {
        assert_eq!(leases(&ch).await, Vec::<i64>::new());
        for id in [13, 11, 12] {
            grant(&ch, id, 60).await.unwrap();
        }
        let all = leases(&ch).await;
        assert_eq!(all, vec![11, 12, 13]);
        revoke(&ch, 12).await.unwrap();
        let rest = leases(&ch).await;
        assert_eq!(rest, vec![11, 13]);
        (all, rest)
    })
    .await;
}

/// A lease nobody keeps alive is revoked by the server soon after its TTL
/// (etcd checks every 500 ms), deleting its keys in one revision.
#[tokio::test(flavor = "multi_thread")]
async fn unattended_lease_expires_and_deletes_its_keys() {
    on_both("expiry", RETCD, &[], |ch| async move {
        let mut w = Watch::prefix(&ch, "e/").await;
        let granted_at = Instant::now();
        assert_eq!(grant(&ch, 5, 2).await, Ok((5, 2)));
        put(&ch, "e/1", 5).await.unwrap();
        put(&ch, "e/2", 5).await.unwrap();
        put(&ch, "e/3", 0).await.unwrap();
        let mut puts = 0;
        let resp = loop {
            let r = w.next(Duration::from_secs(8)).await.expect("the lease did not expire within 8 s");
            if r.events.iter().all(|e| e.r#type == EventType::Put as i32) {
                puts += r.events.len();
                assert!(puts <= 3);
                continue;
            }
            break r;
        };
        let elapsed = granted_at.elapsed();
        assert!(elapsed >= Duration::from_millis(1900), "revoked after {elapsed:?}, before its TTL");
        assert!(elapsed <= Duration::from_secs(4), "revoked only after {elapsed:?}");
        let evs = events(&resp);
        assert_eq!(evs, vec![("DELETE", "e/1".to_string(), 5), ("DELETE", "e/2".to_string(), 5)]);
        assert_eq!(keys_under(&ch, "e/").await, vec![("e/3".to_string(), 0)]);
        let r = ttl(&ch, 5, true).await;
        assert_eq!((r.ttl, r.granted_ttl), (-1, 0));
        assert!(leases(&ch).await.is_empty());
        evs
    })
    .await;
}

/// A lease kept alive outlives its TTL several times over; once the
/// keep-alives stop, it expires.
#[tokio::test(flavor = "multi_thread")]
async fn kept_alive_lease_outlives_its_ttl() {
    on_both("kept alive", RETCD, &[], |ch| async move {
        assert_eq!(grant(&ch, 6, 2).await, Ok((6, 2)));
        put(&ch, "ka/1", 6).await.unwrap();
        let mut ka = KeepAlive::open(&ch, 6).await;
        assert_eq!(ka.next().await.ttl, 2);
        let started = Instant::now();
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let r = ka.renew(6).await;
            assert_eq!((r.id, r.ttl), (6, 2), "renewed at {:?}", started.elapsed());
        }
        assert!(started.elapsed() >= Duration::from_secs(6));
        assert_eq!(keys_under(&ch, "ka/").await, vec![("ka/1".to_string(), 6)]);
        let alive = ttl(&ch, 6, true).await;
        assert!(alive.ttl >= 1, "{alive:?}");
        assert_eq!(strs(&alive.keys), vec!["ka/1"]);

        drop(ka);
        let stopped = Instant::now();
        while !keys_under(&ch, "ka/").await.is_empty() {
            assert!(stopped.elapsed() < Duration::from_secs(5), "not expired 5 s after the last keep-alive");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(ttl(&ch, 6, false).await.ttl, -1);
        strs(&alive.keys)
    })
    .await;
}

/// (granted, remaining, keys) of a lease, retrying while a restarted member
/// is not yet answering.
async fn ttl_after_restart(ch: &Channel, id: i64) -> LeaseTimeToLiveResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match lease(ch).lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true }).await {
            Ok(r) => {
                let mut r = r.into_inner();
                r.keys.sort();
                return r;
            }
            Err(e) => assert!(Instant::now() < deadline, "TimeToLive after restart: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Leases survive a graceful restart and a crash (kill -9): same granted
/// TTL, remaining TTL restored to (at least) the full TTL rather than what
/// was left, keys still attached; expiry keeps working afterwards.
async fn leases_survive_restart(kind: Kind) {
    let mut s = start(kind, &[]);
    let ch = s.connect().await;
    assert_eq!(grant(&ch, 100, 10).await, Ok((100, 10)));
    put(&ch, "s/1", 100).await.unwrap();
    put(&ch, "s/2", 100).await.unwrap();
    let (long, _) = grant(&ch, 0, 600).await.unwrap();
    put(&ch, "s/3", long).await.unwrap();

    for (round, crash) in [(1, false), (2, true)] {
        tokio::time::sleep(Duration::from_millis(3200)).await;
        let before = ttl(&ch, 100, false).await;
        assert!(before.ttl <= 7, "round {round}: {before:?}");
        // A short lease granted just before going down: after the restart it
        // must still expire on its own.
        let short = 300 + round;
        assert_eq!(grant(&ch, short, 3).await, Ok((short, 3)));
        put(&ch, &format!("s/short{round}"), short).await.unwrap();

        if crash {
            tokio::task::block_in_place(|| s.kill9());
        } else {
            tokio::task::block_in_place(|| s.terminate());
        }
        tokio::task::block_in_place(|| {
            s.spawn();
            s.wait_ready(Duration::from_secs(30));
        });
        let ch2 = s.connect().await;
        let restarted = Instant::now();

        let a = ttl_after_restart(&ch2, 100).await;
        assert_eq!(a.granted_ttl, 10, "{kind:?} round {round}: {a:?}");
        // etcd restarts every lease's TTL when it becomes leader (plus an
        // election timeout of grace).
        assert!((9..=11).contains(&a.ttl), "{kind:?} round {round}: full TTL restored, got {a:?}");
        assert_eq!(strs(&a.keys), vec!["s/1", "s/2"]);
        let b = ttl_after_restart(&ch2, long).await;
        assert_eq!((b.granted_ttl, strs(&b.keys)), (600, vec!["s/3".to_string()]));
        let ids = leases(&ch2).await;
        assert!(ids.contains(&100) && ids.contains(&long), "{ids:?}");
        let kvs = keys_under(&ch2, "s/").await;
        assert!(kvs.contains(&("s/1".to_string(), 100)) && kvs.contains(&("s/3".to_string(), long)), "{kvs:?}");

        // Keep-alives work on the restarted member.
        let mut ka = KeepAlive::open(&ch2, 100).await;
        assert_eq!(ka.next().await.ttl, 10);
        drop(ka);

        // The short lease expires on its own and takes its key along.
        let short_key = format!("s/short{round}");
        while keys_under(&ch2, "s/").await.iter().any(|(k, _)| *k == short_key) {
            assert!(restarted.elapsed() < Duration::from_secs(8), "{kind:?} round {round}: short lease not expired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(ttl(&ch2, short, false).await.ttl, -1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_survive_restart_and_crash() {
    leases_survive_restart(Kind::Retcd).await;
}

/// The same scenario against etcd: the expectations above are etcd's.
#[tokio::test(flavor = "multi_thread")]
async fn leases_survive_restart_and_crash_etcd_reference() {
    if require_tool("etcd").is_some() {
        leases_survive_restart(Kind::Etcd).await;
    }
}
