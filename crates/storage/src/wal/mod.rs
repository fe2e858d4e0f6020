//! The write-ahead log (WAL): etcd's design, our own code.
//!
//! The WAL is the durable record of raft's log and hard state: a write is
//! acknowledged only after its entries are here and fsynced. It is a
//! directory of segment files, each preallocated and appended to until it
//! exceeds the segment size, then closed for good and followed by the next.
//!
//! Records are framed as type + CRC + data; the CRC is a CRC32C chained across
//! records and segment files. Segments are preallocated; a write returns only
//! after fsync. A torn tail (crash mid-write) is repaired on open; corruption
//! anywhere else is refused with an error naming the file and offset.
//!
//! Submodules:
//! - `record`: the byte format (header, frames, CRC chain),
//!   encoding and decoding, and telling a torn tail from damage;
//! - `segment`: segment names, listing and atomic creation;
//! - `repair`: backing up and truncating a torn tail.
//!
//! Durability and ordering rules:
//! - [`Wal::save`] and [`Wal::save_snapshot`] encode all their records into
//!   one buffer, write it with one `write_all` and fsync (`fdatasync`) the
//!   segment before returning. Nothing is acknowledged from the page cache.
//! - A new segment is fully written (header, crc record carrying the chain,
//!   metadata, last hard state) and fsynced under a temporary name, then
//!   renamed, then the directory is fsynced. Before that the finished
//!   segment is trimmed to its last record and fsynced, so only the last
//!   segment can ever end in a torn write.
//! - Purge removes whole segments from the oldest end only, then fsyncs the
//!   directory, so the remaining segments always have consecutive numbers.
//! - After any failed write or fsync the `Wal` refuses further writes: the
//!   state of the file (and of the kernel's dirty pages after a failed fsync)
//!   is unknown, and appending after it could bury a torn record in the
//!   middle of the log. The process must reopen the WAL.
//! - Files not written by this format (no `RETCDWAL` magic, or a newer
//!   format version) are refused and never modified.

mod record;
mod repair;
mod segment;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use prost011::Message as _;
use raft::eraftpb::{Entry, HardState};

use self::record::{Decoder, HeaderProblem, Record, RecordType, Step, TailVerdict};
use self::segment::{io_err, Segment};

/// Errors of the WAL. Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal: io error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("wal: {path} is corrupt at offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("wal: {path} was written by an unsupported format ({reason})")]
    UnsupportedFormat { path: PathBuf, reason: String },
    #[error("wal: snapshot (index {index}, term {term}) not found in the log in {dir}")]
    SnapshotNotFound { dir: PathBuf, index: u64, term: u64 },
    #[error("wal: {0}")]
    Other(String),
}

/// A snapshot marker recorded in the WAL: the raft index and term a snapshot was taken at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalSnapshot {
    pub index: u64,
    pub term: u64,
}

/// Everything read back from the WAL on open.
#[derive(Debug, Default)]
pub struct WalContents {
    /// The metadata written by [`Wal::create`] (retcd stores member/cluster ids there).
    pub metadata: Vec<u8>,
    /// The last hard state saved.
    pub hard_state: HardState,
    /// Entries after the snapshot the log was opened at, in index order, with
    /// later writes of the same index replacing earlier ones (raft overwrites
    /// uncommitted tails after a leader change).
    pub entries: Vec<Entry>,
}

/// The default size segments are preallocated to and cut at.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// Tunables of a [`Wal`]; [`Wal::create`] and [`Wal::open`] use the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Segments are preallocated to this size, and a new segment is cut once
    /// the current one holds at least this many bytes (a single large save
    /// can make a segment bigger). Only affects segments created from now on.
    pub segment_size: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { segment_size: DEFAULT_SEGMENT_SIZE }
    }
}

