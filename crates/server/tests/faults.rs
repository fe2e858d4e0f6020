//! The fault harness (issue 11): three real `retcd` members on loopback,
//! a [`ProxyMesh`] on every member-to-member connection, clients on every
//! member recording a [`History`], a nemesis injecting faults (two-way
//! partitions, one-way stalls, delays, kill -9 and restart, SIGSTOP and
//! SIGCONT, SIGTERM and restart), and at the end the checkers of
//! `retcd-faults` over what was recorded.
//!
//! `RETCD_FAULTS_SECS` sets how long faults are injected (default 25: the
//! CI run); `RETCD_FAULTS_SEED` replays a run's choices of faults and ops
//! (the seed is printed); `RETCD_FAULTS_BIN` runs another `retcd` binary
//! (a copy, for a soak run while the tree is rebuilt). The negative control shows the checker is not
//! vacuous: serializable reads on a partitioned member must fail it.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use retcd_api::etcdserverpb::request_op::Request as Op;
use retcd_api::etcdserverpb::watch_client::WatchClient;
use retcd_api::etcdserverpb::watch_request::RequestUnion;
use retcd_api::etcdserverpb::{
    HashKvRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};
use retcd_api::mvccpb;
use retcd_faults::history::{
    Event, EventKind, History, KeyValue, MemberHash, Nanos, Operation, Outcome, Request, Response, WatchRecord,
};
use retcd_faults::proxy::{Mode, ProxyMesh};
use retcd_faults::{checks, linearizability};
use retcd_testkit::Cluster;
use tonic::transport::{Channel, Endpoint};

const MEMBERS: usize = 3;
const CLIENTS: usize = 6;
const KEYS: usize = 8;
/// Every key the harness writes is under this prefix.
const PREFIX: &str = "/faults/";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Time since the run started, the clock of every recorded operation.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> Nanos {
        self.0.elapsed().as_nanos() as Nanos
    }
}

/// A running cluster whose peer traffic goes through `mesh`.
struct Harness {
    cluster: Cluster,
    mesh: Arc<ProxyMesh>,
    rt: tokio::runtime::Runtime,
    clock: Clock,
}

