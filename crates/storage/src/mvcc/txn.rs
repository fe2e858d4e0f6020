//! [`WriteTxn`]: puts and deletes sharing one main revision.
//!
//! Each change is staged into the batch tx and indexed at once, under the
//! revision (store revision + 1, number of changes so far); the store
//! revision advances when the transaction ends, which is what makes the
//! changes visible to readers. Reads through the transaction see its own
//! changes (they read at store revision + 1 once it has any, as etcd).

use std::sync::atomic::Ordering;

use prost::Message;
use retcd_api::mvccpb::{event::EventType, Event, KeyValue};

use super::index::{KeyRange, LiveKey};
use super::store::decode_kv;
use super::{MvccError, RangeOptions, RangeResult, Revision, WriteTxn};
use crate::backend::{BackendError, Table};

/// One change of a write transaction, kept for its event.
pub(super) struct Change {
    delete: bool,
    /// A put's new kv, or a delete's `{key, mod_revision}`.
    kv: KeyValue,
    /// The kv the change replaced or deleted, if the key existed.
    prev: Option<KeyValue>,
}

impl WriteTxn<'_, '_> {
    /// The main revision this transaction's changes get.
    pub fn rev(&self) -> i64 {
        self.begin_rev + 1
    }

    /// The revision reads through this transaction are served at.
    fn read_rev(&self) -> i64 {
        if self.changes.is_empty() {
            self.begin_rev
        } else {
            self.begin_rev + 1
        }
    }

    fn next_rev(&self) -> Revision {
        Revision::new(self.begin_rev + 1, self.changes.len() as i64)
    }

    /// Reads at the store revision, including this transaction's own changes.
    pub fn range(&mut self, key: &[u8], end: &[u8], opts: RangeOptions) -> Result<RangeResult, MvccError> {
        self.store.range_at(key, end, opts, Some(self.read_rev()))
    }