/// Above this capacity the encode buffer is released after a save, so one
/// huge batch does not pin its memory for the life of the process.
const KEEP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    /// Every segment in the directory, oldest first; the last one is `tail`.
    segments: Vec<Segment>,
    /// The last segment, open for appending, its cursor at `tail_len`.
    tail: File,
    /// Where the next record goes in `tail`: the end of its valid data.
    tail_len: u64,
    /// Chain value after the last record written.
    crc: u32,
    /// Repeated at the start of every new segment.
    metadata: Vec<u8>,
    /// The last hard state saved; repeated at the start of every new segment
    /// so a reader starting there still learns it.
    state: HardState,
    /// Index of the last entry written (or of a later snapshot marker): the
    /// next segment is named after `last_index + 1`.
    last_index: u64,
    /// Reused encode buffer.
    buf: Vec<u8>,
    /// Set after a failed write or fsync; see the module docs.
    failed: Option<String>,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("tail_len", &self.tail_len)
            .field("last_index", &self.last_index)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// True if `dir` holds at least one WAL segment file.
    pub fn exists(dir: &Path) -> bool {
        let Ok(dirents) = fs::read_dir(dir) else { return false };
        dirents.flatten().any(|d| d.file_name().to_str().is_some_and(|n| segment::parse_segment_name(n).is_some()))
    }

    /// Creates a new, empty WAL in `dir` (created if missing, must hold no
    /// segment) whose first record is `metadata`, followed by a snapshot
    /// record for index 0 term 0.
    pub fn create(dir: &Path, metadata: &[u8]) -> Result<Wal, WalError> {
        Wal::create_with_options(dir, metadata, WalOptions::default())
    }

    /// [`Wal::create`] with explicit options.
    pub fn create_with_options(dir: &Path, metadata: &[u8], opts: WalOptions) -> Result<Wal, WalError> {
        if Wal::exists(dir) {
            let source = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "directory already holds WAL segments");
            return Err(WalError::Io { path: dir.to_path_buf(), source });
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        // The directory itself may be new: make its entry in the parent durable.
        if let Some(parent) = dir.parent() {
            segment::sync_dir(parent)?;
        }
        segment::remove_stale_tmp(dir)?;

        let mut buf = record::header().to_vec();
        record::append_crc_record(&mut buf, 0);
        let mut crc = 0;
        append_bytes(&mut buf, &mut crc, RecordType::Metadata, metadata);
        append_bytes(&mut buf, &mut crc, RecordType::Snapshot, &encode_snapshot(WalSnapshot::default()));
        // The segment appears under its real name only once complete, so a
        // crash here leaves either no WAL or a valid empty one.
        let (tail, path) = segment::create_segment(dir, 0, 0, &buf, opts.segment_size)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            opts,
            segments: vec![Segment { seq: 0, index: 0, path }],
            tail,
            tail_len: buf.len() as u64,
            crc,
            metadata: metadata.to_vec(),
            state: HardState::default(),
            last_index: 0,
            buf: Vec::new(),
            failed: None,
        })
    }

    /// Opens the WAL in `dir`, reads every record after the snapshot marker
    /// `snap` (which must be present in the log unless it is index 0), repairs
    /// a torn tail, and returns the log ready for appends after the last entry.
    pub fn open(dir: &Path, snap: WalSnapshot) -> Result<(Wal, WalContents), WalError> {
        Wal::open_with_options(dir, snap, WalOptions::default())
    }

    /// [`Wal::open`] with explicit options.
    pub fn open_with_options(dir: &Path, snap: WalSnapshot, opts: WalOptions) -> Result<(Wal, WalContents), WalError> {
        let segments = segment::list_segments(dir)?;
        let Some(last) = segments.last() else {
            return Err(WalError::Other(format!("no WAL segment in {}", dir.display())));
        };
        // Purge removes from the front only, so a gap means a lost segment.
        for pair in segments.windows(2) {
            if pair[1].seq != pair[0].seq.wrapping_add(1) {
                return Err(WalError::Corrupt {
                    path: pair[1].path.clone(),
                    offset: 0,
                    reason: format!("segment sequence gap: previous segment is {}", pair[0].path.display()),
                });
            }
        }
        let not_found = || WalError::SnapshotNotFound { dir: dir.to_path_buf(), index: snap.index, term: snap.term };
        // Entries after the snapshot (and the marker itself) are in the last
        // segment whose first index is <= the snapshot's, or after it.
        let start = segments.iter().rposition(|s| s.index <= snap.index).ok_or_else(not_found)?;

        let mut reader = Reader::new(snap, segments[start].index.saturating_sub(1));
        let mut crc = None;
        let mut tail_end = 0u64;
        let mut pending_repair = None;
        let last_seq = last.seq;
        for seg in &segments[start..] {
            let is_last = seg.seq == last_seq;
            let bytes = fs::read(&seg.path).map_err(io_err(&seg.path))?;
            record::check_header(&bytes).map_err(|p| header_error(&seg.path, p))?;
            let mut dec = Decoder::new(&bytes, crc);
            let (end, torn) = loop {
                match dec.next_step() {
                    Step::Record(r) => reader.apply(&seg.path, dec.records() - 1, r)?,
                    Step::End { offset, trailing_garbage: false } => break (offset, None),
                    Step::End { offset, trailing_garbage: true } => {
                        if !is_last {
                            let reason = "non-zero bytes after the end of the log in a segment that is not the last";
                            return Err(corrupt(&seg.path, offset, reason.into()));
                        }
                        // A zero frame followed by intact records is a record
                        // zeroed in place, unless a lost sector explains it.
                        let plausible = |k, d: &[u8], skipped| reader.plausible_follower(k, d, skipped);
                        match record::classify_bad_tail(&bytes, offset, dec.crc(), &plausible) {
                            TailVerdict::Torn => {
                                let reason = "non-zero bytes after the end of the log (an incomplete write)";
                                break (offset, Some(reason.into()));
                            }
                            TailVerdict::Corrupt(why) => {
                                let reason = format!("zero frame where the log goes on; {why}");
                                return Err(corrupt(&seg.path, offset, reason));
                            }
                        }
                    }
                    Step::Bad(bad) => {
                        if is_last && !bad.intact {
                            let plausible = |k, d: &[u8], skipped| reader.plausible_follower(k, d, skipped);
                            match record::classify_bad_tail(&bytes, bad.offset, dec.crc(), &plausible) {
                                TailVerdict::Torn => break (bad.offset, Some(bad.reason)),
                                TailVerdict::Corrupt(why) => {
                                    return Err(corrupt(&seg.path, bad.offset, format!("{}; {why}", bad.reason)))
                                }
                            }
                        }
                        return Err(corrupt(&seg.path, bad.offset, bad.reason));
                    }
                }
            };
            // Segments are renamed into place only after their opening
            // records are synced, so losing those is damage, not a torn write.
            if dec.records() < 2 {
                let reason = "segment ends before its opening crc and metadata records".to_string();
                return Err(corrupt(&seg.path, end, reason));
            }
            crc = dec.crc();
            if is_last {
                tail_end = end as u64;
                pending_repair = torn;
            }
        }

        let Some(metadata) = reader.metadata else {
            return Err(corrupt(&last.path, 0, "no metadata record".into()));
        };
        if snap.index != 0 && !reader.snapshot_found {
            return Err(not_found());
        }
        let Some(crc) = crc else {
            return Err(corrupt(&last.path, 0, "no crc record".into()));
        };
        // Repair only once the log is known to be usable, so a refused WAL
        // is left exactly as found.
        if let Some(reason) = pending_repair {
            repair::repair_tail(&last.path, tail_end, &reason)?;
        }
        segment::remove_stale_tmp(dir)?;
        let mut tail = OpenOptions::new().read(true).write(true).open(&last.path).map_err(io_err(&last.path))?;
        tail.seek(SeekFrom::Start(tail_end)).map_err(io_err(&last.path))?;

        let wal = Wal {
            dir: dir.to_path_buf(),
            opts,
            tail,
            tail_len: tail_end,
            crc,
            metadata: metadata.clone(),
            state: reader.hard_state.clone(),
            last_index: reader.last_index,
            buf: Vec::new(),
            failed: None,
            segments,
        };
        let contents = WalContents { metadata, hard_state: reader.hard_state, entries: reader.entries };
        Ok((wal, contents))
    }

    /// Appends `entries` and then `hard_state` (if given), and fsyncs before
    /// returning when anything was written. Cuts to a new segment when the
    /// current one exceeds the segment size.
    pub fn save(&mut self, hard_state: Option<&HardState>, entries: &[Entry]) -> Result<(), WalError> {
        self.append(hard_state, entries, true)
    }

    /// As [`Wal::save`], but fsyncs only if `sync` is true. Raft needs an
    /// fsync only when entries, the term or the vote change (raft-rs's
    /// `Ready::must_sync`); a hard state that differs only in its commit index
    /// can be recovered after a crash, so it rides along with the next fsync.
    pub fn append(&mut self, hard_state: Option<&HardState>, entries: &[Entry], sync: bool) -> Result<(), WalError> {
        self.check_usable()?;
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut crc = self.crc;
        for e in entries {
            record::append_record(&mut buf, &mut crc, RecordType::Entry, |b| e.encode(b)).map_err(encode_error)?;
        }
        if let Some(hs) = hard_state {
            record::append_record(&mut buf, &mut crc, RecordType::State, |b| hs.encode(b)).map_err(encode_error)?;
        }
        let written = if sync { self.write_and_sync(&buf) } else { self.write_only(&buf) };
        self.recycle(buf);
        written?;
        self.crc = crc;
        if let Some(e) = entries.last() {
            self.last_index = e.index;
        }
        if let Some(hs) = hard_state {
            self.state = hs.clone();
        }
        if self.tail_len >= self.opts.segment_size {
            self.cut()?;
        }
        Ok(())
    }

    /// Records a snapshot marker and fsyncs.
    pub fn save_snapshot(&mut self, snap: WalSnapshot) -> Result<(), WalError> {
        self.check_usable()?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut crc = self.crc;
        append_bytes(&mut buf, &mut crc, RecordType::Snapshot, &encode_snapshot(snap));
        let written = self.write_and_sync(&buf);
        self.recycle(buf);
        written?;
        self.crc = crc;
        // The next segment must start after the snapshot, so that opening at
        // this snapshot reads the segment holding its marker.
        self.last_index = self.last_index.max(snap.index);
        Ok(())
    }

    /// Removes the oldest segment files while more than `max_files` remain,
    /// but never a segment that holds an entry with index > `released_index`
    /// (entries not yet covered by a durable snapshot). Returns the removed paths.
    ///
    /// A segment is removed only if its successor starts at or before
    /// `released_index`: then the successor (or a later segment) is where
    /// [`Wal::open`] at a snapshot at `released_index` starts reading, and
    /// everything the removed segment held is at or below that index. The
    /// last (active) segment is never removed.
    pub fn purge(&mut self, released_index: u64, max_files: usize) -> Result<Vec<PathBuf>, WalError> {
        let mut removed = Vec::new();
        while self.segments.len() > max_files && self.segments.len() >= 2 && self.segments[1].index <= released_index {
            let path = self.segments[0].path.clone();
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(WalError::Io { path, source: e }),
            }
            tracing::info!(path = %path.display(), "purged WAL segment");
            self.segments.remove(0);
            removed.push(path);
        }
        if !removed.is_empty() {
            segment::sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// The directory the WAL lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Index of the last entry written (or of a later snapshot marker).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Paths of the segment files, oldest first; the last is being appended to.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    fn tail_path(&self) -> &Path {
        // `segments` is never empty: create and open both leave one in it.
        self.segments.last().map_or(self.dir.as_path(), |s| s.path.as_path())
    }

    fn check_usable(&self) -> Result<(), WalError> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(WalError::Other(format!(
                "{} refuses writes after an earlier failure ({why}); reopen it",
                self.dir.display()
            ))),
        }
    }

    fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > KEEP_BUFFER_BYTES {
            buf = Vec::new();
        }
        self.buf = buf;
    }

    /// The single write + fdatasync of a save.
    fn write_and_sync(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        self.write_then(bytes, true)
    }

    fn write_only(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        self.write_then(bytes, false)
    }

    fn write_then(&mut self, bytes: &[u8], sync: bool) -> Result<(), WalError> {
        let res = self.tail.write_all(bytes).and_then(|()| {
            if !sync {
                return Ok(());
            }
            crate::failpoints::crash_point("wal::before_fsync");
            self.tail.sync_data()?;
            crate::failpoints::crash_point("wal::after_fsync");
            Ok(())
        });
        match res {
            Ok(()) => {
                self.tail_len += bytes.len() as u64;
                Ok(())
            }
            Err(source) => {
                let path = self.tail_path().to_path_buf();
                self.failed = Some(format!("write to {} failed: {source}", path.display()));
                Err(WalError::Io { path, source })
            }
        }
    }

    fn cut(&mut self) -> Result<(), WalError> {
        let res = self.try_cut();
        if let Err(e) = &res {
            self.failed = Some(format!("cutting a new segment failed: {e}"));
        }
        res
    }

    /// Closes the current segment and starts the next one (see the module docs
    /// for the order of steps).
    fn try_cut(&mut self) -> Result<(), WalError> {
        let old = self.tail_path().to_path_buf();
        // Trim the preallocated zeros: a finished segment ends at its last
        // record. sync_all because the size is metadata.
        self.tail.set_len(self.tail_len).map_err(io_err(&old))?;
        self.tail.sync_all().map_err(io_err(&old))?;

        let seq = self.segments.last().map_or(0, |s| s.seq + 1);
        let index = self.last_index.saturating_add(1);
        let mut buf = record::header().to_vec();
        record::append_crc_record(&mut buf, self.crc);
        let mut crc = self.crc;
        append_bytes(&mut buf, &mut crc, RecordType::Metadata, &self.metadata);
        if self.state != HardState::default() {
            let state = self.state.encode_to_vec();
            append_bytes(&mut buf, &mut crc, RecordType::State, &state);
        }
        let (tail, path) = segment::create_segment(&self.dir, seq, index, &buf, self.opts.segment_size)?;
        tracing::info!(path = %path.display(), "cut a new WAL segment");
        self.tail = tail;
        self.tail_len = buf.len() as u64;
        self.crc = crc;
        self.segments.push(Segment { seq, index, path });
        Ok(())
    }
}

