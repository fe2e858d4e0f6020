//! Backend tests: buffer visibility, commits, reopen, format checks.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

fn open_in(dir: &tempfile::TempDir) -> Arc<Backend> {
    Backend::open(&dir.path().join("db")).unwrap()
}

fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

#[test]
fn staged_writes_are_visible_before_and_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_in(&dir);
    {
        let mut tx = b.batch_tx();
        tx.put(Table::Key, b"a", b"1");
        tx.put(Table::Key, b"b", b"2");
        tx.put(Table::Lease, b"a", b"other table");
    }
    assert_eq!(b.staged_ops(), 3);
    assert_eq!(b.get(Table::Key, b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(b.get(Table::Lease, b"a").unwrap().as_deref(), Some(&b"other table"[..]));
    assert_eq!(b.get(Table::Meta, b"a").unwrap(), None);
    assert_eq!(b.range(Table::Key, b"", None, 0).unwrap(), vec![kv("a", "1"), kv("b", "2")]);
    b.commit().unwrap();
    assert_eq!(b.staged_ops(), 0);
    assert_eq!(b.get(Table::Key, b"b").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(b.range(Table::Key, b"", None, 0).unwrap(), vec![kv("a", "1"), kv("b", "2")]);
}

#[test]
fn buffered_deletes_hide_committed_values() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_in(&dir);
    {
        let mut tx = b.batch_tx();
        for k in ["a", "b", "c", "d"] {
            tx.put(Table::Key, k.as_bytes(), b"db");
        }
    }
    b.commit().unwrap();
    {
        let mut tx = b.batch_tx();
        tx.delete(Table::Key, b"b");
        tx.put(Table::Key, b"c", b"new");
        tx.put(Table::Key, b"e", b"new");
        tx.delete(Table::Key, b"zz"); // deleting a missing key is harmless
    }
    assert_eq!(b.get(Table::Key, b"b").unwrap(), None);
    assert_eq!(b.get(Table::Key, b"c").unwrap().as_deref(), Some(&b"new"[..]));
    let all = vec![kv("a", "db"), kv("c", "new"), kv("d", "db"), kv("e", "new")];
    assert_eq!(b.range(Table::Key, b"", None, 0).unwrap(), all);
    // Limits count live pairs only, across buffer and database.
    assert_eq!(b.range(Table::Key, b"", None, 2).unwrap(), all[..2].to_vec());
    assert_eq!(b.range(Table::Key, b"b", Some(b"d"), 0).unwrap(), vec![kv("c", "new")]);
    assert_eq!(
        b.range_keys(Table::Key, b"a", Some(b"e"), 0).unwrap(),
        vec![b"a".to_vec(), b"c".to_vec(), b"d".to_vec()]
    );
    // Empty and inverted ranges.
    assert!(b.range(Table::Key, b"d", Some(b"d"), 0).unwrap().is_empty());
    assert!(b.range(Table::Key, b"e", Some(b"a"), 0).unwrap().is_empty());
    assert_eq!(
        b.get_many(Table::Key, &[&b"a"[..], b"b", b"e"]).unwrap(),
        vec![Some(b"db".to_vec()), None, Some(b"new".to_vec())]
    );
    b.commit().unwrap();
    assert_eq!(b.range(Table::Key, b"", None, 0).unwrap(), all);
}

#[test]
fn a_delete_then_put_in_the_buffer_wins_over_committing_and_db() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_in(&dir);
    b.batch_tx().put(Table::Meta, b"k", b"1");
    b.commit().unwrap();
    let mut tx = b.batch_tx();
    tx.delete(Table::Meta, b"k");
    assert_eq!(b.get(Table::Meta, b"k").unwrap(), None);
    tx.put(Table::Meta, b"k", b"2");
    assert_eq!(b.get(Table::Meta, b"k").unwrap().as_deref(), Some(&b"2"[..]));
}