    /// Puts `key` = `value` attached to `lease` (0 = none); returns the previous kv.
    ///
    /// If the previous kv cannot be read from the backend, the put still
    /// happens, None is returned and the error is kept for
    /// [`WriteTxn::take_error`].
    pub fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Option<KeyValue> {
        let rev = self.next_rev();
        // The key as of this transaction, own earlier changes included.
        let found = self.store.index.read().get(key, rev.main);
        let (create_revision, version, prev) = match found {
            Some((modified, created, ver)) => {
                let prev = self.read_kv(modified);
                (created.main, ver + 1, prev)
            }
            None => (rev.main, 1, None),
        };
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: rev.main,
            version,
            value: value.to_vec(),
            lease,
        };
        self.btx.put(Table::Key, &rev.to_bytes(), &kv.encode_to_vec());
        let indexed = self.store.index.write().put(key, rev);
        if let Err(e) = indexed {
            // Revisions only grow here; this would be a bug.
            self.record(MvccError::Corrupt(format!("indexing revision {rev}: {e:?}")));
        }
        self.changes.push(Change { delete: false, kv, prev: prev.clone() });
        prev
    }

    /// Deletes every live key in the range; returns the deleted kvs in key order.
    ///
    /// Deleting nothing changes nothing (the revision does not advance for
    /// it). If a deleted kv cannot be read from the backend, the key is
    /// deleted all the same, its returned kv has no value or lease, and the
    /// error is kept for [`WriteTxn::take_error`].
    pub fn delete_range(&mut self, key: &[u8], end: &[u8]) -> Vec<KeyValue> {
        let live = self.store.index.read().live(KeyRange::new(key, end), self.read_rev());
        if live.is_empty() {
            return Vec::new();
        }
        let prevs = self.read_live(&live);
        let main = self.begin_rev + 1;
        let mut tombstones = Vec::with_capacity(live.len());
        let mut deleted = Vec::with_capacity(live.len());
        for (l, prev) in live.into_iter().zip(prevs) {
            let rev = self.next_rev();
            let tomb = KeyValue { key: l.key.clone(), ..Default::default() };
            self.btx.put(Table::Key, &rev.to_tombstone_bytes(), &tomb.encode_to_vec());
            deleted.push(prev.clone());
            tombstones.push((l.key.clone(), rev));
            self.changes.push(Change {
                delete: true,
                kv: KeyValue { key: l.key, mod_revision: main, ..Default::default() },
                prev: Some(prev),
            });
        }
        let mut failed = None;
        {
            let mut idx = self.store.index.write();
            for (k, rev) in &tombstones {
                if let Err(e) = idx.tombstone(k, *rev) {
                    failed.get_or_insert(MvccError::Corrupt(format!("indexing tombstone {rev}: {e:?}")));
                }
            }
        }
        if let Some(e) = failed {
            self.record(e);
        }
        deleted
    }

    /// Ends the transaction: its changes become visible and the store revision
    /// advances if there were any. Returns the events in order, each with
    /// `prev_kv` set when the key existed before. A DELETE event's kv is
    /// `{key, mod_revision}`, as etcd's.
    pub fn end(mut self) -> Vec<Event> {
        self.finish()
    }

    /// Ends the transaction without publishing its revision, for an apply
    /// that failed part-way: readers and watchers never see its changes
    /// (they are in the index above the store revision, and staged in a
    /// batch the caller abandons). The store is then ahead of what it
    /// serves, so its owner must stop using it.
    pub fn abandon(mut self) {
        self.ended = true;
    }

    /// The first backend error met by [`WriteTxn::put`] or
    /// [`WriteTxn::delete_range`] (which still applied their changes), if
    /// any. Such errors are also logged.
    pub fn take_error(&mut self) -> Option<MvccError> {
        self.error.take()
    }

    fn finish(&mut self) -> Vec<Event> {
        if self.ended {
            return Vec::new();
        }
        self.ended = true;
        if self.changes.is_empty() {
            return Vec::new();
        }
        // Everything is indexed and staged: publish the revision.
        self.store.current_rev.store(self.begin_rev + 1, Ordering::Release);
        std::mem::take(&mut self.changes)
            .into_iter()
            .map(|c| Event {
                r#type: if c.delete { EventType::Delete } else { EventType::Put } as i32,
                kv: Some(c.kv),
                prev_kv: c.prev,
            })
            .collect()
    }

    fn record(&mut self, e: MvccError) {
        tracing::error!("mvcc write transaction at revision {}: {e}", self.begin_rev + 1);
        self.error.get_or_insert(e);
    }

    /// Reads the kv stored at `rev` (staged writes included).
    fn read_kv(&mut self, rev: Revision) -> Option<KeyValue> {
        if crate::failpoints::error_point("mvcc::read") {
            let injected = BackendError::Db("injected read error (failpoint mvcc::read)".into());
            self.record(injected.into());
            return None;
        }
        let res = match self.store.backend.get(Table::Key, &rev.to_bytes()) {
            Ok(Some(b)) => decode_kv(rev, &b),
            Ok(None) => Err(MvccError::Corrupt(format!("revision {rev} is indexed but not in the backend"))),
            Err(e) => Err(e.into()),
        };
        res.map_err(|e| self.record(e)).ok()
    }

    /// The current kvs of live keys; a kv that cannot be read is rebuilt from
    /// the index (without value and lease).
    fn read_live(&mut self, live: &[LiveKey]) -> Vec<KeyValue> {
        let revs: Vec<Revision> = live.iter().map(|l| l.modified).collect();
        match self.store.fetch(&revs, self.read_rev()) {
            Ok(kvs) if kvs.len() == live.len() => kvs,
            res => {
                if let Err(e) = res {
                    self.record(e);
                }
                live.iter()
                    .map(|l| KeyValue {
                        key: l.key.clone(),
                        create_revision: l.created.main,
                        mod_revision: l.modified.main,
                        version: l.version,
                        ..Default::default()
                    })
                    .collect()
            }
        }
    }
}

impl Drop for WriteTxn<'_, '_> {
    fn drop(&mut self) {
        self.finish();
    }
}
