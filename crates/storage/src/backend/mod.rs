//! The backend: a redb database plus a write buffer.
//!
//! Writes are staged through a [`BatchTx`] (one writer at a time: the apply
//! thread) and become visible to reads at once; [`Backend::commit`] makes
//! everything staged so far durable in one redb write transaction. The server
//! commits every 100 ms or 10,000 staged operations, off the acknowledgement
//! path: the fsynced WAL is what makes a write safe, and on restart the WAL is
//! replayed from the consistent index, which is staged in the same batch as the
//! data it describes (so a commit can never hold data without its index, or the
//! index without its data).
//!
//! # Visibility and locking
//!
//! Readers see three layers, newest first: the *staged* buffer (what
//! `BatchTx`es wrote since the last commit started), the *committing* buffer
//! (the batch a running commit is writing to redb) and a redb read snapshot.
//! A delete in a buffer hides the layers below it. The three live together in
//! `Backend::state` (a `parking_lot::RwLock`) and are only ever changed
//! together under its write lock, so a reader that takes the read lock sees a
//! consistent cut:
//!
//! - `BatchTx::put`/`delete` take the state write lock for one map insert.
//! - `commit` moves staged -> committing under the state lock, writes and
//!   commits redb with *no* lock held (staging and reads go on meanwhile),
//!   then under the state lock installs the new redb snapshot and drops the
//!   committing buffer in one step.
//! - `get`/`range` look at the buffers under the state read lock, clone the
//!   `Arc` of the snapshot, release the lock, and only then read redb. The
//!   snapshot is immutable, so the result is the state at the moment the
//!   lock was held.
//!
//! Lock order: `commit_lock` -> `writer` -> `state`. A `BatchTx` holds
//! `writer` for its whole life; `commit` takes `writer` only to swap the
//! buffers, so all of one `BatchTx`'s writes land in the same commit. Calling
//! `commit` on a thread that holds a `BatchTx` deadlocks.

mod buffer;
mod committer;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::Read;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};
use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use buffer::{Buffer, ALL_TABLES, TABLES};
use committer::CommitSignal;
pub use committer::CommitterHandle;

/// The backend's tables (redb tables of `&[u8] -> &[u8]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// MVCC revisions: 17-byte revision key -> encoded mvccpb.KeyValue.
    Key,
    /// Store metadata: consistent index, compaction marks, format version.
    Meta,
    /// Leases: 8-byte big-endian id -> encoded lease record.
    Lease,
    /// Cluster members and cluster-wide settings.
    Members,
    /// Auth: users, roles, enabled flag, auth revision.
    Auth,
    /// Active alarms: 8-byte member id and 4-byte alarm type -> encoded AlarmMember.
    Alarm,
    /// The v2 keys store (`--enable-v2`): node path -> encoded node, plus
    /// its index under a key that is not a path.
    V2,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; TABLES] = ALL_TABLES;

    /// A stable small number for the table (used in snapshot streams).
    pub fn id(self) -> u32 {
        buffer::slot(self) as u32
    }

    pub fn from_id(id: u32) -> Option<Table> {
        ALL_TABLES.get(id as usize).copied()
    }

    /// The redb table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Key => "key",
            Table::Meta => "meta",
            Table::Lease => "lease",
            Table::Members => "members",
            Table::Auth => "auth",
            Table::Alarm => "alarm",
            Table::V2 => "v2keys",
        }
    }

    fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
    }
}

/// Called with the duration of each commit that wrote something.
pub type CommitObserver = Box<dyn Fn(std::time::Duration) + Send + Sync>;

/// A key and its value.
pub type KvPair = (Vec<u8>, Vec<u8>);

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend: {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("backend: {0}")]
    Db(String),
    /// See [`BatchTx::abandon`].
    #[error("backend: writes were abandoned after a failure; the member must restart")]
    Abandoned,
}

/// Maps any redb error to [`BackendError::Db`].
fn db_err(e: impl std::fmt::Display) -> BackendError {
    BackendError::Db(e.to_string())
}

