//! The Watch service over gRPC, checked against real etcd where etcd is
//! installed: every scenario that does not depend on retcd internals runs
//! against both servers, asserts the same expectations on both, and the
//! normalized transcripts (cluster/member ids and raft term cleared) must be
//! equal.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::watch_client::WatchClient;
use retcd_api::etcdserverpb::watch_create_request::FilterType;
use retcd_api::etcdserverpb::watch_request::RequestUnion;
use retcd_api::etcdserverpb::{
    request_op, CompactionRequest, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, WatchCancelRequest,
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use retcd_api::mvccpb::event::EventType;
use retcd_api::mvccpb::Event;
use retcd_testkit::{on_both, Kind, Server};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Longest wait for any one expected response.
const STEP: Duration = Duration::from_secs(10);
const DUP_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
const EMPTY_RANGE: &str = "mvcc: watcher range is empty";

// ---------------------------------------------------------------- servers

const RETCD: &str = env!("CARGO_BIN_EXE_retcd");

fn start(kind: Kind, args: &[&str]) -> Server {
    Server::start_in_runtime(kind, RETCD, args)
}

// ---------------------------------------------------------------- kv helpers

fn kv(ch: &Channel) -> KvClient<Channel> {
    KvClient::new(ch.clone()).max_decoding_message_size(64 << 20)
}

async fn put(ch: &Channel, key: &str, value: &str) -> i64 {
    put_bytes(ch, key.as_bytes(), value.as_bytes().to_vec()).await
}

async fn put_bytes(ch: &Channel, key: &[u8], value: Vec<u8>) -> i64 {
    let r = kv(ch).put(PutRequest { key: key.to_vec(), value, ..Default::default() }).await.unwrap();
    r.into_inner().header.unwrap().revision
}

async fn del(ch: &Channel, key: &str, range_end: &str) -> i64 {
    let req = DeleteRangeRequest { key: key.into(), range_end: range_end.into(), ..Default::default() };
    kv(ch).delete_range(req).await.unwrap().into_inner().header.unwrap().revision
}

async fn txn(ch: &Channel, ops: Vec<RequestOp>) -> i64 {
    let req = TxnRequest { success: ops, ..Default::default() };
    let r = kv(ch).txn(req).await.unwrap().into_inner();
    assert!(r.succeeded);
    r.header.unwrap().revision
}

fn op_put(key: &str, value: Vec<u8>) -> RequestOp {
    let p = PutRequest { key: key.into(), value, ..Default::default() };
    RequestOp { request: Some(request_op::Request::RequestPut(p)) }
}

fn op_del(key: &str) -> RequestOp {
    let d = DeleteRangeRequest { key: key.into(), ..Default::default() };
    RequestOp { request: Some(request_op::Request::RequestDeleteRange(d)) }
}

// ---------------------------------------------------------------- watch helpers

/// One Watch stream.
struct Ws {
    tx: mpsc::Sender<WatchRequest>,
    rx: tonic::Streaming<WatchResponse>,
    /// Responses read ahead while waiting for a "created" notice.
    pending: VecDeque<WatchResponse>,
}

fn create_req(c: WatchCreateRequest) -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::CreateRequest(c)) }
}

fn cancel_req(watch_id: i64) -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id })) }
}

fn progress_req() -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) }
}

/// A create request for `key` (all other fields default).
fn wc(key: &str) -> WatchCreateRequest {
    WatchCreateRequest { key: key.into(), ..Default::default() }
}

/// A create request for every key starting with `prefix`.
fn wc_prefix(prefix: &str) -> WatchCreateRequest {
    WatchCreateRequest { key: prefix.into(), range_end: prefix_end(prefix.as_bytes()), ..Default::default() }
}

fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Ws {
    /// Opens a stream whose first request is `first`. (grpc-go sends the
    /// response headers only with the first response, so the call cannot
    /// complete before a request has been sent.)
    async fn open(ch: &Channel, first: WatchRequest) -> Ws {
        let (tx, rx) = mpsc::channel(1024);
        tx.send(first).await.unwrap();
        let mut client = WatchClient::new(ch.clone()).max_decoding_message_size(64 << 20);
        let call = tokio::time::timeout(STEP, client.watch(ReceiverStream::new(rx)));
        let rx = call.await.expect("watch call timed out").expect("watch call").into_inner();
        Ws { tx, rx, pending: VecDeque::new() }
    }

    /// Opens a stream with one watch and returns its "created" response.
    async fn open_with(ch: &Channel, c: WatchCreateRequest) -> (Ws, WatchResponse) {
        let mut ws = Ws::open(ch, create_req(c)).await;
        let r = ws.next().await;
        assert!(r.created, "expected a created response, got {r:?}");
        (ws, r)
    }

    async fn send(&self, r: WatchRequest) {
        self.tx.send(r).await.unwrap();
    }

    /// Sends a create request and returns its "created" notice. Responses
    /// of other watches on the stream that arrive first (a historical
    /// watch's replay, say) are kept for `next`.
    async fn create(&mut self, c: WatchCreateRequest) -> WatchResponse {
        self.send(create_req(c)).await;
        for _ in 0..10_000 {
            let r = self.read(STEP).await.expect("no created response within the deadline");
            if r.created {
                return r;
            }
            self.pending.push_back(r);
        }
        panic!("no created response among 10,000 responses");
    }

    async fn try_next(&mut self, wait: Duration) -> Option<WatchResponse> {
        if let Some(r) = self.pending.pop_front() {
            return Some(r);
        }
        self.read(wait).await
    }

    async fn read(&mut self, wait: Duration) -> Option<WatchResponse> {
        match tokio::time::timeout(wait, self.rx.message()).await {
            Err(_) => None,
            Ok(Ok(Some(r))) => Some(r),
            Ok(Ok(None)) => panic!("watch stream ended"),
            Ok(Err(e)) => panic!("watch stream failed: {e}"),
        }
    }

    async fn next(&mut self) -> WatchResponse {
        self.try_next(STEP).await.expect("no watch response within the deadline")
    }

    /// Asserts nothing arrives for `wait`.
    async fn quiet(&mut self, wait: Duration) {
        if let Some(r) = self.try_next(wait).await {
            panic!("unexpected watch response {r:?}");
        }
    }

    /// Reads responses until `done` says the collected ones are complete
    /// (bounded by `max` responses).
    async fn collect(&mut self, max: usize, done: impl Fn(&[WatchResponse]) -> bool) -> Vec<WatchResponse> {
        let mut out = Vec::new();
        while !done(&out) {
            assert!(out.len() < max, "more than {max} responses without completing: {out:?}");
            out.push(self.next().await);
        }
        out
    }
}

