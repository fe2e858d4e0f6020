//! `watch` and `watch-get`.
//!
//! `watch` opens `--streams` Watch streams with `--watch-per-stream` watchers
//! each (over `--watched-key-total` keys), timing each create until its
//! `created` response; then `--clients` clients put `--put-total` values to
//! the watched keys and every watcher times each event from the moment its
//! put was sent: the put's value carries the put's number, whose send time
//! sits in a shared table, so an event's latency costs one atomic load.
//! That is the latency a watching client sees (commit plus delivery); the
//! puts' own latencies are reported beside it.
//!
//! `watch-get` writes `--events` revisions of one key, opens `--watchers`
//! watchers from the first of them (unsynced: the server must replay
//! history) and meanwhile times serializable gets on another connection,
//! as etcd's tool does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::watch_client::WatchClient;
use retcd_api::etcdserverpb::watch_request::RequestUnion;
use retcd_api::etcdserverpb::{PutRequest, RangeRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use tokio::sync::{mpsc, watch as signal};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::Status;

use super::{Ctx, Outcome};
use crate::driver::{self, Op, Plan};
use crate::keys::{KeySpace, Rng};
use crate::progress::Progress;
use crate::report::{Samples, Summary};

/// Give up on missing events after this long without a new one.
const STALL_LIMIT: Duration = Duration::from_secs(30);

pub struct WatchArgs {
    pub streams: u64,
    pub watch_per_stream: u64,
    pub watched_key_total: u64,
    pub put_total: Option<u64>,
    pub put_rate: Option<u64>,
}

fn create_request(key: Vec<u8>, start_revision: i64) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key,
            start_revision,
            ..Default::default()
        })),
    }
}

/// Opens a Watch stream whose first request is already queued (a server may
/// send response headers only with its first message).
async fn open_stream(
    client: &mut WatchClient<Channel>,
    first: WatchRequest,
    queue: usize,
) -> Result<(mpsc::Sender<WatchRequest>, Streaming<WatchResponse>), String> {
    let (tx, rx) = mpsc::channel(queue.max(1));
    tx.send(first).await.map_err(|_| "watch request queue closed".to_string())?;
    let inbound = client.watch(ReceiverStream::new(rx)).await.map_err(|e| format!("watch stream: {e}"))?.into_inner();
    Ok((tx, inbound))
}

/// Sets `stop` once `counter` has not moved for [`STALL_LIMIT`].
fn stall_guard(counter: Arc<AtomicU64>, stop: signal::Sender<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = (counter.load(Ordering::Relaxed), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = counter.load(Ordering::Relaxed);
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() >= STALL_LIMIT {
                let _ = stop.send(true);
                return;
            }
        }
    })
}

/// What one stream of `watch` reports when its watchers are all created.
type Created = Result<Samples, String>;

struct StreamPlan {
    keys: Vec<Vec<u8>>,
    /// Events this stream's watchers will receive in all.
    expected: u64,
    starts: Arc<Vec<AtomicU64>>,
    base: Instant,
    created: mpsc::Sender<Created>,
    created_count: Arc<AtomicU64>,
    events_count: Arc<AtomicU64>,
    stop: signal::Receiver<bool>,
}

/// One `watch` stream: creates its watchers one by one (timing each), then
/// times every event until it has them all or is told to stop.
async fn watch_stream(mut client: WatchClient<Channel>, mut p: StreamPlan) -> Samples {
    let mut events = Samples::with_capacity(p.expected as usize);
    let created = match create_watchers(&mut client, &p).await {
        Ok((creation, tx, inbound)) => {
            let _ = p.created.send(Ok(creation)).await;
            Some((tx, inbound))
        }
        Err(e) => {
            let _ = p.created.send(Err(e)).await;
            None
        }
    };
    // Keep the request side open until the end: closing it ends the stream.
    let Some((_tx, mut inbound)) = created else { return events };
    let mut got = 0u64;
    while got < p.expected {
        let resp = tokio::select! {
            r = inbound.message() => r,
            _ = p.stop.changed() => break,
        };
        let resp = match resp {
            Ok(Some(r)) => r,
            Ok(None) => {
                events.error_text("watch stream ended", 1);
                break;
            }
            Err(e) => {
                events.error(&e);
                break;
            }
        };
        if resp.canceled {
            events.error_text(&format!("watch canceled: {}", resp.cancel_reason), 1);
            break;
        }
        let now = p.base.elapsed().as_nanos() as u64;
        for ev in &resp.events {
            let sent = ev.kv.as_ref().and_then(|kv| put_number(&kv.value)).and_then(|j| p.starts.get(j as usize));
            match sent {
                Some(sent) => events.record_ns(now.saturating_sub(sent.load(Ordering::Acquire))),
                None => events.error_text("event of an unknown put", 1),
            }
        }
        got += resp.events.len() as u64;
        p.events_count.fetch_add(resp.events.len() as u64, Ordering::Relaxed);
    }
    if got < p.expected {
        events.error_text("event not received", p.expected - got);
    }
    events
}