/// Meta key of the consistent index: 16 bytes, big-endian index then term.
pub const CONSISTENT_INDEX_KEY: &[u8] = b"consistent_index";
/// Meta key of the raft configuration as of the consistent index (an
/// encoded raft `ConfState`), so a restart knows it without the log.
pub const CONF_STATE_KEY: &[u8] = b"conf_state";
/// Meta key of the on-disk format version (ASCII decimal).
pub const FORMAT_KEY: &[u8] = b"retcd_format";
/// The format version this build writes and the highest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// redb's file magic (the first 9 bytes of every redb database file).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
/// bbolt's meta magic (little-endian u32 at offset 16 of the first page).
const BOLT_MAGIC: u32 = 0xED0C_DAED;

/// An immutable redb read snapshot with every table open.
struct Snapshot {
    tables: Vec<ReadOnlyTable<&'static [u8], &'static [u8]>>,
}

impl Snapshot {
    fn open(db: &Database) -> Result<Snapshot, BackendError> {
        let rtx = db.begin_read().map_err(db_err)?;
        let mut tables = Vec::with_capacity(TABLES);
        for t in ALL_TABLES {
            tables.push(rtx.open_table(t.definition()).map_err(db_err)?);
        }
        // The tables keep the read transaction's pages alive on their own.
        Ok(Snapshot { tables })
    }

    fn table(&self, table: Table) -> &ReadOnlyTable<&'static [u8], &'static [u8]> {
        &self.tables[buffer::slot(table)]
    }
}

/// Everything readers look at; changed only as a whole under the lock.
struct State {
    staged: Buffer,
    committing: Option<Arc<Buffer>>,
    snapshot: Arc<Snapshot>,
}

pub struct Backend {
    /// The read view (see the module docs). Declared before `db` so the
    /// snapshot's read transaction is dropped before the database.
    state: RwLock<State>,
    /// Held by a live `BatchTx`; taken by `commit` to swap the buffers.
    writer: Mutex<()>,
    /// Serializes commits.
    commit_lock: Mutex<()>,
    /// Last staged (or committed) consistent index and term.
    consistent: Mutex<(u64, u64)>,
    /// Cached [`Backend::size_in_use`] estimate; `u64::MAX` until computed.
    in_use: AtomicU64,
    /// Wakes background committers (see [`Backend::spawn_committer`]).
    signal: CommitSignal,
    /// Replaced as a whole by [`Backend::defragment`].
    db: RwLock<Database>,
    /// Told how long each non-empty commit took (for metrics).
    commit_observer: std::sync::OnceLock<CommitObserver>,
    /// Set by [`BatchTx::abandon`]: no commit writes anything after it.
    abandoned: std::sync::atomic::AtomicBool,
    path: PathBuf,
}

/// Exclusive staging handle: holds the writer lock while alive so that
/// everything staged through one `BatchTx` lands in the same commit.
pub struct BatchTx<'a> {
    backend: &'a Backend,
    /// Always `Some` until drop, which hands the lock over fairly so a
    /// waiting writer (the apply thread, or a compaction chunk) gets it next.
    guard: Option<MutexGuard<'a, ()>>,
}

/// Refuses anything that is not an empty file or a redb database, reading
/// only its first bytes: redb would otherwise report an error at best, and
/// the file must never be touched.
fn check_header(path: &Path) -> Result<(), BackendError> {
    let open_err = |reason: String| BackendError::Open { path: path.to_path_buf(), reason };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(open_err(e.to_string())),
    };
    let meta = file.metadata().map_err(|e| open_err(e.to_string()))?;
    if meta.is_dir() {
        return Err(open_err("is a directory, not a database file".into()));
    }
    if meta.len() == 0 {
        return Ok(());
    }
    let mut head = Vec::with_capacity(32);
    file.by_ref().take(32).read_to_end(&mut head).map_err(|e| open_err(e.to_string()))?;
    if head.starts_with(&REDB_MAGIC) {
        return Ok(());
    }
    let bolt = head
        .get(16..20)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .is_some_and(|b| u32::from_le_bytes(b) == BOLT_MAGIC || u32::from_be_bytes(b) == BOLT_MAGIC);
    Err(open_err(if bolt {
        "this is an etcd (bbolt) database, which retcd cannot read; restore from a snapshot into a new data directory"
            .into()
    } else {
        "not a retcd database (unrecognized file header)".into()
    }))
}

