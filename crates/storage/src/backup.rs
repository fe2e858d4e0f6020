//! Restoring a backup: a snapshot file as the Maintenance.Snapshot stream
//! writes it (the database followed by its SHA-256, etcd's format) becomes
//! a new member's backend.
//!
//! The old cluster's membership, raft configuration and applied index are
//! removed: the member then starts like a new member of the cluster named
//! by its flags (`--initial-cluster` etc.), with all the keys, leases and
//! auth data of the snapshot.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::backend::{Backend, BackendError, Table, CONF_STATE_KEY};

/// Length of the digest that ends a snapshot file.
pub const DIGEST_LEN: usize = 32;
const CHUNK: usize = 32 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("snapshot file has no sha256 checksum (size {0}); it is not a snapshot or is truncated")]
    NoChecksum(u64),
    #[error("expected sha256 {expected}, got {actual}")]
    Checksum { expected: String, actual: String },
    #[error("data-dir {0:?} exists")]
    DataDirExists(PathBuf),
}

fn io(what: &str, path: &Path, e: std::io::Error) -> BackupError {
    BackupError::Io(format!("{what} {}: {e}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads until `buf` is full or the end of the file.
pub fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Checks a saved snapshot's trailing SHA-256 and returns the database
/// bytes' length.
pub fn verify(snapshot: &Path) -> Result<u64, BackupError> {
    let mut file = std::fs::File::open(snapshot).map_err(|e| io("opening", snapshot, e))?;
    let size = file.metadata().map_err(|e| io("reading", snapshot, e))?.len();
    if size % 512 != DIGEST_LEN as u64 {
        return Err(BackupError::NoChecksum(size));
    }
    let db_len = size - DIGEST_LEN as u64;
    let mut hash = Sha256::new();
    let mut remaining = db_len;
    let mut buf = vec![0u8; CHUNK];
    while remaining > 0 {
        let want = remaining.min(CHUNK as u64) as usize;
        let n = read_full(&mut file, &mut buf[..want]).map_err(|e| io("reading", snapshot, e))?;
        if n == 0 {
            return Err(BackupError::Io(format!("{} is truncated", snapshot.display())));
        }
        hash.update(&buf[..n]);
        remaining -= n as u64;
    }
    let mut expected = [0u8; DIGEST_LEN];
    file.read_exact(&mut expected).map_err(|e| io("reading", snapshot, e))?;
    let actual = hash.finalize();
    if actual.as_slice() != expected {
        return Err(BackupError::Checksum { expected: hex(&expected), actual: hex(&actual) });
    }
    Ok(db_len)
}

/// Restores `snapshot` into the new data directory `data_dir` (which must
/// not exist): its database becomes the member's backend, without the old
/// cluster's members, raft configuration and applied index. The trailing
/// SHA-256 is checked unless `skip_hash_check` (which also accepts a plain
/// database file without one, as etcd's `--skip-hash-check`).
pub fn restore(snapshot: &Path, data_dir: &Path, skip_hash_check: bool) -> Result<(), BackupError> {
    if data_dir.exists() {
        return Err(BackupError::DataDirExists(data_dir.to_path_buf()));
    }
    let size = std::fs::metadata(snapshot).map_err(|e| io("reading", snapshot, e))?.len();
    let has_hash = size % 512 == DIGEST_LEN as u64;
    let db_len = match (has_hash, skip_hash_check) {
        (_, false) => verify(snapshot)?,
        (true, true) => size - DIGEST_LEN as u64,
        (false, true) => size,
    };
    let member = data_dir.join("member");
    std::fs::create_dir_all(&member).map_err(|e| io("creating", &member, e))?;
    let db_path = member.join("retcd.db");
    let mut src = std::fs::File::open(snapshot).map_err(|e| io("opening", snapshot, e))?;
    let mut dst = std::fs::File::create(&db_path).map_err(|e| io("creating", &db_path, e))?;
    std::io::copy(&mut src.by_ref().take(db_len), &mut dst).map_err(|e| io("writing", &db_path, e))?;
    dst.sync_all().map_err(|e| io("syncing", &db_path, e))?;
    drop(dst);

    let backend = Backend::open(&db_path)?;
    {
        let members = backend.range_keys(Table::Members, &[], None, 0)?;
        let mut btx = backend.batch_tx();
        for key in members {
            btx.delete(Table::Members, &key);
        }
        btx.delete(Table::Meta, CONF_STATE_KEY);
        // The new cluster's log starts over: every entry after its
        // bootstrap snapshot must be applied.
        btx.set_consistent_index(0, 0);
    }
    backend.commit()?;
    Ok(())
}
