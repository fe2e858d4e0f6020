//! The byte format of a WAL segment: the file header, record framing and the
//! CRC chain. Pure functions over byte slices; no I/O happens here, so the
//! format can be tested (and reasoned about) without touching a disk.
//!
//! A segment file is:
//!
//! ```text
//! header   16 bytes   b"RETCDWAL" | format version u32 LE | reserved u32 (0)
//! record*             each one starts at an 8-byte aligned offset:
//!   frame   8 bytes   u64 LE; low 56 bits = body length, top byte = 0x80 | pad
//!                     when pad > 0 (pad = zero bytes after the body up to the
//!                     next 8-byte boundary), 0 otherwise
//!   body              type u8 | crc u32 LE | data
//!   pad     0..7      zero bytes
//! zeros               preallocated space up to the segment size
//! ```
//!
//! Why 8-byte frames at 8-byte aligned offsets: sector sizes are multiples of
//! 8, so a frame never straddles a sector and a crash cannot leave half of a
//! length on disk. A frame of all zeros means "nothing was written here": it
//! marks the end of the log, when only zeros follow it. When non-zero bytes
//! follow, the zero frame is judged like a bad record (see below): a crash
//! can lose a sector in the middle of the last write, but a record zeroed in
//! the middle of acknowledged data is damage.
//!
//! The CRC chain: a record's crc is CRC32C over its type byte and data,
//! seeded with the crc of the record before it. The chain thus covers order
//! and completeness, not just each record. Every segment starts with a crc
//! record whose data is the chain value the previous segment ended with, so
//! the chain continues across files and a reader can start at any segment.
//! The crc record itself carries a checksum of its own bytes only (seed 0),
//! because a reader that starts at that segment has no chain value yet.
//!
//! # Torn tail or damage
//!
//! The reader verifies records up to the first bad spot `B` in the last
//! segment: a record that fails its checks, or a zero frame with non-zero
//! bytes after it. [`classify_bad_tail`] decides whether the rest of the
//! segment from `B` on is the remains of a crash (torn: cut off, the file
//! kept as `.broken`) or damage to written data (refused, file untouched).
//!
//! The crash model. Only the writes since the last fsync can be incomplete,
//! and they are the end of the log: one `write_all` of a whole batch, and
//! before it possibly unsynced hard-state writes. After a crash each of
//! their 512-byte sectors (writeback and disks reorder, so any subset, not
//! just a prefix) either holds what was written or what was there before:
//! zeros, because segments are preallocated with zeros and only appended to.
//! A file can also end early, or hold bytes that were never part of the
//! log after its end (an incomplete write's leftovers).
//!
//! The rule. Starting after `B`, look at every 8-byte aligned offset for
//! the first *verified follower* `p`: a record that
//!
//! 1. chains from the bad record (from its stored crc, or from the crc
//!    recomputed over its bytes), or
//! 2. is well framed and whose stored crc starts an unbroken chain of at
//!    least one more record running to the end of the log (a zero frame or
//!    the end of the file), or
//! 3. is well framed, is the last thing in the file (only zeros follow), and
//!    whose content the caller finds plausible (an entry whose index can
//!    continue the log, a hard state that does not go back).
//!
//! No follower: nothing complete was written after `B`, so it is torn. This
//! covers every crash that keeps a prefix of the last write, and garbage
//! after the end of the log.
//!
//! A follower proves that data after `B` reached the disk. That is still a
//! torn write only if a *lost sector* explains the bad spot: an aligned
//! 512-byte sector ending at `t`, `B < t <= p`, that
//!
//! - reads as zeros from `B` (or from its start, if later) to `t`,
//! - overlaps the bad record, when the bad record's frame gives its extent,
//! - does not end inside the bad record's header with its type byte (which
//!   would then have been written) zero,
//! - and is followed by non-zero bytes in `[t, p)`: the tail of a record
//!   that started in the lost sector, i.e. the next sector holds new data.
//!
//! Otherwise it is damage: `WalError::Corrupt` names the file and `B`.
//! In particular, a record whose crc is damaged together with its data or
//! type byte, or a record zeroed in place, followed by intact records, is
//! refused: no lost sector fits it (its zeros, if any, run right up to the
//! next record).
//!
//! Known limits, where the two cases are byte for byte the same:
//!
//! - a crash that loses a sector but keeps the next one, when a record
//!   happens to start exactly at that sector boundary (about 1 in 64 of such
//!   out-of-order losses), looks like a record zeroed in place that ends on
//!   a sector boundary. It is refused: refusing costs a manual repair,
//!   cutting could lose acknowledged writes.
//! - damage that zeroes whole aligned sectors in the middle of a record of
//!   the last segment looks like a lost sector, and is cut off as torn
//!   (etcd has the same limit).
//! - damage to the last record of the log cannot be told from a torn write.
//! - a filesystem that shows stale blocks (not zeros) for unwritten sectors
//!   after a crash can make a torn write with surviving later sectors look
//!   like damage; it is then refused.