/// Accumulates what [`Wal::open`] reads, record by record.
struct Reader {
    snap: WalSnapshot,
    metadata: Option<Vec<u8>>,
    hard_state: HardState,
    entries: Vec<Entry>,
    last_index: u64,
    snapshot_found: bool,
}

impl Reader {
    fn new(snap: WalSnapshot, last_index: u64) -> Reader {
        Reader {
            snap,
            metadata: None,
            hard_state: HardState::default(),
            entries: Vec::new(),
            last_index,
            snapshot_found: false,
        }
    }

    /// Whether a lone record found after a bad spot in the last segment could
    /// be a record this log went on with (see `record::classify_bad_tail`):
    /// its content decodes and does not go back behind what was read.
    /// `max_skipped` bounds the number of records the bad region can hold.
    fn plausible_follower(&self, kind: RecordType, data: &[u8], max_skipped: usize) -> bool {
        match kind {
            // Raft never rewrites committed entries, and the bad region can
            // hide at most `max_skipped` entries before this one.
            RecordType::Entry => Entry::decode(data).is_ok_and(|e| {
                e.term > 0
                    && e.index > self.hard_state.commit
                    && e.index <= self.last_index.saturating_add(1).saturating_add(max_skipped as u64)
            }),
            // Term and commit never go back.
            RecordType::State => HardState::decode(data).is_ok_and(|hs| {
                hs != HardState::default() && hs.term >= self.hard_state.term && hs.commit >= self.hard_state.commit
            }),
            RecordType::Snapshot => decode_snapshot(data).is_some_and(|s| s.term > 0),
            // Only ever at the start of a segment.
            RecordType::Metadata | RecordType::Crc => false,
        }
    }

