//! WAL tests against real files in temporary directories.

use std::fs;
use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState};

use super::record::{self, Decoder, RecordType, Step};
use super::segment::segment_name;
use super::{Wal, WalContents, WalError, WalOptions, WalSnapshot};

type BoxError = Box<dyn std::error::Error>;
type TestResult = Result<(), BoxError>;
/// A way to damage a segment file's bytes.
type Damage = Box<dyn Fn(&mut Vec<u8>)>;
/// Good records of a segment as (kind, frame offset), and where its log ends.
type Layout = (Vec<(RecordType, usize)>, usize);

const SMALL: WalOptions = WalOptions { segment_size: 1024 };
/// Small enough to copy a directory hundreds of times, big enough to hold a test's records.
const ROOMY: WalOptions = WalOptions { segment_size: 64 * 1024 };

fn entry(index: u64, term: u64, data: &str) -> Entry {
    Entry { index, term, data: data.as_bytes().to_vec(), ..Default::default() }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term, &format!("entry {i} at term {term}"))).collect()
}

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit }
}

fn open(dir: &Path, snap: WalSnapshot, opts: WalOptions) -> Result<(Wal, WalContents), WalError> {
    Wal::open_with_options(dir, snap, opts)
}

fn indexes(c: &WalContents) -> Vec<u64> {
    c.entries.iter().map(|e| e.index).collect()
}

fn snap(index: u64, term: u64) -> WalSnapshot {
    WalSnapshot { index, term }
}

/// Sorted file names in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| rd.flatten().filter_map(|d| d.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn wal_files(dir: &Path) -> Vec<PathBuf> {
    names(dir).into_iter().filter(|n| n.ends_with(".wal")).map(|n| dir.join(n)).collect()
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for n in names(from) {
        fs::copy(from.join(&n), to.join(&n))?;
    }
    Ok(())
}

fn layout(path: &Path) -> Result<Layout, BoxError> {
    let bytes = fs::read(path)?;
    record::check_header(&bytes).map_err(|p| format!("{p:?}"))?;
    let mut dec = Decoder::new(&bytes, None);
    let mut out = Vec::new();
    loop {
        match dec.next_step() {
            Step::Record(r) => out.push((r.kind, r.offset)),
            Step::End { offset, .. } => return Ok((out, offset)),
            Step::Bad(b) => return Err(format!("bad record in {}: {b:?}", path.display()).into()),
        }
    }
}

fn flip(path: &Path, offset: usize, mask: u8) -> std::io::Result<()> {
    let mut b = fs::read(path)?;
    b[offset] ^= mask;
    fs::write(path, b)
}

fn assert_corrupt_at(res: Result<(Wal, WalContents), WalError>, path: &Path, offset: usize) {
    match res {
        Err(WalError::Corrupt { path: p, offset: o, reason }) => {
            assert_eq!(p, path, "wrong file named ({reason})");
            assert_eq!(o, offset as u64, "wrong offset ({reason})");
        }
        Err(e) => panic!("expected Corrupt at {}:{offset}, got {e}", path.display()),
        Ok((_, c)) => panic!("expected Corrupt at {}:{offset}, opened with entries {:?}", path.display(), indexes(&c)),
    }
}

/// Deterministic noise, so failures reproduce.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect()
}

#[test]
fn create_then_round_trip_across_reopens() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    assert!(!Wal::exists(&dir));
    let mut w = Wal::create_with_options(&dir, b"member 1 of cluster 7", ROOMY)?;
    assert!(Wal::exists(&dir));
    assert_eq!(names(&dir), vec![segment_name(0, 0)]);
    w.save(Some(&hs(1, 1, 0)), &entries(1..=5, 1))?;
    w.save(Some(&hs(1, 1, 3)), &[])?;
    w.save(None, &[])?;
    drop(w);

    let (mut w, c) = open(&dir, WalSnapshot::default(), ROOMY)?;
    assert_eq!(c.metadata, b"member 1 of cluster 7");
    assert_eq!(c.hard_state, hs(1, 1, 3));
    assert_eq!(c.entries, entries(1..=5, 1));
    assert_eq!(w.last_index(), 5);
    w.save(Some(&hs(2, 1, 5)), &entries(6..=8, 2))?;
    drop(w);

    let (_, c) = open(&dir, WalSnapshot::default(), ROOMY)?;
    let mut want = entries(1..=5, 1);
    want.extend(entries(6..=8, 2));
    assert_eq!(c.entries, want);
    assert_eq!(c.hard_state, hs(2, 1, 5));
    // Nothing was repaired along the way.
    assert_eq!(names(&dir), vec![segment_name(0, 0)]);
    Ok(())
}

