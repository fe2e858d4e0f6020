//! [`KvStore`]: opening (rebuilding the index), reads, compaction
//! scheduling, hashes, watch catch-up events and leased keys.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use prost::Message;
use retcd_api::mvccpb::{event::EventType, Event, KeyValue};

use super::index::{KeyRange, Tree};
use super::{
    Compaction, HashKv, KvStore, MvccError, RangeOptions, RangeResult, Revision, WriteTxn, FINISHED_COMPACT_KEY,
    SCHEDULED_COMPACT_KEY,
};
use crate::backend::{Backend, BackendError, BatchTx, Table};

/// Keys compacted per index write-lock hold (readers run in between).
const INDEX_COMPACT_CHUNK: usize = 10_000;

/// Resolves the revision a read is served at, as etcd 3.4's `rangeKeys`:
/// FutureRev if `rev` > `cur`; 0 (or less) means `cur`; Compacted if the
/// result is below the compacted revision (reading *at* it is fine: the
/// compaction kept every key's value as of that revision).
pub(super) fn read_rev(rev: i64, cur: i64, compact: i64) -> Result<i64, MvccError> {
    if rev > cur {
        return Err(MvccError::FutureRev);
    }
    let at = if rev <= 0 { cur } else { rev };
    if at < compact {
        return Err(MvccError::Compacted);
    }
    Ok(at)
}

pub(super) fn decode_kv(rev: Revision, b: &[u8]) -> Result<KeyValue, MvccError> {
    KeyValue::decode(b).map_err(|e| MvccError::Corrupt(format!("revision {rev}: {e}")))
}

/// Reads a compaction mark from Meta (None if absent).
fn compact_mark(backend: &Backend, key: &[u8]) -> Result<Option<i64>, MvccError> {
    match backend.get(Table::Meta, key)? {
        None => Ok(None),
        Some(b) => Ok(Some(Revision::from_key(&b)?.0.main)),
    }
}

/// What the backend's records say the store is.
struct Loaded {
    tree: Tree,
    current: i64,
    compact: i64,
    /// A compaction scheduled but not finished.
    pending: Option<i64>,
}

