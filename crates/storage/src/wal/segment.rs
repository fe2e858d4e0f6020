//! Segment files in the WAL directory: their names, listing them, and
//! creating a new one atomically.
//!
//! A segment is named `<seq:016x>-<index:016x>.wal`: `seq` numbers segments
//! consecutively from 0, `index` is the raft index of the first entry the
//! segment may hold (one past the last entry written before it was cut).
//!
//! Creation rule: a segment is built under `<name>.tmp` (preallocated,
//! header and opening records written, fsynced) and only then renamed to its
//! final name, after which the directory is fsynced. A file with a segment
//! name therefore always has a complete header and opening records; a crash
//! during creation leaves only a `.tmp` file, which the next open removes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::WalError;

const SUFFIX: &str = ".wal";
const TMP_SUFFIX: &str = ".wal.tmp";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Segment {
    pub seq: u64,
    pub index: u64,
    pub path: PathBuf,
}

pub(super) fn segment_name(seq: u64, index: u64) -> String {
    format!("{seq:016x}-{index:016x}{SUFFIX}")
}

/// Parses exactly the names [`segment_name`] produces.
pub(super) fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (seq, index) = stem.split_once('-')?;
    Some((parse_hex16(seq)?, parse_hex16(index)?))
}

fn parse_hex16(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.to_path_buf(), source }
}

/// The segments in `dir`, ordered by sequence number. Other files are
/// ignored: `.broken` copies and leftovers are expected there.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<Segment>, WalError> {
    let mut segments = Vec::new();
    for dirent in fs::read_dir(dir).map_err(io_err(dir))? {
        let dirent = dirent.map_err(io_err(dir))?;
        let name = dirent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((seq, index)) = parse_segment_name(name) {
            segments.push(Segment { seq, index, path: dirent.path() });
        }
    }
    segments.sort_by_key(|s| s.seq);
    Ok(segments)
}

/// Removes segment files a crash left half-built (see the module docs).
pub(super) fn remove_stale_tmp(dir: &Path) -> Result<(), WalError> {
    let mut removed = false;
    for dirent in fs::read_dir(dir).map_err(io_err(dir))? {
        let dirent = dirent.map_err(io_err(dir))?;
        let name = dirent.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_ours =
            name.strip_suffix(TMP_SUFFIX).is_some_and(|stem| parse_segment_name(&format!("{stem}{SUFFIX}")).is_some());
        if is_ours {
            let path = dirent.path();
            tracing::info!(path = %path.display(), "removing an unfinished WAL segment");
            fs::remove_file(&path).map_err(io_err(&path))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Fsyncs a directory so that file creations, renames and removals in it
/// survive a crash.
pub(super) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    // An empty path (a relative dir's parent) means the current directory.
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Creates segment `seq`/`index` in `dir` holding `contents` (header and
/// opening records) and preallocated to at least `size` bytes, following
/// the creation rule in the module docs. Returns the file, open for reading
/// and writing and positioned after `contents`, and its path.
pub(super) fn create_segment(
    dir: &Path,
    seq: u64,
    index: u64,
    contents: &[u8],
    size: u64,
) -> Result<(File, PathBuf), WalError> {
    let name = segment_name(seq, index);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&tmp).map_err(io_err(&tmp))?;
    // Preallocate so appends do not grow the file (and its metadata) on every
    // write. set_len makes a sparse file rather than reserving blocks, but it
    // still gives readers the zero tail that marks the end of the log.
    file.set_len(size.max(contents.len() as u64)).map_err(io_err(&tmp))?;
    file.write_all(contents).map_err(io_err(&tmp))?;
    // sync_all, not sync_data: the file's size is new metadata too.
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir)?;
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_lookalikes() {
        let name = segment_name(3, 0x1f);
        assert_eq!(name, "0000000000000003-000000000000001f.wal");
        assert_eq!(parse_segment_name(&name), Some((3, 0x1f)));
        for bad in [
            "0000000000000003-000000000000001F.wal",
            "3-1f.wal",
            "0000000000000003-000000000000001f.wal.tmp",
            "0000000000000003-000000000000001f.wal.broken",
            "0000000000000003_000000000000001f.wal",
            "+000000000000003-000000000000001f.wal",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }
}