impl Harness {
    fn start() -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
        let binary = std::env::var("RETCD_FAULTS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_retcd").into());
        let mut cluster = Cluster::new(binary.as_ref(), MEMBERS, &[]);
        let targets: Vec<_> =
            cluster.members.iter().map(|m| ([127, 0, 0, 1], m.peer_port).into()).collect::<Vec<std::net::SocketAddr>>();
        let mesh = Arc::new(rt.block_on(ProxyMesh::start(&targets)).unwrap());
        for i in 0..MEMBERS {
            let routes: Vec<String> =
                (0..MEMBERS).filter(|&j| j != i).map(|j| format!("{}={}", targets[j], mesh.route(i, j))).collect();
            cluster.member_env[i] = vec![("RETCD_TEST_PEER_ROUTES".into(), routes.join(","))];
        }
        for i in 0..MEMBERS {
            cluster.spawn(i);
        }
        for i in 0..MEMBERS {
            cluster.wait_ready(i, Duration::from_secs(60));
        }
        Harness { cluster, mesh, rt, clock: Clock(Instant::now()) }
    }

    fn channel(&self, member: usize, timeout: Option<Duration>) -> Channel {
        let mut ep = Endpoint::from_shared(self.cluster.members[member].url()).unwrap();
        ep = ep.connect_timeout(Duration::from_secs(1));
        if let Some(t) = timeout {
            ep = ep.timeout(t);
        }
        let _guard = self.rt.enter();
        ep.connect_lazy()
    }

    /// Clears every fault and waits until all members serve requests again.
    fn recover(&mut self) {
        self.mesh.heal_all();
        for i in 0..MEMBERS {
            if let Some(pid) = self.cluster.members[i].pid() {
                signal(pid, "CONT");
            }
            if !self.cluster.members[i].is_running() {
                self.cluster.spawn(i);
            }
        }
        for i in 0..MEMBERS {
            self.cluster.wait_ready(i, Duration::from_secs(60));
        }
    }

    /// The revision every member has reached once writes stopped: a
    /// linearizable read's header revision, then each member's serializable
    /// reads until they show it (bounded).
    fn settled_revision(&self) -> i64 {
        self.rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut rev = None;
            while rev.is_none() {
                assert!(Instant::now() < deadline, "no linearizable read succeeded after the faults ended");
                let mut kv = KvClient::new(self.channel(0, Some(REQUEST_TIMEOUT)));
                match kv.range(RangeRequest { key: b"settle".to_vec(), ..Default::default() }).await {
                    Ok(r) => rev = Some(r.into_inner().header.unwrap().revision),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            let rev = rev.unwrap();
            for m in 0..MEMBERS {
                let mut kv = KvClient::new(self.channel(m, Some(REQUEST_TIMEOUT)));
                loop {
                    let req = RangeRequest { key: b"settle".to_vec(), serializable: true, ..Default::default() };
                    if let Ok(r) = kv.range(req).await {
                        if r.into_inner().header.unwrap().revision >= rev {
                            break;
                        }
                    }
                    assert!(Instant::now() < deadline, "member {m} did not catch up to revision {rev}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            rev
        })
    }

    /// Every member's HashKV at `rev`.
    fn hashes(&self, rev: i64) -> Vec<MemberHash> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            for member in 0..MEMBERS {
                let mut m = MaintenanceClient::new(self.channel(member, Some(REQUEST_TIMEOUT)));
                let r = m.hash_kv(HashKvRequest { revision: rev }).await.unwrap().into_inner();
                out.push(MemberHash {
                    member,
                    revision: r.header.unwrap().revision,
                    hash: r.hash,
                    compact_revision: r.compact_revision,
                });
            }
            out
        })
    }

    /// Every committed event up to `rev`, from a watch from revision 1 with
    /// prev_kv on member 0 of the healed cluster.
    fn committed(&self, rev: i64) -> Vec<Event> {
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = self.rt.spawn(watch_member(self.channel(0, None), 0, Arc::clone(&records), Arc::clone(&stop), rev));
        self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), task).await }).unwrap().unwrap();
        let records = records.lock();
        assert_eq!(records.len(), 1, "the final watch was interrupted");
        records[0].events.clone()
    }

    /// The whole history of a run, checked; panics with the violations.
    fn check(&self, history: &History) -> (linearizability::LinReport, Vec<checks::Violation>) {
        let lin = linearizability::check(history, linearizability::DEFAULT_BUDGET);
        let violations = checks::check_all(history);
        (lin, violations)
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

fn key(i: usize) -> String {
    format!("{PREFIX}k{i}")
}

fn to_kv(kv: &mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        value: String::from_utf8_lossy(&kv.value).into_owned(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
    }
}

fn to_event(ev: &mvccpb::Event) -> Event {
    let kind = if ev.r#type == mvccpb::event::EventType::Delete as i32 { EventKind::Delete } else { EventKind::Put };
    Event { kind, kv: to_kv(ev.kv.as_ref().unwrap()), prev_kv: ev.prev_kv.as_ref().map(to_kv) }
}

/// Runs one request and records it. Writes that fail may still have been
/// applied (a timeout, a lost connection, a leader change after the
/// proposal): they are Unknown. Reads that fail observed nothing.
async fn run_op(kv: &mut KvClient<Channel>, clock: Clock, client: usize, member: usize, request: Request) -> Operation {
    let invoke = clock.now();
    let result: Result<Response, tonic::Status> = match &request {
        Request::Get { key, serializable } => {
            let req = RangeRequest { key: key.clone().into_bytes(), serializable: *serializable, ..Default::default() };
            kv.range(req).await.map(|r| {
                let r = r.into_inner();
                Response::Get { kv: r.kvs.first().map(to_kv), header_revision: r.header.unwrap().revision }
            })
        }
        Request::Put { key, value } => {
            let req =
                PutRequest { key: key.clone().into_bytes(), value: value.clone().into_bytes(), ..Default::default() };
            kv.put(req).await.map(|r| Response::Put { header_revision: r.into_inner().header.unwrap().revision })
        }
        Request::PutMany { pairs } => {
            let success = pairs
                .iter()
                .map(|(k, v)| RequestOp {
                    request: Some(Op::RequestPut(PutRequest {
                        key: k.clone().into_bytes(),
                        value: v.clone().into_bytes(),
                        ..Default::default()
                    })),
                })
                .collect();
            kv.txn(TxnRequest { success, ..Default::default() })
                .await
                .map(|r| Response::Put { header_revision: r.into_inner().header.unwrap().revision })
        }
    };
    let complete = clock.now();
    let outcome = match result {
        Ok(resp) => Outcome::Ok(resp),
        Err(e) if request.is_write() => Outcome::Unknown(e.message().to_string()),
        Err(e) => Outcome::Failed(e.message().to_string()),
    };
    Operation { client, member, request, invoke, complete, outcome }
}

/// One client: random gets, puts and two-key txns on one member until
/// `stop`, each write's value unique in the run.
async fn client_loop(
    mut kv: KvClient<Channel>,
    clock: Clock,
    client: usize,
    member: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    ops: Arc<Mutex<Vec<Operation>>>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let value = format!("c{client}-{seq}");
        let a = rng.gen_range(0..KEYS);
        let request = match rng.gen_range(0..100) {
            0..50 => Request::Get { key: key(a), serializable: false },
            50..85 => Request::Put { key: key(a), value },
            _ => {
                let b = (a + rng.gen_range(1..KEYS)) % KEYS;
                Request::PutMany { pairs: vec![(key(a), format!("{value}a")), (key(b), format!("{value}b"))] }
            }
        };
        let op = run_op(&mut kv, clock, client, member, request).await;
        let failed = !matches!(op.outcome, Outcome::Ok(_));
        ops.lock().push(op);
        // Pace the clients (a history of tens of thousands of ops, not
        // millions, in a long run); back off a little after a failure.
        let pause = if failed { rng.gen_range(50..150) } else { rng.gen_range(5..25) };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Watches the prefix on one member from revision 1 with prev_kv until it
/// has seen revision `until` (or `stop`), resuming after the revision last
/// seen whenever the stream breaks; each stretch is its own record.
async fn watch_member(
    channel: Channel,
    member: usize,
    records: Arc<Mutex<Vec<WatchRecord>>>,
    stop: Arc<AtomicBool>,
    until: i64,
) {
    let mut next = 1;
    while next <= until && !stop.load(Ordering::Relaxed) {
        let mut record = WatchRecord { member, start_revision: next, prev_kv: true, events: Vec::new() };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let create = WatchCreateRequest {
            key: PREFIX.as_bytes().to_vec(),
            range_end: prefix_end(PREFIX),
            start_revision: next,
            prev_kv: true,
            ..Default::default()
        };
        tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.unwrap();
        let mut client = WatchClient::new(channel.clone());
        if let Ok(stream) = client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
            let mut stream = stream.into_inner();
            loop {
                let msg = tokio::select! {
                    m = stream.message() => m,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {
                        if stop.load(Ordering::Relaxed) { break } else { continue }
                    }
                };
                let Ok(Some(resp)) = msg else { break };
                if resp.canceled {
                    break;
                }
                for ev in &resp.events {
                    let ev = to_event(ev);
                    next = ev.kv.mod_revision + 1;
                    record.events.push(ev);
                }
                if next > until {
                    break;
                }
            }
        }
        drop(tx);
        if !record.events.is_empty() {
            records.lock().push(record);
        }
        if next <= until && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    end
}

/// The faults, each applied then cleared by the nemesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Isolate,
    Partition,
    OneWayStall,
    Delay,
    Kill9,
    Pause,
    Restart,
}

const FAULTS: [Fault; 7] =
    [Fault::Isolate, Fault::Partition, Fault::OneWayStall, Fault::Delay, Fault::Kill9, Fault::Pause, Fault::Restart];

/// Applies one fault to a random member for a random 0.5 to 3 s, then
/// clears it (restarting a killed or stopped member).
fn inject(h: &mut Harness, rng: &mut StdRng, fault: Fault) {
    let m = rng.gen_range(0..MEMBERS);
    let hold = Duration::from_millis(rng.gen_range(500..3000));
    match fault {
        Fault::Isolate => {
            h.mesh.isolate(m);
            std::thread::sleep(hold);
            h.mesh.heal_all();
        }
        Fault::Partition => {
            // Two members on one side, in either order of the pair.
            let other = (m + rng.gen_range(1..MEMBERS)) % MEMBERS;
            let rest: Vec<usize> = (0..MEMBERS).filter(|&i| i != m && i != other).collect();
            h.mesh.partition(&[&[m, other], &rest]);
            std::thread::sleep(hold);
            h.mesh.heal_all();
        }
        Fault::OneWayStall => {
            let to = (m + rng.gen_range(1..MEMBERS)) % MEMBERS;
            h.mesh.get(m, to).set_forward(Mode::Stall);
            h.mesh.get(to, m).set_backward(Mode::Stall);
            std::thread::sleep(hold);
            h.mesh.heal_all();
        }
        Fault::Delay => {
            h.mesh.delay_all(Duration::from_millis(rng.gen_range(10..120)));
            std::thread::sleep(hold);
            h.mesh.heal_all();
        }
        Fault::Kill9 => {
            h.cluster.members[m].kill9();
            std::thread::sleep(hold);
            h.cluster.spawn(m);
        }
        Fault::Pause => {
            if let Some(pid) = h.cluster.members[m].pid() {
                signal(pid, "STOP");
                std::thread::sleep(hold);
                signal(pid, "CONT");
            }
        }
        Fault::Restart => {
            if let Some(pid) = h.cluster.members[m].pid() {
                signal(pid, "TERM");
                let deadline = Instant::now() + Duration::from_secs(10);
                while h.cluster.members[m].is_running() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                h.cluster.members[m].kill9();
                h.cluster.spawn(m);
            }
        }
    }
}

fn seed() -> u64 {
    std::env::var("RETCD_FAULTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| rand::thread_rng().gen())
}

fn summarize(history: &History) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for op in &history.ops {
        let kind = match op.request {
            Request::Get { .. } => "get",
            Request::Put { .. } => "put",
            Request::PutMany { .. } => "txn",
        };
        let outcome = match op.outcome {
            Outcome::Ok(_) => "ok",
            Outcome::Failed(_) => "failed",
            Outcome::Unknown(_) => "unknown",
        };
        *counts.entry(format!("{kind} {outcome}")).or_default() += 1;
    }
    let watched: usize = history.watches.iter().map(|w| w.events.len()).sum();
    format!(
        "{} ops ({counts:?}); {} committed events; {} watch records with {watched} events; hashes {:?}",
        history.ops.len(),
        history.committed.len(),
        history.watches.len(),
        history.hashes.iter().map(|h| (h.member, h.revision, h.hash)).collect::<Vec<_>>()
    )
}

/// Gathers what the end of a run adds to the history: the committed events
/// and every member's hash at the settled revision.
fn finish(h: &mut Harness, mut history: History) -> History {
    h.recover();
    let rev = h.settled_revision();
    history.committed = h.committed(rev);
    history.hashes = h.hashes(rev);
    history
}

#[test]
fn histories_under_faults_are_linearizable_with_exact_revisions_and_watches() {
    let secs: u64 = std::env::var("RETCD_FAULTS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(25);
    let seed = seed();
    println!("RETCD_FAULTS_SEED={seed} RETCD_FAULTS_SECS={secs}");
    let mut h = Harness::start();
    let mut rng = StdRng::seed_from_u64(seed);

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let kv = KvClient::new(h.channel(c % MEMBERS, Some(REQUEST_TIMEOUT)));
            h.rt.spawn(client_loop(kv, h.clock, c, c % MEMBERS, rng.gen(), Arc::clone(&stop), Arc::clone(&ops)))
        })
        .collect();
    let records = Arc::new(Mutex::new(Vec::new()));
    let watch_stop = Arc::new(AtomicBool::new(false));
    let watchers: Vec<_> = (0..MEMBERS)
        .map(|m| {
            let w = watch_member(h.channel(m, None), m, Arc::clone(&records), Arc::clone(&watch_stop), i64::MAX);
            h.rt.spawn(w)
        })
        .collect();

    let mut faults: BTreeMap<Fault, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut round = 0;
    while Instant::now() < deadline {
        // Every kind once before any repeats, then at random.
        let fault = if round < FAULTS.len() { FAULTS[round] } else { FAULTS[rng.gen_range(0..FAULTS.len())] };
        round += 1;
        inject(&mut h, &mut rng, fault);
        *faults.entry(fault).or_default() += 1;
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1500)));
    }
    h.recover();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        h.rt.block_on(async { tokio::time::timeout(REQUEST_TIMEOUT * 3, c).await }).unwrap().unwrap();
    }
    let history = History { ops: std::mem::take(&mut *ops.lock()), ..Default::default() };
    let mut history = finish(&mut h, history);
    // The members' own watches have seen everything by now, or never will.
    let last = history.committed.last().map_or(1, |e| e.kv.mod_revision);
    let caught_up = |records: &[WatchRecord], m: usize| {
        records.iter().filter(|r| r.member == m).flat_map(|r| r.events.last()).any(|e| e.kv.mod_revision >= last)
    };
    let wait = Instant::now() + Duration::from_secs(30);
    while !(0..MEMBERS).all(|m| caught_up(&records.lock(), m)) && Instant::now() < wait {
        std::thread::sleep(Duration::from_millis(100));
    }
    watch_stop.store(true, Ordering::Relaxed);
    for w in watchers {
        h.rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), w).await }).unwrap().unwrap();
    }
    history.watches = std::mem::take(&mut *records.lock());

    println!("faults: {faults:?}");
    println!("{}", summarize(&history));
    let (lin, violations) = h.check(&history);
    println!(
        "linearizability: {} keys, {} search steps",
        lin.keys.len(),
        lin.keys.iter().map(|k| k.steps).sum::<u64>()
    );
    for m in 0..MEMBERS {
        assert!(caught_up(&history.watches, m), "member {m}'s watch never reached revision {last}");
    }
    let oks = history.ops.iter().filter(|o| matches!(o.outcome, Outcome::Ok(_))).count();
    assert!(oks > history.ops.len() / 4, "too few operations succeeded to prove anything: {oks}");
    assert!(lin.is_ok(), "not linearizable:\n{lin}");
    assert!(violations.is_empty(), "{} violations:\n{}", violations.len(), join(&violations));
}