async fn create_watchers(
    client: &mut WatchClient<Channel>,
    p: &StreamPlan,
) -> Result<(Samples, mpsc::Sender<WatchRequest>, Streaming<WatchResponse>), String> {
    let mut creation = Samples::with_capacity(p.keys.len());
    let mut started = Instant::now();
    let (tx, mut inbound) = open_stream(client, create_request(p.keys[0].clone(), 0), 4).await?;
    for (w, key) in p.keys.iter().enumerate() {
        if w > 0 {
            started = Instant::now();
            tx.send(create_request(key.clone(), 0)).await.map_err(|_| "watch request queue closed".to_string())?;
        }
        loop {
            let resp = inbound.message().await.map_err(|e| format!("watch create: {e}"))?;
            let resp = resp.ok_or("watch stream ended during creation")?;
            if resp.canceled {
                return Err(format!("watch create canceled: {}", resp.cancel_reason));
            }
            if resp.created {
                creation.record(started.elapsed());
                break;
            }
        }
        p.created_count.fetch_add(1, Ordering::Relaxed);
    }
    Ok((creation, tx, inbound))
}

/// Put number `j` travels as the first 8 bytes (little endian) of the value.
fn put_value(j: u64, len: usize) -> Vec<u8> {
    let mut v = j.to_le_bytes().to_vec();
    v.resize(len.max(8), 0);
    v
}

fn put_number(value: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(value.get(..8)?.try_into().ok()?))
}

struct WatchPutOp {
    kv: KvClient<Channel>,
    watched: Arc<Vec<Vec<u8>>>,
    starts: Arc<Vec<AtomicU64>>,
    base: Instant,
    val_size: usize,
}

impl Op for WatchPutOp {
    async fn call(&mut self, j: u64) -> (usize, Result<(), Status>) {
        let key = self.watched[(j % self.watched.len() as u64) as usize].clone();
        let req = PutRequest { key, value: put_value(j, self.val_size), ..Default::default() };
        if let Some(at) = self.starts.get(j as usize) {
            at.store(self.base.elapsed().as_nanos() as u64, Ordering::Release);
        }
        (0, self.kv.put(req).await.map(drop))
    }
}

/// How many puts hit each distinct watched key (indexes can share a key).
fn puts_per_key(watched: &[Vec<u8>], put_total: u64) -> HashMap<Vec<u8>, u64> {
    let n = watched.len() as u64;
    let mut per_key: HashMap<Vec<u8>, u64> = HashMap::new();
    for (k, key) in watched.iter().enumerate() {
        let hits = put_total / n + u64::from((k as u64) < put_total % n);
        *per_key.entry(key.clone()).or_default() += hits;
    }
    per_key
}

