//! Store tests: revision semantics, reads, transactions, compaction, reopen,
//! hashes and events.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prost::Message;
use retcd_api::mvccpb::event::EventType;
use retcd_api::mvccpb::{Event, KeyValue};

use super::*;
use crate::backend::{Backend, Table};

struct Env {
    dir: tempfile::TempDir,
    backend: Arc<Backend>,
    store: KvStore,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::open(&dir.path().join("db")).unwrap();
    let store = KvStore::open(Arc::clone(&backend)).unwrap();
    Env { dir, backend, store }
}

impl Env {
    fn put(&self, k: &str, v: &str) -> Option<KeyValue> {
        self.put_lease(k, v, 0)
    }

    fn put_lease(&self, k: &str, v: &str, lease: i64) -> Option<KeyValue> {
        let mut btx = self.backend.batch_tx();
        let mut txn = self.store.write(&mut btx);
        let prev = txn.put(k.as_bytes(), v.as_bytes(), lease);
        assert!(txn.take_error().is_none());
        txn.end();
        prev
    }

    fn delete(&self, k: &str, end: &str) -> Vec<KeyValue> {
        let mut btx = self.backend.batch_tx();
        let mut txn = self.store.write(&mut btx);
        let deleted = txn.delete_range(k.as_bytes(), end.as_bytes());
        txn.end();
        deleted
    }

    fn get(&self, k: &str, rev: i64) -> Option<KeyValue> {
        let r = self.store.range(k.as_bytes(), b"", RangeOptions { rev, ..Default::default() }).unwrap();
        assert!(r.kvs.len() <= 1);
        r.kvs.into_iter().next()
    }

    fn keys(&self, key: &[u8], end: &[u8], rev: i64) -> Vec<String> {
        let r = self.store.range(key, end, RangeOptions { rev, ..Default::default() }).unwrap();
        assert_eq!(r.count, r.kvs.len());
        r.kvs.iter().map(|kv| String::from_utf8(kv.key.clone()).unwrap()).collect()
    }

    fn compact(&self, rev: i64) -> Result<Compaction, MvccError> {
        let mut btx = self.backend.batch_tx();
        self.store.compact(&mut btx, rev)
    }

    /// Main revisions of every record in the Key table.
    fn records(&self) -> Vec<(i64, bool)> {
        self.backend
            .range(Table::Key, b"", None, 0)
            .unwrap()
            .iter()
            .map(|(k, _)| {
                let (r, t) = Revision::from_key(k).unwrap();
                (r.main, t)
            })
            .collect()
    }

    fn reopen(self) -> Env {
        self.backend.commit().unwrap();
        let Env { dir, backend, store } = self;
        drop(store);
        drop(backend);
        let backend = Backend::open(&dir.path().join("db")).unwrap();
        let store = KvStore::open(Arc::clone(&backend)).unwrap();
        Env { dir, backend, store }
    }
}

fn kv(k: &str, v: &str, create: i64, modr: i64, ver: i64) -> KeyValue {
    KeyValue {
        key: k.as_bytes().to_vec(),
        value: v.as_bytes().to_vec(),
        create_revision: create,
        mod_revision: modr,
        version: ver,
        lease: 0,
    }
}

#[test]
fn revisions_versions_and_recreation_follow_etcd() {
    let e = env();
    assert_eq!(e.store.rev(), 1);
    assert_eq!(e.store.compact_rev(), 0);
    assert_eq!(e.put("foo", "a"), None);
    assert_eq!(e.store.rev(), 2);
    assert_eq!(e.get("foo", 0), Some(kv("foo", "a", 2, 2, 1)));
    assert_eq!(e.put("foo", "b"), Some(kv("foo", "a", 2, 2, 1)));
    assert_eq!(e.get("foo", 0), Some(kv("foo", "b", 2, 3, 2)));
    e.put("bar", "x");
    assert_eq!(e.store.rev(), 4);
    assert_eq!(e.delete("foo", ""), vec![kv("foo", "b", 2, 3, 2)]);
    assert_eq!(e.store.rev(), 5);
    assert_eq!(e.get("foo", 0), None);
    // Deleting a missing key changes nothing, not even the revision.
    assert_eq!(e.delete("foo", ""), vec![]);
    assert_eq!(e.delete("nope", "nope2"), vec![]);
    assert_eq!(e.store.rev(), 5);
    // Recreated: new creation revision, version restarts at 1.
    assert_eq!(e.put("foo", "c"), None);
    assert_eq!(e.get("foo", 0), Some(kv("foo", "c", 6, 6, 1)));
    // History stays readable.
    assert_eq!(e.get("foo", 1), None);
    assert_eq!(e.get("foo", 2), Some(kv("foo", "a", 2, 2, 1)));
    assert_eq!(e.get("foo", 4), Some(kv("foo", "b", 2, 3, 2)));
    assert_eq!(e.get("foo", 5), None);
    assert_eq!(e.get("bar", 3), None);
    assert_eq!(e.get("bar", 6), Some(kv("bar", "x", 4, 4, 1)));
}

