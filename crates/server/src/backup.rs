//! Backups: the Maintenance.Snapshot stream (restoring its file is
//! `retcd_storage::backup`).
//!
//! The stream is etcd's: the database file in 32 KiB messages, each with the
//! bytes remaining, then one message holding the SHA-256 of everything sent.
//! A saved snapshot is therefore the database followed by its digest, and
//! etcd's clients (etcdctl 3.4 `snapshot save`) accept it: they check only
//! that the length is a multiple of 512 plus 32. The database is a compact
//! copy of retcd's redb file taken at one commit.

use std::path::Path;

use retcd_api::etcdserverpb::SnapshotResponse;
use retcd_storage::backend::Backend;
use retcd_storage::backup::{read_full, BackupError};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Bytes per snapshot message (etcd's send buffer).
const CHUNK: usize = 32 * 1024;

fn io_err(what: &str, path: &Path, e: std::io::Error) -> BackupError {
    BackupError::Io(format!("{what} {}: {e}", path.display()))
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
    backend.copy_to(path).map_err(BackupError::Backend)?;
    let mut file = std::fs::File::open(path).map_err(|e| io_err("opening", path, e))?;
    let total = file.metadata().map_err(|e| io_err("reading", path, e))?.len();
    tracing::info!("sending database snapshot to client [{total} bytes]");
    let mut hash = Sha256::new();
    let mut sent = 0u64;
    let mut buf = vec![0u8; CHUNK];
    while sent < total {
        let n = read_full(&mut file, &mut buf).map_err(|e| io_err("reading", path, e))?;
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
