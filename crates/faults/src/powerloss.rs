//! Power loss: what a strict POSIX file system keeps of a directory when the
//! power goes, rebuilt from a journal of every mutation made to it.
//!
//! A `kill -9` cannot show a missing fsync, because the page cache outlives
//! the process. Here the process runs with an `LD_PRELOAD` shim
//! (`shim/powerloss.c`, [`SHIM_SOURCE`]) that passes every call through to
//! libc unchanged and appends a record of each mutation of a tracked file to
//! a journal. [`Model`] starts from the directory's content before the run
//! (all of it counted as durable), replays the journal and keeps two views:
//!
//! * live: what the process saw; after a kill it must equal the real
//!   directory byte for byte ([`Model::check_live`]), which proves the shim
//!   missed no mutation;
//! * durable: what survives power loss. A file's data (writes, size changes)
//!   becomes durable at an fsync or fdatasync of that file; a directory's
//!   entries (creations, renames, unlinks, mkdirs) at an fsync of that
//!   directory; `sync`/`syncfs` makes everything durable. A file created and
//!   fsynced in a directory never fsynced does not exist after power loss; a
//!   rename is atomic (the old name or the new, never neither).
//!
//! An fsync counts only what was journaled before it started (its record
//! carries the journal's size then) and only if it returned: one still running
//! at power off makes nothing durable. The model never guesses in the
//! process's favour: a journal record it does not understand, or an
//! operation the shim flagged as not modelled, is an error, never skipped.
//!
//! Journal format (all integers u64 little endian): `[length][kind: u8][pid]
//! [seq]` then the kind's fields; strings and byte strings are `[len][bytes]`.
//! Each process numbers its records 0 (its start record), 1, 2, ... so a
//! lost record shows as a gap.
//! A record cut short at the end (the process died inside the append) is
//! ignored: it never returned to its caller.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The C source of the `LD_PRELOAD` shim, compiled by [`compile_shim`].
pub const SHIM_SOURCE: &str = include_str!("../shim/powerloss.c");

/// Errors of the model: a journal it cannot follow, or file system trouble.
#[derive(Debug, thiserror::Error)]
pub enum PowerlossError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("journal record {index} (pid {pid}, seq {seq}): {reason}")]
    Journal { index: usize, pid: u64, seq: u64, reason: String },
    #[error("journal is malformed at byte {offset}: {reason}")]
    Format { offset: usize, reason: String },
    #[error("the live view differs from the directory: {0}")]
    LiveMismatch(String),
    #[error("{0}")]
    Other(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PowerlossError + '_ {
    move |source| PowerlossError::Io { path: path.to_path_buf(), source }
}

/// Compiles the shim into `dir/libpowerloss.so` with `cc` and returns its
/// path; `Err` with the compiler's message if that fails.
pub fn compile_shim(cc: &Path, dir: &Path) -> Result<PathBuf, String> {
    let src = dir.join("powerloss.c");
    let out = dir.join("libpowerloss.so");
    std::fs::write(&src, SHIM_SOURCE).map_err(|e| format!("{}: {e}", src.display()))?;
    let result = std::process::Command::new(cc)
        .args(["-shared", "-fPIC", "-O1", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-ldl")
        .output()
        .map_err(|e| format!("running {}: {e}", cc.display()))?;
    if !result.status.success() {
        return Err(format!("{} failed:\n{}", cc.display(), String::from_utf8_lossy(&result.stderr)));
    }
    Ok(out)
}

/// The environment a process needs to run under the shim.
pub fn shim_env(shim: &Path, tracked: &Path, journal: &Path, control: Option<&Path>) -> Vec<(String, String)> {
    let mut env = vec![
        ("LD_PRELOAD".to_string(), shim.display().to_string()),
        ("POWERLOSS_DIR".to_string(), tracked.display().to_string()),
        ("POWERLOSS_JOURNAL".to_string(), journal.display().to_string()),
    ];
    if let Some(c) = control {
        env.push(("POWERLOSS_CONTROL".to_string(), c.display().to_string()));
    }
    env
}

// ---------------------------------------------------------------- journal

/// One journaled operation (see the shim for when each is written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Write {
        ino: u64,
        offset: u64,
        data: Vec<u8>,
    },
    /// A size change: ftruncate, O_TRUNC, or a growing fallocate.
    Resize {
        ino: u64,
        size: u64,
    },
    Create {
        parent: u64,
        name: String,
        ino: u64,
    },
    Mkdir {
        parent: u64,
        name: String,
        ino: u64,
    },
    Rename {
        from_dir: u64,
        from: String,
        to_dir: u64,
        to: String,
    },
    Unlink {
        parent: u64,
        name: String,
    },
    /// fsync/fdatasync of `ino` returned: what the journal held before byte
    /// `covers` (its size when the call started) is durable.
    Fsync {
        ino: u64,
        covers: u64,
    },
    /// sync/syncfs returned: everything the journal held before byte `covers` is durable.
    SyncAll {
        covers: u64,
    },
    Open {
        ino: u64,
        path: String,
    },
    /// A mutation the model does not follow.
    Unknown(String),
    /// Power off: the shim killed the process with no mutation in flight.
    Off,
    Start {
        pid: u64,
        root: u64,
    },
}

