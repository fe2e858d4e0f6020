//! Bad input: every malformed or impossible request gets etcd's exact error
//! (gRPC code and message text) and leaves the server up.
//!
//! The same sequence of requests runs against retcd and, when it is
//! installed, against real etcd 3.4 with the same client, so each expectation
//! below is checked against etcd itself as well as against retcd. A final
//! put/get proves the server survived; raw garbage on the client port (random
//! bytes, HTTP/1, a truncated HTTP/2 preface) must not take it down either.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::lease_client::LeaseClient;
use retcd_api::etcdserverpb::request_op::Request as Op;
use retcd_api::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use retcd_testkit::{require_tool, Kind, Server};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// etcd's default `--max-request-bytes`.
const MAX_REQUEST_BYTES: usize = 1536 * 1024;

const RETCD: &str = env!("CARGO_BIN_EXE_retcd");

#[derive(Clone)]
struct Clients {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
}

async fn clients(port: u16) -> Clients {
    let ch = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .connect()
        .await
        .unwrap();
    Clients {
        kv: KvClient::new(ch.clone()).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20),
        lease: LeaseClient::new(ch),
    }
}

/// Retries a put until the server has a leader and answers (bounded).
async fn wait_writable(c: &mut Clients) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let put = PutRequest { key: b"ready".to_vec(), value: b"1".to_vec(), ..Default::default() };
        match c.kv.put(put).await {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not writable yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("server never became writable: {e}"),
        }
    }
}

/// What one request produced, in a form comparable across servers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok(String),
    Err(Code, String),
}

fn outcome<T>(r: Result<tonic::Response<T>, Status>, summary: impl FnOnce(T) -> String) -> Outcome {
    match r {
        Ok(resp) => Outcome::Ok(summary(resp.into_inner())),
        Err(s) => Outcome::Err(s.code(), s.message().to_string()),
    }
}

fn etcd_err(e: EtcdError) -> Outcome {
    Outcome::Err(e.code(), e.message().to_string())
}

/// What a case must produce.
#[derive(Debug, Clone)]
enum Expect {
    /// Exactly this outcome, from retcd and from etcd.
    Exactly(Outcome),
    /// An error produced by the gRPC library rather than by etcd: etcd's
    /// (grpc-go) must have this code and message prefix; retcd's (tonic) may
    /// differ but must be an error.
    TransportError(Code, &'static str),
}

fn ok(s: &str) -> Expect {
    Expect::Exactly(Outcome::Ok(s.to_string()))
}

fn err(e: EtcdError) -> Expect {
    Expect::Exactly(etcd_err(e))
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

fn range_op(key: &str, revision: i64) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(RangeRequest { key: key.as_bytes().to_vec(), revision, ..Default::default() })),
    }
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec(), ..Default::default() }
}

fn range_summary(r: retcd_api::etcdserverpb::RangeResponse) -> String {
    let kvs: Vec<String> = r
        .kvs
        .iter()
        .map(|kv| format!("{}={}", String::from_utf8_lossy(&kv.key), String::from_utf8_lossy(&kv.value)))
        .collect();
    format!("kvs={kvs:?} count={} more={}", r.count, r.more)
}

/// A lease id that is never granted in these tests.
const UNKNOWN_LEASE: i64 = 0x7eed_dead_beef_0001;