/// Marks a file as a retcd WAL segment (and not, say, an etcd WAL).
pub(super) const MAGIC: &[u8; 8] = b"RETCDWAL";
/// The format this code writes. A reader refuses anything newer.
pub(super) const FORMAT_VERSION: u32 = 1;
/// Length of the segment header; a multiple of 8 so records stay aligned.
pub(super) const HEADER_LEN: usize = 16;
/// Length of a record's length frame.
pub(super) const FRAME_LEN: usize = 8;
/// type byte + crc.
const BODY_HEAD_LEN: usize = 5;
/// The smallest unit a disk writes atomically; a torn write loses whole sectors.
const SECTOR: usize = 512;
/// Bits of the frame that hold the body length.
const LEN_MASK: u64 = (1 << 56) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RecordType {
    /// Opaque caller metadata; repeated at the start of every segment.
    Metadata = 1,
    /// An encoded `raft::eraftpb::Entry`.
    Entry = 2,
    /// An encoded `raft::eraftpb::HardState`.
    State = 3,
    /// The chain value the previous segment ended with; first record of every segment.
    Crc = 4,
    /// A snapshot marker: index u64 LE, term u64 LE.
    Snapshot = 5,
}

impl RecordType {
    fn from_byte(b: u8) -> Option<RecordType> {
        Some(match b {
            1 => RecordType::Metadata,
            2 => RecordType::Entry,
            3 => RecordType::State,
            4 => RecordType::Crc,
            5 => RecordType::Snapshot,
            _ => return None,
        })
    }
}

/// The 16-byte header every segment file starts with.
pub(super) fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// Why a segment header was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum HeaderProblem {
    /// Shorter than a header: segments are renamed into place only after
    /// their header is synced, so this is damage, not a crash artefact.
    TooShort(usize),
    /// Not our magic: a foreign file (an etcd WAL, garbage, ...).
    BadMagic([u8; 8]),
    /// Our magic, but a format we do not know.
    Version(u32),
    /// Our magic and version, but reserved bytes set: damage.
    Reserved,
}

pub(super) fn check_header(buf: &[u8]) -> Result<(), HeaderProblem> {
    let Some(h) = buf.get(..HEADER_LEN) else {
        return Err(HeaderProblem::TooShort(buf.len()));
    };
    let magic = read_array::<8>(h, 0);
    if &magic != MAGIC {
        return Err(HeaderProblem::BadMagic(magic));
    }
    let version = u32::from_le_bytes(read_array::<4>(h, 8));
    if version != FORMAT_VERSION {
        return Err(HeaderProblem::Version(version));
    }
    if read_array::<4>(h, 12) != [0; 4] {
        return Err(HeaderProblem::Reserved);
    }
    Ok(())
}

/// Copies `N` bytes at `at`; callers have checked the bounds.
fn read_array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

fn chained_crc(prev: u32, kind: u8, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c_append(prev, &[kind]), data)
}

fn pad_for(body_len: usize) -> usize {
    (8 - body_len % 8) % 8
}

fn encode_frame(body_len: usize) -> u64 {
    let pad = pad_for(body_len);
    let mut frame = body_len as u64;
    if pad != 0 {
        frame |= (0x80 | pad as u64) << 56;
    }
    frame
}