    /// Takes in record number `position` (from 0) of segment `path`.
    fn apply(&mut self, path: &Path, position: usize, r: Record<'_>) -> Result<(), WalError> {
        let bad = |reason: String| corrupt(path, r.offset, reason);
        if (position == 1) != (r.kind == RecordType::Metadata) {
            return Err(bad(format!("{:?} record where the segment's metadata record belongs", r.kind)));
        }
        match r.kind {
            // The decoder already checked the chain.
            RecordType::Crc => {}
            RecordType::Metadata => match &self.metadata {
                Some(m) if m.as_slice() != r.data => return Err(bad("metadata differs from earlier segments".into())),
                Some(_) => {}
                None => self.metadata = Some(r.data.to_vec()),
            },
            RecordType::Entry => {
                let e = Entry::decode(r.data).map_err(|e| bad(format!("cannot decode entry: {e}")))?;
                self.last_index = e.index;
                if e.index > self.snap.index {
                    // Entry i goes to position i - snap - 1; a lower index than
                    // the current end means raft overwrote the tail from there.
                    let pos = e.index - self.snap.index - 1;
                    if pos > self.entries.len() as u64 {
                        let after = self.snap.index + self.entries.len() as u64;
                        return Err(bad(format!("entry {} does not follow entry {after}", e.index)));
                    }
                    self.entries.truncate(pos as usize);
                    self.entries.push(e);
                }
            }
            RecordType::State => {
                self.hard_state =
                    HardState::decode(r.data).map_err(|e| bad(format!("cannot decode hard state: {e}")))?;
            }
            RecordType::Snapshot => {
                let s = decode_snapshot(r.data).ok_or_else(|| bad("malformed snapshot record".into()))?;
                self.last_index = self.last_index.max(s.index);
                if s.index == self.snap.index {
                    if s.term != self.snap.term {
                        return Err(WalError::Other(format!(
                            "snapshot mismatch in {}: the log has index {} at term {}, expected term {}",
                            path.display(),
                            s.index,
                            s.term,
                            self.snap.term
                        )));
                    }
                    self.snapshot_found = true;
                }
            }
        }
        Ok(())
    }
}