/// What [`inspect`] found in a redb file that retcd may use.
struct Inspection {
    /// A new database: write the format marker.
    initialize: bool,
    /// Tables to create.
    missing: Vec<Table>,
}

/// Checks the format marker and finds missing tables, reading only.
fn inspect(rtx: &redb::ReadTransaction) -> Result<Inspection, String> {
    let has_tables = rtx.list_tables().map_err(|e| e.to_string())?.next().is_some();
    let mut missing = Vec::new();
    let mut format = None;
    for t in ALL_TABLES {
        match rtx.open_table(t.definition()) {
            Ok(tab) if t == Table::Meta => {
                format = tab.get(FORMAT_KEY).map_err(|e| e.to_string())?.map(|g| g.value().to_vec());
            }
            Ok(_) => {}
            Err(redb::TableError::TableDoesNotExist(_)) => missing.push(t),
            Err(e) => return Err(e.to_string()),
        }
    }
    let initialize = match format {
        None if has_tables => return Err("a redb database, but not retcd's (no format marker)".into()),
        None => true,
        Some(v) => {
            let version = std::str::from_utf8(&v).ok().and_then(|s| s.parse::<u32>().ok());
            match version {
                Some(n) if n <= FORMAT_VERSION => false,
                Some(n) => {
                    return Err(format!(
                        "written by a newer retcd (format {n}; this build reads up to {FORMAT_VERSION})"
                    ));
                }
                None => return Err("unreadable format marker".into()),
            }
        }
    };
    Ok(Inspection { initialize, missing })
}

impl Backend {
    /// Opens (or creates) the database file at `path`. A file that is not a
    /// retcd redb database (for example etcd's bbolt `db`), or one written by a
    /// newer retcd format, is refused with an error naming the file; it is
    /// never modified.
    pub fn open(path: &Path) -> Result<Arc<Backend>, BackendError> {
        let open_err = |reason: String| BackendError::Open { path: path.to_path_buf(), reason };
        check_header(path)?;
        // A defragmentation interrupted before its rename leaves a partial
        // copy; the original is intact.
        let leftover = defrag_path(path);
        if leftover.exists() {
            std::fs::remove_file(&leftover).map_err(|e| open_err(format!("removing {}: {e}", leftover.display())))?;
        }
        // Inspect an existing file read-only first: refusing it must leave it
        // untouched, and opening read-write writes redb's header. A file that
        // needs crash recovery cannot be opened read-only; it is a redb file
        // that was not closed cleanly (ours, after a crash), so it is checked
        // after the read-write open below repairs it.
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            match redb::Builder::new().open_read_only(path) {
                Ok(ro) => {
                    let rtx = ro.begin_read().map_err(|e| open_err(e.to_string()))?;
                    inspect(&rtx).map_err(open_err)?;
                }
                Err(redb::DatabaseError::RepairAborted) => {}
                Err(e) => return Err(open_err(e.to_string())),
            }
        }
        let db = redb::Builder::new().create(path).map_err(|e| open_err(e.to_string()))?;
        let Inspection { initialize, missing } = {
            let rtx = db.begin_read().map_err(|e| open_err(e.to_string()))?;
            inspect(&rtx).map_err(open_err)?
        };
        if initialize || !missing.is_empty() {
            let mut wtx = db.begin_write().map_err(db_err)?;
            wtx.set_durability(Durability::Immediate).map_err(db_err)?;
            for t in ALL_TABLES {
                let mut tab = wtx.open_table(t.definition()).map_err(db_err)?;
                if initialize && t == Table::Meta {
                    tab.insert(FORMAT_KEY, FORMAT_VERSION.to_string().as_bytes()).map_err(db_err)?;
                }
            }
            wtx.commit().map_err(db_err)?;
        }