pub async fn watch(ctx: &Ctx, a: WatchArgs) -> Result<Outcome, String> {
    let keys = KeySpace::new(ctx.g.key_space_size, ctx.key_size(32));
    let mut rng = Rng::new(0);
    let watched: Vec<Vec<u8>> = (0..a.watched_key_total)
        .map(|i| keys.key(if ctx.g.sequential_keys { i } else { rng.below(keys.size()) }))
        .collect();
    let watched = Arc::new(watched);
    let put_total = a.put_total.or(ctx.g.total).unwrap_or(1000);
    let put_rate = a.put_rate.unwrap_or(ctx.g.rate);
    let per_key = puts_per_key(&watched, put_total);

    let base = Instant::now();
    let starts: Arc<Vec<AtomicU64>> = Arc::new((0..put_total).map(|_| AtomicU64::new(0)).collect());
    let (created_tx, mut created_rx) = mpsc::channel::<Created>(a.streams as usize);
    let (stop_tx, stop_rx) = signal::channel(false);
    let created_count = Arc::new(AtomicU64::new(0));
    let events_count = Arc::new(AtomicU64::new(0));

    // Phase 1: create the watchers.
    let nwatchers = a.streams * a.watch_per_stream;
    let progress = Progress::with_counter(nwatchers, created_count.clone());
    let creation_start = Instant::now();
    let mut expected_events = 0;
    let mut streams = Vec::with_capacity(a.streams as usize);
    for s in 0..a.streams {
        let stream_keys: Vec<Vec<u8>> = (0..a.watch_per_stream)
            .map(|w| watched[((s * a.watch_per_stream + w) % a.watched_key_total) as usize].clone())
            .collect();
        let expected: u64 = stream_keys.iter().map(|k| per_key.get(k).copied().unwrap_or(0)).sum();
        expected_events += expected;
        let plan = StreamPlan {
            keys: stream_keys,
            expected,
            starts: starts.clone(),
            base,
            created: created_tx.clone(),
            created_count: created_count.clone(),
            events_count: events_count.clone(),
            stop: stop_rx.clone(),
        };
        let client = WatchClient::new(ctx.channel(s as usize % ctx.clients()));
        streams.push(tokio::spawn(watch_stream(client, plan)));
    }
    drop(created_tx);
    let mut creation = Samples::with_capacity(nwatchers as usize);
    let mut failure = None;
    for _ in 0..a.streams {
        match created_rx.recv().await {
            Some(Ok(s)) => creation.merge(s),
            Some(Err(e)) => failure = Some(e),
            None => failure = Some("a watch stream task failed".to_string()),
        }
    }
    let creation = Summary::new("watch-create", creation, creation_start.elapsed());
    progress.finish();
    if let Some(e) = failure {
        let _ = stop_tx.send(true);
        return Err(e);
    }
    let mut text = format!("Watch creation summary:\n{}", creation.text(ctx.g.precise));
    ctx.say(&text);

    // Phase 2: put, and receive every event.
    let progress = Progress::with_counter(expected_events, events_count.clone());
    let events_start = Instant::now();
    let ops: Vec<WatchPutOp> = (0..ctx.clients())
        .map(|i| WatchPutOp {
            kv: KvClient::new(ctx.channel(i)),
            watched: watched.clone(),
            starts: starts.clone(),
            base,
            val_size: ctx.val_size(8),
        })
        .collect();
    let plan = Plan { total: put_total, reports: 1, limiter: ctx.limiter(put_rate), done: Arc::new(AtomicU64::new(0)) };
    let (mut put_samples, put_elapsed) = driver::run(ops, plan).await;
    let guard = stall_guard(events_count.clone(), stop_tx);
    let mut events = Samples::with_capacity(expected_events as usize);
    for s in streams {
        match s.await {
            Ok(samples) => events.merge(samples),
            Err(e) => events.error_text(&format!("watch stream task failed: {e}"), 1),
        }
    }
    guard.abort();
    progress.finish();
    let events = Summary::new("watch-events", events, events_start.elapsed());
    let puts = Summary::new("watch-put", put_samples.pop().unwrap_or_default(), put_elapsed);
    text.clear();
    text.push_str(&format!("Put summary:\n{}\n", puts.text(ctx.g.precise)));
    text.push_str(&format!("Watch events received summary:\n{}", events.text(ctx.g.precise)));
    Ok(Outcome { text, summaries: vec![events, creation, puts] })
}