#[test]
fn create_refuses_a_dir_with_segments() -> TestResult {
    let tmp = tempfile::tempdir()?;
    drop(Wal::create(tmp.path(), b"m")?);
    let before = fs::read(tmp.path().join(segment_name(0, 0)))?;
    assert!(matches!(Wal::create(tmp.path(), b"other"), Err(WalError::Io { .. })));
    assert_eq!(fs::read(tmp.path().join(segment_name(0, 0)))?, before);
    // The default segment size is preallocated.
    assert_eq!(before.len() as u64, super::DEFAULT_SEGMENT_SIZE);
    Ok(())
}

#[test]
fn overwritten_entries_keep_the_latest() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut w = Wal::create_with_options(tmp.path(), b"m", ROOMY)?;
    w.save(Some(&hs(1, 1, 2)), &entries(1..=5, 1))?;
    w.save_snapshot(snap(2, 1))?;
    // A new leader overwrites 3.. with its own entries.
    w.save(Some(&hs(2, 2, 2)), &entries(3..=4, 2))?;
    drop(w);
    let (mut w, c) = open(tmp.path(), WalSnapshot::default(), ROOMY)?;
    let mut want = entries(1..=2, 1);
    want.extend(entries(3..=4, 2));
    assert_eq!(c.entries, want);
    assert_eq!(w.last_index(), 4);
    w.save(None, &entries(5..=6, 2))?;
    drop(w);

    let (_, c) = open(tmp.path(), snap(2, 1), ROOMY)?;
    assert_eq!(c.entries, entries(3..=6, 2));
    assert_eq!(c.hard_state, hs(2, 2, 2));
    Ok(())
}

#[test]
fn entry_gap_is_corrupt() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut w = Wal::create_with_options(tmp.path(), b"m", ROOMY)?;
    w.save(None, &entries(1..=2, 1))?;
    w.save(None, &entries(4..=4, 1))?;
    drop(w);
    let seg = tmp.path().join(segment_name(0, 0));
    let (recs, _) = layout(&seg)?;
    let res = open(tmp.path(), WalSnapshot::default(), ROOMY);
    assert_corrupt_at(res, &seg, recs[recs.len() - 1].1);
    Ok(())
}

#[test]
fn segments_are_cut_and_read_across() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut w = Wal::create_with_options(dir, b"meta", SMALL)?;
    for start in (1..=300).step_by(6) {
        w.save(Some(&hs(1, 1, start - 1)), &entries(start..=start + 5, 1))?;
        if start + 5 == 150 {
            w.save_snapshot(snap(150, 1))?;
        }
    }
    let paths = w.segment_paths();
    drop(w);
    let files = wal_files(dir);
    assert_eq!(paths, files);
    assert!(files.len() > 5, "expected several segments, got {}", files.len());
    assert!(!names(dir).iter().any(|n| n.ends_with(".tmp")));

    // Names: consecutive sequence numbers, each index one past the last entry before it.
    let mut last_entry = 0;
    for (seq, path) in files.iter().enumerate() {
        let want = segment_name(seq as u64, if seq == 0 { 0 } else { last_entry + 1 });
        assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(want.as_str()));
        let (recs, _) = layout(path)?;
        // Every segment opens with crc + metadata (+ the hard state after the first).
        assert_eq!(recs[0].0, RecordType::Crc);
        assert_eq!(recs[1].0, RecordType::Metadata);
        if seq > 0 {
            assert_eq!(recs[2].0, RecordType::State);
        }
        last_entry += recs.iter().filter(|r| r.0 == RecordType::Entry).count() as u64;
        // Finished segments were trimmed to their last record.
        if seq + 1 < files.len() {
            assert_eq!(fs::metadata(path)?.len() as usize, layout(path)?.1);
        }
    }
    assert_eq!(last_entry, 300);

    let (_, c) = open(dir, WalSnapshot::default(), SMALL)?;
    assert_eq!(c.entries, entries(1..=300, 1));
    assert_eq!(c.metadata, b"meta");
    assert_eq!(c.hard_state, hs(1, 1, 294));

    // Opening at the snapshot starts reading in a later segment.
    let (mut w, c) = open(dir, snap(150, 1), SMALL)?;
    assert_eq!(c.entries, entries(151..=300, 1));
    assert_eq!(c.hard_state, hs(1, 1, 294));
    w.save(None, &entries(301..=400, 1))?;
    drop(w);
    let (_, c) = open(dir, snap(150, 1), SMALL)?;
    assert_eq!(c.entries, entries(151..=400, 1));
    Ok(())
}