/// Splits a frame into (body length, pad), refusing frames this encoder
/// could not have written.
fn decode_frame(frame: u64) -> Result<(usize, usize), String> {
    let body_len = frame & LEN_MASK;
    let top = (frame >> 56) as u8;
    let body_len = usize::try_from(body_len).map_err(|_| format!("record length {body_len} is not addressable"))?;
    let pad = pad_for(body_len);
    let expected_top = if pad == 0 { 0 } else { 0x80 | pad as u8 };
    if top != expected_top {
        return Err(format!("bad frame {frame:#018x}: padding byte {top:#04x} does not match length {body_len}"));
    }
    if body_len < BODY_HEAD_LEN {
        return Err(format!("bad frame {frame:#018x}: record length {body_len} is shorter than a record header"));
    }
    Ok((body_len, pad))
}

/// Appends one record to `buf`, advancing the chain value `crc`. The data is
/// produced by `write` straight into `buf` so an entry is encoded exactly
/// once, with no intermediate allocation.
pub(super) fn append_record<E>(
    buf: &mut Vec<u8>,
    crc: &mut u32,
    kind: RecordType,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let start = buf.len();
    buf.resize(start + FRAME_LEN + BODY_HEAD_LEN, 0);
    if let Err(e) = write(buf) {
        buf.truncate(start);
        return Err(e);
    }
    let data_start = start + FRAME_LEN + BODY_HEAD_LEN;
    let next = chained_crc(*crc, kind as u8, &buf[data_start..]);
    finish_record(buf, start, kind, next);
    *crc = next;
    Ok(())
}

/// Appends the crc record that opens a segment: it carries `prev`, the chain
/// value the previous segment ended with (0 for the first segment), and
/// leaves the chain value unchanged.
pub(super) fn append_crc_record(buf: &mut Vec<u8>, prev: u32) {
    let start = buf.len();
    buf.resize(start + FRAME_LEN + BODY_HEAD_LEN, 0);
    buf.extend_from_slice(&prev.to_le_bytes());
    let own = chained_crc(0, RecordType::Crc as u8, &prev.to_le_bytes());
    finish_record(buf, start, RecordType::Crc, own);
}

/// Fills in frame, type and crc of the record whose frame starts at `start`
/// and whose data runs to the end of `buf`, then pads.
fn finish_record(buf: &mut Vec<u8>, start: usize, kind: RecordType, crc: u32) {
    let body_len = buf.len() - start - FRAME_LEN;
    buf[start..start + FRAME_LEN].copy_from_slice(&encode_frame(body_len).to_le_bytes());
    buf[start + FRAME_LEN] = kind as u8;
    buf[start + FRAME_LEN + 1..start + FRAME_LEN + BODY_HEAD_LEN].copy_from_slice(&crc.to_le_bytes());
    buf.resize(buf.len() + pad_for(body_len), 0);
}

/// A record read back from a segment.
#[derive(Debug)]
pub(super) struct Record<'a> {
    pub kind: RecordType,
    pub data: &'a [u8],
    /// File offset of the record's frame.
    pub offset: usize,
}

/// Bytes at `offset` that do not form a valid record.
#[derive(Debug)]
pub(super) struct BadRecord {
    pub offset: usize,
    pub reason: String,
    /// The record's checksum verified but its content is still unacceptable
    /// (unknown type, broken chain between segments, misplaced crc record).
    /// Such a record was written completely, so it is never a torn write.
    pub intact: bool,
}

pub(super) enum Step<'a> {
    Record(Record<'a>),
    /// The log in this segment ends at `offset` (end of file or a zero
    /// frame). `trailing_garbage`: non-zero bytes follow the zero frame,
    /// left over from a write that never completed.
    End {
        offset: usize,
        trailing_garbage: bool,
    },
    Bad(BadRecord),
}

/// Reads the records of one segment in order, verifying frames and the chain.
pub(super) struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Chain value after the last good record; `None` until the segment's
    /// crc record is read when decoding starts in the middle of the log.
    crc: Option<u32>,
    records: usize,
}