        let snapshot = Snapshot::open(&db)?;
        let consistent = match snapshot.table(Table::Meta).get(CONSISTENT_INDEX_KEY).map_err(db_err)? {
            None => (0, 0),
            Some(g) => {
                decode_consistent_index(g.value()).ok_or_else(|| open_err("corrupt consistent index record".into()))?
            }
        };
        Ok(Arc::new(Backend {
            state: RwLock::new(State { staged: Buffer::default(), committing: None, snapshot: Arc::new(snapshot) }),
            writer: Mutex::new(()),
            commit_lock: Mutex::new(()),
            consistent: Mutex::new(consistent),
            in_use: AtomicU64::new(u64::MAX),
            signal: CommitSignal::default(),
            db: RwLock::new(db),
            commit_observer: std::sync::OnceLock::new(),
            abandoned: std::sync::atomic::AtomicBool::new(false),
            path: path.to_path_buf(),
        }))
    }

    /// Sets what is told the duration of every commit (once; later calls
    /// are ignored).
    pub fn set_commit_observer(&self, observer: CommitObserver) {
        let _ = self.commit_observer.set(observer);
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts staging writes. Blocks while another `BatchTx` is alive.
    pub fn batch_tx(&self) -> BatchTx<'_> {
        BatchTx { backend: self, guard: Some(self.writer.lock()) }
    }

    /// Reads one value, seeing staged (uncommitted) writes.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let mut out = None;
        self.get_many_with(table, &[key], |_, v| out = v.map(<[u8]>::to_vec))?;
        Ok(out)
    }

    /// Reads several values from one consistent view (one lock acquisition
    /// and one snapshot for all of them), seeing staged writes. The result is
    /// in the order of `keys`.
    pub fn get_many<K: AsRef<[u8]>>(&self, table: Table, keys: &[K]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let mut out = vec![None; keys.len()];
        self.get_many_with(table, keys, |i, v| out[i] = v.map(<[u8]>::to_vec))?;
        Ok(out)
    }

    /// Like [`Backend::get_many`], but hands each value to `f(i, value)` (in
    /// the order of `keys`) as a borrowed slice, saving a copy per value.
    pub fn get_many_with<K, F>(&self, table: Table, keys: &[K], mut f: F) -> Result<(), BackendError>
    where
        K: AsRef<[u8]>,
        F: FnMut(usize, Option<&[u8]>),
    {
        // Buffered answers are copied under the lock (they are few: recent
        // writes); everything else is read from the snapshot after it.
        let mut buffered: Vec<Option<Option<Vec<u8>>>> = Vec::with_capacity(keys.len());
        let snapshot = {
            let st = self.state.read();
            for k in keys {
                let k = k.as_ref();
                let hit =
                    st.staged.lookup(table, k).or_else(|| st.committing.as_ref().and_then(|c| c.lookup(table, k)));
                buffered.push(hit.map(|v| v.map(<[u8]>::to_vec)));
            }
            Arc::clone(&st.snapshot)
        };
        let tab = snapshot.table(table);
        for (i, (k, hit)) in keys.iter().zip(buffered).enumerate() {
            match hit {
                Some(v) => f(i, v.as_deref()),
                None => match tab.get(k.as_ref()).map_err(db_err)? {
                    Some(g) => f(i, Some(g.value())),
                    None => f(i, None),
                },
            }
        }
        Ok(())
    }

    /// Reads keys in `[start, end)` in key order (`end` None: to the end of the
    /// table), at most `limit` pairs (0: no limit), seeing staged writes.
    pub fn range(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KvPair>, BackendError> {
        let mut out = Vec::new();
        self.scan_inner(table, start, end, limit, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            limit == 0 || out.len() < limit
        })?;
        Ok(out)
    }

    /// Like [`Backend::range`] but returns only the keys.
    pub fn range_keys(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, BackendError> {
        let mut out = Vec::new();
        self.scan_inner(table, start, end, limit, |k, _| {
            out.push(k.to_vec());
            limit == 0 || out.len() < limit
        })?;
        Ok(out)
    }

    /// Visits the pairs in `[start, end)` in key order (seeing staged
    /// writes) until `f` returns false, from one consistent view, without
    /// copying values out of the database. The whole view is held for the
    /// scan: for very long scans prefer chunks of [`Backend::range`].
    pub fn scan<F>(&self, table: Table, start: &[u8], end: Option<&[u8]>, f: F) -> Result<(), BackendError>
    where
        F: FnMut(&[u8], &[u8]) -> bool,
    {
        self.scan_inner(table, start, end, 0, f)
    }

    /// `max_puts`: see [`buffer::overlay`] (0: copy the whole buffered range).
    fn scan_inner<F>(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        max_puts: usize,
        f: F,
    ) -> Result<(), BackendError>
    where
        F: FnMut(&[u8], &[u8]) -> bool,
    {
        if end.is_some_and(|e| e <= start) {
            return Ok(());
        }
        let (overlay, snapshot) = {
            let st = self.state.read();
            let ov = buffer::overlay(&st.staged, st.committing.as_deref(), table, start, end, max_puts);
            (ov, Arc::clone(&st.snapshot))
        };
        let upper = match end {
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        let iter = snapshot.table(table).range::<&[u8]>((Bound::Included(start), upper)).map_err(db_err)?;
        buffer::merge(overlay, iter, f).map_err(db_err)
    }

    /// Durably commits everything staged so far (one redb write transaction).
    /// Concurrent staging and reads continue while the commit runs.
    ///
    /// Must not be called by a thread that holds a [`BatchTx`] (deadlock).
    /// If the commit fails, the batch is put back under anything staged since
    /// (nothing is lost or reordered) and the next commit retries it.
    pub fn commit(&self) -> Result<(), BackendError> {
        let _commit = self.commit_lock.lock();
        let batch = {
            // Waiting for `writer` means waiting for the live BatchTx (if
            // any) to finish: its writes are never split across commits.
            let _writer = self.writer.lock();
            if self.abandoned.load(Ordering::Acquire) {
                return Err(BackendError::Abandoned);
            }
            let mut st = self.state.write();
            if st.staged.is_empty() {
                st.staged.ops = 0;
                return Ok(());
            }
            let batch = Arc::new(std::mem::take(&mut st.staged));
            st.committing = Some(Arc::clone(&batch));
            batch
        };
        // No lock is held while redb writes and fsyncs: readers see the batch
        // as the committing buffer, writers stage into a fresh buffer.
        let started = std::time::Instant::now();
        crate::failpoints::crash_point("backend::before_commit");
        let result = self.write_batch(&batch).and_then(|()| Snapshot::open(&self.db.read()));
        crate::failpoints::crash_point("backend::after_commit");
        if let (Ok(_), Some(observe)) = (&result, self.commit_observer.get()) {
            observe(started.elapsed());
        }
        let mut st = self.state.write();
        match result {
            Ok(snapshot) => {
                // The new snapshot holds the batch: swap both in one step.
                let old = std::mem::replace(&mut st.snapshot, Arc::new(snapshot));
                st.committing = None;
                drop(st);
                // Ends the old read transaction (if no reader still uses it)
                // outside the lock.
                drop(old);
                Ok(())
            }
            Err(e) => {
                // Still under the same lock, so readers never miss the batch.
                st.committing = None;
                let older = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
                st.staged.absorb_older(older);
                drop(st);
                tracing::error!(path = %self.path.display(), "backend commit failed: {e}");
                Err(e)
            }
        }
    }

    fn write_batch(&self, batch: &Buffer) -> Result<(), BackendError> {
        let mut wtx = self.db.read().begin_write().map_err(db_err)?;
        wtx.set_durability(Durability::Immediate).map_err(db_err)?;
        for (t, entries) in ALL_TABLES.iter().zip(batch.tables.iter()) {
            if entries.is_empty() {
                continue;
            }
            let mut tab = wtx.open_table(t.definition()).map_err(db_err)?;
            for (k, v) in entries {
                match v {
                    Some(v) => {
                        tab.insert(k.as_slice(), v.as_slice()).map_err(db_err)?;
                    }
                    None => {
                        tab.remove(k.as_slice()).map_err(db_err)?;
                    }
                }
            }
        }
        wtx.commit().map_err(db_err)
    }

    /// Number of operations staged since the last commit started.
    pub fn staged_ops(&self) -> usize {
        self.state.read().staged.ops
    }

    /// The consistent index and term last staged (or committed): the raft entry
    /// the backend's contents reflect.
    pub fn consistent_index(&self) -> (u64, u64) {
        *self.consistent.lock()
    }

    /// Size of the database file in bytes.
    pub fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Bytes of the file in use by live data (<= size).
    ///
    /// An estimate from redb's b-tree statistics (stored, metadata and
    /// fragmented bytes of the pages the tables occupy), refreshed by
    /// [`Backend::refresh_size_in_use`] (the committer does so every 30
    /// seconds); the file size until first computed.
    pub fn size_in_use(&self) -> u64 {
        let size = self.size();
        match self.in_use.load(Ordering::Relaxed) {
            u64::MAX => size,
            n => n.min(size),
        }
    }

    /// Recomputes the [`Backend::size_in_use`] estimate from the committed
    /// data. Walks every b-tree page: O(database size).
    pub fn refresh_size_in_use(&self) -> Result<u64, BackendError> {
        let snapshot = Arc::clone(&self.state.read().snapshot);
        let mut bytes = 0u64;
        for t in &snapshot.tables {
            let s = t.stats().map_err(db_err)?;
            bytes += s.stored_bytes() + s.metadata_bytes() + s.fragmented_bytes();
        }
        self.in_use.store(bytes, Ordering::Relaxed);
        Ok(bytes.min(self.size()))
    }
}

/// Where [`Backend::defragment`] builds the new file.
fn defrag_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".defrag");
    PathBuf::from(name)
}