#[test]
fn crc_chain_continues_across_segments() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut w = Wal::create_with_options(dir, b"meta", SMALL)?;
    for start in (1..=120).step_by(4) {
        w.save(Some(&hs(1, 1, start)), &entries(start..=start + 3, 1))?;
    }
    drop(w);
    let files = wal_files(dir);
    assert!(files.len() >= 3);

    // Each segment's crc record carries the chain value its predecessor ended with.
    let mut chain = None;
    for (i, path) in files.iter().enumerate() {
        let bytes = fs::read(path)?;
        let crc_record = &bytes[record::HEADER_LEN + record::FRAME_LEN + 5..record::HEADER_LEN + record::FRAME_LEN + 9];
        let carried = u32::from_le_bytes(crc_record.try_into()?);
        match chain {
            None => assert_eq!(carried, 0, "the first segment starts the chain at 0"),
            Some(c) => assert_eq!(carried, c, "segment {i}"),
        }
        let mut dec = Decoder::new(&bytes, chain);
        while let Step::Record(_) = dec.next_step() {}
        chain = dec.crc();
    }

    // Give segment 1 a self-consistent crc record carrying the wrong value:
    // only the chain can tell.
    let mut forged = record::header().to_vec();
    record::append_crc_record(&mut forged, 0xdead_beef);
    let mut bytes = fs::read(&files[1])?;
    bytes[..forged.len()].copy_from_slice(&forged);
    fs::write(&files[1], &bytes)?;
    match open(dir, WalSnapshot::default(), SMALL) {
        Err(WalError::Corrupt { path, offset, reason }) => {
            assert_eq!(path, files[1]);
            assert_eq!(offset, record::HEADER_LEN as u64);
            assert!(reason.contains("chain"), "{reason}");
        }
        other => panic!("expected a broken chain, got {:?}", other.map(|(_, c)| indexes(&c))),
    }
    Ok(())
}

/// Builds a WAL whose last record is entry 3, returning the segment and that record's span.
fn wal_ending_in_entry_3(dir: &Path) -> Result<(PathBuf, usize, usize), BoxError> {
    let mut w = Wal::create_with_options(dir, b"meta", ROOMY)?;
    w.save(Some(&hs(1, 1, 1)), &entries(1..=2, 1))?;
    w.save(None, &[entry(3, 1, &"x".repeat(100))])?;
    drop(w);
    let seg = dir.join(segment_name(0, 0));
    let (recs, end) = layout(&seg)?;
    let (kind, start) = recs[recs.len() - 1];
    assert_eq!(kind, RecordType::Entry);
    Ok((seg, start, end))
}

/// After a repair: entries 1 and 2 remain, the WAL takes appends, and they survive a reopen.
fn check_repaired(dir: &Path, (w, c): (Wal, WalContents)) -> TestResult {
    assert_eq!(c.entries, entries(1..=2, 1));
    assert_eq!(c.hard_state, hs(1, 1, 1));
    let mut w = w;
    w.save(Some(&hs(2, 1, 2)), &entries(3..=4, 2))?;
    drop(w);
    let (_, c) = open(dir, WalSnapshot::default(), ROOMY)?;
    let mut want = entries(1..=2, 1);
    want.extend(entries(3..=4, 2));
    assert_eq!(c.entries, want);
    assert_eq!(c.hard_state, hs(2, 1, 2));
    Ok(())
}