#[test]
fn range_forms() {
    let e = env();
    for k in ["a", "b", "c", "d"] {
        e.put(k, k);
    }
    e.put("b\0", "z");
    assert_eq!(e.keys(b"b", b"", 0), vec!["b"]);
    assert_eq!(e.keys(b"b", b"d", 0), vec!["b", "b\0", "c"]);
    assert_eq!(e.keys(b"b", &[0], 0), vec!["b", "b\0", "c", "d"]);
    assert_eq!(e.keys(&[0], &[0], 0), vec!["a", "b", "b\0", "c", "d"]);
    assert!(e.keys(b"d", b"b", 0).is_empty());
    assert!(e.keys(b"zz", b"", 0).is_empty());
    let r = e.store.range(b"a", b"e", RangeOptions::default()).unwrap();
    assert_eq!(r.rev, 6);
    assert_eq!(r.count, 5);
}

#[test]
fn limit_and_count_only() {
    let e = env();
    for k in ["a", "b", "c", "d"] {
        e.put(k, k);
    }
    e.delete("c", "");
    let r = e.store.range(b"a", b"z", RangeOptions { limit: 2, ..Default::default() }).unwrap();
    assert_eq!(r.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(), vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(r.count, 3);
    let r = e.store.range(b"a", b"z", RangeOptions { limit: 10, ..Default::default() }).unwrap();
    assert_eq!((r.kvs.len(), r.count), (3, 3));
    let r = e.store.range(b"a", b"z", RangeOptions { count_only: true, ..Default::default() }).unwrap();
    assert!(r.kvs.is_empty());
    assert_eq!(r.count, 3);
    // At revision 5 (before the delete) c still counts.
    let r = e.store.range(b"a", b"z", RangeOptions { count_only: true, rev: 5, ..Default::default() }).unwrap();
    assert_eq!((r.count, r.rev), (4, 6));
}

#[test]
fn reads_at_old_and_future_revisions() {
    let e = env();
    e.put("k", "1");
    e.put("k", "2");
    e.put("k", "3");
    assert_eq!(e.get("k", 3).unwrap().value, b"2");
    assert_eq!(e.store.range(b"k", b"", RangeOptions { rev: 3, ..Default::default() }).unwrap().rev, 4);
    assert!(matches!(
        e.store.range(b"k", b"", RangeOptions { rev: 5, ..Default::default() }),
        Err(MvccError::FutureRev)
    ));
}

#[test]
fn a_range_at_a_pinned_revision_answers_with_that_revision() {
    let e = env();
    e.put("k", "1");
    let pinned = e.store.rev();
    e.put("k", "2");
    e.put("other", "x");
    let at = |opts| e.store.range_at(b"", b"\0", opts, Some(pinned)).unwrap();
    let r = at(RangeOptions::default());
    assert_eq!(r.rev, pinned, "the header revision is the revision the data was read at");
    assert_eq!(r.kvs, vec![kv("k", "1", 2, 2, 1)]);
    assert_eq!(at(RangeOptions { count_only: true, ..Default::default() }).count, 1);
    // Later revisions are in the future of the pinned view.
    assert!(matches!(
        e.store.range_at(b"k", b"", RangeOptions { rev: pinned + 1, ..Default::default() }, Some(pinned)),
        Err(MvccError::FutureRev)
    ));
}

#[test]
fn write_txn_sees_its_own_writes_and_publishes_at_end() {
    let e = env();
    e.put("a", "old");
    e.put("gone", "x");
    let mut btx = e.backend.batch_tx();
    let mut txn = e.store.write(&mut btx);
    assert_eq!(txn.rev(), 4);
    // Before any change, reads are at the store revision.
    assert_eq!(txn.range(b"a", b"", RangeOptions::default()).unwrap().rev, 3);
    assert_eq!(txn.put(b"a", b"new", 0), Some(kv("a", "old", 2, 2, 1)));
    txn.put(b"b", b"1", 7);
    assert_eq!(txn.delete_range(b"gone", b""), vec![kv("gone", "x", 3, 3, 1)]);
    let r = txn.range(b"a", b"c", RangeOptions::default()).unwrap();
    assert_eq!(r.rev, 4);
    assert_eq!(r.kvs.iter().map(|kv| kv.value.clone()).collect::<Vec<_>>(), vec![b"new".to_vec(), b"1".to_vec()]);
    assert!(txn.range(b"gone", b"", RangeOptions::default()).unwrap().kvs.is_empty());
    // A second put of the same key in the transaction: same main revision,
    // next sub, version keeps counting.
    assert_eq!(txn.put(b"a", b"newer", 0).unwrap().value, b"new");
    // Readers of the store see nothing yet.
    assert_eq!(e.store.rev(), 3);
    assert_eq!(e.get("a", 0).unwrap().value, b"old");
    assert!(e.get("b", 0).is_none());
    assert_eq!(e.get("gone", 0).unwrap().value, b"x");
    let events = txn.end();
    drop(btx);
    assert_eq!(e.store.rev(), 4);
    assert_eq!(e.get("a", 0), Some(kv("a", "newer", 2, 4, 3)));
    let b = e.get("b", 0).unwrap();
    assert_eq!((b.lease, b.create_revision), (7, 4));
    assert!(e.get("gone", 0).is_none());

    let types: Vec<i32> = events.iter().map(|ev| ev.r#type).collect();
    let (put, del) = (EventType::Put as i32, EventType::Delete as i32);
    assert_eq!(types, vec![put, put, del, put]);
    assert_eq!(events[0].kv.as_ref().unwrap().value, b"new");
    assert_eq!(events[0].prev_kv, Some(kv("a", "old", 2, 2, 1)));
    assert_eq!(events[1].prev_kv, None);
    assert_eq!(
        events[2],
        Event {
            r#type: del,
            kv: Some(KeyValue { key: b"gone".to_vec(), mod_revision: 4, ..Default::default() }),
            prev_kv: Some(kv("gone", "x", 3, 3, 1)),
        }
    );
    // Sub revisions 0..3 under main 4, the delete as a tombstone.
    let recs = e.records();
    assert_eq!(recs.iter().filter(|(m, _)| *m == 4).count(), 4);
    assert_eq!(recs.iter().filter(|(_, t)| *t).count(), 1);
}

#[test]
fn empty_and_dropped_transactions() {
    let e = env();
    {
        let mut btx = e.backend.batch_tx();
        let txn = e.store.write(&mut btx);
        assert!(txn.end().is_empty());
    }
    assert_eq!(e.store.rev(), 1);
    {
        let mut btx = e.backend.batch_tx();
        let mut txn = e.store.write(&mut btx);
        txn.put(b"k", b"v", 0);
        // Dropped without end(): its staged and indexed change still counts.
    }
    assert_eq!(e.store.rev(), 2);
    assert_eq!(e.get("k", 0).unwrap().value, b"v");
}

#[test]
fn readers_never_see_part_of_a_transaction() {
    let e = Arc::new(env());
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let e = Arc::clone(&e);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = e.store.range(b"a", b"c", RangeOptions::default()).unwrap();
                if r.kvs.len() == 2 {
                    assert_eq!(r.kvs[0].value, r.kvs[1].value, "torn read at {}", r.rev);
                    assert_eq!(r.kvs[0].mod_revision, r.rev);
                }
                reads += 1;
            }
            reads
        })
    };
    for i in 0..300 {
        let v = i.to_string();
        let mut btx = e.backend.batch_tx();
        let mut txn = e.store.write(&mut btx);
        txn.put(b"a", v.as_bytes(), 0);
        std::thread::yield_now();
        txn.put(b"b", v.as_bytes(), 0);
        txn.end();
        drop(btx);
        if i % 50 == 0 {
            e.backend.commit().unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
}

#[test]
fn compaction_errors_and_effects() {
    let e = env();
    e.put("a", "1"); // 2
    e.put("a", "2"); // 3
    e.put("b", "1"); // 4
    e.delete("b", ""); // 5
    e.put("c", "1"); // 6
    e.put("a", "3"); // 7
    assert!(matches!(e.compact(8), Err(MvccError::FutureRev)));
    let job = e.compact(5).unwrap();
    assert_eq!(job.revision(), 5);
    assert_eq!(e.store.compact_rev(), 5);
    assert!(matches!(e.compact(5), Err(MvccError::Compacted)));
    assert!(matches!(e.compact(4), Err(MvccError::Compacted)));
    // Reads below the compacted revision fail at once; at it they work.
    for rev in [1, 4] {
        assert!(matches!(
            e.store.range(b"a", b"", RangeOptions { rev, ..Default::default() }),
            Err(MvccError::Compacted)
        ));
    }
    assert_eq!(e.get("a", 5).unwrap().value, b"2");
    assert!(e.get("b", 5).is_none());
    // Nothing deleted physically yet.
    assert_eq!(e.records().len(), 6);
    assert_eq!(
        e.backend.get(Table::Meta, SCHEDULED_COMPACT_KEY).unwrap(),
        Some(Revision::new(5, 0).to_bytes().to_vec())
    );
    job.run().unwrap();
    // a@2 (overwritten), b@4 and its tombstone b@5 are gone; a@3 (a's value
    // at 5) and everything after 5 stay.
    assert_eq!(e.records(), vec![(3, false), (6, false), (7, false)]);
    assert_eq!(
        e.backend.get(Table::Meta, FINISHED_COMPACT_KEY).unwrap(),
        Some(Revision::new(5, 0).to_bytes().to_vec())
    );
    assert_eq!(e.get("a", 5).unwrap().value, b"2");
    assert_eq!(e.get("a", 0), Some(kv("a", "3", 2, 7, 3)));
    assert_eq!(e.keys(&[0], &[0], 5), vec!["a"]);
    assert_eq!(e.keys(&[0], &[0], 6), vec!["a", "c"]);
    // Compacting at the current revision keeps every live key's value.
    e.compact(7).unwrap().run().unwrap();
    assert_eq!(e.records(), vec![(6, false), (7, false)]);
    assert_eq!(e.keys(&[0], &[0], 0), vec!["a", "c"]);
}

#[test]
fn reads_racing_physical_compaction_answer_compacted() {
    let e = env();
    e.put("k", "1"); // 2
    e.put("k", "2"); // 3
                     // Simulate a reader that looked up revision 2 just before compaction.
    let job = e.compact(3).unwrap();
    job.run().unwrap();
    assert!(matches!(e.store.fetch(&[Revision::new(2, 0)], 2), Err(MvccError::Compacted)));
    assert!(matches!(e.store.fetch(&[Revision::new(2, 0)], 3), Err(MvccError::Corrupt(_))));
}

/// Builds the same varied history on any store.
fn history(e: &Env) {
    for i in 0..20 {
        let k = format!("key{:02}", i % 7);
        e.put(&k, &format!("v{i}"));
        if i % 5 == 4 {
            e.delete(&k, "");
        }
    }
    e.put_lease("leased", "x", 42);
    e.delete("key03", "key05");
    e.put("key03", "again");
}

#[test]
fn reopen_rebuilds_the_index_identically() {
    let e = env();
    history(&e);
    e.compact(10).unwrap().run().unwrap();
    e.put("after", "compaction");
    let rev = e.store.rev();
    let index = e.store.index_dump();
    let ranges: Vec<_> = (10..=rev)
        .map(|r| e.store.range(&[0], &[0], RangeOptions { rev: r, ..Default::default() }).unwrap())
        .map(|r| (r.kvs, r.count))
        .collect();
    let hash = e.store.hash_kv(0).unwrap().hash;
    let e = e.reopen();
    assert_eq!(e.store.rev(), rev);
    assert_eq!(e.store.compact_rev(), 10);
    assert_eq!(e.store.index_dump(), index);
    let again: Vec<_> = (10..=rev)
        .map(|r| e.store.range(&[0], &[0], RangeOptions { rev: r, ..Default::default() }).unwrap())
        .map(|r| (r.kvs, r.count))
        .collect();
    assert_eq!(again, ranges);
    assert_eq!(e.store.hash_kv(0).unwrap().hash, hash);
    assert!(matches!(
        e.store.range(b"a", b"", RangeOptions { rev: 9, ..Default::default() }),
        Err(MvccError::Compacted)
    ));
    // Writes continue from the restored revision and versions.
    let before = e.get("key03", 0).unwrap();
    e.put("key03", "more");
    let after = e.get("key03", 0).unwrap();
    assert_eq!(after.mod_revision, rev + 1);
    assert_eq!((after.create_revision, after.version), (before.create_revision, before.version + 1));
}

#[test]
fn uncommitted_writes_are_lost_on_reopen() {
    let e = env();
    e.put("a", "1");
    e.backend.commit().unwrap();
    e.put("b", "1");
    let Env { dir, backend, store } = e;
    drop(store);
    drop(backend);
    let backend = Backend::open(&dir.path().join("db")).unwrap();
    let store = KvStore::open(backend).unwrap();
    assert_eq!(store.rev(), 2);
    assert_eq!(store.range(&[0], &[0], RangeOptions::default()).unwrap().count, 1);
}

#[test]
fn reopen_finishes_a_scheduled_compaction() {
    let e = env();
    e.put("a", "1");
    e.put("a", "2");
    e.put("b", "1");
    e.delete("b", ""); // 5: the last revision is a tombstone
    let job = e.compact(5).unwrap();
    drop(job); // crashed before running it
    assert_eq!(e.records().len(), 4);
    let e = e.reopen();
    assert_eq!(e.records(), vec![(3, false)]);
    assert_eq!(e.store.compact_rev(), 5);
    // The tombstone at 5 is gone, yet the store is still at revision 5.
    assert_eq!(e.store.rev(), 5);
    assert_eq!(
        e.backend.get(Table::Meta, FINISHED_COMPACT_KEY).unwrap(),
        Some(Revision::new(5, 0).to_bytes().to_vec())
    );
    let e = e.reopen();
    assert_eq!((e.store.rev(), e.store.compact_rev()), (5, 5));
}

#[test]
fn hash_kv_is_deterministic_and_tracks_history() {
    let (a, b) = (env(), env());
    history(&a);
    history(&b);
    let ha = a.store.hash_kv(0).unwrap();
    let hb = b.store.hash_kv(0).unwrap();
    assert_eq!(ha.hash, hb.hash);
    assert_eq!((ha.revision, ha.compact_revision), (a.store.rev(), -1));
    assert_eq!(a.store.hash_kv(10).unwrap().revision, a.store.rev());
    // Hashes at an older revision agree too, and differ from the newest.
    assert_eq!(a.store.hash_kv(10).unwrap().hash, b.store.hash_kv(10).unwrap().hash);
    assert_ne!(a.store.hash_kv(10).unwrap().hash, ha.hash);
    // Compaction scheduled on one and finished on the other: same hash.
    let ja = a.compact(12).unwrap();
    b.compact(12).unwrap().run().unwrap();
    let (ha, hb) = (a.store.hash_kv(0).unwrap(), b.store.hash_kv(0).unwrap());
    assert_eq!(ha.hash, hb.hash);
    assert_eq!(ha.compact_revision, 12);
    ja.run().unwrap();
    assert_eq!(a.store.hash_kv(0).unwrap().hash, hb.hash);
    // Different history, different hash.
    a.put("x", "1");
    b.put("x", "2");
    assert_ne!(a.store.hash_kv(0).unwrap().hash, b.store.hash_kv(0).unwrap().hash);
    assert!(matches!(a.store.hash_kv(12), Err(MvccError::Compacted)));
    assert!(matches!(a.store.hash_kv(a.store.rev() + 1), Err(MvccError::FutureRev)));
}

#[test]
fn events_replay_history() {
    let e = env();
    e.put("a", "1"); // 2
    e.put("b", "1"); // 3
    e.put("a", "2"); // 4
    e.delete("a", ""); // 5
    e.put("c", "1"); // 6
    let evs = e.store.events(b"a", b"", 0, 100, 0).unwrap();
    let (put, del) = (EventType::Put as i32, EventType::Delete as i32);
    assert_eq!(
        evs,
        vec![
            Event { r#type: put, kv: Some(kv("a", "1", 2, 2, 1)), prev_kv: None },
            Event { r#type: put, kv: Some(kv("a", "2", 2, 4, 2)), prev_kv: None },
            Event {
                r#type: del,
                kv: Some(KeyValue { key: b"a".to_vec(), mod_revision: 5, ..Default::default() }),
                prev_kv: None
            },
        ]
    );
    let revs = |evs: Vec<Event>| evs.iter().map(|e| e.kv.as_ref().unwrap().mod_revision).collect::<Vec<_>>();
    assert_eq!(revs(e.store.events(&[0], &[0], 3, 5, 0).unwrap()), vec![3, 4, 5]);
    assert_eq!(revs(e.store.events(b"b", b"d", 0, 100, 0).unwrap()), vec![3, 6]);
    assert_eq!(revs(e.store.events(&[0], &[0], 2, 6, 2).unwrap()), vec![2, 3]);
    assert!(e.store.events(&[0], &[0], 7, 10, 0).unwrap().is_empty());
    // A running transaction's changes are not events yet.
    {
        let mut btx = e.backend.batch_tx();
        let mut txn = e.store.write(&mut btx);
        txn.put(b"z", b"1", 0);
        assert!(e.store.events(&[0], &[0], 7, 10, 0).unwrap().is_empty());
        txn.end();
    }
    assert_eq!(revs(e.store.events(&[0], &[0], 7, 10, 0).unwrap()), vec![7]);
    // Compacted history: a watch may start at the compacted revision, not before.
    e.compact(4).unwrap().run().unwrap();
    assert!(matches!(e.store.events(&[0], &[0], 3, 10, 0), Err(MvccError::Compacted)));
    assert_eq!(revs(e.store.events(&[0], &[0], 4, 10, 0).unwrap()), vec![4, 5, 6, 7]);
}

#[test]
fn leased_keys_lists_live_attached_keys() {
    let e = env();
    e.put_lease("a", "1", 5);
    e.put_lease("b", "1", 6);
    e.put("c", "1");
    e.put_lease("d", "1", 5);
    e.put("b", "detached"); // a put without lease detaches
    e.delete("d", "");
    assert_eq!(e.store.leased_keys(), vec![(5, b"a".to_vec())]);
    let e = e.reopen();
    assert_eq!(e.store.try_leased_keys().unwrap(), vec![(5, b"a".to_vec())]);
}

#[test]
fn corrupt_records_fail_open_without_panicking() {
    let e = env();
    e.put("a", "1");
    e.backend.batch_tx().put(Table::Key, &Revision::new(3, 0).to_bytes(), b"\xff\xff not protobuf");
    let Env { dir, backend, store } = e;
    backend.commit().unwrap();
    drop(store);
    drop(backend);
    let backend = Backend::open(&dir.path().join("db")).unwrap();
    assert!(matches!(KvStore::open(Arc::clone(&backend)), Err(MvccError::Corrupt(_))));
    {
        let mut btx = backend.batch_tx();
        btx.delete(Table::Key, &Revision::new(3, 0).to_bytes());
        btx.put(Table::Key, b"garbage-key", b"");
    }
    assert!(KvStore::open(Arc::clone(&backend)).is_err_and(|e| e.to_string().contains("bad revision key")));
    backend.batch_tx().delete(Table::Key, b"garbage-key");
    assert_eq!(KvStore::open(Arc::clone(&backend)).unwrap().rev(), 2);
}

/// Rough throughput numbers; run with
/// `cargo test --release -p retcd-storage perf_smoke -- --ignored --nocapture`.
#[test]
#[ignore = "performance smoke test, run by hand"]
fn perf_smoke() {
    use std::time::{Duration, Instant};
    let e = env();
    let committer = e.backend.spawn_committer(Duration::from_millis(100), 10_000);
    let n = 200_000u32;
    let value = vec![b'v'; 256];
    let t = Instant::now();
    for batch in 0..n / 100 {
        // Like the apply thread: one batch tx per group of entries, one
        // write transaction per entry.
        let mut btx = e.backend.batch_tx();
        for i in 0..100 {
            let k = format!("key{:08}", (batch * 100 + i).wrapping_mul(2_654_435_761) % n);
            let mut txn = e.store.write(&mut btx);
            txn.put(k.as_bytes(), &value, 0);
            txn.end();
        }
    }
    let dt = t.elapsed();
    eprintln!("puts: {:.0}/s", f64::from(n) / dt.as_secs_f64());
    committer.stop().unwrap();

    let t = Instant::now();
    let reads = 200_000u32;
    for i in 0..reads {
        let k = format!("key{:08}", i.wrapping_mul(40_503) % n);
        let r = e.store.range(k.as_bytes(), b"", RangeOptions::default()).unwrap();
        assert!(r.count <= 1);
    }
    eprintln!("single-key ranges (committed): {:.0}/s", f64::from(reads) / t.elapsed().as_secs_f64());

    let threads: Vec<_> = (0..2)
        .map(|_| {
            let backend = Arc::clone(&e.backend);
            std::thread::spawn(move || {
                let t = Instant::now();
                for i in 0..100_000u32 {
                    let k = format!("key{:08}", i.wrapping_mul(40_503) % n);
                    backend.get(Table::Meta, k.as_bytes()).unwrap();
                }
                t.elapsed()
            })
        })
        .collect();
    for t in threads {
        let dt = t.join().unwrap();
        eprintln!("backend point gets, 2 threads: {:.0}/s per thread", 100_000.0 / dt.as_secs_f64());
    }

    let t = Instant::now();
    for _ in 0..100 {
        let r = e.store.range(&[0], &[0], RangeOptions { limit: 100, ..Default::default() }).unwrap();
        assert_eq!(r.kvs.len(), 100);
    }
    eprintln!("range all, limit 100: {:?} each", t.elapsed() / 100);
    let t = Instant::now();
    let r = e.store.range(&[0], &[0], RangeOptions { count_only: true, ..Default::default() }).unwrap();
    eprintln!("count all ({}): {:?}", r.count, t.elapsed());
    let t = Instant::now();
    let r = e.store.range(&[0], &[0], RangeOptions::default()).unwrap();
    eprintln!("range all ({} kvs): {:?}", r.kvs.len(), t.elapsed());

    {
        let revs: Vec<Revision> = {
            let idx = e.store.index.read();
            idx.revisions(index::KeyRange::From(&[]), e.store.rev(), usize::MAX).0
        };
        let mut best = Duration::MAX;
        for _ in 0..20 {
            let t = Instant::now();
            let idx = e.store.index.read();
            let c = idx.revisions(index::KeyRange::From(&[]), e.store.rev(), 0).1;
            assert_eq!(c, revs.len());
            best = best.min(t.elapsed());
        }
        eprintln!("index count, best of 20: {best:?}");
        let mut keys: Vec<[u8; 17]> = revs.iter().map(|r| r.to_bytes()).collect();
        let t = Instant::now();
        let mut n = 0;
        e.backend.get_many_with(Table::Key, &keys, |_, v| n += v.map_or(0, <[u8]>::len)).unwrap();
        eprintln!("get_many_with unsorted: {:?}", t.elapsed());
        keys.sort_unstable();
        let t = Instant::now();
        e.backend.get_many_with(Table::Key, &keys, |_, v| n += v.map_or(0, <[u8]>::len)).unwrap();
        eprintln!("get_many_with sorted: {:?}", t.elapsed());
        let t = Instant::now();
        let mut m = 0;
        e.backend
            .scan(Table::Key, &[], None, |_, v| {
                m += v.len();
                true
            })
            .unwrap();
        eprintln!("scan all: {:?} {n} {m}", t.elapsed());
        let t = Instant::now();
        let mut dec = 0usize;
        e.backend
            .get_many_with(Table::Key, &keys, |_, v| {
                dec += KeyValue::decode(v.unwrap()).unwrap().value.len();
            })
            .unwrap();
        eprintln!("sorted get+decode: {:?} {dec}", t.elapsed());
        let t = Instant::now();
        let kvs = e.store.fetch(&revs, e.store.rev()).unwrap();
        eprintln!("fetch+decode: {:?} {}", t.elapsed(), kvs.len());
    }

    let t = Instant::now();
    let rev = e.store.rev();
    let job = e.compact(rev).unwrap();
    eprintln!("index compaction: {:?}", t.elapsed());
    let t = Instant::now();
    job.run().unwrap();
    e.backend.commit().unwrap();
    eprintln!("physical compaction: {:?}", t.elapsed());
    let t = Instant::now();
    let h = e.store.hash_kv(0).unwrap();
    eprintln!("hash_kv: {:?} ({:08x})", t.elapsed(), h.hash);
    let t = Instant::now();
    let e = e.reopen();
    eprintln!(
        "reopen (index rebuild): {:?}, size {} in use {:?}",
        t.elapsed(),
        e.backend.size(),
        e.backend.refresh_size_in_use()
    );
}