/// Records copied per write transaction while defragmenting.
const DEFRAG_BATCH: usize = 10_000;

impl Backend {
    /// Rewrites the database into a new file that holds only the live data
    /// and puts it in place of the old one (etcd's defragmentation): the file
    /// shrinks to what the data needs. Writers wait until it is done; readers
    /// go on against the current snapshot (which keeps the old file open).
    ///
    /// The copy is complete and fsynced before the rename, and the rename is
    /// atomic, so a crash leaves either the old file or the new one.
    pub fn defragment(&self) -> Result<(), BackendError> {
        let _commit = self.commit_lock.lock();
        let _writer = self.writer.lock();
        // Nothing can be staged while `writer` is held. Flush what was staged
        // before (shown to readers as the committing buffer meanwhile, as in
        // `commit`), so the copy holds everything.
        let batch = {
            let mut st = self.state.write();
            (!st.staged.is_empty()).then(|| {
                let batch = Arc::new(std::mem::take(&mut st.staged));
                st.committing = Some(Arc::clone(&batch));
                batch
            })
        };
        let source = match batch.as_deref().map_or(Ok(()), |b| self.write_batch(b)) {
            Ok(()) => Snapshot::open(&self.db.read()).map(Arc::new),
            Err(e) => Err(e),
        };
        let source = {
            let mut st = self.state.write();
            st.committing = None;
            match source {
                Ok(source) => {
                    st.snapshot = Arc::clone(&source);
                    source
                }
                Err(e) => {
                    if let Some(batch) = batch {
                        st.staged.absorb_older(Arc::try_unwrap(batch).unwrap_or_else(|b| (*b).clone()));
                    }
                    return Err(e);
                }
            }
        };
        let target_path = defrag_path(&self.path);
        let target = match copy_into(&source, &target_path) {
            Ok(db) => db,
            Err(e) => {
                let _ = std::fs::remove_file(&target_path);
                return Err(e);
            }
        };
        crate::failpoints::crash_point("defrag::before_swap");
        std::fs::rename(&target_path, &self.path).map_err(db_err)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(db_err)?;
        }
        crate::failpoints::crash_point("defrag::after_swap");
        let snapshot = Snapshot::open(&target)?;
        let old_db = std::mem::replace(&mut *self.db.write(), target);
        let old_snapshot = std::mem::replace(&mut self.state.write().snapshot, Arc::new(snapshot));
        self.in_use.store(u64::MAX, Ordering::Relaxed);
        drop(old_snapshot);
        drop(old_db);
        Ok(())
    }
}