#[test]
fn torn_tail_at_every_offset_is_repaired() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let orig = tmp.path().join("orig");
    let (seg, start, end) = wal_ending_in_entry_3(&orig)?;
    let name = segment_name(0, 0);
    let original = fs::read(&seg)?;
    for cut in start..end {
        // A crash that left a prefix of the record: as a short file, and as
        // a prefix followed by the preallocated zeros.
        for zeros in [false, true] {
            if zeros && original[cut..end].iter().all(|&b| b == 0) {
                // Zeroing bytes that are zero anyway (padding) damages nothing.
                continue;
            }
            let dir = tmp.path().join(format!("cut-{cut}-{zeros}"));
            copy_dir(&orig, &dir)?;
            let path = dir.join(&name);
            if zeros {
                let mut b = original.clone();
                b[cut..end].fill(0);
                fs::write(&path, b)?;
            } else {
                fs::File::options().write(true).open(&path)?.set_len(cut as u64)?;
            }
            let damaged = fs::read(&path)?;
            let opened = open(&dir, WalSnapshot::default(), ROOMY).map_err(|e| format!("cut at {cut}: {e}"))?;
            if cut > start {
                // The damaged file was kept, and the segment cut back to entry 2.
                let broken = fs::read(dir.join(format!("{name}.broken")))
                    .map_err(|e| format!("cut at {cut}, {zeros}: {e}; files {:?}", names(&dir)))?;
                assert_eq!(broken, damaged, "cut at {cut}");
                let repaired = fs::read(&path)?;
                assert_eq!(&repaired[..start], &original[..start]);
                assert!(repaired[start..].iter().all(|&b| b == 0), "cut at {cut}: tail not zeroed");
            } else {
                assert_eq!(names(&dir), vec![name.clone()], "a clean end needs no repair");
            }
            check_repaired(&dir, opened).map_err(|e| format!("cut at {cut}: {e}"))?;
        }
    }
    Ok(())
}

#[test]
fn damaged_last_record_is_treated_as_torn() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (seg, start, end) = wal_ending_in_entry_3(tmp.path())?;
    flip(&seg, start + (end - start) / 2, 0x04)?;
    let opened = open(tmp.path(), WalSnapshot::default(), ROOMY)?;
    assert!(names(tmp.path()).contains(&format!("{}.broken", segment_name(0, 0))));
    check_repaired(tmp.path(), opened)
}

#[test]
fn garbage_after_the_log_is_repaired() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let orig = tmp.path().join("orig");
    let (seg, _, end) = wal_ending_in_entry_3(&orig)?;
    // Entry 3 stays this time: the garbage comes after it.
    let name = seg.file_name().ok_or("no name")?.to_owned();
    let original = fs::read(&seg)?;
    let cases: Vec<(&str, Damage)> = vec![
        (
            "noise right after the log",
            Box::new(move |b: &mut Vec<u8>| b[end..end + 100].copy_from_slice(&noise(100, 1))),
        ),
        (
            "noise after a zero frame",
            Box::new(move |b: &mut Vec<u8>| b[end + 8..end + 108].copy_from_slice(&noise(100, 2))),
        ),
        (
            "noise far after the log",
            Box::new(move |b: &mut Vec<u8>| b[end + 5000..end + 5003].copy_from_slice(&[1, 2, 3])),
        ),
        ("noise appended past the file end", Box::new(move |b: &mut Vec<u8>| b.extend(noise(77, 3)))),
        (
            "a plausible frame with a bad body",
            Box::new(move |b: &mut Vec<u8>| {
                b[end..end + 8].copy_from_slice(&(24u64).to_le_bytes());
                b[end + 8] = 2;
                b[end + 9..end + 32].copy_from_slice(&noise(23, 4));
            }),
        ),
    ];
    for (what, damage) in cases {
        let dir = tmp.path().join(what.replace(' ', "-"));
        copy_dir(&orig, &dir)?;
        let path = dir.join(&name);
        let mut b = original.clone();
        damage(&mut b);
        fs::write(&path, &b)?;
        let (mut w, c) = open(&dir, WalSnapshot::default(), ROOMY).map_err(|e| format!("{what}: {e}"))?;
        assert_eq!(indexes(&c), vec![1, 2, 3], "{what}");
        assert_eq!(fs::read(dir.join(format!("{}.broken", name.to_string_lossy())))?, b, "{what}");
        w.save(None, &entries(4..=4, 1))?;
        drop(w);
        let (_, c) = open(&dir, WalSnapshot::default(), ROOMY).map_err(|e| format!("{what}, reopen: {e}"))?;
        assert_eq!(indexes(&c), vec![1, 2, 3, 4], "{what}");
    }
    Ok(())
}

#[test]
fn flipped_bit_in_a_middle_record_is_corrupt() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let orig = tmp.path().join("orig");
    let mut w = Wal::create_with_options(&orig, b"meta", ROOMY)?;
    for i in 1..=10 {
        w.save(Some(&hs(1, 1, i - 1)), &entries(i..=i, 1))?;
    }
    drop(w);
    let name = segment_name(0, 0);
    let (recs, _) = layout(&orig.join(&name))?;
    let entry_offsets: Vec<usize> = recs.iter().filter(|r| r.0 == RecordType::Entry).map(|r| r.1).collect();
    let target = entry_offsets[4];
    let next = recs.iter().map(|r| r.1).find(|&o| o > target).ok_or("no next record")?;
    // Every byte of the record: frame, type, crc, data and padding.
    for at in target..next {
        for mask in [0x01u8, 0x80] {
            let dir = tmp.path().join(format!("flip-{at}-{mask}"));
            copy_dir(&orig, &dir)?;
            let path = dir.join(&name);
            flip(&path, at, mask)?;
            let before = fs::read(&path)?;
            assert_corrupt_at(open(&dir, WalSnapshot::default(), ROOMY), &path, target);
            // Refused, not repaired: nothing was touched.
            assert_eq!(fs::read(&path)?, before);
            assert_eq!(names(&dir), vec![name.clone()]);
            fs::remove_dir_all(&dir)?;
        }
    }
    Ok(())
}

