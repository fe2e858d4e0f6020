//! Raft snapshot files: `<term:016x>-<index:016x>.snap` holding a CRC-checked,
//! encoded `raft::eraftpb::Snapshot` (the metadata and a small `data` blob; the
//! key-value data itself lives in the backend).
//!
//! File content: CRC32C of the rest (u32 LE), then the snapshot encoded with
//! prost. The name repeats the snapshot's term and index, so the newest
//! snapshot is found by name order without reading every file; on load the
//! decoded metadata must agree with the name.
//!
//! Durability rule: a snapshot is written to `<name>.tmp`, fsynced, renamed
//! to its final name, and the directory is fsynced. A file with a `.snap`
//! name is therefore complete unless the disk damaged it; a crash during a
//! save leaves only a `.tmp` file, removed by the next [`Snapshotter::new`].
//!
//! A `.snap` file that fails its check is renamed to `<name>.broken` (kept
//! for inspection, never read again) and the next older one is tried, as
//! etcd does. The caller (raft boot) must then find that older snapshot's
//! marker in the WAL, which the WAL's purge rules keep as long as it can.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use prost011::Message as _;
use raft::eraftpb::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum SnapError {
    #[error("snap: io error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snap: {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".snap.tmp";
const CRC_LEN: usize = 4;

#[derive(Debug)]
pub struct Snapshotter {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapError + '_ {
    move |source| SnapError::Io { path: path.to_path_buf(), source }
}

fn snap_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}{SUFFIX}")
}

/// Parses exactly the names [`snap_name`] produces into (term, index).
fn parse_snap_name(name: &str) -> Option<(u64, u64)> {
    let (term, index) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    Some((parse_hex16(term)?, parse_hex16(index)?))
}

fn parse_hex16(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

fn term_index(snap: &Snapshot) -> (u64, u64) {
    snap.metadata.as_ref().map_or((0, 0), |m| (m.term, m.index))
}

fn sync_dir(dir: &Path) -> Result<(), SnapError> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

impl Snapshotter {
    /// Uses `dir` (created if missing) for snapshot files.
    pub fn new(dir: &Path) -> Result<Snapshotter, SnapError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let s = Snapshotter { dir: dir.to_path_buf() };
        let mut removed = false;
        for dirent in fs::read_dir(dir).map_err(io_err(dir))? {
            let dirent = dirent.map_err(io_err(dir))?;
            let name = dirent.file_name();
            let Some(name) = name.to_str() else { continue };
            let unfinished =
                name.strip_suffix(TMP_SUFFIX).is_some_and(|stem| parse_snap_name(&format!("{stem}{SUFFIX}")).is_some());
            if unfinished {
                let path = dirent.path();
                tracing::info!(path = %path.display(), "removing an unfinished snapshot file");
                fs::remove_file(&path).map_err(io_err(&path))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(dir)?;
        }
        Ok(s)
    }

    /// The directory snapshot files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `snap` durably (write to a temp file, fsync, rename, fsync dir).
    pub fn save(&self, snap: &Snapshot) -> Result<(), SnapError> {
        let (term, index) = term_index(snap);
        let name = snap_name(term, index);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        crate::failpoints::crash_point("snap::before_save");
        let body = snap.encode_to_vec();
        let mut contents = Vec::with_capacity(CRC_LEN + body.len());
        contents.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        contents.extend_from_slice(&body);

        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&contents).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        crate::failpoints::crash_point("snap::after_save");
        Ok(())
    }

    /// The newest snapshot that passes its CRC check; a corrupt newer file is
    /// renamed to `*.broken` and skipped (as etcd does). None if there is none.
    pub fn load_newest(&self) -> Result<Option<Snapshot>, SnapError> {
        self.load_newest_where(|_, _| true)
    }

    /// [`Snapshotter::load_newest`] among the files whose (term, index)
    /// `accept` takes; the others are left alone.
    pub fn load_newest_where(&self, accept: impl Fn(u64, u64) -> bool) -> Result<Option<Snapshot>, SnapError> {
        let mut files = self.list()?;
        files.reverse();
        for (path, term, index) in files.into_iter().filter(|&(_, term, index)| accept(term, index)) {
            match read_snap(&path, term, index)? {
                Ok(snap) => return Ok(Some(snap)),
                Err(reason) => {
                    let mut broken = path.clone().into_os_string();
                    broken.push(".broken");
                    let broken = PathBuf::from(broken);
                    tracing::warn!(
                        path = %path.display(),
                        broken = %broken.display(),
                        reason,
                        "snapshot file is corrupt; setting it aside",
                    );
                    fs::rename(&path, &broken).map_err(io_err(&path))?;
                    sync_dir(&self.dir)?;
                }
            }
        }
        Ok(None)
    }

    /// Removes the oldest snapshot files while more than `max_files` remain.
    pub fn purge(&self, max_files: usize) -> Result<Vec<PathBuf>, SnapError> {
        let files = self.list()?;
        let excess = files.len().saturating_sub(max_files);
        let mut removed = Vec::with_capacity(excess);
        for (path, _, _) in files.into_iter().take(excess) {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(SnapError::Io { path, source: e }),
            }
            removed.push(path);
        }
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Snapshot files, oldest first by (term, index).
    fn list(&self) -> Result<Vec<(PathBuf, u64, u64)>, SnapError> {
        let mut files = Vec::new();
        for dirent in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let dirent = dirent.map_err(io_err(&self.dir))?;
            let name = dirent.file_name();
            let Some((term, index)) = name.to_str().and_then(parse_snap_name) else { continue };
            files.push((dirent.path(), term, index));
        }
        files.sort_by_key(|&(_, term, index)| (term, index));
        Ok(files)
    }
}

