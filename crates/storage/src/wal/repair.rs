//! Cutting a torn tail off the last segment.
//!
//! Only the last segment can end in a torn write: an earlier one was
//! trimmed and fsynced before its successor was created. The decision that a
//! tail is torn (rather than damaged) is made by the reader; this module only
//! carries it out, in an order that never loses information:
//!
//! 1. copy the whole segment to `<name>.broken` (a new name if that exists)
//!    and fsync the copy, so the discarded bytes stay available for
//!    inspection;
//! 2. cut the segment back to the end of its last good record and extend it
//!    again with zeros to its former size, so the preallocated space is back
//!    and the bytes after the log read as the zero end marker;
//! 3. fsync the segment, then the directory (for the new `.broken` file).
//!
//! A crash in between is harmless: the next open finds the same torn tail
//! (or an already clean one) and repeats the repair.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use super::segment::{io_err, sync_dir};
use super::WalError;

/// Truncates `path` to `good_end` after backing it up; returns the backup's path.
pub(super) fn repair_tail(path: &Path, good_end: u64, reason: &str) -> Result<PathBuf, WalError> {
    let broken = backup_name(path)?;
    tracing::warn!(
        path = %path.display(),
        offset = good_end,
        backup = %broken.display(),
        reason,
        "repairing a torn WAL tail",
    );
    fs::copy(path, &broken).map_err(io_err(&broken))?;
    File::open(&broken).and_then(|f| f.sync_all()).map_err(io_err(&broken))?;

    let file = OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    file.set_len(good_end).map_err(io_err(path))?;
    if len > good_end {
        file.set_len(len).map_err(io_err(path))?;
    }
    file.sync_all().map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(broken)
}

/// `<path>.broken`, or `<path>.broken.<n>` if earlier repairs left backups.
fn backup_name(path: &Path) -> Result<PathBuf, WalError> {
    let base = path.as_os_str().to_os_string();
    for n in 0u32..1000 {
        let mut name = base.clone();
        if n == 0 {
            name.push(".broken");
        } else {
            name.push(format!(".broken.{n}"));
        }
        let candidate = PathBuf::from(name);
        if !candidate.try_exists().map_err(io_err(&candidate))? {
            return Ok(candidate);
        }
    }
    Err(WalError::Other(format!("too many .broken copies of {} already exist", path.display())))
}