#[test]
fn damage_in_an_earlier_segment_is_corrupt() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let orig = tmp.path().join("orig");
    let mut w = Wal::create_with_options(&orig, b"meta", SMALL)?;
    for start in (1..=100).step_by(5) {
        w.save(None, &entries(start..=start + 4, 1))?;
    }
    drop(w);
    let files = wal_files(&orig);
    assert!(files.len() >= 3);
    let first = files[0].file_name().ok_or("no name")?.to_owned();
    let (recs, end) = layout(&files[0])?;
    let last = recs[recs.len() - 1].1;

    // The last record of a finished segment: no record follows in that file,
    // but it is not the log's tail.
    let dir = tmp.path().join("flip");
    copy_dir(&orig, &dir)?;
    flip(&dir.join(&first), last + 20, 0x10)?;
    assert_corrupt_at(open(&dir, WalSnapshot::default(), SMALL), &dir.join(&first), last);

    // A finished segment cut short.
    let dir = tmp.path().join("short");
    copy_dir(&orig, &dir)?;
    fs::File::options().write(true).open(dir.join(&first))?.set_len((end - 3) as u64)?;
    assert_corrupt_at(open(&dir, WalSnapshot::default(), SMALL), &dir.join(&first), last);

    // A missing middle segment.
    let dir = tmp.path().join("gap");
    copy_dir(&orig, &dir)?;
    fs::remove_file(dir.join(files[1].file_name().ok_or("no name")?))?;
    let after_gap = dir.join(files[2].file_name().ok_or("no name")?);
    assert_corrupt_at(open(&dir, WalSnapshot::default(), SMALL), &after_gap, 0);
    Ok(())
}

#[test]
fn foreign_files_are_refused_untouched() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let name = segment_name(0, 0);

    // An etcd WAL starts with a length frame and a walpb.Record{type: crc},
    // followed by a metadata record.
    let mut etcd = Vec::new();
    etcd.extend_from_slice(&(4u64 | (0x84u64 << 56)).to_le_bytes());
    etcd.extend_from_slice(&[0x08, 0x04, 0x10, 0x00, 0, 0, 0, 0]);
    etcd.extend_from_slice(&(13u64 | (0x83u64 << 56)).to_le_bytes());
    etcd.extend_from_slice(&[0x08, 0x01, 0x10, 0xb5, 0xa1, 0xc4, 0x0b, 0x1a, 0x03, b'a', b'b', b'c', 0, 0, 0, 0]);
    etcd.resize(4096, 0);

    let mut newer = record::header().to_vec();
    newer[8] = 2;
    let mut rest = Vec::new();
    record::append_crc_record(&mut rest, 0);
    newer.extend(rest);

    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("random bytes", noise(4096, 9), true),
        ("an etcd WAL", etcd, true),
        ("a newer format", newer, true),
        ("an empty file", Vec::new(), false),
        ("a truncated header", record::header()[..12].to_vec(), false),
    ];
    for (what, content, unsupported) in cases {
        let dir = tmp.path().join(what.replace(' ', "-"));
        fs::create_dir_all(&dir)?;
        let path = dir.join(&name);
        fs::write(&path, &content)?;
        assert!(Wal::exists(&dir));
        let res = open(&dir, WalSnapshot::default(), ROOMY);
        match res {
            Err(WalError::UnsupportedFormat { path: p, reason }) if unsupported => {
                assert_eq!(p, path, "{what}");
                if what == "a newer format" {
                    assert!(reason.contains("version 2"), "{reason}");
                }
            }
            Err(WalError::Corrupt { path: p, .. }) if !unsupported => assert_eq!(p, path, "{what}"),
            Err(e) => panic!("{what}: unexpected error {e}"),
            Ok(_) => panic!("{what}: opened"),
        }
        assert_eq!(fs::read(&path)?, content, "{what}: file modified");
        assert_eq!(names(&dir), vec![name.clone()], "{what}");
        assert!(Wal::create(&dir, b"m").is_err(), "{what}: create over a foreign WAL");
        assert_eq!(fs::read(&path)?, content, "{what}: file modified by create");
    }
    Ok(())
}