impl<'a> Decoder<'a> {
    /// `buf` is a whole segment file whose header was checked; `crc` is the
    /// chain value the previous segment ended with, if it was read.
    pub(super) fn new(buf: &'a [u8], crc: Option<u32>) -> Decoder<'a> {
        Decoder { buf, pos: HEADER_LEN, crc, records: 0 }
    }

    /// Continues decoding at `pos` as if the records before it were read
    /// and the chain stood at `crc` (used to check what follows a bad spot).
    fn resume(buf: &'a [u8], pos: usize, crc: u32) -> Decoder<'a> {
        Decoder { buf, pos, crc: Some(crc), records: 1 }
    }

    /// The chain value after the last good record.
    pub(super) fn crc(&self) -> Option<u32> {
        self.crc
    }

    /// Number of good records read so far.
    pub(super) fn records(&self) -> usize {
        self.records
    }

    pub(super) fn next_step(&mut self) -> Step<'a> {
        let off = self.pos;
        let rest = self.buf.get(off..).unwrap_or_default();
        if rest.is_empty() {
            return Step::End { offset: off, trailing_garbage: false };
        }
        if rest.len() < FRAME_LEN {
            if is_zero(rest) {
                return Step::End { offset: off, trailing_garbage: false };
            }
            return self.bad(off, format!("partial frame: only {} bytes left in the file", rest.len()), false);
        }
        let frame = u64::from_le_bytes(read_array::<8>(rest, 0));
        if frame == 0 {
            return Step::End { offset: off, trailing_garbage: !is_zero(&rest[FRAME_LEN..]) };
        }
        let (body_len, pad) = match decode_frame(frame) {
            Ok(v) => v,
            Err(reason) => return self.bad(off, reason, false),
        };
        let total = FRAME_LEN + body_len + pad;
        if total > rest.len() {
            let reason =
                format!("record of {body_len} bytes runs past the end of the file ({} bytes left)", rest.len());
            return self.bad(off, reason, false);
        }
        let body = &rest[FRAME_LEN..FRAME_LEN + body_len];
        if !is_zero(&rest[FRAME_LEN + body_len..total]) {
            return self.bad(off, "non-zero padding after the record".into(), false);
        }
        let kind_byte = body[0];
        let stored = u32::from_le_bytes(read_array::<4>(body, 1));
        let data = &body[BODY_HEAD_LEN..];

        let kind = match RecordType::from_byte(kind_byte) {
            Some(kind) => kind,
            None => {
                // Tell a damaged type byte from a record we cannot understand.
                let intact = self.crc.is_some_and(|c| chained_crc(c, kind_byte, data) == stored);
                return self.bad(off, format!("unknown record type {kind_byte}"), intact);
            }
        };
        if kind == RecordType::Crc {
            if chained_crc(0, kind_byte, data) != stored || data.len() != 4 {
                return self.bad(off, "crc record fails its checksum".into(), false);
            }
            if self.records != 0 {
                return self.bad(off, "crc record in the middle of a segment".into(), true);
            }
            let prev = u32::from_le_bytes(read_array::<4>(data, 0));
            if let Some(c) = self.crc {
                if c != prev {
                    let reason = format!(
                        "crc chain broken: segment continues from {prev:#010x} but the previous segment ended at {c:#010x}"
                    );
                    return self.bad(off, reason, true);
                }
            }
            self.crc = Some(prev);
        } else {
            if self.records == 0 {
                return self.bad(off, format!("segment starts with a {kind:?} record instead of a crc record"), true);
            }
            let Some(c) = self.crc else {
                // Unreachable: the first record was a crc record, which set the chain.
                return self.bad(off, "no chain value before this record".into(), true);
            };
            let expected = chained_crc(c, kind_byte, data);
            if expected != stored {
                return self.bad(off, format!("crc mismatch: stored {stored:#010x}, computed {expected:#010x}"), false);
            }
            self.crc = Some(expected);
        }
        self.pos = off + total;
        self.records += 1;
        Step::Record(Record { kind, data, offset: off })
    }

    fn bad(&self, offset: usize, reason: String, intact: bool) -> Step<'a> {
        Step::Bad(BadRecord { offset, reason, intact })
    }
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// What a bad record at the end of the last segment is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TailVerdict {
    /// The remains of a write that never completed: safe to cut off.
    Torn,
    /// Damage to data that was written completely: must not be cut off.
    Corrupt(String),
}

/// Judges whether a record found after a bad spot could continue the log:
/// `(kind, data, max_skipped)`, where `max_skipped` bounds how many records
/// the bad region can hold. Used only for a lone record at the very end of
/// the file, which has no successor to verify its checksum against.
pub(super) type Plausible<'p> = &'p dyn Fn(RecordType, &[u8], usize) -> bool;

/// The smallest record: frame, type, crc and padding to 8 bytes.
const MIN_RECORD_LEN: usize = 16;