/// Clears what differs between two servers (cluster and member ids, raft term).
fn norm(mut r: WatchResponse) -> WatchResponse {
    if let Some(h) = r.header.as_mut() {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
    r
}

fn rev(r: &WatchResponse) -> i64 {
    r.header.as_ref().unwrap().revision
}

fn by_watch(resps: Vec<WatchResponse>) -> BTreeMap<i64, Vec<WatchResponse>> {
    let mut m: BTreeMap<i64, Vec<WatchResponse>> = BTreeMap::new();
    for r in resps {
        m.entry(r.watch_id).or_default().push(norm(r));
    }
    m
}

fn events_of(resps: &[WatchResponse]) -> Vec<Event> {
    resps.iter().flat_map(|r| r.events.iter().cloned()).collect()
}

/// (type, key, mod_revision, value) of each event.
fn summary(evs: &[Event]) -> Vec<(&'static str, String, i64, String)> {
    evs.iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            let t = if e.r#type == EventType::Delete as i32 { "DELETE" } else { "PUT" };
            (
                t,
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect()
}

fn count_events(resps: &[WatchResponse]) -> usize {
    resps.iter().map(|r| r.events.len()).sum()
}

// ---------------------------------------------------------------- tests

/// Fifty single-key watches and one prefix watch share one stream: the
/// server numbers them 0, 1, 2, ... in creation order, each receives exactly
/// its own key's event, the prefix watch receives all of them in order.
#[tokio::test(flavor = "multi_thread")]
async fn many_watches_on_one_stream_with_server_chosen_ids() {
    on_both("many watches", RETCD, &[], |ch| async move {
        let n = 50;
        let mut ws = Ws::open(&ch, progress_req()).await;
        let first = ws.next().await;
        assert_eq!((first.watch_id, first.created, rev(&first)), (-1, false, 1), "{first:?}");
        let mut created = Vec::new();
        for i in 0..n {
            let r = ws.create(wc(&format!("m/{i:02}"))).await;
            assert_eq!((r.watch_id, r.canceled, rev(&r)), (i, false, 1), "{r:?}");
            created.push(norm(r));
        }
        let r = ws.create(wc_prefix("m/")).await;
        assert_eq!(r.watch_id, n);
        created.push(norm(r));

        for i in 0..n {
            assert_eq!(put(&ch, &format!("m/{i:02}"), &format!("v{i}")).await, 2 + i);
        }
        let got = ws.collect(500, |rs| rs.len() == 2 * n as usize).await;
        ws.quiet(Duration::from_millis(300)).await;
        let got = by_watch(got);
        assert_eq!(got.len(), n as usize + 1);
        for i in 0..n {
            let rs = &got[&i];
            assert_eq!(rs.len(), 1, "watch {i}: {rs:?}");
            let evs = summary(&rs[0].events);
            assert_eq!(evs, vec![("PUT", format!("m/{i:02}"), 2 + i, format!("v{i}"))]);
            assert_eq!(rev(&rs[0]), 2 + i);
        }
        let all = &got[&n];
        let revs: Vec<i64> = events_of(all).iter().map(|e| e.kv.as_ref().unwrap().mod_revision).collect();
        assert_eq!(revs, (2..2 + n).collect::<Vec<_>>());
        (norm(first), created, got)
    })
    .await;
}

/// Client-chosen ids, a duplicate id (created + canceled, id -1, etcd's
/// reason), server-chosen ids skipping taken ones, per-stream id spaces,
/// reuse of a canceled id.
#[tokio::test(flavor = "multi_thread")]
async fn client_chosen_and_duplicate_watch_ids() {
    on_both("watch ids", RETCD, &[], |ch| async move {
        let mut t = Vec::new();
        let (mut ws, r) = Ws::open_with(&ch, WatchCreateRequest { watch_id: 7, ..wc("a") }).await;
        assert_eq!((r.watch_id, r.canceled), (7, false));
        t.push(norm(r));
        let r = ws.create(WatchCreateRequest { watch_id: 7, ..wc("b") }).await;
        assert_eq!((r.watch_id, r.canceled, r.cancel_reason.as_str()), (-1, true, DUP_ID), "{r:?}");
        t.push(norm(r));
        let r = ws.create(wc("c")).await;
        assert_eq!(r.watch_id, 0, "server-chosen ids start at 0");
        t.push(norm(r));
        let r = ws.create(WatchCreateRequest { watch_id: 1, ..wc("d") }).await;
        assert_eq!(r.watch_id, 1);
        t.push(norm(r));
        let r = ws.create(wc("e")).await;
        assert_eq!(r.watch_id, 2, "server-chosen id skips the client's 1");
        t.push(norm(r));
        let r = ws.create(WatchCreateRequest { watch_id: 2, ..wc("f") }).await;
        assert_eq!((r.watch_id, r.canceled, r.cancel_reason.as_str()), (-1, true, DUP_ID), "{r:?}");
        t.push(norm(r));

        // Ids are per stream.
        let (mut ws2, r) = Ws::open_with(&ch, wc("a")).await;
        assert_eq!(r.watch_id, 0);
        t.push(norm(r));
        let r = ws2.create(WatchCreateRequest { watch_id: 7, ..wc("a") }).await;
        assert_eq!((r.watch_id, r.canceled), (7, false));
        t.push(norm(r));

        // "b" was refused: its put produces nothing; "a" reaches watch 7.
        assert_eq!(put(&ch, "b", "1").await, 2);
        assert_eq!(put(&ch, "a", "1").await, 3);
        let r = ws.next().await;
        assert_eq!((r.watch_id, summary(&r.events)), (7, vec![("PUT", "a".into(), 3, "1".into())]));
        t.push(norm(r));
        let mut two = vec![ws2.next().await, ws2.next().await];
        two.sort_by_key(|r| r.watch_id);
        assert_eq!(two.iter().map(|r| r.watch_id).collect::<Vec<_>>(), vec![0, 7]);
        t.extend(two.into_iter().map(norm));

        // A canceled id can be chosen again.
        ws.send(cancel_req(7)).await;
        let r = ws.next().await;
        assert_eq!((r.watch_id, r.canceled, r.created), (7, true, false), "{r:?}");
        t.push(norm(r));
        let r = ws.create(WatchCreateRequest { watch_id: 7, ..wc("g") }).await;
        assert_eq!((r.watch_id, r.canceled), (7, false), "{r:?}");
        t.push(norm(r));
        assert_eq!(put(&ch, "g", "1").await, 4);
        let r = ws.next().await;
        assert_eq!((r.watch_id, summary(&r.events)), (7, vec![("PUT", "g".into(), 4, "1".into())]));
        t.push(norm(r));
        ws.quiet(Duration::from_millis(300)).await;
        t
    })
    .await;
}

/// Cancel: a canceled response carrying the watch id, then nothing more for
/// that watch; canceling an unknown or already canceled id is ignored.
#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_events() {
    on_both("cancel", RETCD, &[], |ch| async move {
        let mut t = Vec::new();
        let (mut ws, r) = Ws::open_with(&ch, wc("k")).await;
        assert_eq!(r.watch_id, 0);
        let sentinel = ws.create(wc("s")).await;
        assert_eq!(sentinel.watch_id, 1);
        assert_eq!(put(&ch, "k", "1").await, 2);
        let r = ws.next().await;
        assert_eq!((r.watch_id, r.events.len()), (0, 1));
        t.push(norm(r));

        ws.send(cancel_req(0)).await;
        let r = ws.next().await;
        assert_eq!((r.watch_id, r.canceled, r.created, r.events.len(), rev(&r)), (0, true, false, 0, 2), "{r:?}");
        t.push(norm(r));
        ws.send(cancel_req(0)).await;
        ws.send(cancel_req(99)).await;

        assert_eq!(put(&ch, "k", "2").await, 3);
        assert_eq!(put(&ch, "s", "1").await, 4);
        // The first thing to arrive is the sentinel's event: the canceled
        // watch sent nothing, and the repeated/unknown cancels were ignored.
        let r = ws.next().await;
        assert_eq!((r.watch_id, summary(&r.events)), (1, vec![("PUT", "s".into(), 4, "1".into())]), "{r:?}");
        t.push(norm(r));
        ws.quiet(Duration::from_millis(300)).await;
        t
    })
    .await;
}

/// Replaying history from a start revision: PUTs and DELETEs (plain, in a
/// txn, by range) in revision order with their revisions, prev_kv only when
/// asked for, then live events continue without a gap or repeat.
#[tokio::test(flavor = "multi_thread")]
async fn historical_replay_with_deletes_and_prev_kv() {
    let got = on_both("history", RETCD, &[], |ch| async move {
        assert_eq!(put(&ch, "h/a", "1").await, 2);
        assert_eq!(put(&ch, "h/b", "1").await, 3);
        assert_eq!(put(&ch, "h/a", "2").await, 4);
        assert_eq!(del(&ch, "h/a", "").await, 5);
        assert_eq!(put(&ch, "h/a", "3").await, 6);
        assert_eq!(txn(&ch, vec![op_put("h/b", b"2".to_vec()), op_put("h/c", b"1".to_vec()), op_del("h/a")]).await, 7);
        assert_eq!(del(&ch, "h/", "h0").await, 8);
        assert_eq!(put(&ch, "other", "x").await, 9);

        let expected_all = vec![
            ("PUT", "h/a".to_string(), 2, "1".to_string()),
            ("PUT", "h/b".into(), 3, "1".into()),
            ("PUT", "h/a".into(), 4, "2".into()),
            ("DELETE", "h/a".into(), 5, "".into()),
            ("PUT", "h/a".into(), 6, "3".into()),
            ("PUT", "h/b".into(), 7, "2".into()),
            ("PUT", "h/c".into(), 7, "1".into()),
            ("DELETE", "h/a".into(), 7, "".into()),
            ("DELETE", "h/b".into(), 8, "".into()),
            ("DELETE", "h/c".into(), 8, "".into()),
        ];
        // Events come in revision order; within one revision in the order
        // the txn made them (etcd: put b, put c, delete a).
        let mut ws =
            Ws::open(&ch, create_req(WatchCreateRequest { start_revision: 2, prev_kv: true, ..wc_prefix("h/") })).await;
        let mut created = vec![];
        created.push(ws.next().await);
        created.push(ws.create(WatchCreateRequest { start_revision: 2, ..wc_prefix("h/") }).await);
        created.push(ws.create(WatchCreateRequest { start_revision: 5, prev_kv: true, ..wc("h/a") }).await);
        created.push(ws.create(WatchCreateRequest { start_revision: 7, ..wc_prefix("h/") }).await);
        for (i, c) in created.iter().enumerate() {
            assert_eq!((c.watch_id, c.created, c.canceled, rev(c)), (i as i64, true, false, 9), "{c:?}");
        }
        let want_counts = [10, 10, 3, 5];
        let hist = ws
            .collect(100, |rs| {
                (0..4).all(|w| {
                    let mine: Vec<_> = rs.iter().filter(|r| r.watch_id == w).cloned().collect();
                    count_events(&mine) >= want_counts[w as usize]
                })
            })
            .await;
        let hist = by_watch(hist);
        for (w, rs) in &hist {
            for r in rs {
                assert_eq!(rev(r), 9, "history responses carry the current revision: {r:?}");
                assert!(!r.fragment && !r.canceled && !r.created);
            }
            assert_eq!(count_events(rs), want_counts[*w as usize], "watch {w}: {rs:?}");
        }
        let all = events_of(&hist[&0]);
        assert_eq!(summary(&all), expected_all);
        assert_eq!(summary(&events_of(&hist[&1])), expected_all);
        assert!(events_of(&hist[&1]).iter().all(|e| e.prev_kv.is_none()), "prev_kv not asked for");
        assert_eq!(
            summary(&events_of(&hist[&2])),
            vec![expected_all[3].clone(), expected_all[4].clone(), expected_all[7].clone()]
        );
        assert_eq!(summary(&events_of(&hist[&3])), expected_all[5..].to_vec());

        // prev_kv: the key's value just before each event; none for a creation.
        let prev: Vec<Option<(String, i64)>> = all
            .iter()
            .map(|e| e.prev_kv.as_ref().map(|p| (String::from_utf8_lossy(&p.value).into_owned(), p.mod_revision)))
            .collect();
        assert_eq!(
            prev,
            vec![
                None,
                None,
                Some(("1".into(), 2)),
                Some(("2".into(), 4)),
                None,
                Some(("1".into(), 3)),
                None,
                Some(("3".into(), 6)),
                Some(("2".into(), 7)),
                Some(("1".into(), 7)),
            ]
        );
        // A DELETE event's kv is the key and the deletion's revision only.
        let d = all[3].kv.as_ref().unwrap();
        assert_eq!((d.create_revision, d.version, d.lease, d.value.len()), (0, 0, 0, 0), "{d:?}");
        assert_eq!(all[4].kv.as_ref().unwrap().create_revision, 6);
        assert_eq!(all[4].kv.as_ref().unwrap().version, 1);

        // Live events follow.
        assert_eq!(put(&ch, "h/a", "4").await, 10);
        let live = by_watch(ws.collect(10, |rs| rs.len() == 4).await);
        assert_eq!(live.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        for (w, rs) in &live {
            assert_eq!(summary(&rs[0].events), vec![("PUT", "h/a".into(), 10, "4".into())], "watch {w}");
            assert!(rs[0].events[0].prev_kv.is_none(), "a creation has no prev_kv (watch {w})");
        }
        ws.quiet(Duration::from_millis(300)).await;
        (created.into_iter().map(norm).collect::<Vec<_>>(), hist, live)
    })
    .await;
    drop(got);
}

/// NOPUT and NODELETE, live and from history; a revision whose events are
/// all filtered out sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn noput_and_nodelete_filters() {
    on_both("filters", RETCD, &[], |ch| async move {
        let noput = vec![FilterType::Noput as i32];
        let nodel = vec![FilterType::Nodelete as i32];
        let both = vec![FilterType::Noput as i32, FilterType::Nodelete as i32];
        let (mut ws, _) = Ws::open_with(&ch, WatchCreateRequest { filters: noput.clone(), ..wc_prefix("f/") }).await;
        assert_eq!(
            ws.create(WatchCreateRequest { filters: nodel.clone(), prev_kv: true, ..wc_prefix("f/") }).await.watch_id,
            1
        );
        assert_eq!(ws.create(WatchCreateRequest { filters: both.clone(), ..wc_prefix("f/") }).await.watch_id, 2);

        assert_eq!(put(&ch, "f/a", "1").await, 2);
        assert_eq!(put(&ch, "f/b", "1").await, 3);
        assert_eq!(del(&ch, "f/a", "").await, 4);
        assert_eq!(txn(&ch, vec![op_put("f/c", b"1".to_vec()), op_del("f/b")]).await, 5);
        assert_eq!(del(&ch, "f/zz", "").await, 5, "deleting nothing is no revision");
        assert_eq!(put(&ch, "f/d", "1").await, 6);

        let live = by_watch(ws.collect(20, |rs| count_events(rs) == 6).await);
        ws.quiet(Duration::from_millis(300)).await;
        assert!(!live.contains_key(&2), "everything filtered: nothing sent");
        assert_eq!(
            summary(&events_of(&live[&0])),
            vec![("DELETE", "f/a".into(), 4, "".into()), ("DELETE", "f/b".into(), 5, "".into())]
        );
        assert_eq!(live[&0].len(), 2, "one response per revision");
        assert_eq!(
            summary(&events_of(&live[&1])),
            vec![
                ("PUT", "f/a".into(), 2, "1".into()),
                ("PUT", "f/b".into(), 3, "1".into()),
                ("PUT", "f/c".into(), 5, "1".into()),
                ("PUT", "f/d".into(), 6, "1".into())
            ]
        );

        // The same filters over history.
        let (mut hs, _) =
            Ws::open_with(&ch, WatchCreateRequest { filters: noput, start_revision: 1, ..wc_prefix("f/") }).await;
        hs.create(WatchCreateRequest { filters: nodel, start_revision: 1, ..wc_prefix("f/") }).await;
        hs.create(WatchCreateRequest { filters: both, start_revision: 1, ..wc_prefix("f/") }).await;
        let hist = by_watch(hs.collect(20, |rs| count_events(rs) == 6).await);
        hs.quiet(Duration::from_millis(300)).await;
        assert!(!hist.contains_key(&2));
        assert_eq!(summary(&events_of(&hist[&0])), summary(&events_of(&live[&0])));
        assert_eq!(summary(&events_of(&hist[&1])), summary(&events_of(&live[&1])));
        (live, hist)
    })
    .await;
}

/// Single key, prefix, [start, end) and from-key (range_end "\0") watches,
/// every key (key and range_end "\0"), and an empty range refused with
/// etcd's reason.
#[tokio::test(flavor = "multi_thread")]
async fn prefix_and_from_key_ranges() {
    on_both("ranges", RETCD, &[], |ch| async move {
        let specs = [
            wc("p"),
            wc_prefix("p/"),
            WatchCreateRequest { key: "b".into(), range_end: "d".into(), ..Default::default() },
            WatchCreateRequest { key: "m".into(), range_end: vec![0], ..Default::default() },
            WatchCreateRequest { key: vec![0], range_end: vec![0], ..Default::default() },
        ];
        let mut specs = specs.into_iter();
        let (mut ws, _) = Ws::open_with(&ch, specs.next().unwrap()).await;
        for (i, s) in specs.enumerate() {
            assert_eq!(ws.create(s).await.watch_id, i as i64 + 1);
        }
        let bad = ws.create(WatchCreateRequest { key: "z".into(), range_end: "a".into(), ..Default::default() }).await;
        assert_eq!((bad.watch_id, bad.canceled, bad.cancel_reason.as_str()), (-1, true, EMPTY_RANGE), "{bad:?}");
        let bad2 = ws.create(WatchCreateRequest { key: "a".into(), range_end: "a".into(), ..Default::default() }).await;
        assert_eq!((bad2.watch_id, bad2.canceled, bad2.cancel_reason.as_str()), (-1, true, EMPTY_RANGE), "{bad2:?}");

        let keys = ["a", "b", "c", "d", "l", "m", "p", "p/1", "p/2/x", "p0", "q", "zz"];
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(put(&ch, k, "v").await, 2 + i as i64);
        }
        // Expected keys per watch.
        let want: [&[&str]; 5] =
            [&["p"], &["p/1", "p/2/x"], &["b", "c"], &["m", "p", "p/1", "p/2/x", "p0", "q", "zz"], &keys];
        let total: usize = want.iter().map(|w| w.len()).sum();
        let got = by_watch(ws.collect(100, |rs| rs.len() == total).await);
        ws.quiet(Duration::from_millis(300)).await;
        for (w, keys) in want.iter().enumerate() {
            let seen: Vec<String> = summary(&events_of(&got[&(w as i64)])).into_iter().map(|e| e.1).collect();
            assert_eq!(seen, keys.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "watch {w}");
        }
        (norm(bad), norm(bad2), got)
    })
    .await;
}