#[test]
fn snapshot_marker_must_be_in_the_log() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut w = Wal::create_with_options(dir, b"m", ROOMY)?;
    w.save(Some(&hs(1, 1, 5)), &entries(1..=5, 1))?;
    drop(w);
    match open(dir, snap(3, 1), ROOMY) {
        Err(WalError::SnapshotNotFound { dir: d, index: 3, term: 1 }) => assert_eq!(d, dir),
        other => panic!("expected SnapshotNotFound, got {:?}", other.map(|(_, c)| indexes(&c))),
    }
    // Index 0 needs no marker (create wrote one anyway).
    let (mut w, c) = open(dir, WalSnapshot::default(), ROOMY)?;
    assert_eq!(indexes(&c), vec![1, 2, 3, 4, 5]);
    w.save_snapshot(snap(3, 1))?;
    drop(w);
    let (_, c) = open(dir, snap(3, 1), ROOMY)?;
    assert_eq!(c.entries, entries(4..=5, 1));
    // Same index, other term: the snapshot and the log disagree.
    assert!(matches!(open(dir, snap(3, 2), ROOMY), Err(WalError::Other(_))));
    Ok(())
}

#[test]
fn purge_keeps_unreleased_segments() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut w = Wal::create_with_options(dir, b"m", SMALL)?;
    for start in (1..=300).step_by(5) {
        w.save(Some(&hs(1, 1, start + 4)), &entries(start..=start + 4, 1))?;
        if start + 4 == 150 {
            w.save_snapshot(snap(150, 1))?;
        }
    }
    let all = w.segment_paths();
    assert!(all.len() > 6);
    let first_index = |p: &PathBuf| -> u64 {
        let n = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        super::segment::parse_segment_name(n).map_or(u64::MAX, |(_, i)| i)
    };

    // Nothing released: nothing removed, whatever max_files says.
    assert!(w.purge(0, 0)?.is_empty());
    // max_files not exceeded: nothing removed.
    assert!(w.purge(150, all.len())?.is_empty());

    let removed = w.purge(150, 1)?;
    let kept = w.segment_paths();
    assert!(!removed.is_empty());
    assert_eq!([removed.clone(), kept.clone()].concat(), all);
    assert_eq!(wal_files(dir), kept);
    // The first kept segment is the one opening at 150 reads from.
    assert!(first_index(&kept[0]) <= 150);
    assert!(first_index(&kept[1]) > 150);
    drop(w);
    let (mut w, c) = open(dir, snap(150, 1), SMALL)?;
    assert_eq!(c.entries, entries(151..=300, 1));

    // max_files bounds the removal, and the active segment always stays.
    let before = w.segment_paths();
    assert_eq!(w.purge(u64::MAX, before.len() - 1)?, vec![before[0].clone()]);
    let removed = w.purge(u64::MAX, 0)?;
    assert_eq!(removed.len(), before.len() - 2);
    assert_eq!(wal_files(dir), vec![before[before.len() - 1].clone()]);
    w.save(None, &entries(301..=301, 1))?;
    Ok(())
}

#[test]
fn unfinished_segment_from_a_crashed_cut_is_discarded() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut w = Wal::create_with_options(dir, b"m", ROOMY)?;
    w.save(None, &entries(1..=3, 1))?;
    drop(w);
    let stale = dir.join(format!("{}.tmp", segment_name(1, 4)));
    fs::write(&stale, b"half a segment")?;
    fs::write(dir.join("README"), b"not ours")?;
    let (mut w, c) = open(dir, WalSnapshot::default(), ROOMY)?;
    assert_eq!(indexes(&c), vec![1, 2, 3]);
    assert!(!stale.exists());
    assert!(dir.join("README").exists());
    w.save(None, &entries(4..=4, 1))?;
    drop(w);
    let (_, c) = open(dir, WalSnapshot::default(), ROOMY)?;
    assert_eq!(indexes(&c), vec![1, 2, 3, 4]);
    Ok(())
}