impl Backend {
    /// Writes a consistent copy of the database (everything committed so
    /// far, staged writes committed first) to a new file at `path`, compact
    /// and fsynced. Writers and readers go on meanwhile.
    pub fn copy_to(&self, path: &Path) -> Result<(), BackendError> {
        self.commit()?;
        let source = Arc::clone(&self.state.read().snapshot);
        copy_into(&source, path).map(drop)
    }
}

/// Everything committed at one moment, for streaming the whole database out
/// (a raft snapshot for a member that fell behind) without holding the
/// writer or copying it into memory. The view keeps its pages alive until
/// dropped; writers go on meanwhile.
pub struct Export {
    snapshot: Arc<Snapshot>,
    /// The consistent index and term the view's contents reflect.
    pub index: u64,
    pub term: u64,
}

impl Backend {
    /// Commits what is staged, then takes the committed view and the
    /// consistent index recorded in it.
    pub fn export(&self) -> Result<Export, BackendError> {
        self.commit()?;
        let snapshot = Arc::clone(&self.state.read().snapshot);
        let (index, term) = match snapshot.table(Table::Meta).get(CONSISTENT_INDEX_KEY).map_err(db_err)? {
            None => (0, 0),
            Some(g) => decode_consistent_index(g.value())
                .ok_or_else(|| BackendError::Db("corrupt consistent index record".into()))?,
        };
        Ok(Export { snapshot, index, term })
    }
}