/// Decides whether the bad spot at `offset` of the last segment `buf` (a
/// record that failed its checks, or a zero frame with non-zero bytes after
/// it) is a torn write or damage. `crc` is the chain value before it. The
/// rule and its limits are in the module docs.
pub(super) fn classify_bad_tail(buf: &[u8], offset: usize, crc: Option<u32>, plausible: Plausible<'_>) -> TailVerdict {
    let body_start = offset + FRAME_LEN;
    // The bad record's extent, if its frame is believable.
    let frame = buf.get(offset..body_start).map(|f| u64::from_le_bytes(read_array::<8>(f, 0)));
    let decoded = frame.and_then(|f| decode_frame(f).ok());
    let bad_end = decoded.map(|(body_len, pad)| body_start + body_len + pad);

    // The record after the bad one chains from the bad record's crc. That
    // value is either the stored crc (if the damage is in the frame, type or
    // data) or the crc recomputed over the record (if the damage is in the
    // stored crc), so both are tried.
    let mut candidates = Vec::with_capacity(2);
    if let Some(stored) = buf.get(body_start + 1..body_start + BODY_HEAD_LEN) {
        candidates.push(u32::from_le_bytes(read_array::<4>(stored, 0)));
    }
    if let (Some((body_len, _)), Some(prev)) = (decoded, crc) {
        if let Some(body) = buf.get(body_start..body_start + body_len) {
            candidates.push(chained_crc(prev, body[0], &body[BODY_HEAD_LEN..]));
        }
    }

    let Some((follower, how)) = find_follower(buf, offset, &candidates, plausible) else {
        return TailVerdict::Torn;
    };
    if let Some(sector) = lost_sector(buf, offset, bad_end, follower) {
        tracing::debug!(offset, sector, follower, "bad WAL record spans a sector the crash did not write");
        return TailVerdict::Torn;
    }
    TailVerdict::Corrupt(format!(
        "{how} at offset {follower}, and no unwritten sector lies in between, so this is not a torn write"
    ))
}

/// The first verified follower after the bad spot at `bad` (rules 1 to 3 of
/// the module docs), with a description of how it was verified.
fn find_follower(
    buf: &[u8],
    bad: usize,
    candidates: &[u32],
    plausible: Plausible<'_>,
) -> Option<(usize, &'static str)> {
    // The follower is searched at every aligned offset, not just where the
    // (possibly damaged) frame says, to survive a damaged length.
    let mut pos = bad + FRAME_LEN;
    while pos + FRAME_LEN + BODY_HEAD_LEN <= buf.len() {
        let Some(rec) = well_formed_at(buf, pos) else {
            pos += 8;
            continue;
        };
        if candidates.iter().any(|&c| chained_crc(c, rec.kind as u8, rec.data) == rec.stored) {
            return Some((pos, "a record that chains from it follows"));
        }
        let mut dec = Decoder::resume(buf, rec.end, rec.stored);
        let mut chained = 0usize;
        loop {
            match dec.next_step() {
                Step::Record(_) => chained += 1,
                Step::End { .. } if chained > 0 => {
                    return Some((pos, "intact records that chain to the end of the log follow"));
                }
                Step::End { trailing_garbage: false, .. }
                    if plausible(rec.kind, rec.data, (pos - bad) / MIN_RECORD_LEN) =>
                {
                    return Some((pos, "an intact last record follows"));
                }
                Step::End { .. } => {
                    pos += 8;
                    break;
                }
                Step::Bad(b) => {
                    // The records of this chain are not followers either:
                    // go on from where it broke.
                    pos = if chained > 0 { b.offset.max(pos + 8) } else { pos + 8 };
                    break;
                }
            }
        }
    }
    None
}

/// A well-framed record whose checksum has not been checked.
struct Unverified<'a> {
    kind: RecordType,
    stored: u32,
    data: &'a [u8],
    /// Offset just after its padding.
    end: usize,
}