fn join(v: &[checks::Violation]) -> String {
    v.iter().take(20).map(|v| format!("  {v}\n")).collect()
}

/// The negative control: a serializable read on a member cut off from the
/// others answers from its stale state, and the checkers must say so.
#[test]
fn the_checkers_catch_stale_serializable_reads_on_a_partitioned_member() {
    let mut h = Harness::start();
    let mut leader_side = KvClient::new(h.channel(0, Some(REQUEST_TIMEOUT)));
    let mut cut_off = KvClient::new(h.channel(2, Some(REQUEST_TIMEOUT)));
    let clock = h.clock;
    let ops = h.rt.block_on(async {
        let mut ops = Vec::new();
        let put = |v: &str| Request::Put { key: key(0), value: v.into() };
        let get = |serializable| Request::Get { key: key(0), serializable };
        ops.push(run_op(&mut leader_side, clock, 0, 0, put("v1")).await);
        // Member 2 has applied v1 before it is cut off.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let op = run_op(&mut cut_off, clock, 1, 2, get(true)).await;
            let seen = matches!(&op.outcome, Outcome::Ok(Response::Get { kv: Some(kv), .. }) if kv.value == "v1");
            ops.push(op);
            if seen {
                break;
            }
            assert!(Instant::now() < deadline, "member 2 never applied v1");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        h.mesh.isolate(2);
        // Members 0 and 1 keep a quorum; the write may need a new leader.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let op = run_op(&mut leader_side, clock, 0, 0, put("v2")).await;
            let ok = matches!(op.outcome, Outcome::Ok(_));
            ops.push(op);
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "no write succeeded on the majority side");
        }
        ops.push(run_op(&mut cut_off, clock, 1, 2, get(true)).await);
        ops
    });
    let stale =
        matches!(ops.last().unwrap().outcome, Outcome::Ok(Response::Get { kv: Some(ref kv), .. }) if kv.value == "v1");
    assert!(stale, "the cut-off member did not answer from stale state: {:?}", ops.last());
    let history = finish(&mut h, History { ops, ..Default::default() });
    let (lin, violations) = h.check(&history);
    assert!(!lin.is_ok(), "the stale read passed the linearizability check:\n{lin}");
    assert!(
        violations.iter().any(|v| matches!(v.rule, checks::Rule::RealTimeOrder)),
        "the stale read passed the real-time order rule: {}",
        join(&violations)
    );
    // Without the stale read the same history passes: the failure above is
    // the read's, not the run's.
    let mut clean = history.clone();
    clean.ops.pop();
    let (lin, violations) = h.check(&clean);
    assert!(lin.is_ok(), "{lin}");
    assert!(violations.is_empty(), "{}", join(&violations));
}