#[test]
fn merge_prefers_buffer_and_stops_on_request() {
    let ov = vec![(b"b".to_vec(), None), (b"c".to_vec(), Some(b"C".to_vec())), (b"e".to_vec(), Some(b"E".to_vec()))];
    let db: Vec<Result<KvPair, ()>> =
        ["a", "b", "c", "d", "f"].iter().map(|k| Ok((k.as_bytes().to_vec(), b"db".to_vec()))).collect();
    let mut got = Vec::new();
    buffer::merge(ov.clone(), db.clone().into_iter(), |k, v| {
        got.push((String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()));
        true
    })
    .unwrap();
    let want: Vec<(String, String)> = [("a", "db"), ("c", "C"), ("d", "db"), ("e", "E"), ("f", "db")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);
    let mut n = 0;
    buffer::merge(ov, db.into_iter(), |_, _| {
        n += 1;
        n < 2
    })
    .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn staging_continues_while_a_commit_runs() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_in(&dir);
    let stop = Arc::new(AtomicBool::new(false));
    // A committer hammering commit() while this thread stages and reads.
    let committer = {
        let b = Arc::clone(&b);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                b.commit().unwrap();
                n += 1;
            }
            n
        })
    };
    for i in 0..2000u32 {
        let key = i.to_be_bytes();
        {
            let mut tx = b.batch_tx();
            tx.put(Table::Key, &key, &key);
            if i > 0 {
                tx.delete(Table::Key, &(i - 1).to_be_bytes());
            }
        }
        // Every write is visible at once, whichever layer holds it.
        assert_eq!(b.get(Table::Key, &key).unwrap().as_deref(), Some(&key[..]));
        if i > 0 {
            assert_eq!(b.get(Table::Key, &(i - 1).to_be_bytes()).unwrap(), None);
        }
        let all = b.range(Table::Key, b"", None, 0).unwrap();
        assert_eq!(all, vec![(key.to_vec(), key.to_vec())], "at {i}");
    }
    stop.store(true, Ordering::Relaxed);
    let commits = committer.join().unwrap();
    assert!(commits > 1);
    b.commit().unwrap();
    drop(b);
    let b = open_in(&dir);
    assert_eq!(
        b.range(Table::Key, b"", None, 0).unwrap(),
        vec![(1999u32.to_be_bytes().to_vec(), 1999u32.to_be_bytes().to_vec())]
    );
}

#[test]
fn one_batch_tx_is_never_split_across_commits() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_in(&dir);
    let mut tx = b.batch_tx();
    tx.put(Table::Key, b"1", b"x");
    let committer = {
        let b = Arc::clone(&b);
        std::thread::spawn(move || b.commit())
    };
    std::thread::sleep(Duration::from_millis(50));
    // The commit waits for this BatchTx, so the second put joins the first.
    tx.put(Table::Key, b"2", b"x");
    drop(tx);
    committer.join().unwrap().unwrap();
    assert_eq!(b.staged_ops(), 0);
    drop(b);
    let b = open_in(&dir);
    assert_eq!(b.range(Table::Key, b"", None, 0).unwrap().len(), 2);
}

#[test]
fn reopen_keeps_committed_and_loses_uncommitted_data() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_in(&dir);
    {
        let mut tx = b.batch_tx();
        tx.put(Table::Members, b"m1", b"committed");
        tx.set_consistent_index(7, 2);
    }
    b.commit().unwrap();
    {
        let mut tx = b.batch_tx();
        tx.put(Table::Members, b"m2", b"lost");
        tx.delete(Table::Members, b"m1");
        tx.set_consistent_index(8, 2);
    }
    assert_eq!(b.consistent_index(), (8, 2));
    drop(b);
    let b = open_in(&dir);
    assert_eq!(b.get(Table::Members, b"m1").unwrap().as_deref(), Some(&b"committed"[..]));
    assert_eq!(b.get(Table::Members, b"m2").unwrap(), None);
    assert_eq!(b.consistent_index(), (7, 2));
}

#[test]
fn consistent_index_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_in(&dir);
    assert_eq!(b.consistent_index(), (0, 0));
    b.batch_tx().set_consistent_index(u64::MAX - 1, 42);
    assert_eq!(b.consistent_index(), (u64::MAX - 1, 42));
    let raw = b.get(Table::Meta, CONSISTENT_INDEX_KEY).unwrap().unwrap();
    assert_eq!(raw.len(), 16);
    assert_eq!(&raw[..8], &(u64::MAX - 1).to_be_bytes());
    b.commit().unwrap();
    drop(b);
    assert_eq!(open_in(&dir).consistent_index(), (u64::MAX - 1, 42));
}

#[test]
fn committer_commits_in_the_background_and_on_stop() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_in(&dir);
    let h = b.spawn_committer(Duration::from_millis(20), 1_000_000);
    b.batch_tx().put(Table::Auth, b"a", b"1");
    let mut waited = 0;
    while b.staged_ops() != 0 && waited < 500 {
        std::thread::sleep(Duration::from_millis(10));
        waited += 1;
    }
    assert_eq!(b.staged_ops(), 0, "interval commit did not happen");
    h.stop().unwrap();

    // A long interval: only max_ops (or stop) commits.
    let h = b.spawn_committer(Duration::from_secs(3600), 3);
    {
        let mut tx = b.batch_tx();
        for i in 0..3u8 {
            tx.put(Table::Auth, &[i], b"x");
        }
    }
    let mut waited = 0;
    while b.staged_ops() != 0 && waited < 500 {
        std::thread::sleep(Duration::from_millis(10));
        waited += 1;
    }
    assert_eq!(b.staged_ops(), 0, "max_ops commit did not happen");
    b.batch_tx().put(Table::Auth, b"last", b"x");
    h.stop().unwrap();
    assert_eq!(b.staged_ops(), 0, "stop must commit");
    drop(b);
    assert!(open_in(&dir).get(Table::Auth, b"last").unwrap().is_some());
}