impl Export {
    /// Visits every pair of every table, table by table in key order, until
    /// `f` returns false.
    pub fn for_each(&self, mut f: impl FnMut(Table, &[u8], &[u8]) -> bool) -> Result<(), BackendError> {
        for t in ALL_TABLES {
            for entry in self.snapshot.table(t).iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                if !f(t, k.value(), v.value()) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Creates a redb database at `path` holding every table of `source`, durably.
fn copy_into(source: &Snapshot, path: &Path) -> Result<Database, BackendError> {
    let db = redb::Builder::new().create(path).map_err(db_err)?;
    for t in ALL_TABLES {
        let mut iter = source.table(t).iter().map_err(db_err)?.peekable();
        // Every table exists in the copy, even an empty one.
        let mut first = true;
        while first || iter.peek().is_some() {
            first = false;
            let mut wtx = db.begin_write().map_err(db_err)?;
            wtx.set_durability(Durability::None).map_err(db_err)?;
            {
                let mut tab = wtx.open_table(t.definition()).map_err(db_err)?;
                for entry in iter.by_ref().take(DEFRAG_BATCH) {
                    let (k, v) = entry.map_err(db_err)?;
                    tab.insert(k.value(), v.value()).map_err(db_err)?;
                }
            }
            wtx.commit().map_err(db_err)?;
        }
    }
    // One durable commit makes every non-durable one before it durable.
    let mut wtx = db.begin_write().map_err(db_err)?;
    wtx.set_durability(Durability::Immediate).map_err(db_err)?;
    wtx.commit().map_err(db_err)?;
    Ok(db)
}

fn decode_consistent_index(b: &[u8]) -> Option<(u64, u64)> {
    let index = u64::from_be_bytes(b.get(0..8)?.try_into().ok()?);
    let term = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
    (b.len() == 16).then_some((index, term))
}

impl BatchTx<'_> {
    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) {
        self.stage(table, key.to_vec(), Some(value.to_vec()));
    }

    pub fn delete(&mut self, table: Table, key: &[u8]) {
        self.stage(table, key.to_vec(), None);
    }

    fn stage(&mut self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>) {
        let old = self.backend.state.write().staged.put(table, key, value);
        // Free the replaced value after the lock is released.
        drop(old);
    }

    /// Throws away everything staged since the last commit began (this
    /// batch's writes and any earlier ones still waiting) and refuses every
    /// later commit, for a member that must stop because applying failed
    /// part-way: the file keeps its last commit, whose data and consistent
    /// index agree, and a restart replays the log from there.
    pub fn abandon(self) {
        // The writer lock is still held: no commit can take this batch.
        self.backend.abandoned.store(true, Ordering::Release);
        let dropped = std::mem::take(&mut self.backend.state.write().staged);
        tracing::warn!("abandoned {} staged backend writes", dropped.ops);
    }

    /// Stages the consistent index (raft index and term of the entry being applied).
    pub fn set_consistent_index(&mut self, index: u64, term: u64) {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&index.to_be_bytes());
        v[8..].copy_from_slice(&term.to_be_bytes());
        self.put(Table::Meta, CONSISTENT_INDEX_KEY, &v);
        *self.backend.consistent.lock() = (index, term);
    }
}

impl Drop for BatchTx<'_> {
    fn drop(&mut self) {
        if let Some(g) = self.guard.take() {
            MutexGuard::unlock_fair(g);
        }
        self.backend.signal.maybe_kick(self.backend);
    }
}