/// A well-formed non-crc record at `pos`: its frame decodes, it fits in the
/// file, its padding is zero and its type is known.
fn well_formed_at(buf: &[u8], pos: usize) -> Option<Unverified<'_>> {
    let frame = u64::from_le_bytes(read_array::<8>(buf.get(pos..pos + FRAME_LEN)?, 0));
    if frame == 0 {
        return None;
    }
    let (body_len, pad) = decode_frame(frame).ok()?;
    let body_start = pos + FRAME_LEN;
    let end = body_start.checked_add(body_len)?.checked_add(pad)?;
    let body = buf.get(body_start..body_start + body_len)?;
    if !is_zero(buf.get(body_start + body_len..end)?) {
        return None;
    }
    let kind = RecordType::from_byte(body[0]).filter(|&k| k != RecordType::Crc)?;
    let stored = u32::from_le_bytes(read_array::<4>(body, 1));
    Some(Unverified { kind, stored, data: &body[BODY_HEAD_LEN..], end })
}

/// A sector that a crash left unwritten and that explains the bad spot at
/// `bad` (extent `bad_end`, if known) given a verified follower at
/// `follower`: returns its offset. See the module docs.
fn lost_sector(buf: &[u8], bad: usize, bad_end: Option<usize>, follower: usize) -> Option<usize> {
    // Non-zero bytes in [t, follower) exist iff the last one is at or after t.
    let last_non_zero = buf[bad..follower].iter().rposition(|&b| b != 0).map(|i| bad + i);
    let mut t = (bad / SECTOR + 1) * SECTOR;
    while t <= follower {
        let sector = t - SECTOR;
        if bad_end.is_some_and(|end| sector >= end) {
            // Past the bad record: a lost sector here would not explain it.
            return None;
        }
        // `bad` is where a record starts. If its type byte lies past the
        // lost sector, that byte was written and a type byte is never zero.
        let header_written = bad + FRAME_LEN < t || buf.get(bad + FRAME_LEN).is_some_and(|&b| b != 0);
        if header_written && is_zero(&buf[sector.max(bad)..t]) && last_non_zero.is_some_and(|nz| nz >= t) {
            return Some(sector);
        }
        t += SECTOR;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[(RecordType, &[u8])]) -> Vec<u8> {
        let mut buf = header().to_vec();
        append_crc_record(&mut buf, 0);
        let mut crc = 0;
        for (kind, data) in records {
            append_record(&mut buf, &mut crc, *kind, |b| {
                b.extend_from_slice(data);
                Ok::<(), ()>(())
            })
            .ok();
        }
        buf
    }

    fn read_all(buf: &[u8]) -> (Vec<(RecordType, Vec<u8>, usize)>, Step<'_>) {
        let mut d = Decoder::new(buf, Some(0));
        let mut out = Vec::new();
        loop {
            match d.next_step() {
                Step::Record(r) => out.push((r.kind, r.data.to_vec(), r.offset)),
                other => return (out, other),
            }
        }
    }

    #[test]
    fn frames_are_aligned_and_round_trip() {
        let datas: Vec<Vec<u8>> = (0..20).map(|n| vec![n as u8 + 1; n]).collect();
        let recs: Vec<(RecordType, &[u8])> = datas.iter().map(|d| (RecordType::Entry, d.as_slice())).collect();
        let buf = segment(&recs);
        assert_eq!(buf.len() % 8, 0);
        let (got, end) = read_all(&buf);
        assert!(matches!(end, Step::End { offset, trailing_garbage: false } if offset == buf.len()));
        assert_eq!(got.len(), 21);
        assert_eq!(got[0].0, RecordType::Crc);
        for (i, (kind, data, offset)) in got.iter().skip(1).enumerate() {
            assert_eq!(*kind, RecordType::Entry);
            assert_eq!(data, &datas[i]);
            assert_eq!(offset % 8, 0);
        }
    }

    #[test]
    fn zero_frame_ends_the_log_and_flags_garbage_after_it() {
        let mut buf = segment(&[(RecordType::Entry, b"abc")]);
        let end = buf.len();
        buf.resize(end + 64, 0);
        let (got, step) = read_all(&buf);
        assert_eq!(got.len(), 2);
        assert!(matches!(step, Step::End { offset, trailing_garbage: false } if offset == end));
        buf[end + 40] = 7;
        let (_, step) = read_all(&buf);
        assert!(matches!(step, Step::End { offset, trailing_garbage: true } if offset == end));
    }

    #[test]
    fn header_checks() {
        assert_eq!(check_header(&header()), Ok(()));
        assert_eq!(check_header(&header()[..10]), Err(HeaderProblem::TooShort(10)));
        let mut h = header();
        h[8] = 2;
        assert_eq!(check_header(&h), Err(HeaderProblem::Version(2)));
        h = header();
        h[0] = b'X';
        assert!(matches!(check_header(&h), Err(HeaderProblem::BadMagic(_))));
        h = header();
        h[15] = 1;
        assert_eq!(check_header(&h), Err(HeaderProblem::Reserved));
    }

    /// No lone record is plausible: only checksums count.
    const NONE_PLAUSIBLE: Plausible<'static> = &|_, _, _| false;

    #[test]
    fn classify_torn_versus_damaged() {
        let recs: Vec<(RecordType, &[u8])> = vec![(RecordType::Entry, b"one"), (RecordType::Entry, b"two two")];
        let buf = segment(&recs);
        let (got, _) = read_all(&buf);
        let last = got[2].2;
        let crc_before = {
            let mut d = Decoder::new(&buf, Some(0));
            d.next_step();
            d.next_step();
            d.crc()
        };
        // Damage in the middle record, with the last intact: corrupt.
        let mut damaged = buf.clone();
        damaged[got[1].2 + FRAME_LEN + BODY_HEAD_LEN] ^= 1;
        let v = classify_bad_tail(&damaged, got[1].2, Some(0), NONE_PLAUSIBLE);
        assert!(matches!(v, TailVerdict::Corrupt(_)), "{v:?}");
        // Damage to the length of the middle record: the follower is still found.
        let mut damaged = buf.clone();
        damaged[got[1].2] ^= 0x10;
        let v = classify_bad_tail(&damaged, got[1].2, Some(0), NONE_PLAUSIBLE);
        assert!(matches!(v, TailVerdict::Corrupt(_)), "{v:?}");
        // Damage in the last record: nothing follows, torn.
        let mut damaged = buf.clone();
        damaged[last + FRAME_LEN + BODY_HEAD_LEN] ^= 1;
        assert_eq!(classify_bad_tail(&damaged, last, crc_before, NONE_PLAUSIBLE), TailVerdict::Torn);
        // A record spanning a zeroed sector is torn even when followed by a valid record.
        let big = vec![9u8; 3 * SECTOR];
        let buf = segment(&[(RecordType::Entry, &big), (RecordType::Entry, b"after")]);
        let (got, _) = read_all(&buf);
        let mut damaged = buf.clone();
        let s = (got[1].2 + FRAME_LEN + BODY_HEAD_LEN).div_ceil(SECTOR) * SECTOR;
        damaged[s..s + SECTOR].fill(0);
        assert_eq!(classify_bad_tail(&damaged, got[1].2, Some(0), NONE_PLAUSIBLE), TailVerdict::Torn);
    }

    type Damage = Box<dyn Fn(&mut Vec<u8>)>;

    /// Every lone record is plausible.
    const ALL_PLAUSIBLE: Plausible<'static> = &|_, _, _| true;

    /// `filler` bytes of entry, the 100-byte target entry, then two more
    /// records, then preallocated zeros. Returns the segment, the target's
    /// offset and end, and the chain value before it.
    fn with_target(filler: usize) -> (Vec<u8>, usize, usize, Option<u32>) {
        let fill = vec![7u8; filler];
        let target = [5u8; 100];
        let mut buf = segment(&[
            (RecordType::Entry, &fill),
            (RecordType::Entry, &target),
            (RecordType::Entry, b"after one"),
            (RecordType::State, b"after two"),
        ]);
        let (got, _) = read_all(&buf);
        let mut d = Decoder::new(&buf, Some(0));
        d.next_step();
        d.next_step();
        let crc = d.crc();
        buf.resize(4096, 0);
        (buf, got[2].2, got[3].2, crc)
    }

    /// The first bad spot the decoder finds.
    fn first_bad(buf: &[u8]) -> Option<usize> {
        match read_all(buf).1 {
            Step::Bad(b) => Some(b.offset),
            Step::End { offset, trailing_garbage: true } => Some(offset),
            Step::End { .. } => None,
            Step::Record(_) => unreachable!(),
        }
    }

    #[test]
    fn damage_that_hides_the_chain_value_is_not_torn() {
        let (mut crossing, mut on_boundary) = (0, 0);
        // Every alignment of the target against the sectors.
        for filler in 300..=480 {
            let (buf, at, end, crc) = with_target(filler);
            let crosses = at / SECTOR != (end - 1) / SECTOR;
            crossing += usize::from(crosses && end % SECTOR != 0);
            on_boundary += usize::from(end % SECTOR == 0);
            let body = at + FRAME_LEN;
            let cases: Vec<(&str, Damage)> = vec![
                ("crc and data", Box::new(move |b| b[body + 3..body + 7].iter_mut().for_each(|x| *x ^= 0xa5))),
                ("type and crc", Box::new(move |b| b[body..body + 5].iter_mut().for_each(|x| *x ^= 0xa5))),
                ("zeroed in place", Box::new(move |b| b[at..end].fill(0))),
                ("frame, type and crc zeroed", Box::new(move |b| b[at..body + 5].fill(0))),
            ];
            for (what, damage) in cases {
                let mut damaged = buf.clone();
                damage(&mut damaged);
                assert_eq!(first_bad(&damaged), Some(at), "{what}, filler {filler}");
                let v = classify_bad_tail(&damaged, at, crc, NONE_PLAUSIBLE);
                assert!(matches!(v, TailVerdict::Corrupt(_)), "{what}, filler {filler}: {v:?}");
            }
        }
        assert!(crossing > 0 && on_boundary > 0, "alignments not covered: {crossing} {on_boundary}");
    }

    #[test]
    fn a_lone_last_record_counts_only_if_plausible() {
        // Damage the second-to-last record: the last one has no successor
        // to verify its checksum, so its content decides.
        let buf = {
            let mut b = segment(&[(RecordType::Entry, b"one"), (RecordType::Entry, b"two"), (RecordType::State, b"3")]);
            b.resize(2048, 0);
            b
        };
        let (got, _) = read_all(&buf);
        let at = got[2].2;
        let mut damaged = buf.clone();
        damaged[at + FRAME_LEN + 3..at + FRAME_LEN + 7].iter_mut().for_each(|x| *x ^= 0xa5);
        let crc = {
            let mut d = Decoder::new(&buf, Some(0));
            d.next_step();
            d.next_step();
            d.crc()
        };
        assert!(matches!(classify_bad_tail(&damaged, at, crc, ALL_PLAUSIBLE), TailVerdict::Corrupt(_)));
        assert_eq!(classify_bad_tail(&damaged, at, crc, NONE_PLAUSIBLE), TailVerdict::Torn);
        // Not the last thing in the file: a lone record followed by garbage is no evidence.
        damaged[2000] = 1;
        assert_eq!(classify_bad_tail(&damaged, at, crc, ALL_PLAUSIBLE), TailVerdict::Torn);
    }

    #[test]
    fn lost_sectors_of_a_torn_write_are_torn() {
        // A batch spanning several sectors after a synced record ending mid-sector.
        let datas: Vec<Vec<u8>> = (0..30).map(|n| vec![n as u8 + 1; 50 + n * 3]).collect();
        let mut recs: Vec<(RecordType, &[u8])> = vec![(RecordType::Entry, b"synced")];
        recs.extend(datas.iter().map(|d| (RecordType::Entry, d.as_slice())));
        let mut buf = segment(&recs);
        let (got, _) = read_all(&buf);
        let write_start = got[2].2;
        let starts: Vec<usize> = got.iter().map(|g| g.2).collect();
        assert!(starts.iter().all(|s| s % SECTOR != 0), "a record starts on a sector boundary; change the sizes");
        let end = buf.len();
        buf.resize(end + 4096, 0);
        let crc = {
            let mut d = Decoder::new(&buf, Some(0));
            d.next_step();
            d.next_step();
            d.crc()
        };
        let first = write_start / SECTOR;
        let last = (end - 1) / SECTOR;
        assert!(last - first >= 4);
        for lost in first..last {
            let mut torn = buf.clone();
            let from = (lost * SECTOR).max(write_start);
            torn[from..(lost + 1) * SECTOR].fill(0);
            let Some(bad) = first_bad(&torn) else { panic!("sector {lost}: no bad spot") };
            let crc = if bad == write_start { crc } else { None };
            // The chain value is only needed to recompute; None is fine past the write start.
            let v = classify_bad_tail(&torn, bad, crc, ALL_PLAUSIBLE);
            assert_eq!(v, TailVerdict::Torn, "sector {lost} lost, bad spot at {bad}");
        }
    }
}