/// One `watch-get` stream: `watchers` watchers from revision `rev`, all
/// created at once; counts events until `expected` or told to stop.
async fn unsynced_stream(
    mut client: WatchClient<Channel>,
    watchers: u64,
    rev: i64,
    expected: u64,
    counter: Arc<AtomicU64>,
    mut stop: signal::Receiver<bool>,
) -> Result<u64, String> {
    let (tx, mut inbound) =
        open_stream(&mut client, create_request(b"watchkey".to_vec(), rev), watchers as usize).await?;
    for _ in 1..watchers {
        tx.send(create_request(b"watchkey".to_vec(), rev)).await.map_err(|_| "watch request queue closed")?;
    }
    let mut got = 0;
    while got < expected {
        let resp = tokio::select! {
            r = inbound.message() => r,
            _ = stop.changed() => break,
        };
        match resp {
            Ok(Some(r)) if r.canceled => return Err(format!("watch canceled: {}", r.cancel_reason)),
            Ok(Some(r)) => {
                got += r.events.len() as u64;
                counter.fetch_add(r.events.len() as u64, Ordering::Relaxed);
            }
            Ok(None) => return Err("watch stream ended".into()),
            Err(e) => return Err(format!("watch stream: {e}")),
        }
    }
    Ok(got)
}

pub async fn watch_get(ctx: &Ctx, watchers: u64, streams: u64, events: u64) -> Result<Outcome, String> {
    let mut kv = KvClient::new(ctx.channel(0));
    let mut rev = 0;
    for i in 0..events {
        let req = PutRequest { key: b"watchkey".to_vec(), value: i.to_string().into_bytes(), ..Default::default() };
        let resp = kv.put(req).await.map_err(|e| format!("put watchkey: {e}"))?.into_inner();
        if i == 0 {
            rev = resp.header.map(|h| h.revision).unwrap_or(0);
        }
    }
    // The gets run on a connection of their own, as in etcd's tool.
    let get_channel = crate::conn::connect_one(&ctx.g.endpoints[0], ctx.dial_timeout).await?;

    let total_events = watchers * events;
    let progress = Progress::start(total_events);
    let (stop_tx, stop_rx) = signal::channel(false);
    let guard = stall_guard(progress.counter(), stop_tx);
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let getter = {
        let done = done.clone();
        let mut kv = KvClient::new(get_channel);
        tokio::spawn(async move {
            let mut samples = Samples::with_capacity(1 << 16);
            let req = RangeRequest { key: b"abc".to_vec(), serializable: true, ..Default::default() };
            while !done.load(Ordering::Relaxed) {
                let st = Instant::now();
                let r = kv.range(req.clone()).await;
                if done.load(Ordering::Relaxed) {
                    break;
                }
                match r {
                    Ok(_) => samples.record(st.elapsed()),
                    Err(e) => samples.error(&e),
                }
            }
            samples
        })
    };
    let mut tasks = Vec::with_capacity(streams as usize);
    for s in 0..streams {
        let n = watchers / streams + u64::from(s < watchers % streams);
        if n == 0 {
            continue;
        }
        let client = WatchClient::new(ctx.channel(s as usize % ctx.clients()));
        tasks.push(tokio::spawn(unsynced_stream(client, n, rev, n * events, progress.counter(), stop_rx.clone())));
    }
    let mut received = 0;
    let mut failure = None;
    for t in tasks {
        match t.await {
            Ok(Ok(n)) => received += n,
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(format!("watch stream task failed: {e}")),
        }
    }
    done.store(true, Ordering::Relaxed);
    guard.abort();
    let samples = getter.await.map_err(|e| format!("get task failed: {e}"))?;
    let elapsed = start.elapsed();
    progress.finish();
    if let Some(e) = failure {
        return Err(e);
    }
    if received < total_events {
        return Err(format!("only {received} of {total_events} watch events arrived (none for {STALL_LIMIT:?})"));
    }
    let gets = Summary::new("watch-get", samples, elapsed);
    Ok(Outcome { text: format!("Get during watch summary:\n{}", gets.text(ctx.g.precise)), summaries: vec![gets] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_numbers_round_trip() {
        assert_eq!(put_number(&put_value(12345, 32)), Some(12345));
        assert_eq!(put_value(1, 4).len(), 8);
        assert_eq!(put_number(b"short"), None);
    }

    #[test]
    fn events_per_key() {
        let keys = vec![b"a".to_vec(), b"b".to_vec(), b"a".to_vec()];
        let m = puts_per_key(&keys, 10);
        // indexes 0,1,2 get 4,3,3 puts; "a" is indexes 0 and 2.
        assert_eq!(m[&b"a".to_vec()], 7);
        assert_eq!(m[&b"b".to_vec()], 3);
    }
}