/// A progress request is answered on the stream with watch id -1 and the
/// current revision in the header, with or without watches on the stream.
#[tokio::test(flavor = "multi_thread")]
async fn progress_requests() {
    on_both("progress requests", RETCD, &[], |ch| async move {
        let mut t = Vec::new();
        let mut bare = Ws::open(&ch, progress_req()).await;
        let r = bare.next().await;
        assert_eq!((r.watch_id, r.created, r.canceled, r.events.len(), rev(&r)), (-1, false, false, 0, 1), "{r:?}");
        t.push(norm(r));

        let (mut ws, _) = Ws::open_with(&ch, wc("x")).await;
        ws.send(progress_req()).await;
        let r = ws.next().await;
        assert_eq!((r.watch_id, r.events.len(), rev(&r)), (-1, 0, 1), "{r:?}");
        t.push(norm(r));
        assert_eq!(put(&ch, "x", "1").await, 2);
        assert_eq!(put(&ch, "y", "1").await, 3);
        let r = ws.next().await;
        assert_eq!((r.watch_id, r.events.len(), rev(&r)), (0, 1, 2));
        t.push(norm(r));
        ws.send(progress_req()).await;
        let r = ws.next().await;
        assert_eq!((r.watch_id, r.events.len(), rev(&r)), (-1, 0, 3), "progress reports the current revision: {r:?}");
        t.push(norm(r));
        ws.quiet(Duration::from_millis(300)).await;
        bare.quiet(Duration::from_millis(10)).await;
        t
    })
    .await;
}

