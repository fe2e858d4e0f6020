//! The apply thread without raft: committed entries handed straight to an
//! [`Applier`] over a backend in a temp dir. Every member applies the same
//! log, however raft happened to batch it, so the stores and the answers
//! must come out the same; a replayed entry must change nothing.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use raft::eraftpb::Entry;
use retcd_api::etcdserverpb::{
    compare, request_op, CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
    PutRequest, RequestOp, TxnRequest,
};
use retcd_api::retcdpb::RequestHeader;

use super::*;
use crate::auth::{AuthStore, Tokens};

/// A member's stores in `dir`, with the apply thread's inputs and outputs.
struct Fixture {
    applier: Applier,
    _raft_rx: Receiver<RaftInput>,
}

fn fixture(dir: &std::path::Path) -> Fixture {
    let backend = Backend::open(&dir.join("db")).unwrap();
    let kv = Arc::new(KvStore::open(backend.clone()).unwrap());
    let (raft_tx, raft_rx) = crossbeam_channel::unbounded();
    let (compactor, jobs) = crossbeam_channel::unbounded::<(Compaction, oneshot::Sender<()>)>();
    std::thread::spawn(move || {
        for (job, done) in jobs {
            job.run().unwrap();
            let _ = done.send(());
        }
    });
    let tokens = Tokens::from_flag("simple", Duration::from_secs(300)).unwrap();
    let applier = Applier {
        kv: kv.clone(),
        backend: backend.clone(),
        lessor: Arc::new(Lessor::new(1)),
        membership: Arc::new(Membership::load(&backend).unwrap()),
        alarms: Arc::new(AlarmStore::load(&backend).unwrap()),
        auth: Arc::new(AuthStore::new(tokens, 4)),
        v2: Arc::new(crate::v2store::V2Store::default()),
        watch: Arc::new(WatchHub::new(kv)),
        wait: Arc::new(Wait::default()),
        applied: Arc::new(AtomicU64::new(0)),
        applied_tx: tokio::sync::watch::channel(0).0,
        raft_tx,
        snapshot_count: 1_000_000,
        last_snapshot_index: 0,
        snap_dir: dir.join("snap"),
        member_id: 1,
        removed: false,
        compactor,
        stop: StopSignal::default(),
    };
    Fixture { applier, _raft_rx: raft_rx }
}

fn put(key: &str, value: &str, lease: i64) -> InternalRequest {
    let put = PutRequest { key: key.into(), value: value.into(), lease, prev_kv: true, ..Default::default() };
    InternalRequest { put: Some(put), ..Default::default() }
}

/// A log exercising every kind of kv and lease change, refusals included:
/// entry `i` (from index 2, after the bootstrap snapshot) has request id `i`.
fn log() -> Vec<Entry> {
    let txn = TxnRequest {
        compare: vec![Compare {
            key: b"a".to_vec(),
            target: compare::CompareTarget::Value as i32,
            result: compare::CompareResult::Equal as i32,
            target_union: Some(compare::TargetUnion::Value(b"2".to_vec())),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b"t".to_vec(),
                value: b"yes".to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![],
    };
    let requests = vec![
        put("a", "1", 0),
        put("b", "1", 0),
        put("a", "2", 0),
        InternalRequest { txn: Some(txn), ..Default::default() },
        InternalRequest { lease_grant: Some(LeaseGrantRequest { id: 77, ttl: 60 }), ..Default::default() },
        put("leased", "x", 77),
        // Refused: no such lease. The entry still commits, on every member alike.
        put("orphan", "x", 78),
        InternalRequest {
            delete_range: Some(DeleteRangeRequest { key: b"b".to_vec(), prev_kv: true, ..Default::default() }),
            ..Default::default()
        },
        InternalRequest { compaction: Some(CompactionRequest { revision: 3, physical: false }), ..Default::default() },
        InternalRequest { lease_revoke: Some(LeaseRevokeRequest { id: 77 }), ..Default::default() },
        put("c", "1", 0),
    ];
    requests
        .into_iter()
        .enumerate()
        .map(|(i, mut req)| {
            let index = i as u64 + 2;
            req.header = Some(RequestHeader { id: index, ..Default::default() });
            Entry { index, term: 2, data: req.encode_to_vec(), ..Default::default() }
        })
        .collect()
}

/// Applies `batches` in turn; returns each request's answer, in log order,
/// as text (the responses are compared, not inspected field by field).
fn apply(f: &mut Fixture, batches: Vec<Vec<Entry>>) -> Vec<String> {
    let ids: Vec<u64> = batches.iter().flatten().map(|e| e.index).collect();
    let waiters: Vec<_> = ids.iter().map(|id| f.applier.wait.register(*id)).collect();
    for batch in batches {
        f.applier.apply_entries(batch).unwrap();
    }
    waiters.into_iter().map(|mut w| describe(w.try_recv().expect("every request is answered"))).collect()
}

fn describe(outcome: Outcome) -> String {
    match outcome {
        Ok(Applied::Put(r)) => format!("put {r:?}"),
        Ok(Applied::DeleteRange(r)) => format!("delete {r:?}"),
        Ok(Applied::Txn(r)) => format!("txn {r:?}"),
        Ok(Applied::Compaction(r, _)) => format!("compaction {r:?}"),
        Ok(Applied::LeaseGrant(r)) => format!("grant {r:?}"),
        Ok(Applied::LeaseRevoke(r)) => format!("revoke {r:?}"),
        Ok(_) => "other".into(),
        Err(e) => format!("refused {e}"),
    }
}

fn state(f: &Fixture) -> (u32, i64, i64, (u64, u64)) {
    let h = f.applier.kv.hash_kv(0).unwrap();
    (h.hash, h.revision, h.compact_revision, f.applier.backend.consistent_index())
}

#[test]
fn the_same_log_batched_differently_gives_the_same_store_and_answers() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut a, mut b) = (fixture(one.path()), fixture(two.path()));
    // As raft may hand them over: one ready with the whole log, or one per entry.
    let answers_a = apply(&mut a, vec![log()]);
    let answers_b = apply(&mut b, log().into_iter().map(|e| vec![e]).collect());
    assert_eq!(answers_a, answers_b);
    assert_eq!(state(&a), state(&b));

    // What the log means, on either member.
    assert!(answers_a[3].contains("succeeded: true"), "txn: {}", answers_a[3]);
    assert_eq!(answers_a[6], "refused etcdserver: requested lease not found");
    let (_, revision, compacted, consistent) = state(&a);
    // a, b, a, t, leased, delete b, revoke (deletes leased), c: eight revisions after 1.
    assert_eq!((revision, compacted, consistent), (9, 3, (12, 2)));
    assert!(a.applier.kv.range_at(b"leased", b"", Default::default(), None).unwrap().kvs.is_empty());
}

#[test]
fn a_log_replayed_after_a_restart_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = fixture(dir.path());
    apply(&mut f, vec![log()]);
    let before = state(&f);
    // The committer's last commit as the member stops; then a restart on
    // the same files, where raft hands over entries the backend holds.
    f.applier.backend.commit().unwrap();
    drop(f);
    let mut f = fixture(dir.path());
    assert_eq!(state(&f), before, "the restarted store differs");
    for e in log() {
        f.applier.apply_entries(vec![e]).unwrap();
    }
    assert_eq!(state(&f), before, "a replayed entry was applied again");
}