#[test]
fn snapshot_after_last_entry_names_the_next_segment() -> TestResult {
    // A snapshot received from the leader can be ahead of every entry in the
    // log; the next segment must then start after it, also after a reopen,
    // or opening at that snapshot would skip the segment holding its marker.
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut w = Wal::create_with_options(dir, b"m", SMALL)?;
    w.save(None, &entries(1..=5, 1))?;
    w.save_snapshot(snap(1000, 3))?;
    drop(w);
    let (mut w, c) = open(dir, snap(1000, 3), SMALL)?;
    assert!(c.entries.is_empty());
    assert_eq!(w.last_index(), 1000);
    let big: Vec<Entry> = (1001..=1040).map(|i| entry(i, 3, &"y".repeat(200))).collect();
    w.save(Some(&hs(3, 0, 1000)), &big)?;
    drop(w);
    let files = wal_files(dir);
    assert_eq!(files.len(), 2);
    assert_eq!(files[1].file_name().and_then(|n| n.to_str()), Some(segment_name(1, 1041).as_str()));
    let (_, c) = open(dir, snap(1000, 3), SMALL)?;
    assert_eq!(c.entries, big);
    Ok(())
}

/// Damage that leaves no chain value to find the next record with (the
/// stored crc hit together with the data or the type byte, or the record
/// zeroed in place) must not pass for a torn tail when intact records follow.
#[test]
fn damage_hiding_the_chain_in_the_last_segment_is_refused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let orig = tmp.path().join("orig");
    let mut w = Wal::create_with_options(&orig, b"meta", ROOMY)?;
    // Sizes vary so records start and end all over the sectors.
    for i in 1..=24u64 {
        w.save(Some(&hs(1, 1, i - 1)), &[entry(i, 1, &"x".repeat(40 + 29 * i as usize))])?;
    }
    drop(w);
    let name = segment_name(0, 0);
    let seg = orig.join(&name);
    let original = fs::read(&seg)?;
    let (recs, end) = layout(&seg)?;
    assert!(recs.iter().any(|r| r.1 / 512 != (r.1 + 20) / 512), "no record near a sector boundary");
    // Every record but the last (damage there is a torn write for all we
    // can tell) and the segment's opening crc and metadata records.
    for i in 2..recs.len() - 1 {
        let (at, next) = (recs[i].1, recs[i + 1].1);
        let body = at + record::FRAME_LEN;
        let cases: Vec<(&str, Damage)> = vec![
            (
                "crc and data",
                Box::new(move |b: &mut Vec<u8>| b[body + 3..body + 7].iter_mut().for_each(|x| *x ^= 0xa5)),
            ),
            ("type and crc", Box::new(move |b: &mut Vec<u8>| b[body..body + 5].iter_mut().for_each(|x| *x ^= 0xa5))),
            ("zeroed in place", Box::new(move |b: &mut Vec<u8>| b[at..next].fill(0))),
        ];
        for (what, damage) in cases {
            let dir = tmp.path().join(format!("{i}-{}", what.replace(' ', "-")));
            copy_dir(&orig, &dir)?;
            let path = dir.join(&name);
            let mut b = original.clone();
            damage(&mut b);
            fs::write(&path, &b)?;
            match open(&dir, WalSnapshot::default(), ROOMY) {
                Err(WalError::Corrupt { path: p, offset, reason }) => {
                    assert_eq!(p, path, "{what} at record {i}");
                    assert_eq!(offset, at as u64, "{what} at record {i}: {reason}");
                }
                Err(e) => panic!("{what} at record {i} ({at}..{next} of {end}): {e}"),
                Ok((_, c)) => {
                    panic!("{what} at record {i} ({at}..{next} of {end}): opened with {:?}", indexes(&c))
                }
            }
            assert_eq!(fs::read(&path)?, b, "{what} at record {i}: file modified");
            assert_eq!(names(&dir), vec![name.clone()], "{what} at record {i}");
            fs::remove_dir_all(&dir)?;
        }
    }
    Ok(())
}

/// Entries 1 to 3 synced, then entries 4 to 15 and a hard state in one
/// batch. `shift` moves the batch against the sectors. Returns the segment
/// before and after the batch, and the batch's records as (start, end).
type Batch = (Vec<u8>, Vec<u8>, Vec<(usize, usize)>);