/// With --experimental-watch-progress-notify-interval, an idle watch created
/// with progress_notify receives progress notifications (its own id, no
/// events, the current revision); a watch without it receives none.
#[tokio::test(flavor = "multi_thread")]
async fn progress_notify_interval() {
    let flag = "--experimental-watch-progress-notify-interval";
    on_both("progress notify", RETCD, &[flag, "500ms"], |ch| async move {
        let (mut ws, _) = Ws::open_with(&ch, WatchCreateRequest { progress_notify: true, ..wc("pn") }).await;
        assert_eq!(ws.create(wc("quiet")).await.watch_id, 1);
        assert_eq!(put(&ch, "elsewhere", "1").await, 2);
        let started = Instant::now();
        let r = ws.next().await;
        let waited = started.elapsed();
        assert_eq!((r.watch_id, r.events.len(), r.created, r.canceled, rev(&r)), (0, 0, false, false, 2), "{r:?}");
        assert!(waited < Duration::from_secs(3), "first progress notification after {waited:?}");
        // Only watch 0 gets notifications.
        let more = ws.collect(20, |rs| rs.len() >= 2).await;
        for r in &more {
            assert_eq!((r.watch_id, r.events.len(), rev(r)), (0, 0, 2), "{r:?}");
        }
        norm(r)
    })
    .await;
}

