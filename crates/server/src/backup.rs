//! Backups: the Maintenance.Snapshot stream and restoring its file into a
//! new member's data directory.
//!
//! The stream is etcd's: the database file in 32 KiB messages, each with the
//! bytes remaining, then one message holding the SHA-256 of everything sent.
//! A saved snapshot is therefore the database followed by its digest, and
//! etcd's clients (etcdctl 3.4 `snapshot save`) accept it: they check only
//! that the length is a multiple of 512 plus 32. The database is a compact
//! copy of retcd's redb file taken at one commit.
//!
//! Restoring writes that database as the member's backend with the old
//! cluster's membership and raft position removed: the member then starts
//! like a new member of the cluster named by its flags (`--initial-cluster`
//! etc.), with all the keys, leases and auth data of the snapshot.

use std::io::Read;
use std::path::{Path, PathBuf};

use retcd_api::etcdserverpb::SnapshotResponse;
use retcd_storage::backend::{Backend, BackendError, Table};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::apply::CONF_STATE_KEY;

/// Bytes per snapshot message (etcd's send buffer).
const CHUNK: usize = 32 * 1024;
const DIGEST_LEN: usize = 32;

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

/// Streams a consistent copy of `backend` (made in `tmp_dir`, removed
/// afterwards) into `tx` as etcd's snapshot messages.
pub fn stream(backend: &Backend, tmp_dir: &Path, tx: mpsc::Sender<Result<SnapshotResponse, tonic::Status>>) {
    let path = tmp_dir.join(format!("snapshot-{}.db.tmp", std::process::id() as u64 ^ rand::random::<u64>()));
    let sent = send_copy(backend, &path, &tx);
    let _ = std::fs::remove_file(&path);
    if let Err(e) = sent {
        tracing::warn!("snapshot stream failed: {e}");
        let _ = tx.blocking_send(Err(tonic::Status::internal(e.to_string())));
    }
}

fn send_copy(
    backend: &Backend,
    path: &Path,
    tx: &mpsc::Sender<Result<SnapshotResponse, tonic::Status>>,
) -> Result<(), BackupError> {
    backend.copy_to(path)?;
    let mut file = std::fs::File::open(path).map_err(|e| io("opening", path, e))?;
    let total = file.metadata().map_err(|e| io("reading", path, e))?.len();
    tracing::info!("sending database snapshot to client [{total} bytes]");
    let mut hash = Sha256::new();
    let mut sent = 0u64;
    let mut buf = vec![0u8; CHUNK];
    while sent < total {
        let n = read_full(&mut file, &mut buf).map_err(|e| io("reading", path, e))?;
        if n == 0 {
            return Err(BackupError::Io(format!("{} shrank while being sent", path.display())));
        }
        sent += n as u64;
        hash.update(&buf[..n]);
        let msg = SnapshotResponse { header: None, remaining_bytes: total - sent, blob: buf[..n].to_vec() };
        if tx.blocking_send(Ok(msg)).is_err() {
            // The client went away.
            return Ok(());
        }
    }
    let digest = hash.finalize().to_vec();
    let _ = tx.blocking_send(Ok(SnapshotResponse { header: None, remaining_bytes: 0, blob: digest }));
    tracing::info!("successfully sent database snapshot to client [{total} bytes]");
    Ok(())
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
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
/// cluster's members, raft configuration and applied index.
pub fn restore(snapshot: &Path, data_dir: &Path) -> Result<(), BackupError> {
    if data_dir.exists() {
        return Err(BackupError::DataDirExists(data_dir.to_path_buf()));
    }
    let db_len = verify(snapshot)?;
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