/// A journal record: where it starts in the journal, who wrote it, and
/// the writer's sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub pid: u64,
    pub seq: u64,
    pub op: Op,
}

/// A parsed journal.
#[derive(Debug, Default)]
pub struct Journal {
    pub records: Vec<Record>,
    /// Bytes of a last record cut short (ignored).
    pub torn_tail: usize,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u64(&mut self) -> Option<u64> {
        let b = self.bytes.get(self.pos..self.pos + 8)?;
        self.pos += 8;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    fn u8(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = usize::try_from(self.u64()?).ok()?;
        let b = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(b.to_vec())
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?).ok()
    }
}

impl Journal {
    /// Reads and parses the journal at `path`.
    pub fn read(path: &Path) -> Result<Journal, PowerlossError> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        Journal::parse(&bytes)
    }

    /// Parses journal bytes.
    pub fn parse(bytes: &[u8]) -> Result<Journal, PowerlossError> {
        let mut journal = Journal::default();
        let mut pos = 0;
        while pos < bytes.len() {
            let Some(len) = bytes.get(pos..pos + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes) else {
                journal.torn_tail = bytes.len() - pos;
                break;
            };
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len < 25 {
                return Err(PowerlossError::Format { offset: pos, reason: format!("record length {len}") });
            }
            if bytes.len() - pos < len {
                journal.torn_tail = bytes.len() - pos;
                break;
            }
            let body = &bytes[pos..pos + len];
            let mut r = Reader { bytes: body, pos: 8 };
            let bad = |reason: &str| PowerlossError::Format { offset: pos, reason: reason.to_string() };
            let kind = r.u8().ok_or_else(|| bad("no kind"))?;
            let pid = r.u64().ok_or_else(|| bad("no pid"))?;
            let seq = r.u64().ok_or_else(|| bad("no seq"))?;
            let op = Journal::op(kind, &mut r).ok_or_else(|| bad(&format!("bad fields for kind {kind}")))?;
            if r.pos != len {
                return Err(bad(&format!("{} bytes left over in kind {kind}", len - r.pos)));
            }
            journal.records.push(Record { offset: pos as u64, pid, seq, op });
            pos += len;
        }
        Ok(journal)
    }

    fn op(kind: u8, r: &mut Reader<'_>) -> Option<Op> {
        Some(match kind {
            1 => Op::Write { ino: r.u64()?, offset: r.u64()?, data: r.bytes()? },
            2 => Op::Resize { ino: r.u64()?, size: r.u64()? },
            3 => Op::Create { parent: r.u64()?, name: r.string()?, ino: r.u64()? },
            4 => Op::Mkdir { parent: r.u64()?, name: r.string()?, ino: r.u64()? },
            5 => Op::Rename { from_dir: r.u64()?, from: r.string()?, to_dir: r.u64()?, to: r.string()? },
            6 => Op::Unlink { parent: r.u64()?, name: r.string()? },
            7 => Op::Fsync { ino: r.u64()?, covers: r.u64()? },
            8 => Op::SyncAll { covers: r.u64()? },
            9 => Op::Open { ino: r.u64()?, path: r.string()? },
            10 => Op::Unknown(r.string()?),
            11 => Op::Off,
            12 => Op::Start { pid: r.u64()?, root: r.u64()? },
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------- model

/// An inode of the model: the inode number and how many times that number
/// was created during the run (a freed number can be reused while a durable
/// directory entry still names the old file).
type Key = (u64, u32);

#[derive(Clone, Debug)]
enum DataOp {
    Write { offset: u64, data: Vec<u8> },
    Resize(u64),
}

impl DataOp {
    fn apply(&self, content: &mut Content) {
        match self {
            DataOp::Write { offset, data } => {
                let start = usize::try_from(*offset).unwrap_or(usize::MAX);
                let end = start.saturating_add(data.len());
                if content.bytes.len() < end {
                    content.bytes.resize(end, 0);
                }
                content.bytes[start..end].copy_from_slice(data);
                content.len = content.len.max(end as u64);
            }
            DataOp::Resize(size) => {
                content.bytes.truncate(usize::try_from(*size).unwrap_or(usize::MAX));
                content.len = *size;
            }
        }
    }
}

/// A file's content: `bytes`, then zeros up to `len`. WAL segments are
/// preallocated to 64 MiB and mostly zeros; this keeps them small.
#[derive(Clone, Debug, Default)]
struct Content {
    bytes: Vec<u8>,
    len: u64,
}

impl Content {
    /// Reads a file, leaving its zero tail out of `bytes`.
    fn read(path: &Path) -> Result<Content, PowerlossError> {
        let mut f = std::fs::File::open(path).map_err(io_err(path))?;
        let mut content = Content::default();
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut chunk).map_err(io_err(path))?;
            if n == 0 {
                break;
            }
            let part = &chunk[..n];
            if part.iter().any(|b| *b != 0) {
                content.bytes.resize(usize::try_from(content.len).unwrap_or(usize::MAX), 0);
                content.bytes.extend_from_slice(part);
            }
            content.len += n as u64;
        }
        let used = content.bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        content.bytes.truncate(used);
        Ok(content)
    }

    /// The same bytes: `bytes` may or may not hold part of the zero tail.
    fn same(&self, other: &Content) -> bool {
        fn trimmed(b: &[u8]) -> &[u8] {
            &b[..b.iter().rposition(|x| *x != 0).map_or(0, |i| i + 1)]
        }
        self.len == other.len && trimmed(&self.bytes) == trimmed(&other.bytes)
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut v = self.bytes.clone();
        v.resize(usize::try_from(self.len).unwrap_or(usize::MAX), 0);
        v
    }
}

#[derive(Clone, Debug)]
enum EntryOp {
    Link(String, Key),
    Unlink(String),
    Rename(String, String),
}

impl EntryOp {
    fn apply(&self, entries: &mut BTreeMap<String, Key>) {
        match self {
            EntryOp::Link(name, key) => {
                entries.insert(name.clone(), *key);
            }
            EntryOp::Unlink(name) => {
                entries.remove(name);
            }
            EntryOp::Rename(from, to) => {
                if let Some(key) = entries.remove(from) {
                    entries.insert(to.clone(), key);
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Node {
    File { live: Content, durable: Content, pending: Vec<(u64, DataOp)> },
    Dir { live: BTreeMap<String, Key>, durable: BTreeMap<String, Key>, pending: Vec<(u64, EntryOp)> },
}

impl Node {
    /// Makes durable what the journal held before byte `covers`.
    fn sync(&mut self, covers: u64) {
        match self {
            Node::File { durable, pending, .. } => {
                let n = pending.iter().take_while(|(seq, _)| *seq < covers).count();
                for (_, op) in pending.drain(..n) {
                    op.apply(durable);
                }
            }
            Node::Dir { durable, pending, .. } => {
                let n = pending.iter().take_while(|(seq, _)| *seq < covers).count();
                for (_, op) in pending.drain(..n) {
                    op.apply(durable);
                }
            }
        }
    }
}

/// A file or directory of a tree: what [`Model::live_tree`] and
/// [`scan_tree`] return, keyed by path relative to the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File(Vec<u8>),
}

/// Counts of what a replay saw, for the test's report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub records: usize,
    pub writes: usize,
    pub bytes_written: u64,
    pub fsyncs: usize,
    pub dir_fsyncs: usize,
    pub namespace_ops: usize,
    /// The journal ends with the shim's power-off record.
    pub clean_off: bool,
}

/// The live and durable views of one tracked directory.
#[derive(Debug)]
pub struct Model {
    root: Key,
    nodes: HashMap<Key, Node>,
    /// The newest generation of each inode number.
    current: HashMap<u64, u32>,
    /// The last path each inode was opened at (for error messages).
    paths: HashMap<u64, String>,
}

impl Model {
    /// A model whose starting state, all of it durable, is `dir`'s content now.
    pub fn scan(dir: &Path) -> Result<Model, PowerlossError> {
        let mut model = Model { root: (0, 0), nodes: HashMap::new(), current: HashMap::new(), paths: HashMap::new() };
        model.root = model.scan_node(dir, 0)?;
        Ok(model)
    }

    fn scan_node(&mut self, path: &Path, depth: usize) -> Result<Key, PowerlossError> {
        if depth > 64 {
            return Err(PowerlossError::Other(format!("{}: too deep", path.display())));
        }
        let meta = std::fs::symlink_metadata(path).map_err(io_err(path))?;
        let key = (meta.ino(), 0);
        self.current.insert(meta.ino(), 0);
        self.paths.insert(meta.ino(), path.display().to_string());
        let node = if meta.is_dir() {
            let mut entries = BTreeMap::new();
            for dirent in std::fs::read_dir(path).map_err(io_err(path))? {
                let dirent = dirent.map_err(io_err(path))?;
                let name = dirent
                    .file_name()
                    .into_string()
                    .map_err(|n| PowerlossError::Other(format!("{}: name {n:?} is not UTF-8", path.display())))?;
                let child = self.scan_node(&dirent.path(), depth + 1)?;
                entries.insert(name, child);
            }
            Node::Dir { live: entries.clone(), durable: entries, pending: Vec::new() }
        } else if meta.is_file() {
            let content = Content::read(path)?;
            Node::File { live: content.clone(), durable: content, pending: Vec::new() }
        } else {
            return Err(PowerlossError::Other(format!("{}: neither a file nor a directory", path.display())));
        };
        self.nodes.insert(key, node);
        Ok(key)
    }

    /// Replays a journal written under the shim by one process or several
    /// (a shell and its children).
    pub fn replay(&mut self, journal: &Journal) -> Result<ReplayStats, PowerlossError> {
        let mut stats = ReplayStats::default();
        let mut next: HashMap<u64, u64> = HashMap::new();
        for (index, record) in journal.records.iter().enumerate() {
            let fail = |reason: String| PowerlossError::Journal { index, pid: record.pid, seq: record.seq, reason };
            if stats.clean_off {
                return Err(fail("a record after power off".into()));
            }
            let want = if matches!(record.op, Op::Start { .. }) {
                0
            } else {
                *next.get(&record.pid).ok_or_else(|| fail("a process's first record is not its start".into()))?
            };
            if record.seq != want {
                return Err(fail(format!("expected seq {want}: a record is missing")));
            }
            next.insert(record.pid, want + 1);
            stats.records += 1;
            self.apply(record, &mut stats).map_err(fail)?;
        }
        Ok(stats)
    }

    fn key(&self, ino: u64) -> Result<Key, String> {
        self.current.get(&ino).map(|g| (ino, *g)).ok_or_else(|| format!("inode {ino} is not in the model"))
    }

    fn node(&mut self, ino: u64) -> Result<&mut Node, String> {
        let key = self.key(ino)?;
        self.nodes.get_mut(&key).ok_or_else(|| format!("inode {ino} has no node"))
    }

    fn data_op(&mut self, ino: u64, seq: u64, op: DataOp) -> Result<(), String> {
        let path = self.paths.get(&ino).cloned().unwrap_or_default();
        match self.node(ino)? {
            Node::File { live, pending, .. } => {
                op.apply(live);
                pending.push((seq, op));
                Ok(())
            }
            Node::Dir { .. } => Err(format!("data written to directory inode {ino} ({path})")),
        }
    }

    fn entry_op(&mut self, dir: u64, seq: u64, op: EntryOp) -> Result<(), String> {
        let path = self.paths.get(&dir).cloned().unwrap_or_default();
        match self.node(dir)? {
            Node::Dir { live, pending, .. } => {
                if let EntryOp::Unlink(name) | EntryOp::Rename(name, _) = &op {
                    if !live.contains_key(name) {
                        return Err(format!("{path}/{name} does not exist in the model"));
                    }
                }
                op.apply(live);
                pending.push((seq, op));
                Ok(())
            }
            Node::File { .. } => Err(format!("inode {dir} ({path}) is not a directory")),
        }
    }

    fn new_node(&mut self, ino: u64, node: Node) -> Key {
        let generation = self.current.get(&ino).map_or(0, |g| g + 1);
        self.current.insert(ino, generation);
        self.nodes.insert((ino, generation), node);
        (ino, generation)
    }

    fn apply(&mut self, record: &Record, stats: &mut ReplayStats) -> Result<(), String> {
        // Pending operations are ordered by where their record starts in the
        // journal, the same measure the durability points use.
        let seq = record.offset;
        match &record.op {
            Op::Start { root, .. } => {
                if *root != self.root.0 {
                    return Err(format!("tracked root is inode {root}, the scanned one is {}", self.root.0));
                }
            }
            Op::Write { ino, offset, data } => {
                stats.writes += 1;
                stats.bytes_written += data.len() as u64;
                self.data_op(*ino, seq, DataOp::Write { offset: *offset, data: data.clone() })?;
            }
            Op::Resize { ino, size } => self.data_op(*ino, seq, DataOp::Resize(*size))?,
            Op::Create { parent, name, ino } => {
                stats.namespace_ops += 1;
                let key = self.new_node(
                    *ino,
                    Node::File { live: Content::default(), durable: Content::default(), pending: Vec::new() },
                );
                self.entry_op(*parent, seq, EntryOp::Link(name.clone(), key))?;
            }
            Op::Mkdir { parent, name, ino } => {
                stats.namespace_ops += 1;
                let empty = BTreeMap::new();
                let key = self.new_node(*ino, Node::Dir { live: empty.clone(), durable: empty, pending: Vec::new() });
                self.entry_op(*parent, seq, EntryOp::Link(name.clone(), key))?;
            }
            Op::Rename { from_dir, from, to_dir, to } => {
                stats.namespace_ops += 1;
                if from_dir != to_dir {
                    // Which directory's fsync makes a cross-directory rename
                    // durable is file system specific; retcd renames in place.
                    return Err(format!("rename of {from} into another directory is not modelled"));
                }
                self.entry_op(*from_dir, seq, EntryOp::Rename(from.clone(), to.clone()))?;
            }
            Op::Unlink { parent, name } => {
                stats.namespace_ops += 1;
                self.entry_op(*parent, seq, EntryOp::Unlink(name.clone()))?;
            }
            Op::Fsync { ino, covers } => {
                let node = self.node(*ino)?;
                if matches!(node, Node::Dir { .. }) {
                    stats.dir_fsyncs += 1;
                } else {
                    stats.fsyncs += 1;
                }
                node.sync(*covers);
            }
            Op::SyncAll { covers } => {
                for node in self.nodes.values_mut() {
                    node.sync(*covers);
                }
            }
            Op::Open { ino, path } => {
                self.paths.insert(*ino, path.clone());
            }
            Op::Unknown(what) => return Err(format!("the shim saw an operation it does not model: {what}")),
            Op::Off => stats.clean_off = true,
        }
        Ok(())
    }

    /// The live view as a tree (path relative to the root -> entry).
    pub fn live_tree(&self) -> Result<BTreeMap<PathBuf, Entry>, PowerlossError> {
        Ok(self.walk(false)?.into_iter().map(|(p, c)| (p, c.map_or(Entry::Dir, |c| Entry::File(c.to_vec())))).collect())
    }

    /// The durable view as a tree.
    pub fn durable_tree(&self) -> Result<BTreeMap<PathBuf, Entry>, PowerlossError> {
        Ok(self.walk(true)?.into_iter().map(|(p, c)| (p, c.map_or(Entry::Dir, |c| Entry::File(c.to_vec())))).collect())
    }

    /// Every path of one view, sorted, with its content (None for a
    /// directory), borrowed: a WAL segment is tens of MiB.
    fn walk(&self, durable: bool) -> Result<BTreeMap<PathBuf, Option<&Content>>, PowerlossError> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(PathBuf::new(), self.root, 0usize)];
        while let Some((path, key, depth)) = stack.pop() {
            if depth > 64 {
                return Err(PowerlossError::Other(format!("{}: too deep (a cycle?)", path.display())));
            }
            let node = self
                .nodes
                .get(&key)
                .ok_or_else(|| PowerlossError::Other(format!("{}: inode {key:?} missing", path.display())))?;
            match node {
                Node::File { live, durable: d, .. } => {
                    out.insert(path, Some(if durable { d } else { live }));
                }
                Node::Dir { live, durable: d, .. } => {
                    for (name, child) in if durable { d } else { live } {
                        stack.push((path.join(name), *child, depth + 1));
                    }
                    if !path.as_os_str().is_empty() {
                        out.insert(path, None);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Checks that the live view equals `dir` as it is now (after the
    /// process died): the proof that the journal holds every mutation.
    pub fn check_live(&self, dir: &Path) -> Result<(), PowerlossError> {
        let want = self.walk(false)?;
        let on_disk = scan_names(dir)?;
        let mut problems = Vec::new();
        for (rel, content) in &want {
            let path = dir.join(rel);
            match (content, on_disk.get(rel)) {
                (_, None) => problems.push(format!("{} is in the model only", rel.display())),
                (None, Some(true)) => {}
                (Some(want), Some(false)) => {
                    let got = Content::read(&path)?;
                    if !got.same(want) {
                        problems.push(describe_difference(rel, want, &got));
                    }
                }
                _ => problems.push(format!("{}: a file in one and a directory in the other", rel.display())),
            }
        }
        for rel in on_disk.keys().filter(|p| !want.contains_key(*p)) {
            problems.push(format!("{} is on disk only", rel.display()));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PowerlossError::LiveMismatch(problems.join("; ")))
        }
    }

    /// Writes the durable view into `to` (which must not exist yet). Runs of
    /// zeros at the end of a file (a preallocated WAL segment) are left as
    /// a hole.
    pub fn write_durable(&self, to: &Path) -> Result<(), PowerlossError> {
        std::fs::create_dir(to).map_err(io_err(to))?;
        // BTreeMap order puts a directory before everything inside it.
        for (rel, content) in self.walk(true)? {
            let path = to.join(&rel);
            match content {
                None => std::fs::create_dir(&path).map_err(io_err(&path))?,
                Some(content) => {
                    let mut f = std::fs::File::create(&path).map_err(io_err(&path))?;
                    f.write_all(&content.bytes).map_err(io_err(&path))?;
                    f.set_len(content.len).map_err(io_err(&path))?;
                }
            }
        }
        Ok(())
    }
}

fn describe_difference(path: &Path, want: &Content, got: &Content) -> String {
    let (w, g) = (&want.bytes, &got.bytes);
    let first = w.iter().zip(g.iter()).position(|(a, b)| a != b).unwrap_or(w.len().min(g.len()));
    format!(
        "{}: model has {} bytes, disk {} bytes, first difference at byte {first}",
        path.display(),
        want.len,
        got.len
    )
}

/// The paths under `dir` (relative, `dir` itself left out) and whether each
/// is a directory.
fn scan_names(dir: &Path) -> Result<BTreeMap<PathBuf, bool>, PowerlossError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = dir.join(&rel);
        for dirent in std::fs::read_dir(&path).map_err(io_err(&path))? {
            let dirent = dirent.map_err(io_err(&path))?;
            let child = rel.join(dirent.file_name());
            let is_dir = dirent.file_type().map_err(io_err(&path))?.is_dir();
            if is_dir {
                stack.push(child.clone());
            }
            out.insert(child, is_dir);
        }
    }
    Ok(out)
}

/// Every file and directory under `dir` (relative paths; `dir` itself left
/// out), with the files' contents.
pub fn scan_tree(dir: &Path) -> Result<BTreeMap<PathBuf, Entry>, PowerlossError> {
    let mut out = BTreeMap::new();
    for (rel, is_dir) in scan_names(dir)? {
        let entry = if is_dir { Entry::Dir } else { Entry::File(std::fs::read(dir.join(&rel)).map_err(io_err(&rel))?) };
        out.insert(rel, entry);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "powerloss_tests.rs"]
mod tests;