#[test]
fn foreign_files_are_refused_and_left_unmodified() {
    let dir = tempfile::tempdir().unwrap();
    // A bbolt-like file: page header then the meta magic at offset 16.
    let mut bolt = vec![0u8; 8192];
    bolt[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
    let mut random = vec![0u8; 10_000];
    let mut x = 0x1234_5678u32;
    for b in random.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    for (name, bytes) in [("bolt.db", bolt), ("random.db", random), ("short.db", b"redb".to_vec())] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let err = Backend::open(&path).err().expect("must refuse");
        match &err {
            BackendError::Open { path: p, .. } => assert_eq!(p, &path),
            other => panic!("unexpected error {other}"),
        }
        assert!(err.to_string().contains(name), "{err}");
        if name == "bolt.db" {
            assert!(err.to_string().contains("bbolt"), "{err}");
        }
        assert!(std::fs::read(&path).unwrap() == bytes, "{name} was modified");
    }
}

#[test]
fn newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_in(&dir);
    assert_eq!(b.get(Table::Meta, FORMAT_KEY).unwrap().as_deref(), Some(&b"1"[..]));
    b.batch_tx().put(Table::Meta, FORMAT_KEY, b"2");
    b.commit().unwrap();
    drop(b);
    let path = dir.path().join("db");
    let before = std::fs::read(&path).unwrap();
    let err = Backend::open(&path).err().expect("must refuse");
    assert!(err.to_string().contains("db") && err.to_string().contains("newer"), "{err}");
    assert!(std::fs::read(&path).unwrap() == before, "the file was modified");
}

#[test]
fn a_redb_file_without_our_marker_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let w = db.begin_write().unwrap();
        {
            let def: TableDefinition<u64, u64> = TableDefinition::new("theirs");
            w.open_table(def).unwrap().insert(1, 2).unwrap();
        }
        w.commit().unwrap();
    }
    let err = Backend::open(&path).err().expect("must refuse");
    assert!(err.to_string().contains("other.redb"), "{err}");
}

#[test]
fn sizes() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_in(&dir);
    {
        let mut tx = b.batch_tx();
        for i in 0..1000u32 {
            tx.put(Table::Key, &i.to_be_bytes(), &[7u8; 100]);
        }
    }
    b.commit().unwrap();
    let size = b.size();
    assert_eq!(size, std::fs::metadata(dir.path().join("db")).unwrap().len());
    assert_eq!(b.size_in_use(), size, "unknown until computed");
    let in_use = b.refresh_size_in_use().unwrap();
    assert!(in_use >= 100_000 && in_use <= size, "{in_use} / {size}");
    assert_eq!(b.size_in_use(), in_use);
}

#[test]
fn defragment_shrinks_the_file_and_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let b = Backend::open(&path).unwrap();
    let value = vec![7u8; 4096];
    for chunk in 0..10 {
        let mut tx = b.batch_tx();
        for i in 0..500 {
            tx.put(Table::Key, format!("k{chunk:02}{i:04}").as_bytes(), &value);
        }
        drop(tx);
        b.commit().unwrap();
    }
    {
        let mut tx = b.batch_tx();
        for chunk in 0..10 {
            for i in 0..500 {
                if !(chunk == 0 && i < 10) {
                    tx.delete(Table::Key, format!("k{chunk:02}{i:04}").as_bytes());
                }
            }
        }
        tx.put(Table::Lease, b"l", b"lease");
        tx.set_consistent_index(42, 3);
    }
    b.commit().unwrap();
    // Staged but not committed: the defragmentation must carry it too.
    b.batch_tx().put(Table::Meta, b"staged", b"yes");
    let before = b.size();
    b.defragment().unwrap();
    let after = b.size();
    assert!(after * 4 < before, "file did not shrink: {before} -> {after}");
    assert_eq!(b.range(Table::Key, b"", None, 0).unwrap().len(), 10);
    assert_eq!(b.get(Table::Meta, b"staged").unwrap().as_deref(), Some(&b"yes"[..]));
    // Writes and commits go on in the new file.
    b.batch_tx().put(Table::Key, b"after", b"1");
    b.commit().unwrap();
    drop(b);
    assert!(!defrag_path(&path).exists());
    let b = Backend::open(&path).unwrap();
    assert_eq!(b.consistent_index(), (42, 3));
    assert_eq!(b.range(Table::Key, b"", None, 0).unwrap().len(), 11);
    assert_eq!(b.get(Table::Lease, b"l").unwrap().as_deref(), Some(&b"lease"[..]));
    assert_eq!(b.get(Table::Meta, b"staged").unwrap().as_deref(), Some(&b"yes"[..]));
}

#[test]
fn an_interrupted_defragmentation_leaves_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let b = Backend::open(&path).unwrap();
        b.batch_tx().put(Table::Key, b"k", b"v");
        b.commit().unwrap();
    }
    std::fs::write(defrag_path(&path), b"partial copy").unwrap();
    let b = Backend::open(&path).unwrap();
    assert!(!defrag_path(&path).exists());
    assert_eq!(b.get(Table::Key, b"k").unwrap().as_deref(), Some(&b"v"[..]));
}