fn append_bytes(buf: &mut Vec<u8>, crc: &mut u32, kind: RecordType, data: &[u8]) {
    let res: Result<(), std::convert::Infallible> = record::append_record(buf, crc, kind, |b| {
        b.extend_from_slice(data);
        Ok(())
    });
    match res {
        Ok(()) => {}
        Err(never) => match never {},
    }
}

fn encode_snapshot(s: WalSnapshot) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&s.index.to_le_bytes());
    out[8..].copy_from_slice(&s.term.to_le_bytes());
    out
}

fn decode_snapshot(data: &[u8]) -> Option<WalSnapshot> {
    let data: &[u8; 16] = data.try_into().ok()?;
    let mut index = [0u8; 8];
    let mut term = [0u8; 8];
    index.copy_from_slice(&data[..8]);
    term.copy_from_slice(&data[8..]);
    Some(WalSnapshot { index: u64::from_le_bytes(index), term: u64::from_le_bytes(term) })
}

fn encode_error(e: prost011::EncodeError) -> WalError {
    WalError::Other(format!("cannot encode a record: {e}"))
}

fn corrupt(path: &Path, offset: usize, reason: String) -> WalError {
    WalError::Corrupt { path: path.to_path_buf(), offset: offset as u64, reason }
}

fn header_error(path: &Path, problem: HeaderProblem) -> WalError {
    let path = path.to_path_buf();
    match problem {
        HeaderProblem::TooShort(len) => WalError::Corrupt {
            path,
            offset: 0,
            reason: format!("file is {len} bytes, shorter than the {}-byte segment header", record::HEADER_LEN),
        },
        HeaderProblem::BadMagic(found) => WalError::UnsupportedFormat {
            path,
            reason: format!(
                "the file does not start with the retcd WAL magic {:?} (found {found:02x?}): an etcd WAL or a foreign file",
                String::from_utf8_lossy(record::MAGIC)
            ),
        },
        HeaderProblem::Version(v) => WalError::UnsupportedFormat {
            path,
            reason: format!("segment format version {v}; this build reads version {}", record::FORMAT_VERSION),
        },
        HeaderProblem::Reserved => {
            WalError::Corrupt { path, offset: 12, reason: "reserved header bytes are not zero".into() }
        }
    }
}