/// Rebuilds the index by replaying every record in revision order.
fn load(backend: &Backend) -> Result<Loaded, MvccError> {
    let finished = compact_mark(backend, FINISHED_COMPACT_KEY)?;
    let scheduled = compact_mark(backend, SCHEDULED_COMPACT_KEY)?;
    let mut tree = Tree::default();
    let mut last_main = 1i64;
    let mut failure = None;
    backend.scan(Table::Key, &[], None, |k, v| {
        let step = Revision::from_key(k).and_then(|(rev, tombstone)| {
            let kv = decode_kv(rev, v)?;
            tree.restore(&kv.key, rev, tombstone, kv.create_revision, kv.version)
                .map_err(|e| MvccError::Corrupt(format!("revision {rev}: {e:?}")))?;
            Ok(rev.main)
        });
        match step {
            Ok(main) => {
                last_main = main;
                true
            }
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    let compact = finished.unwrap_or(-1);
    let pending = scheduled.filter(|&s| s > compact);
    // The records of the last revisions may all have been compacted away
    // (tombstones): the store had reached the compacted revision at least.
    let current = last_main.max(compact).max(pending.unwrap_or(0));
    Ok(Loaded { tree, current, compact, pending })
}

impl KvStore {
    /// Replaces the store's state after `replace` rewrote the backend (a
    /// member installing a snapshot from its leader): rebuilds the index from
    /// the backend's new contents. Readers are held off the index while it
    /// runs and compactions are serialized with it.
    pub fn restore(&self, replace: impl FnOnce() -> Result<(), MvccError>) -> Result<(), MvccError> {
        let _compaction = self.compaction_lock.lock();
        let mut index = self.index.write();
        replace()?;
        let Loaded { tree, current, compact, pending: _ } = load(&self.backend)?;
        *index = tree;
        self.compact_rev.store(compact, Ordering::Release);
        self.current_rev.store(current, Ordering::Release);
        Ok(())
    }

    /// Opens the store on `backend`, rebuilding the tree index from the `Key`
    /// table and finishing a compaction that was scheduled but not finished.
    pub fn open(backend: Arc<Backend>) -> Result<KvStore, MvccError> {
        let Loaded { tree, current, compact, pending } = load(&backend)?;
        let store = KvStore {
            backend: Arc::clone(&backend),
            index: RwLock::new(tree),
            current_rev: AtomicI64::new(current),
            compact_rev: AtomicI64::new(compact),
            compaction_lock: Arc::new(Mutex::new(())),
        };
        if let Some(rev) = pending {
            tracing::info!(rev, "finishing a scheduled compaction");
            let job = {
                let mut btx = backend.batch_tx();
                store.compact(&mut btx, rev)?
            };
            job.run()?;
        }
        Ok(store)
    }

    /// The current store revision (1 for an empty store, as etcd).
    pub fn rev(&self) -> i64 {
        self.current_rev.load(Ordering::Acquire)
    }

    /// The last compacted revision (0 if never compacted).
    pub fn compact_rev(&self) -> i64 {
        self.compact_rev.load(Ordering::Acquire).max(0)
    }

    /// The backend the store lives in.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// Reads at `opts.rev`. Errors, as etcd 3.4's `rangeKeys`: FutureRev if
    /// rev > current revision; Compacted if rev < compact_rev (rev 0 reads at
    /// the current revision, which is never compacted).
    pub fn range(&self, key: &[u8], end: &[u8], opts: RangeOptions) -> Result<RangeResult, MvccError> {
        self.range_at(key, end, opts, None)
    }

    /// Range as the store was at revision `cur` (None: the current one, read
    /// under the index lock): `opts.rev` 0 reads at `cur`, a later one is a
    /// future revision, and the result's `rev` is `cur`, so a response's
    /// header revision is the revision its data was read at. Readers that
    /// pinned [`KvStore::rev`] earlier pass it here, and so do write
    /// transactions, whose read revision is one past the store's once they
    /// have changes of their own (those are already in the index).
    pub fn range_at(
        &self,
        key: &[u8],
        end: &[u8],
        opts: RangeOptions,
        cur: Option<i64>,
    ) -> Result<RangeResult, MvccError> {
        let max = match (opts.count_only, opts.limit) {
            (true, _) => 0,
            (false, 0) => usize::MAX,
            (false, n) => n,
        };
        let (revs, count, cur, at) = {
            let idx = self.index.read();
            let cur = cur.unwrap_or_else(|| self.current_rev.load(Ordering::Acquire));
            let at = read_rev(opts.rev, cur, self.compact_rev.load(Ordering::Acquire))?;
            let (revs, count) = idx.revisions(KeyRange::new(key, end), at, max);
            (revs, count, cur, at)
        };
        let kvs = self.fetch(&revs, at)?;
        Ok(RangeResult { kvs, rev: cur, count })
    }

    /// Fetches and decodes the values at `revs` (read at `at`) from one
    /// backend view, in the order of `revs`.
    pub(super) fn fetch(&self, revs: &[Revision], at: i64) -> Result<Vec<KeyValue>, MvccError> {
        if revs.is_empty() {
            return Ok(Vec::new());
        }
        if crate::failpoints::error_point("mvcc::read") {
            return Err(MvccError::Backend(BackendError::Db("injected read error (failpoint mvcc::read)".into())));
        }
        // Look the records up in revision (= backend key) order: neighbouring
        // lookups then share b-tree pages, which is several times faster for
        // large ranges than key order (revisions scattered over the file).
        let mut order: Vec<usize> = (0..revs.len()).collect();
        if revs.len() > 8 {
            order.sort_unstable_by_key(|&i| revs[i]);
        }
        let keys: Vec<[u8; 17]> = order.iter().map(|&i| revs[i].to_bytes()).collect();
        let mut slots: Vec<Option<KeyValue>> = vec![None; revs.len()];
        let mut failure: Option<MvccError> = None;
        self.backend.get_many_with(Table::Key, &keys, |j, v| {
            if failure.is_some() {
                return;
            }
            let i = order[j];
            match v {
                Some(b) => match decode_kv(revs[i], b) {
                    Ok(kv) => slots[i] = Some(kv),
                    Err(e) => failure = Some(e),
                },
                None => {
                    failure = Some(if self.compact_rev.load(Ordering::Acquire) > at {
                        // Physical compaction overtook this read.
                        MvccError::Compacted
                    } else {
                        MvccError::Corrupt(format!("revision {} is indexed but not in the backend", revs[i]))
                    })
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(slots.into_iter().flatten().collect())
    }

    /// Starts a write transaction that stages into `btx`.
    pub fn write<'a, 'b>(&'a self, btx: &'a mut BatchTx<'b>) -> WriteTxn<'a, 'b> {
        WriteTxn {
            store: self,
            btx,
            begin_rev: self.current_rev.load(Ordering::Acquire),
            changes: Vec::new(),
            error: None,
            ended: false,
        }
    }

    /// Compacts the history up to `rev`: the index forgets every revision of a
    /// key older than its latest one at or before `rev` (and keys whose latest
    /// such revision is a tombstone), at once; the returned [`Compaction`]
    /// deletes the records from the backend. Errors as etcd: Compacted if
    /// rev <= compact_rev, FutureRev if rev > current revision.
    ///
    /// Stages the scheduled mark (`scheduledCompactRev`) into `btx`, so the
    /// mark commits with the entry that asked for the compaction.
    pub fn compact(&self, btx: &mut BatchTx<'_>, rev: i64) -> Result<Compaction, MvccError> {
        let mut keep = HashSet::new();
        let mut cursor = {
            let mut idx = self.index.write();
            if rev <= self.compact_rev.load(Ordering::Acquire) {
                return Err(MvccError::Compacted);
            }
            if rev > self.current_rev.load(Ordering::Acquire) {
                return Err(MvccError::FutureRev);
            }
            // Set under the write lock: every reader from now on checks
            // against it, and none that checked before is still reading the
            // index.
            self.compact_rev.store(rev, Ordering::Release);
            idx.compact_chunk(rev, None, INDEX_COMPACT_CHUNK, &mut keep)
        };
        while let Some(c) = cursor {
            cursor = self.index.write().compact_chunk(rev, Some(&c), INDEX_COMPACT_CHUNK, &mut keep);
        }
        btx.put(Table::Meta, SCHEDULED_COMPACT_KEY, &Revision::new(rev, 0).to_bytes());
        crate::failpoints::crash_point("compact::after_index");
        Ok(Compaction { backend: Arc::clone(&self.backend), rev, keep, lock: Arc::clone(&self.compaction_lock) })
    }

    /// Hash of the key-value history up to `rev` (0: current), as etcd's
    /// HashKV: crc32c (Castagnoli) over `"key"` then every `Key`-table record
    /// (revision key, encoded value) with main revision <= `rev`, skipping
    /// records at or before the compacted revision that compaction at `rev`
    /// would not keep (so members that differ only in how far their physical
    /// compaction has progressed agree). Errors as etcd: Compacted if
    /// 0 < rev <= compact_rev, FutureRev if rev > current revision.
    ///
    /// `compact_revision` is etcd's (-1 if never compacted); `revision` is
    /// the store revision when the hash was computed (etcd's response header
    /// revision), whatever revision the hash covers.
    pub fn hash_kv(&self, rev: i64) -> Result<HashKv, MvccError> {
        let (at, cur, compact, keep) = {
            let idx = self.index.read();
            let compact = self.compact_rev.load(Ordering::Acquire);
            let cur = self.current_rev.load(Ordering::Acquire);
            if rev > 0 && rev <= compact {
                return Err(MvccError::Compacted);
            }
            if rev > cur {
                return Err(MvccError::FutureRev);
            }
            let at = if rev <= 0 { cur } else { rev };
            (at, cur, compact, idx.keep(at))
        };
        let mut hash = crc32c::crc32c(b"key");
        let mut failure = None;
        let upper = Revision::new(at.saturating_add(1), 0).to_bytes();
        self.backend.scan(Table::Key, &[], Some(&upper), |k, v| {
            let rev = match Revision::from_key(k) {
                Ok((r, _)) => r,
                Err(e) => {
                    failure = Some(e);
                    return false;
                }
            };
            if rev.main <= compact && !keep.is_empty() && !keep.contains(&rev) {
                return true;
            }
            hash = crc32c::crc32c_append(hash, k);
            hash = crc32c::crc32c_append(hash, v);
            true
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(HashKv { hash, compact_revision: compact, revision: cur })
    }

    /// The events (puts and deletes) with main revision in `[start_rev, end_rev]`
    /// whose key is in the range `key`/`end`, in revision order, at most
    /// `limit` (0 = no limit), without prev_kv. Used by watchers to catch up.
    /// `end_rev` is capped at the current revision (a running write
    /// transaction's changes are not events yet).
    ///
    /// Errors with Compacted if start_rev < compact_rev, as etcd's watch
    /// (a watch may start at the compacted revision itself).
    pub fn events(
        &self,
        key: &[u8],
        end: &[u8],
        start_rev: i64,
        end_rev: i64,
        limit: usize,
    ) -> Result<Vec<Event>, MvccError> {
        let cur = {
            let _idx = self.index.read();
            if start_rev < self.compact_rev.load(Ordering::Acquire) {
                return Err(MvccError::Compacted);
            }
            self.current_rev.load(Ordering::Acquire)
        };
        let end_rev = end_rev.min(cur);
        let start_rev = start_rev.max(0);
        if start_rev > end_rev {
            return Ok(Vec::new());
        }
        let range = KeyRange::new(key, end);
        let mut events = Vec::new();
        let mut failure = None;
        let lower = Revision::new(start_rev, 0).to_bytes();
        let upper = Revision::new(end_rev.saturating_add(1), 0).to_bytes();
        self.backend.scan(Table::Key, &lower, Some(&upper), |k, v| {
            let step = Revision::from_key(k).and_then(|(rev, tombstone)| Ok((rev, tombstone, decode_kv(rev, v)?)));
            let (rev, tombstone, kv) = match step {
                Ok(x) => x,
                Err(e) => {
                    failure = Some(e);
                    return false;
                }
            };
            if !range.contains(&kv.key) {
                return true;
            }
            events.push(if tombstone {
                Event {
                    r#type: EventType::Delete as i32,
                    kv: Some(KeyValue { key: kv.key, mod_revision: rev.main, ..Default::default() }),
                    prev_kv: None,
                }
            } else {
                Event { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: None }
            });
            limit == 0 || events.len() < limit
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        // A compaction that ran meanwhile may have removed some of them.
        if start_rev < self.compact_rev.load(Ordering::Acquire) {
            return Err(MvccError::Compacted);
        }
        Ok(events)
    }

    /// (lease id, key) for every live key attached to a lease, at the current
    /// revision. Used to rebuild the lessor on start. Errors are logged (see
    /// [`KvStore::try_leased_keys`]).
    pub fn leased_keys(&self) -> Vec<(i64, Vec<u8>)> {
        self.try_leased_keys().unwrap_or_else(|e| {
            tracing::error!("cannot list leased keys: {e}");
            Vec::new()
        })
    }

    /// [`KvStore::leased_keys`], reporting backend errors.
    pub fn try_leased_keys(&self) -> Result<Vec<(i64, Vec<u8>)>, MvccError> {
        let (revs, at) = {
            let idx = self.index.read();
            let at = self.current_rev.load(Ordering::Acquire);
            let (revs, _) = idx.revisions(KeyRange::From(&[]), at, usize::MAX);
            (revs, at)
        };
        Ok(self.fetch(&revs, at)?.into_iter().filter(|kv| kv.lease != 0).map(|kv| (kv.lease, kv.key)).collect())
    }

    /// The index, for tests comparing two stores.
    #[cfg(test)]
    pub(super) fn index_dump(&self) -> Vec<super::key_index::KeyIndex> {
        self.index.read().dump()
    }
}
