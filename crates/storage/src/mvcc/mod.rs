//! Multi-version concurrency control: the key-value store of revisions.
//!
//! Every change gets a revision (main, sub): main increments once per write
//! transaction that changes something, sub numbers the changes inside it. The
//! in-memory tree index (private to this module) maps each key to its
//! generations (created, versions..., tombstone), as etcd's keyIndex does; the
//! backend's `Key` table maps revision -> mvccpb.KeyValue. The index is rebuilt
//! from the backend on open.
//!
//! Range semantics of `key`/`end` everywhere: `end` empty = the single key;
//! `end` = `[0]` = every key >= `key`; otherwise `[key, end)`. `key` = `[0]`
//! with `end` = `[0]` = every key.
//!
//! # Concurrency
//!
//! Writers (write transactions and compaction) run on the apply thread and
//! hold the backend's [`BatchTx`], so there is only ever one. A write
//! transaction indexes and stages each change as it goes, but the store
//! revision only advances when it ends; readers capture the store revision
//! and ignore anything newer, so they never see part of a transaction.
//!
//! A read takes the index read lock to check its revision against the
//! current and compacted revisions and collect the revisions of its keys,
//! releases it, and then fetches the values from the backend (one consistent
//! backend view for all of them). `compact` changes the compacted revision
//! under the index write lock, so a reader that passed the check reads an
//! index not yet compacted past its revision. Physical compaction may delete
//! a record between a reader's index lookup and its fetch; the reader then
//! finds the compacted revision moved past its own and answers `Compacted`.
//!
//! Submodules: `revision` (key encoding), `key_index` (one key's
//! generations), `index` (the tree of them), `store` (open, reads, hashes),
//! `txn` (write transactions), `compaction`.

mod compaction;
mod index;
mod key_index;
mod revision;
mod store;
#[cfg(test)]
mod tests;
mod txn;

use std::collections::HashSet;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use retcd_api::mvccpb::KeyValue;

use crate::backend::{Backend, BackendError, BatchTx};

#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    /// etcd: "mvcc: required revision has been compacted"
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// etcd: "mvcc: required revision is a future revision"
    #[error("mvcc: required revision is a future revision")]
    FutureRev,
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("mvcc: corrupt record in backend: {0}")]
    Corrupt(String),
}

/// A revision: `main` is the store revision of a write transaction, `sub` the
/// index of a change within it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RangeOptions {
    /// Revision to read at; 0 = current.
    pub rev: i64,
    /// Max kvs to return; 0 = no limit. `count` is unaffected.
    pub limit: usize,
    /// Return no kvs, only the count.
    pub count_only: bool,
}

#[derive(Debug, Default)]
pub struct RangeResult {
    /// Matching kvs in key order (at most `limit`).
    pub kvs: Vec<KeyValue>,
    /// The revision the range was served at (the store revision when rev=0).
    pub rev: i64,
    /// Total number of matching keys, ignoring `limit`.
    pub count: usize,
}

/// Hash of the store's key-value history, for comparing members.
#[derive(Debug, Clone, Copy)]
pub struct HashKv {
    pub hash: u32,
    /// etcd's compactMainRev: -1 if never compacted.
    pub compact_revision: i64,
    /// The store revision when the hash was computed (etcd's HashKV header
    /// revision; the hash itself covers the requested revision).
    pub revision: i64,
}

/// Meta key of the revision a compaction was scheduled at (17-byte revision).
pub const SCHEDULED_COMPACT_KEY: &[u8] = b"scheduledCompactRev";
/// Meta key of the revision the last finished compaction was at.
pub const FINISHED_COMPACT_KEY: &[u8] = b"finishedCompactRev";

/// The multi-version key-value store.
pub struct KvStore {
    backend: Arc<Backend>,
    /// Key -> generations. See the module docs for the locking rules.
    index: RwLock<index::Tree>,
    /// The store revision: the main revision of the last write transaction
    /// that changed something (1 for an empty store). Advanced by
    /// `WriteTxn::end`, after its changes are indexed and staged.
    current_rev: AtomicI64,
    /// etcd's compactMainRev: -1 until the first compaction. Only changed
    /// under the index write lock.
    compact_rev: AtomicI64,
    /// Serializes physical compactions (`Compaction::run`).
    compaction_lock: Arc<Mutex<()>>,
}

/// A write transaction. Its changes share one main revision (the store
/// revision plus one); reads through it see its own changes. Readers of the
/// store see none of them until [`WriteTxn::end`].
///
/// Dropping it without [`WriteTxn::end`] ends it all the same (its changes
/// are already indexed and staged).
pub struct WriteTxn<'a, 'b> {
    store: &'a KvStore,
    btx: &'a mut BatchTx<'b>,
    /// The store revision when the transaction began.
    begin_rev: i64,
    changes: Vec<txn::Change>,
    /// First backend read error met by `put`/`delete_range` (which cannot
    /// return one); see [`WriteTxn::take_error`].
    error: Option<MvccError>,
    ended: bool,
}

/// Physical compaction work scheduled by [`KvStore::compact`].
pub struct Compaction {
    backend: Arc<Backend>,
    rev: i64,
    /// Revisions at or before `rev` that the index still refers to.
    keep: HashSet<Revision>,
    lock: Arc<Mutex<()>>,
}
