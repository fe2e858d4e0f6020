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

/// What `snapshot status` reports about a snapshot file, as etcd's
/// `snapshot.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// CRC-32C over every table's name, then its keys and values in order
    /// (tables by name), as etcd hashes a bolt file's buckets.
    pub hash: u32,
    /// The newest main revision in the key table.
    pub revision: i64,
    /// Records in all tables.
    pub total_key: u64,
    /// Size of the database (the file without its trailing digest).
    pub total_size: u64,
}

/// An OS error as Go prints it ("no such file or directory"), for the
/// messages etcdctl users' scripts match.
fn go_errno_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Removes a file when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads a snapshot file (with or without its trailing SHA-256, which is
/// not checked here, as etcd's status does not) and summarizes it. The
/// file itself is not modified: its database is opened from a temporary
/// copy.
pub fn status(snapshot: &Path) -> Result<Status, BackupError> {
    let size = std::fs::metadata(snapshot)
        .map_err(|e| BackupError::Io(format!("stat {}: {}", snapshot.display(), go_errno_text(&e))))?
        .len();
    let db_len = if size % 512 == DIGEST_LEN as u64 { size - DIGEST_LEN as u64 } else { size };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let copy = TempFile(std::env::temp_dir().join(format!("retcd-snapshot-status-{}-{nanos}.db", std::process::id())));
    {
        let mut src = std::fs::File::open(snapshot).map_err(|e| io("opening", snapshot, e))?;
        let mut dst = std::fs::File::create(&copy.0).map_err(|e| io("creating", &copy.0, e))?;
        std::io::copy(&mut src.by_ref().take(db_len), &mut dst).map_err(|e| io("copying", snapshot, e))?;
    }
    // Errors name the user's file, not the temporary copy.
    let backend = Backend::open(&copy.0).map_err(|e| {
        BackupError::Io(e.to_string().replace(&copy.0.display().to_string(), &snapshot.display().to_string()))
    })?;
    let mut tables = Table::ALL;
    tables.sort_by_key(|t| t.name());
    let mut st = Status { hash: 0, revision: 0, total_key: 0, total_size: db_len };
    let mut hash = 0u32;
    let mut failure = None;
    for table in tables {
        hash = crc32c::crc32c_append(hash, table.name().as_bytes());
        backend.scan(table, &[], None, |k, v| {
            hash = crc32c::crc32c_append(crc32c::crc32c_append(hash, k), v);
            st.total_key += 1;
            if table == Table::Key {
                match crate::mvcc::Revision::from_key(k) {
                    Ok((rev, _)) => st.revision = rev.main,
                    Err(e) => {
                        failure = Some(e.to_string());
                        return false;
                    }
                }
            }
            true
        })?;
        if let Some(e) = failure {
            return Err(BackupError::Io(format!("snapshot file integrity check failed: {e}")));
        }
    }
    st.hash = hash;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::Revision;

    /// A backend with `n` revisions of one key and one lease record, saved
    /// as a snapshot file (database + SHA-256) named `name`.
    fn snapshot_file(dir: &Path, name: &str, n: i64, value: &[u8]) -> PathBuf {
        let db = dir.join(format!("{name}.db"));
        let backend = Backend::open(&db).unwrap();
        {
            let mut btx = backend.batch_tx();
            for main in 2..2 + n {
                btx.put(Table::Key, &Revision::new(main, 0).to_bytes(), value);
            }
            btx.put(Table::Lease, &7u64.to_be_bytes(), b"lease");
        }
        backend.commit().unwrap();
        drop(backend);
        let mut bytes = std::fs::read(&db).unwrap();
        assert_eq!(bytes.len() % 512, 0, "redb files are page-aligned");
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn status_counts_records_and_finds_the_revision() {
        let dir = tempfile::tempdir().unwrap();
        let a = snapshot_file(dir.path(), "a", 5, b"v");
        let st = status(&a).unwrap();
        assert_eq!(st.revision, 6);
        // Five revisions, one lease, plus what a new backend stores in meta.
        let meta = Backend::open(&dir.path().join("a.db")).unwrap().range(Table::Meta, &[], None, 0).unwrap().len();
        assert_eq!(st.total_key, 6 + meta as u64);
        assert_eq!(st.total_size, std::fs::metadata(&a).unwrap().len() - DIGEST_LEN as u64);
        // The file is left as it was, and reading it twice agrees.
        assert_eq!(verify(&a).unwrap(), st.total_size);
        assert_eq!(status(&a).unwrap(), st);

        let b = snapshot_file(dir.path(), "b", 5, b"w");
        assert_ne!(status(&b).unwrap().hash, st.hash, "a changed value changes the hash");

        let missing = dir.path().join("missing");
        let e = status(&missing).unwrap_err().to_string();
        assert_eq!(e, format!("stat {}: no such file or directory", missing.display()));
    }
}