fn batch_wal(dir: &Path, shift: usize) -> Result<Batch, BoxError> {
    let mut w = Wal::create_with_options(dir, b"meta", ROOMY)?;
    w.save(Some(&hs(1, 1, 0)), &[entry(1, 1, &"s".repeat(8 * shift)), entry(2, 1, "two"), entry(3, 1, "three")])?;
    drop(w);
    let seg = dir.join(segment_name(0, 0));
    let before = fs::read(&seg)?;
    let (old, _) = layout(&seg)?;
    let (mut w, _) = open(dir, WalSnapshot::default(), ROOMY)?;
    let batch: Vec<Entry> = (4..=15).map(|i| entry(i, 1, &format!("{i:03}").repeat(30 + 5 * i as usize))).collect();
    w.save(Some(&hs(1, 1, 3)), &batch)?;
    drop(w);
    let after = fs::read(&seg)?;
    let (recs, end) = layout(&seg)?;
    let starts: Vec<usize> = recs[old.len()..].iter().map(|r| r.1).collect();
    let ends = starts.iter().skip(1).copied().chain([end]);
    Ok((before, after, starts.iter().copied().zip(ends).collect()))
}

/// A crash during a large batch can persist any subset of its sectors; the
/// others read as they were before the write (zeros past the old end). Every
/// such tail is repaired, keeping every record before the first lost sector.
#[test]
fn torn_batch_losing_any_of_its_sectors_is_repaired() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let name = segment_name(0, 0);
    // A layout where no batch record starts on a sector boundary: the one
    // ambiguous case (see `lost_sector_ending_at_a_record_boundary_is_refused`).
    let mut found = None;
    for shift in 1..64 {
        let dir = tmp.path().join(format!("layout-{shift}"));
        let b = batch_wal(&dir, shift)?;
        if b.2.iter().all(|&(start, _)| start % 512 != 0) {
            found = Some((dir, b));
            break;
        }
    }
    let (orig, (before, after, batch)) = found.ok_or("no suitable layout")?;
    let write_start = batch[0].0;
    let write_end = batch[batch.len() - 1].1;
    let (first, last) = (write_start / 512, (write_end - 1) / 512);
    let sectors = last - first + 1;
    assert!((5..=9).contains(&sectors), "{sectors} sectors");
    for lost in 1u32..(1 << sectors) {
        let mut bytes = after.clone();
        let mut first_lost_byte = usize::MAX;
        for j in 0..sectors {
            if lost & (1 << j) != 0 {
                let s = (first + j) * 512;
                bytes[s..s + 512].copy_from_slice(&before[s..s + 512]);
                first_lost_byte = first_lost_byte.min(s.max(write_start));
            }
        }
        let dir = tmp.path().join(format!("lost-{lost:x}"));
        copy_dir(&orig, &dir)?;
        fs::write(dir.join(&name), &bytes)?;
        let (mut w, c) = open(&dir, WalSnapshot::default(), ROOMY).map_err(|e| format!("lost {lost:#b}: {e}"))?;
        let kept = indexes(&c);
        // Entries 1..=3 and every batch entry before the first lost byte survive.
        let intact = batch.iter().take_while(|&&(_, end)| end <= first_lost_byte).count() as u64;
        assert_eq!(kept, (1..=kept.len() as u64).collect::<Vec<_>>(), "lost {lost:#b}");
        assert!(kept.len() as u64 >= 3 + intact.min(12), "lost {lost:#b}: kept {kept:?}");
        let next = kept.len() as u64 + 1;
        w.save(None, &entries(next..=next, 2))?;
        drop(w);
        let (_, c) = open(&dir, WalSnapshot::default(), ROOMY).map_err(|e| format!("lost {lost:#b}, reopen: {e}"))?;
        assert_eq!(indexes(&c), (1..=next).collect::<Vec<_>>(), "lost {lost:#b}");
        fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

/// The known limit of telling a torn tail from damage (module docs of
/// `record`): a crash that loses a sector but keeps the next one, when a
/// record starts exactly on that boundary, is byte for byte a record zeroed
/// in place that ends there. It is refused rather than risk cutting off
/// acknowledged writes.
#[test]
fn lost_sector_ending_at_a_record_boundary_is_refused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let name = segment_name(0, 0);
    for shift in 1..64 {
        let dir = tmp.path().join(format!("layout-{shift}"));
        let (before, after, batch) = batch_wal(&dir, shift)?;
        let Some(&(t, _)) = batch.iter().skip(1).find(|&&(start, _)| start % 512 == 0 && start - 512 >= batch[0].0)
        else {
            continue;
        };
        let mut bytes = after.clone();
        bytes[t - 512..t].copy_from_slice(&before[t - 512..t]);
        fs::write(dir.join(&name), &bytes)?;
        assert!(matches!(open(&dir, WalSnapshot::default(), ROOMY), Err(WalError::Corrupt { .. })));
        assert_eq!(fs::read(dir.join(&name))?, bytes);
        return Ok(());
    }
    Err("no layout with a record on a sector boundary".into())
}