/// A watch created with fragment=true receives a revision bigger than
/// --max-request-bytes as several responses, all but the last flagged
/// fragment, that reassemble to every event; a watch without fragment gets it
/// as one response.
#[tokio::test(flavor = "multi_thread")]
async fn fragmented_large_revision() {
    let max = 1_200_000usize;
    let got = on_both("fragment", RETCD, &["--max-request-bytes", "1200000"], move |ch| async move {
        let n = 10;
        let value = |round: u8, i: usize| vec![b'a' + round + i as u8; 100 * 1024];
        for i in 0..n {
            put_bytes(&ch, format!("big/{i}").as_bytes(), value(0, i)).await;
        }
        let base = 1 + n as i64;
        let (mut ws, _) =
            Ws::open_with(&ch, WatchCreateRequest { fragment: true, prev_kv: true, ..wc_prefix("big/") }).await;
        assert_eq!(ws.create(WatchCreateRequest { prev_kv: true, ..wc_prefix("big/") }).await.watch_id, 1);
        // One txn overwriting every key: ~1 MB request, ~2 MB of events with prev_kv.
        let ops = (0..n).map(|i| op_put(&format!("big/{i}"), value(1, i))).collect();
        assert_eq!(txn(&ch, ops).await, base + 1);

        let got = by_watch(
            ws.collect(50, |rs| {
                rs.iter().any(|r| r.watch_id == 1) && rs.iter().any(|r| r.watch_id == 0 && !r.fragment)
            })
            .await,
        );
        ws.quiet(Duration::from_millis(300)).await;
        let frags = &got[&0];
        assert!(frags.len() >= 2, "expected several fragments, got {}", frags.len());
        for (i, r) in frags.iter().enumerate() {
            assert_eq!(r.fragment, i + 1 < frags.len(), "fragment flag of response {i}");
            assert_eq!(rev(r), base + 1);
            assert!(!r.events.is_empty());
            use prost::Message as _;
            // etcd's limit for a fragment: --max-request-bytes + 512 KiB
            // (its gRPC overhead allowance), exclusive, unless one event.
            assert!(
                r.encoded_len() < max + 512 * 1024 || r.events.len() == 1,
                "fragment {i}: {} bytes",
                r.encoded_len()
            );
        }
        let whole = &got[&1];
        assert_eq!(whole.len(), 1, "without fragment: one response");
        assert!(!whole[0].fragment);
        let reassembled = events_of(frags);
        assert_eq!(reassembled, whole[0].events);
        assert_eq!(reassembled.len(), n);
        for (i, e) in reassembled.iter().enumerate() {
            let kv = e.kv.as_ref().unwrap();
            assert_eq!(
                (kv.key.clone(), kv.mod_revision, kv.value.clone()),
                (format!("big/{i}").into_bytes(), base + 1, value(1, i))
            );
            assert_eq!(e.prev_kv.as_ref().unwrap().value, value(0, i));
        }
        // The transcript: fragment flags and event keys (not the bulk values).
        frags.iter().map(|r| (r.fragment, r.events.len())).collect::<Vec<_>>()
    })
    .await;
    eprintln!("fragments (fragment flag, events): {got:?}");
}