/// Reads and checks one snapshot file. The outer error is an I/O failure (the
/// file may be fine: give up); the inner one says why the content is corrupt.
fn read_snap(path: &Path, term: u64, index: u64) -> Result<Result<Snapshot, String>, SnapError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    Ok(check_snap(&bytes, term, index))
}

fn check_snap(bytes: &[u8], term: u64, index: u64) -> Result<Snapshot, String> {
    let Some((crc, body)) = bytes.split_first_chunk::<CRC_LEN>() else {
        return Err(format!("file is {} bytes, too short for a checksum", bytes.len()));
    };
    let stored = u32::from_le_bytes(*crc);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(format!("crc mismatch: stored {stored:#010x}, computed {computed:#010x}"));
    }
    let snap = Snapshot::decode(body).map_err(|e| format!("cannot decode the snapshot: {e}"))?;
    let got = term_index(&snap);
    if got != (term, index) {
        return Err(format!(
            "holds the snapshot at term {} index {}, but its name says term {term} index {index}",
            got.0, got.1
        ));
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{ConfState, SnapshotMetadata};

    fn snapshot(term: u64, index: u64, data: &[u8]) -> Snapshot {
        Snapshot {
            data: data.to_vec(),
            metadata: Some(SnapshotMetadata {
                conf_state: Some(ConfState { voters: vec![1, 2, 3], ..Default::default() }),
                index,
                term,
            }),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|rd| rd.flatten().filter_map(|d| d.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn save_and_load_newest() -> Result<(), SnapError> {
        let tmp = tempfile::tempdir().map_err(io_err(Path::new("tempdir")))?;
        let s = Snapshotter::new(&tmp.path().join("snap"))?;
        assert_eq!(s.load_newest()?, None);
        s.save(&snapshot(1, 5, b"five"))?;
        s.save(&snapshot(2, 3, b"three at term 2"))?;
        s.save(&snapshot(1, 9, b"nine"))?;
        assert_eq!(
            names(s.dir()),
            vec![
                "0000000000000001-0000000000000005.snap",
                "0000000000000001-0000000000000009.snap",
                "0000000000000002-0000000000000003.snap",
            ]
        );
        // Newest is by (term, index): term 2 beats a higher index at term 1.
        assert_eq!(s.load_newest()?, Some(snapshot(2, 3, b"three at term 2")));
        // A new Snapshotter on the same dir sees the same.
        let s2 = Snapshotter::new(s.dir())?;
        assert_eq!(s2.load_newest()?, Some(snapshot(2, 3, b"three at term 2")));
        Ok(())
    }

    #[test]
    fn corrupt_newest_is_set_aside() -> Result<(), SnapError> {
        let tmp = tempfile::tempdir().map_err(io_err(Path::new("tempdir")))?;
        let s = Snapshotter::new(tmp.path())?;
        s.save(&snapshot(1, 5, b"five"))?;
        s.save(&snapshot(1, 7, b"seven"))?;
        s.save(&snapshot(1, 9, b"nine"))?;
        // Flip a bit in the newest, truncate the next one.
        let p9 = tmp.path().join(snap_name(1, 9));
        let mut b = fs::read(&p9).map_err(io_err(&p9))?;
        let last = b.len() - 1;
        b[last] ^= 0x01;
        fs::write(&p9, &b).map_err(io_err(&p9))?;
        let p7 = tmp.path().join(snap_name(1, 7));
        fs::write(&p7, [1u8, 2]).map_err(io_err(&p7))?;

        assert_eq!(s.load_newest()?, Some(snapshot(1, 5, b"five")));
        assert_eq!(
            names(tmp.path()),
            vec![
                "0000000000000001-0000000000000005.snap",
                "0000000000000001-0000000000000007.snap.broken",
                "0000000000000001-0000000000000009.snap.broken",
            ]
        );
        // The broken copies keep the damaged bytes.
        let kept = fs::read(tmp.path().join("0000000000000001-0000000000000009.snap.broken")).map_err(io_err(&p9))?;
        assert_eq!(kept, b);
        Ok(())
    }

    #[test]
    fn misnamed_file_is_refused() -> Result<(), SnapError> {
        let tmp = tempfile::tempdir().map_err(io_err(Path::new("tempdir")))?;
        let s = Snapshotter::new(tmp.path())?;
        s.save(&snapshot(1, 5, b"five"))?;
        fs::rename(tmp.path().join(snap_name(1, 5)), tmp.path().join(snap_name(1, 6))).map_err(io_err(tmp.path()))?;
        assert_eq!(s.load_newest()?, None);
        assert_eq!(names(tmp.path()), vec!["0000000000000001-0000000000000006.snap.broken"]);
        Ok(())
    }

    #[test]
    fn unfinished_tmp_files_are_removed_and_others_kept() -> Result<(), SnapError> {
        let tmp = tempfile::tempdir().map_err(io_err(Path::new("tempdir")))?;
        let stale = tmp.path().join(format!("{}.tmp", snap_name(1, 4)));
        fs::write(&stale, b"half").map_err(io_err(&stale))?;
        let other = tmp.path().join("notes.txt");
        fs::write(&other, b"x").map_err(io_err(&other))?;
        let s = Snapshotter::new(tmp.path())?;
        assert_eq!(names(tmp.path()), vec!["notes.txt"]);
        assert_eq!(s.load_newest()?, None);
        Ok(())
    }

    #[test]
    fn purge_keeps_the_newest() -> Result<(), SnapError> {
        let tmp = tempfile::tempdir().map_err(io_err(Path::new("tempdir")))?;
        let s = Snapshotter::new(tmp.path())?;
        for i in 1..=5 {
            s.save(&snapshot(1, i * 10, b""))?;
        }
        assert_eq!(s.purge(5)?, Vec::<PathBuf>::new());
        let removed = s.purge(2)?;
        assert_eq!(removed, (1..=3).map(|i| tmp.path().join(snap_name(1, i * 10))).collect::<Vec<_>>());
        assert_eq!(
            names(tmp.path()),
            vec!["0000000000000001-0000000000000028.snap", "0000000000000001-0000000000000032.snap"]
        );
        assert_eq!(s.load_newest()?, Some(snapshot(1, 50, b"")));
        assert_eq!(s.purge(0)?.len(), 2);
        assert_eq!(s.load_newest()?, None);
        Ok(())
    }

    #[test]
    fn names_parse_strictly() {
        assert_eq!(parse_snap_name(&snap_name(7, 0xabc)), Some((7, 0xabc)));
        assert_eq!(parse_snap_name("0000000000000007-0000000000000ABC.snap"), None);
        assert_eq!(parse_snap_name("7-abc.snap"), None);
        assert_eq!(parse_snap_name(&format!("{}.broken", snap_name(7, 1))), None);
    }
}