/// Runs every case, in order, against one server; returns (name, outcome,
/// expectation) for each. Both servers see exactly the same requests, so
/// revisions agree between them.
async fn run_cases(c: &mut Clients) -> Vec<(String, Outcome, Expect)> {
    let mut out: Vec<(String, Outcome, Expect)> = Vec::new();
    macro_rules! case {
        ($name:expr, $expect:expr, $outcome:expr) => {{
            let o: Outcome = $outcome;
            out.push(($name.to_string(), o, $expect));
        }};
    }
    let put_ok = |_r| "ok".to_string();

    // --- Empty keys.
    case!("put empty key", err(EtcdError::EmptyKey), outcome(c.kv.put(put("", "v")).await, put_ok));
    case!(
        "range empty key",
        err(EtcdError::EmptyKey),
        outcome(c.kv.range(RangeRequest::default()).await, range_summary)
    );
    case!(
        "range empty key with range_end",
        err(EtcdError::EmptyKey),
        outcome(c.kv.range(RangeRequest { range_end: b"z".to_vec(), ..Default::default() }).await, range_summary)
    );
    case!(
        "delete empty key",
        err(EtcdError::EmptyKey),
        outcome(c.kv.delete_range(DeleteRangeRequest::default()).await, |r| format!("deleted={}", r.deleted))
    );
    let empty_compare = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Version as i32,
            key: Vec::new(),
            target_union: Some(TargetUnion::Version(0)),
            ..Default::default()
        }],
        success: vec![put_op("t", "v")],
        ..Default::default()
    };
    case!(
        "txn compare empty key",
        err(EtcdError::EmptyKey),
        outcome(c.kv.txn(empty_compare).await, |r| format!("succeeded={}", r.succeeded))
    );
    let empty_put_in_txn = TxnRequest { success: vec![put_op("", "v")], ..Default::default() };
    case!(
        "txn put empty key",
        err(EtcdError::EmptyKey),
        outcome(c.kv.txn(empty_put_in_txn).await, |r| format!("succeeded={}", r.succeeded))
    );

    // --- range_end before key: nothing, no error.
    for (k, v) in [("b", "1"), ("c", "2"), ("d", "3")] {
        c.kv.put(put(k, v)).await.unwrap();
    }
    case!(
        "range with range_end < key",
        ok("kvs=[] count=0 more=false"),
        outcome(
            c.kv.range(RangeRequest { key: b"d".to_vec(), range_end: b"b".to_vec(), ..Default::default() }).await,
            range_summary
        )
    );
    case!(
        "range with range_end == key",
        ok("kvs=[] count=0 more=false"),
        outcome(
            c.kv.range(RangeRequest { key: b"c".to_vec(), range_end: b"c".to_vec(), ..Default::default() }).await,
            range_summary
        )
    );
    case!(
        "delete with range_end < key",
        ok("deleted=0"),
        outcome(
            c.kv.delete_range(DeleteRangeRequest {
                key: b"d".to_vec(),
                range_end: b"b".to_vec(),
                ..Default::default()
            })
            .await,
            |r| format!("deleted={}", r.deleted)
        )
    );
    case!(
        "range b..e still sees everything",
        ok(r#"kvs=["b=1", "c=2", "d=3"] count=3 more=false"#),
        outcome(
            c.kv.range(RangeRequest { key: b"b".to_vec(), range_end: b"e".to_vec(), ..Default::default() }).await,
            range_summary
        )
    );

    // --- Leases.
    case!(
        "put with unknown lease",
        err(EtcdError::LeaseNotFound),
        outcome(c.kv.put(PutRequest { lease: UNKNOWN_LEASE, ..put("l", "v") }).await, put_ok)
    );
    let txn_unknown_lease = TxnRequest {
        success: vec![RequestOp {
            request: Some(Op::RequestPut(PutRequest { lease: UNKNOWN_LEASE, ..put("l", "v") })),
        }],
        ..Default::default()
    };
    case!(
        "txn put with unknown lease",
        err(EtcdError::LeaseNotFound),
        outcome(c.kv.txn(txn_unknown_lease).await, |r| format!("succeeded={}", r.succeeded))
    );
    case!(
        "lease revoke unknown",
        err(EtcdError::LeaseNotFound),
        outcome(c.lease.lease_revoke(LeaseRevokeRequest { id: UNKNOWN_LEASE }).await, |_| "ok".into())
    );
    // etcd 3.4 answers an unknown lease's time-to-live with TTL -1, not an
    // error (v3rpc/lease.go LeaseTimeToLive); etcdctl prints "already expired".
    case!(
        "lease timetolive unknown",
        ok("ttl=-1 granted_ttl=0 keys=[]"),
        outcome(
            c.lease.lease_time_to_live(LeaseTimeToLiveRequest { id: UNKNOWN_LEASE, keys: true }).await,
            |r| format!("ttl={} granted_ttl={} keys={:?}", r.ttl, r.granted_ttl, r.keys)
        )
    );
    case!(
        "lease grant ttl above 9e9",
        err(EtcdError::LeaseTTLTooLarge),
        outcome(c.lease.lease_grant(LeaseGrantRequest { ttl: 9_000_000_001, id: 0 }).await, |r| format!(
            "ttl={}",
            r.ttl
        ))
    );
    case!(
        "lease grant ttl i64::MAX",
        err(EtcdError::LeaseTTLTooLarge),
        outcome(c.lease.lease_grant(LeaseGrantRequest { ttl: i64::MAX, id: 0 }).await, |r| format!("ttl={}", r.ttl))
    );
    // A real lease: ignore_lease with a lease is refused before the lease matters.
    let granted = c.lease.lease_grant(LeaseGrantRequest { ttl: 100, id: 0 }).await.unwrap().into_inner();
    case!(
        "lease grant duplicate id",
        err(EtcdError::LeaseExist),
        outcome(c.lease.lease_grant(LeaseGrantRequest { ttl: 100, id: granted.id }).await, |r| format!(
            "ttl={}",
            r.ttl
        ))
    );

    // --- ignore_value / ignore_lease.
    case!(
        "ignore_value with a value",
        err(EtcdError::ValueProvided),
        outcome(c.kv.put(PutRequest { ignore_value: true, ..put("b", "x") }).await, put_ok)
    );
    case!(
        "ignore_lease with a lease",
        err(EtcdError::LeaseProvided),
        outcome(c.kv.put(PutRequest { ignore_lease: true, lease: granted.id, ..put("b", "x") }).await, put_ok)
    );
    case!(
        "ignore_value on a missing key",
        err(EtcdError::KeyNotFound),
        outcome(c.kv.put(PutRequest { ignore_value: true, ..put("missing", "") }).await, put_ok)
    );
    case!(
        "ignore_lease on a missing key",
        err(EtcdError::KeyNotFound),
        outcome(c.kv.put(PutRequest { ignore_lease: true, ..put("missing", "v") }).await, put_ok)
    );
    case!(
        "ignore_value on an existing key keeps the value",
        ok("ok"),
        outcome(c.kv.put(PutRequest { ignore_value: true, ..put("b", "") }).await, put_ok)
    );
    case!(
        "missing key stayed missing",
        ok("kvs=[] count=0 more=false"),
        outcome(c.kv.range(RangeRequest { key: b"missing".to_vec(), ..Default::default() }).await, range_summary)
    );
    case!(
        "b kept its value",
        ok(r#"kvs=["b=1"] count=1 more=false"#),
        outcome(c.kv.range(RangeRequest { key: b"b".to_vec(), ..Default::default() }).await, range_summary)
    );

    // --- Txn shape.
    let too_many =
        TxnRequest { success: (0..129).map(|i| put_op(&format!("t{i}"), "v")).collect(), ..Default::default() };
    case!(
        "txn with 129 ops",
        err(EtcdError::TooManyOps),
        outcome(c.kv.txn(too_many).await, |r| format!("succeeded={}", r.succeeded))
    );
    let too_many_compares = TxnRequest {
        compare: (0..129)
            .map(|i| Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Version as i32,
                key: format!("t{i}").into_bytes(),
                target_union: Some(TargetUnion::Version(0)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    case!(
        "txn with 129 compares",
        err(EtcdError::TooManyOps),
        outcome(c.kv.txn(too_many_compares).await, |r| format!("succeeded={}", r.succeeded))
    );
    let max_ops =
        TxnRequest { success: (0..128).map(|i| put_op(&format!("t{i}"), "v")).collect(), ..Default::default() };
    case!(
        "txn with 128 ops",
        ok("succeeded=true responses=128"),
        outcome(c.kv.txn(max_ops).await, |r| format!("succeeded={} responses={}", r.succeeded, r.responses.len()))
    );
    let dup = TxnRequest { success: vec![put_op("dup", "1"), put_op("dup", "2")], ..Default::default() };
    case!(
        "txn with duplicate put keys",
        err(EtcdError::DuplicateKey),
        outcome(c.kv.txn(dup).await, |r| format!("succeeded={}", r.succeeded))
    );
    let put_and_delete = TxnRequest {
        success: vec![
            put_op("dup", "1"),
            RequestOp {
                request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                    key: b"da".to_vec(),
                    range_end: b"dz".to_vec(),
                    ..Default::default()
                })),
            },
        ],
        ..Default::default()
    };
    case!(
        "txn putting a key it also deletes",
        err(EtcdError::DuplicateKey),
        outcome(c.kv.txn(put_and_delete).await, |r| format!("succeeded={}", r.succeeded))
    );
    let dup_across_branches =
        TxnRequest { success: vec![put_op("dup", "1")], failure: vec![put_op("dup", "2")], ..Default::default() };
    case!(
        "txn putting one key in then and else",
        ok("succeeded=true"),
        outcome(c.kv.txn(dup_across_branches).await, |r| format!("succeeded={}", r.succeeded))
    );

    // --- Compacted and future revisions.
    let r1 = c.kv.put(put("c", "c1")).await.unwrap().into_inner().header.unwrap().revision;
    let r2 = c.kv.put(put("c", "c2")).await.unwrap().into_inner().header.unwrap().revision;
    let r3 = c.kv.put(put("c", "c3")).await.unwrap().into_inner().header.unwrap().revision;
    assert_eq!((r2, r3), (r1 + 1, r1 + 2));
    let compact = |rev| CompactionRequest { revision: rev, physical: false };
    case!("compact to r2", ok("ok"), outcome(c.kv.compact(compact(r2)).await, |_| "ok".into()));
    case!("compact to r2 again", err(EtcdError::Compacted), outcome(c.kv.compact(compact(r2)).await, |_| "ok".into()));
    case!(
        "compact to r1 (below)",
        err(EtcdError::Compacted),
        outcome(c.kv.compact(compact(r1)).await, |_| "ok".into())
    );
    case!(
        "compact to a future revision",
        err(EtcdError::FutureRev),
        outcome(c.kv.compact(compact(r3 + 1000)).await, |_| "ok".into())
    );
    let range_at = |rev| RangeRequest { key: b"c".to_vec(), revision: rev, ..Default::default() };
    case!(
        "range at a compacted revision",
        err(EtcdError::Compacted),
        outcome(c.kv.range(range_at(r1)).await, range_summary)
    );
    case!(
        "range at the compaction revision",
        ok(r#"kvs=["c=c2"] count=1 more=false"#),
        outcome(c.kv.range(range_at(r2)).await, range_summary)
    );
    case!(
        "range at the current revision",
        ok(r#"kvs=["c=c3"] count=1 more=false"#),
        outcome(c.kv.range(range_at(r3)).await, range_summary)
    );
    case!(
        "range at a future revision",
        err(EtcdError::FutureRev),
        outcome(c.kv.range(range_at(r3 + 1)).await, range_summary)
    );
    case!(
        "serializable range at a future revision",
        err(EtcdError::FutureRev),
        outcome(c.kv.range(RangeRequest { serializable: true, ..range_at(r3 + 1000) }).await, range_summary)
    );
    case!(
        "read-only txn ranging at a compacted revision",
        err(EtcdError::Compacted),
        outcome(c.kv.txn(TxnRequest { success: vec![range_op("c", r1)], ..Default::default() }).await, |r| format!(
            "succeeded={}",
            r.succeeded
        ))
    );
    case!(
        "read-only txn ranging at a future revision",
        err(EtcdError::FutureRev),
        outcome(
            c.kv.txn(TxnRequest { success: vec![range_op("c", r3 + 1000)], ..Default::default() }).await,
            |r| format!("succeeded={}", r.succeeded)
        )
    );
    case!(
        "write txn ranging at a future revision",
        err(EtcdError::FutureRev),
        outcome(
            c.kv.txn(TxnRequest { success: vec![put_op("w", "1"), range_op("c", r3 + 1000)], ..Default::default() })
                .await,
            |r| format!("succeeded={}", r.succeeded)
        )
    );

    // --- Request size.
    let just_under = "x".repeat(MAX_REQUEST_BYTES - 256);
    case!("put just under --max-request-bytes", ok("ok"), outcome(c.kv.put(put("big", &just_under)).await, put_ok));
    let over = "y".repeat(MAX_REQUEST_BYTES + 256 * 1024);
    case!(
        "put between --max-request-bytes and the gRPC limit",
        err(EtcdError::RequestTooLarge),
        outcome(c.kv.put(put("big", &over)).await, put_ok)
    );
    let over_in_txn = TxnRequest { success: vec![put_op("big", &over)], ..Default::default() };
    case!(
        "txn over --max-request-bytes",
        err(EtcdError::RequestTooLarge),
        outcome(c.kv.txn(over_in_txn).await, |r| format!("succeeded={}", r.succeeded))
    );
    // 2 MiB of value is past max-request-bytes + 512 KiB, etcd's gRPC receive
    // limit: grpc-go refuses the message itself (ResourceExhausted, "grpc:
    // received message larger than max"), before etcd sees it.
    let two_mib = "z".repeat(2 * 1024 * 1024);
    case!(
        "put with a 2 MiB value",
        Expect::TransportError(Code::ResourceExhausted, "grpc: received message larger than max ("),
        outcome(c.kv.put(put("big", &two_mib)).await, put_ok)
    );
    case!(
        "big still holds the value just under the limit",
        ok(&format!("len={}", just_under.len())),
        outcome(c.kv.range(RangeRequest { key: b"big".to_vec(), ..Default::default() }).await, |r| format!(
            "len={}",
            r.kvs.first().map(|kv| kv.value.len()).unwrap_or(0)
        ))
    );

    // --- Still up.
    case!("final put", ok("ok"), outcome(c.kv.put(put("final", "alive")).await, put_ok));
    case!(
        "final get",
        ok(r#"kvs=["final=alive"] count=1 more=false"#),
        outcome(c.kv.range(RangeRequest { key: b"final".to_vec(), ..Default::default() }).await, range_summary)
    );
    out
}

async fn run_against(kind: Kind, binary: &Path) -> (Server, Vec<(String, Outcome, Expect)>) {
    let server = Server::start(kind, binary, &[]);
    let mut c = clients(server.client_port).await;
    wait_writable(&mut c).await;
    let results = run_cases(&mut c).await;
    (server, results)
}

fn assert_alive(server: &mut Server) {
    let status = server.child.as_mut().unwrap().try_wait().unwrap();
    assert!(status.is_none(), "{:?} exited: {status:?}; log:\n{}", server.kind, server.log_text());
}

/// Checks one server's outcomes against the expectations; returns the failures.
fn check(kind: Kind, results: &[(String, Outcome, Expect)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, got, expect) in results {
        let good = match expect {
            Expect::Exactly(want) => got == want,
            Expect::TransportError(code, prefix) => match got {
                Outcome::Err(c, m) if kind == Kind::Etcd => c == code && m.starts_with(prefix),
                Outcome::Err(..) => true,
                Outcome::Ok(_) => false,
            },
        };
        if !good {
            failures.push(format!("{kind:?}: {name}: got {got:?}, want {expect:?}"));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_etcds_errors() {
    let (mut retcd, retcd_results) = run_against(Kind::Retcd, RETCD.as_ref()).await;
    assert_alive(&mut retcd);
    let mut failures = check(Kind::Retcd, &retcd_results);

    if let Some(etcd_bin) = require_tool("etcd") {
        let (mut etcd, etcd_results) = run_against(Kind::Etcd, &etcd_bin).await;
        assert_alive(&mut etcd);
        // Our expectations are etcd's behaviour: a mismatch here is a wrong
        // expectation, not a retcd bug.
        failures.extend(check(Kind::Etcd, &etcd_results));
        for ((name, r, _), (_, e, _)) in retcd_results.iter().zip(&etcd_results) {
            if r != e {
                eprintln!("note: {name}: retcd {r:?} vs etcd {e:?}");
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// A request above a small `--max-request-bytes` is refused with etcd's error
/// and one just below it is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn custom_max_request_bytes() {
    let limit = 10_000usize;
    let limit_arg = limit.to_string();
    let mut server = Server::start(Kind::Retcd, RETCD.as_ref(), &["--max-request-bytes", &limit_arg]);
    let mut c = clients(server.client_port).await;
    wait_writable(&mut c).await;
    // The encoded request (key, value, request header) must fit in `limit`.
    c.kv.put(put("k", &"a".repeat(limit - 100))).await.unwrap();
    let e = c.kv.put(put("k", &"b".repeat(limit + 1))).await.unwrap_err();
    assert_eq!(etcd_err(EtcdError::RequestTooLarge), Outcome::Err(e.code(), e.message().to_string()));
    // Past limit + 512 KiB the transport refuses it; the server stays up.
    let e = c.kv.put(put("k", &"c".repeat(limit + 600 * 1024))).await.unwrap_err();
    eprintln!("above the gRPC limit: {:?} {}", e.code(), e.message());
    let got = c.kv.range(RangeRequest { key: b"k".to_vec(), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(got.kvs[0].value, "a".repeat(limit - 100).into_bytes());
    assert_alive(&mut server);
}

/// Writes `bytes` on a fresh connection to the client port, then reads
/// whatever comes back (bounded) and closes.
fn raw_exchange(port: u16, bytes: &[u8], read_for: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(read_for)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may close on the first bad byte: a failed write is fine.
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + read_for;
    while Instant::now() < deadline && got.len() < 1 << 20 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

async fn garbage_on_client_port(server: &mut Server) {
    let port = server.client_port;
    let seed: u64 = rand::random();
    eprintln!("garbage seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = clients(port).await;
    wait_writable(&mut c).await;

    let held = tokio::task::spawn_blocking(move || {
        let mut held = Vec::new();
        // Random bytes, several sizes.
        for len in [1usize, 7, 24, 100, 4096, 65536] {
            let junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            raw_exchange(port, &junk, Duration::from_millis(200));
        }
        // HTTP/1 requests: answered or closed, never fatal.
        let http1 = raw_exchange(
            port,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            Duration::from_secs(1),
        );
        eprintln!("HTTP/1 GET answered: {:?}", String::from_utf8_lossy(&http1[..http1.len().min(80)]));
        raw_exchange(
            port,
            b"POST /etcdserverpb.KV/Put HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc\r\nContent-Length: 5\r\n\r\n\0\0\0\0\0",
            Duration::from_millis(500),
        );
        // A truncated HTTP/2 preface, left open while the server is used.
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        for cut in [3usize, 16, 23] {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&preface[..cut]).unwrap();
            held.push(s);
        }
        // A full preface followed by garbage frames.
        let mut bad_frames = preface.to_vec();
        bad_frames.extend((0..512).map(|_| rng.gen::<u8>()));
        raw_exchange(port, &bad_frames, Duration::from_millis(300));
        // A preface and a SETTINGS frame claiming a huge length, then nothing.
        let mut huge = preface.to_vec();
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0x04, 0x00, 0, 0, 0, 0]);
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&huge).unwrap();
        held.push(s);
        // Connect and close at once, many times.
        for _ in 0..50 {
            drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
        }
        held
    })
    .await
    .unwrap();

    // The server answers normally while the odd connections are still open.
    let mut c = clients(port).await;
    c.kv.put(put("after-garbage", "ok")).await.unwrap();
    let got = c.kv.range(RangeRequest { key: b"after-garbage".to_vec(), ..Default::default() }).await.unwrap();
    assert_eq!(got.into_inner().kvs[0].value, b"ok");
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.kv.put(put("after-garbage", "still ok")).await.unwrap();
    assert_alive(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_bytes_on_the_client_port() {
    let mut server = Server::start(Kind::Retcd, RETCD.as_ref(), &[]);
    garbage_on_client_port(&mut server).await;
    if let Some(etcd_bin) = require_tool("etcd") {
        // The same treatment for etcd, to be sure the test itself is sane.
        let mut etcd = Server::start(Kind::Etcd, &etcd_bin, &[]);
        garbage_on_client_port(&mut etcd).await;
    }
}