/// A watch from a compacted revision: created, then canceled with
/// compact_revision; a watch from exactly the compaction revision replays
/// from there.
#[tokio::test(flavor = "multi_thread")]
async fn compacted_start_revision() {
    let got = on_both("compacted", RETCD, &[], |ch| async move {
        for i in 0..5 {
            assert_eq!(put(&ch, "c/a", &format!("v{i}")).await, 2 + i);
        }
        kv(&ch).compact(CompactionRequest { revision: 5, physical: true }).await.unwrap();
        let (mut ws, created) = Ws::open_with(&ch, WatchCreateRequest { start_revision: 3, ..wc_prefix("c/") }).await;
        assert_eq!((created.watch_id, created.canceled, rev(&created)), (0, false, 6), "{created:?}");
        let r = ws.next().await;
        assert_eq!((r.watch_id, r.canceled, r.compact_revision, r.events.len()), (0, true, 5, 0), "{r:?}");
        let canceled = r;

        // From the compaction revision itself: it is still readable.
        let at = ws.create(WatchCreateRequest { start_revision: 5, ..wc_prefix("c/") }).await;
        assert_eq!((at.watch_id, at.canceled), (1, false));
        let hist = ws.next().await;
        assert_eq!(hist.watch_id, 1);
        assert_eq!(
            summary(&hist.events),
            vec![("PUT", "c/a".into(), 5, "v3".into()), ("PUT", "c/a".into(), 6, "v4".into())]
        );

        // The compacted watch is gone; the other continues.
        assert_eq!(put(&ch, "c/a", "v5").await, 7);
        let r = ws.next().await;
        assert_eq!((r.watch_id, summary(&r.events)), (1, vec![("PUT", "c/a".into(), 7, "v5".into())]));
        ws.quiet(Duration::from_millis(300)).await;

        // A deletion at the compaction revision is compacted away with its key.
        assert_eq!(put(&ch, "c/b", "1").await, 8);
        assert_eq!(del(&ch, "c/b", "").await, 9);
        for want in [8, 9] {
            let r = ws.next().await;
            assert_eq!((r.watch_id, rev(&r)), (1, want));
        }
        kv(&ch).compact(CompactionRequest { revision: 9, physical: true }).await.unwrap();
        let at9 = ws.create(WatchCreateRequest { start_revision: 9, ..wc_prefix("c/") }).await;
        assert_eq!((at9.watch_id, at9.canceled), (2, false));
        assert_eq!(put(&ch, "c/a", "v6").await, 10);
        let tail = by_watch(ws.collect(10, |rs| rs.len() == 2).await);
        assert_eq!(summary(&tail[&2][0].events), vec![("PUT", "c/a".into(), 10, "v6".into())], "{tail:?}");
        ws.quiet(Duration::from_millis(300)).await;
        let mut c = norm(canceled);
        // etcd 3.4 leaves the header revision of this response 0 (retcd: the
        // current revision); not compared.
        eprintln!("compacted cancel: header revision {}", rev(&c));
        c.header.as_mut().unwrap().revision = 0;
        (norm(created), c, norm(hist), tail)
    })
    .await;
    drop(got);
}

/// The events of one revision (a txn of many puts and a delete) always come
/// in one response, live and when replayed from history, where many such
/// revisions are read in windows.
#[tokio::test(flavor = "multi_thread")]
async fn txn_events_never_split() {
    on_both("txn not split", RETCD, &[], |ch| async move {
        let (mut ws, _) = Ws::open_with(&ch, wc_prefix("t/")).await;
        assert_eq!(put(&ch, "t/gone", "x").await, 2);
        let mut ops: Vec<RequestOp> = (0..100).map(|i| op_put(&format!("t/{i:03}"), vec![b'v'; 1024])).collect();
        ops.push(op_del("t/gone"));
        assert_eq!(txn(&ch, ops).await, 3);
        let r1 = ws.next().await;
        assert_eq!(r1.events.len(), 1);
        let r = ws.next().await;
        assert_eq!(r.events.len(), 101, "one response for the whole txn");
        assert!(r.events.iter().all(|e| e.kv.as_ref().unwrap().mod_revision == 3));
        ws.quiet(Duration::from_millis(200)).await;

        // Many small txns, replayed from history in one go.
        let txns = 700;
        let writers = 8;
        let mut tasks = Vec::new();
        for w in 0..writers {
            let ch = ch.clone();
            tasks.push(tokio::spawn(async move {
                for i in (w..txns).step_by(writers) {
                    let ops = (0..3).map(|j| op_put(&format!("t/x/{i:04}/{j}"), b"v".to_vec())).collect();
                    txn(&ch, ops).await;
                }
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(120), t).await.unwrap().unwrap();
        }
        let last = 3 + txns as i64;
        let (mut hs, _) = Ws::open_with(&ch, WatchCreateRequest { start_revision: 4, ..wc_prefix("t/x/") }).await;
        let resps = hs.collect(txns + 10, |rs| count_events(rs) == 3 * txns).await;
        hs.quiet(Duration::from_millis(200)).await;
        let mut seen = BTreeSet::new();
        let mut prev = 0;
        for r in &resps {
            let mut per_rev: BTreeMap<i64, usize> = BTreeMap::new();
            for e in &r.events {
                let rv = e.kv.as_ref().unwrap().mod_revision;
                assert!(rv >= prev, "out of order");
                prev = rv;
                *per_rev.entry(rv).or_default() += 1;
            }
            for (rv, n) in per_rev {
                assert_eq!(n, 3, "revision {rv} split across responses");
                assert!(seen.insert(rv), "revision {rv} sent twice");
            }
        }
        assert_eq!(seen, (4..=last).collect::<BTreeSet<_>>());
        (norm(r1), norm(r))
    })
    .await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Writes `total` keys `<prefix><i>` with distinct ~1 KiB values from 32
/// concurrent writers; each put is one revision.
async fn write_keys(ch: &Channel, prefix: &str, total: usize) -> Duration {
    let started = Instant::now();
    let writers = 32;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (ch, prefix) = (ch.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            for i in (w..total).step_by(writers) {
                let value = format!("{i:08}").into_bytes().into_iter().cycle().take(1024).collect();
                put_bytes(&ch, format!("{prefix}{i:05}").as_bytes(), value).await;
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(240), t).await.expect("writes timed out").unwrap();
    }
    started.elapsed()
}

/// Samples a process's RSS every 50 ms until dropped; `peak()` in KiB.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssSampler { stop, peak, thread: Some(thread) }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Consumers that stop reading while 20,000 1 KiB keys are written: the
/// server's memory stays bounded (compared with the same writes and no
/// watcher at all, four stalled watchers may not cost what buffering their
/// 4 x 20 MiB of events would), and once they read again each gets every
/// revision exactly once, in order.
#[tokio::test(flavor = "multi_thread")]
async fn slow_consumer_gets_everything_with_bounded_memory() {
    let total = 20_000usize;
    let stalled = 4;

    // Control: the store's own growth for these writes.
    let control = start(Kind::Retcd, &[]);
    let pid = control.child.as_ref().unwrap().id();
    let ch = control.connect().await;
    let base0 = rss_kib(pid);
    let sampler = RssSampler::start(pid);
    write_keys(&ch, "slow/", total).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let growth0 = sampler.peak().saturating_sub(base0);
    drop(sampler);
    drop(control);

    let server = start(Kind::Retcd, &[]);
    let pid = server.child.as_ref().unwrap().id();
    let ch = server.connect().await;
    let mut streams = Vec::new();
    for _ in 0..stalled {
        // Each on its own connection, none read while the keys are written.
        let conn = server.connect().await;
        streams.push(Ws::open_with(&conn, wc_prefix("slow/")).await);
    }
    let start_rev = rev(&streams[0].1);
    let base1 = rss_kib(pid);
    let sampler = RssSampler::start(pid);
    let write_time = write_keys(&ch, "slow/", total).await;
    // Stay stalled a little longer: the backlog is the server's to hold.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled_peak = sampler.peak();
    let growth1 = stalled_peak.saturating_sub(base1);

    let end_rev = start_rev + total as i64;
    let read = Instant::now();
    for (n, (ws, _)) in streams.iter_mut().enumerate() {
        let mut next = start_rev + 1;
        let mut keys = BTreeSet::new();
        while next <= end_rev {
            assert!(read.elapsed() < Duration::from_secs(180), "stream {n}: reading back stalled at revision {next}");
            let r = ws.next().await;
            assert_eq!(r.watch_id, 0);
            assert!(!r.canceled && !r.events.is_empty(), "{r:?}");
            for e in &r.events {
                let kv = e.kv.as_ref().unwrap();
                assert_eq!(kv.mod_revision, next, "stream {n}: every revision exactly once, in order");
                assert_eq!(kv.value.len(), 1024);
                assert!(keys.insert(kv.key.clone()), "stream {n}: key sent twice");
                next += 1;
            }
        }
        assert_eq!(keys.len(), total);
    }
    for (ws, _) in streams.iter_mut() {
        ws.quiet(Duration::from_millis(100)).await;
    }
    let overall_peak = sampler.peak();
    drop(sampler);
    eprintln!(
        "slow consumers: wrote {total} keys in {write_time:?}, read back {stalled} streams in {:?}; \
         RSS growth without watchers {} MiB, with {stalled} stalled {} MiB (peak {} MiB, overall {} MiB)",
        read.elapsed(),
        growth0 / 1024,
        growth1 / 1024,
        stalled_peak / 1024,
        overall_peak / 1024
    );
    assert!(stalled_peak < 300 * 1024, "server RSS reached {} MiB while consumers were stalled", stalled_peak / 1024);
    assert!(overall_peak < 300 * 1024, "server RSS reached {} MiB", overall_peak / 1024);
    assert!(
        growth1 < growth0 + 40 * 1024,
        "stalled watchers cost {} MiB over the store's own {} MiB",
        (growth1 - growth0.min(growth1)) / 1024,
        growth0 / 1024
    );
    // Still healthy: a new watch works.
    let (mut again, _) = Ws::open_with(&ch, wc("after")).await;
    assert_eq!(put(&ch, "after", "1").await, end_rev + 1);
    assert_eq!(rev(&again.next().await), end_rev + 1);
}

/// Clients that vanish mid-stream (a whole connection dropped, one stream of
/// a shared connection dropped) do not disturb the other streams, which
/// receive every event exactly once; the server keeps serving watches.
#[tokio::test(flavor = "multi_thread")]
async fn client_disconnect_mid_stream_does_not_break_others() {
    let server = start(Kind::Retcd, &[]);
    let ch = server.connect().await;
    let lost_conn = server.connect().await;
    let shared = server.connect().await;

    let (mut keeper, created) = Ws::open_with(&shared, wc_prefix("d/")).await;
    let start_rev = rev(&created);
    let (mut doomed_conn, _) = Ws::open_with(&lost_conn, wc_prefix("d/")).await;
    let (mut doomed_stream, _) = Ws::open_with(&shared, wc_prefix("d/")).await;
    let (mut other, _) = Ws::open_with(&ch, wc_prefix("d/")).await;

    let total = 2000usize;
    let writer = {
        let ch = ch.clone();
        tokio::spawn(async move {
            for i in 0..total {
                put(&ch, &format!("d/{i:05}"), "v").await;
            }
        })
    };
    // Both doomed streams are mid-stream when they go away.
    for _ in 0..3 {
        assert!(!doomed_conn.next().await.events.is_empty());
        assert!(!doomed_stream.next().await.events.is_empty());
    }
    drop(doomed_stream);
    drop(doomed_conn);
    drop(lost_conn);

    let end_rev = start_rev + total as i64;
    for ws in [&mut keeper, &mut other] {
        let mut next = start_rev + 1;
        while next <= end_rev {
            let r = ws.next().await;
            for e in &r.events {
                assert_eq!(e.kv.as_ref().unwrap().mod_revision, next);
                next += 1;
            }
        }
    }
    tokio::time::timeout(Duration::from_secs(60), writer).await.unwrap().unwrap();
    keeper.quiet(Duration::from_millis(200)).await;

    // New streams on new and surviving connections work.
    let fresh = server.connect().await;
    let (mut a, ca) = Ws::open_with(&fresh, wc("d/last")).await;
    let (mut b, cb) = Ws::open_with(&shared, wc("d/last")).await;
    assert_eq!((ca.watch_id, cb.watch_id), (0, 0));
    let r = put(&ch, "d/last", "1").await;
    assert_eq!(r, end_rev + 1);
    for ws in [&mut a, &mut b, &mut keeper, &mut other] {
        let got = ws.next().await;
        assert_eq!(summary(&got.events), vec![("PUT", "d/last".into(), end_rev + 1, "1".into())]);
    }
}

/// A client that half-closes its side after creating its watches (as
/// one-shot gRPC tools do) keeps receiving events, as with etcd.
#[tokio::test(flavor = "multi_thread")]
async fn half_closed_request_stream_keeps_delivering() {
    on_both("half close", RETCD, &[], |ch| async move {
        let (mut ws, created) = Ws::open_with(&ch, wc_prefix("hc/")).await;
        assert_eq!(created.watch_id, 0);
        // Dropping the only sender ends the request stream (END_STREAM).
        ws.tx = mpsc::channel(1).0;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut t = Vec::new();
        for i in 0..3 {
            assert_eq!(put(&ch, &format!("hc/{i}"), "v").await, 2 + i);
            let r = ws.next().await;
            assert_eq!(summary(&r.events), vec![("PUT", format!("hc/{i}"), 2 + i, "v".into())]);
            t.push(norm(r));
        }
        t
    })
    .await;
}

/// A start revision in the future: nothing before it is sent.
#[tokio::test(flavor = "multi_thread")]
async fn future_start_revision() {
    on_both("future start", RETCD, &[], |ch| async move {
        let (mut ws, created) = Ws::open_with(&ch, WatchCreateRequest { start_revision: 4, ..wc("fs") }).await;
        assert_eq!(rev(&created), 1);
        for i in 0..4 {
            assert_eq!(put(&ch, "fs", &format!("v{i}")).await, 2 + i);
        }
        let r1 = ws.next().await;
        let r2 = ws.next().await;
        assert_eq!(summary(&r1.events), vec![("PUT", "fs".into(), 4, "v2".into())]);
        assert_eq!(summary(&r2.events), vec![("PUT", "fs".into(), 5, "v3".into())]);
        ws.quiet(Duration::from_millis(300)).await;
        (norm(r1), norm(r2))
    })
    .await;
}
