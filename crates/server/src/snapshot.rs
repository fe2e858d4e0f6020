//! Raft snapshots that carry data: what a leader sends a member that fell
//! behind its compacted log, and how that member installs it.
//!
//! The data is every backend record at one applied index. Neither side
//! holds it all in memory. The sender streams it from a committed view of
//! the backend ([`Backend::export`]: no writer held, applying goes on) in
//! chunks through a small queue. The receiver writes each chunk to
//! `member/snap/<index>.snap.db.tmp` as it arrives and makes the file
//! durable under its final name once the last one is in; only then does raft
//! accept the snapshot (which records it in the WAL and snap dir), and the
//! apply thread replaces the backend's contents from the file. A crash
//! between those steps is finished on the next start from the `.snap.db`
//! file.
//!
//! The file: a magic line, the length-delimited `SnapshotData` header
//! (index, term, no records), length-delimited `SnapshotRecord`s, and the
//! CRC-32C of everything before it (4 bytes, little-endian).

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message as _;
use prost011::Message as _;
use raft::eraftpb::{ConfState, Message};
use retcd_api::retcdpb::peer_client::PeerClient;
use retcd_api::retcdpb::{SnapshotChunk, SnapshotData, SnapshotRecord};
use retcd_storage::backend::{Backend, BackendError, Export, Table};
use retcd_storage::mvcc::{KvStore, MvccError};

/// Records per streamed chunk.
const RECORDS_PER_CHUNK: usize = 1024;
/// Chunks read ahead of the network by the sender.
const CHUNKS_QUEUED: usize = 4;
/// The first bytes of a snapshot file in this format.
const FILE_MAGIC: &[u8] = b"retcd-snapshot-v2\n";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    #[error("snapshot file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("sending snapshot: {0}")]
    Send(String),
}

/// A snapshot received in full and durable in the snap dir, not installed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSnapshot {
    pub index: u64,
    pub term: u64,
    pub path: PathBuf,
}

/// Writes a received snapshot into the snap dir as its chunks arrive.
pub struct SnapshotWriter {
    index: u64,
    term: u64,
    tmp: PathBuf,
    path: PathBuf,
    out: BufWriter<std::fs::File>,
    crc: u32,
}

impl SnapshotWriter {
    /// Starts `<index>.snap.db.tmp` in `snap_dir` (replacing a partial one).
    pub fn create(snap_dir: &Path, index: u64, term: u64) -> Result<SnapshotWriter, SnapshotError> {
        let path = db_file(snap_dir, index);
        let tmp = path.with_extension("db.tmp");
        let file = std::fs::File::create(&tmp).map_err(|e| file_err(&tmp, e))?;
        let mut w = SnapshotWriter { index, term, tmp, path, out: BufWriter::new(file), crc: 0 };
        w.write(FILE_MAGIC)?;
        let header = SnapshotData { index, term, records: Vec::new() };
        w.write(&header.encode_length_delimited_to_vec())?;
        Ok(w)
    }

    pub fn append(&mut self, records: &[SnapshotRecord]) -> Result<(), SnapshotError> {
        let mut buf = Vec::new();
        for r in records {
            r.encode_length_delimited(&mut buf).map_err(|e| file_err(&self.tmp, e))?;
        }
        self.write(&buf)
    }

    /// Ends the file, fsyncs it, and gives it its final name (durably).
    pub fn finish(mut self) -> Result<ReceivedSnapshot, SnapshotError> {
        let crc = self.crc.to_le_bytes();
        self.out.write_all(&crc).map_err(|e| file_err(&self.tmp, e))?;
        let file = self.out.into_inner().map_err(|e| file_err(&self.tmp, e.error()))?;
        file.sync_all().map_err(|e| file_err(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| file_err(&self.path, e))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| file_err(dir, e))?;
        Ok(ReceivedSnapshot { index: self.index, term: self.term, path: self.path })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.out.write_all(bytes).map_err(|e| file_err(&self.tmp, e))
    }
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::File { path: path.to_path_buf(), reason: e.to_string() }
}

/// Checks a snapshot file's checksum (over everything but its own 4 bytes).
pub fn verify_file(path: &Path) -> Result<(), SnapshotError> {
    let len = std::fs::metadata(path).map_err(|e| file_err(path, e))?.len();
    let body_len = len.checked_sub(4).ok_or_else(|| file_err(path, "truncated"))?;
    let mut reader = BufReader::new(std::fs::File::open(path).map_err(|e| file_err(path, e))?);
    let mut crc = 0;
    let mut left = body_len;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let n = buf.len().min(left as usize);
        reader.read_exact(&mut buf[..n]).map_err(|e| file_err(path, e))?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        left -= n as u64;
    }
    let mut stored = [0u8; 4];
    reader.read_exact(&mut stored).map_err(|e| file_err(path, e))?;
    if u32::from_le_bytes(stored) != crc {
        return Err(file_err(path, "checksum mismatch"));
    }
    Ok(())
}

/// Hands the records of a snapshot file (checked by [`verify_file`]) to
/// `f` in order; returns its header's index and term.
fn read_records(path: &Path, mut f: impl FnMut(SnapshotRecord)) -> Result<(u64, u64), SnapshotError> {
    let len = std::fs::metadata(path).map_err(|e| file_err(path, e))?.len();
    let file = std::fs::File::open(path).map_err(|e| file_err(path, e))?;
    let mut reader = BufReader::new(file).take(len.saturating_sub(4));
    let mut magic = vec![0u8; FILE_MAGIC.len()];
    reader.read_exact(&mut magic).map_err(|e| file_err(path, e))?;
    if magic != FILE_MAGIC {
        return Err(file_err(
            path,
            "not a snapshot file of this retcd version (remove it; the leader sends a new one)",
        ));
    }
    let header: SnapshotData = read_delimited(&mut reader, path)?.ok_or_else(|| file_err(path, "no header"))?;
    while let Some(record) = read_delimited::<SnapshotRecord>(&mut reader, path)? {
        f(record);
    }
    Ok((header.index, header.term))
}

/// The next length-delimited message, or None at the end.
fn read_delimited<M: prost::Message + Default>(r: &mut impl Read, path: &Path) -> Result<Option<M>, SnapshotError> {
    let mut len: u64 = 0;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8; 1];
        match r.read(&mut byte).map_err(|e| file_err(path, e))? {
            0 if shift == 0 => return Ok(None),
            0 => return Err(file_err(path, "truncated record length")),
            _ => {}
        }
        len |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            let mut body = vec![0u8; usize::try_from(len).map_err(|e| file_err(path, e))?];
            r.read_exact(&mut body).map_err(|e| file_err(path, e))?;
            return M::decode(body.as_slice()).map(Some).map_err(|e| file_err(path, e));
        }
    }
    Err(file_err(path, "record length too long"))
}

/// Replaces the whole backend (and the store's index) with the records of
/// the snapshot file `snap`.
pub fn install(backend: &Backend, kv: &KvStore, snap: &ReceivedSnapshot) -> Result<(), SnapshotError> {
    retcd_storage::failpoints::crash_point("snapshot::before_install");
    // Checked before anything is touched: a damaged file changes nothing.
    verify_file(&snap.path)?;
    let mut failure = None;
    let restored = kv.restore(|| {
        let mut old = Vec::new();
        for table in Table::ALL {
            for key in backend.range_keys(table, &[], None, 0)? {
                old.push((table, key));
            }
        }
        let mut btx = backend.batch_tx();
        for (table, key) in old {
            btx.delete(table, &key);
        }
        let read = read_records(&snap.path, |r| {
            if let Some(table) = Table::from_id(r.table) {
                btx.put(table, &r.key, &r.value);
            }
        });
        match read {
            Ok((index, term)) if (index, term) == (snap.index, snap.term) => {
                btx.set_consistent_index(index, term);
            }
            Ok((index, term)) => {
                btx.abandon();
                failure = Some(file_err(&snap.path, format!("holds index {index} term {term}, not {}", snap.index)));
            }
            Err(e) => {
                btx.abandon();
                failure = Some(e);
            }
        }
        Ok(())
    });
    if let Some(e) = failure {
        return Err(e);
    }
    restored?;
    backend.commit()?;
    retcd_storage::failpoints::crash_point("snapshot::after_install");
    Ok(())
}

pub fn db_file(snap_dir: &Path, index: u64) -> PathBuf {
    snap_dir.join(format!("{index:016x}.snap.db"))
}

/// The newest `.snap.db` file in `snap_dir` with an index above `applied`.
pub fn pending_file(snap_dir: &Path, applied: u64) -> Option<(u64, PathBuf)> {
    let entries = std::fs::read_dir(snap_dir).ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let index = u64::from_str_radix(name.strip_suffix(".snap.db")?, 16).ok()?;
            (index > applied).then(|| (index, e.path()))
        })
        .max_by_key(|(index, _)| *index)
}

/// Removes `.snap.db` files at or below `index` (installed), and partial
/// receives (`.snap.db.tmp`) when `index` is `u64::MAX` (at start-up).
pub fn remove_installed(snap_dir: &Path, index: u64) {
    let Ok(entries) = std::fs::read_dir(snap_dir) else { return };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let partial = name.ends_with(".snap.db.tmp") && index == u64::MAX;
        let installed =
            name.strip_suffix(".snap.db").and_then(|h| u64::from_str_radix(h, 16).ok()).is_some_and(|i| i <= index);
        if partial || installed {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Streams the backend's committed contents to the peer at `url`, after
/// `msg` (a MsgSnapshot). raft-rs asked for a snapshot of its commit index,
/// but the data is what the backend holds, so the message's metadata is
/// rewritten to the index and term the contents reflect (with
/// `conf_state`). Reads on a blocking thread a few chunks ahead of the
/// network; memory stays at those chunks.
pub async fn send(
    dialer: &crate::peer_dial::PeerDialer,
    url: &str,
    mut msg: Message,
    backend: std::sync::Arc<Backend>,
    conf_state: ConfState,
) -> Result<(), SnapshotError> {
    let channel = dialer.connect(url, Duration::from_secs(2), None).await.map_err(SnapshotError::Send)?;
    let mut client = PeerClient::new(channel).max_encoding_message_size(usize::MAX >> 1);
    let export = tokio::task::spawn_blocking(move || backend.export())
        .await
        .map_err(|e| SnapshotError::Send(e.to_string()))??;
    let meta = msg.mut_snapshot().mut_metadata();
    meta.index = export.index;
    meta.term = export.term;
    meta.set_conf_state(conf_state);
    let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(CHUNKS_QUEUED);
    let first = SnapshotChunk { message: msg.encode_to_vec(), records: Vec::new(), done: false };
    let reader = tokio::task::spawn_blocking(move || -> Result<(), SnapshotError> {
        if tx.blocking_send(first).is_err() {
            return Ok(());
        }
        // A closed stream (the call failed) stops the scan.
        export_chunks(&export, |records, done| {
            tx.blocking_send(SnapshotChunk { message: Vec::new(), records, done }).is_ok()
        })
    });
    let sent = client.snapshot(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
    // The reader ends once the stream is consumed or dropped.
    reader.await.map_err(|e| SnapshotError::Send(e.to_string()))??;
    sent.map_err(|e| SnapshotError::Send(e.message().to_string()))?;
    Ok(())
}

/// Hands every record of `export` to `f` in chunks of [`RECORDS_PER_CHUNK`],
/// the last one (possibly empty) with `done` set, until `f` returns false.
fn export_chunks(export: &Export, mut f: impl FnMut(Vec<SnapshotRecord>, bool) -> bool) -> Result<(), SnapshotError> {
    let mut records = Vec::with_capacity(RECORDS_PER_CHUNK);
    let mut open = true;
    export.for_each(|table, key, value| {
        records.push(SnapshotRecord { table: table.id(), key: key.to_vec(), value: value.to_vec() });
        if records.len() == RECORDS_PER_CHUNK {
            open = f(std::mem::take(&mut records), false);
        }
        open
    })?;
    if open {
        f(records, true);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;

    /// A store in `dir` with `n` keys written (and committed) at `index`, term 3.
    fn store(dir: &Path, n: usize, index: u64) -> (Arc<Backend>, KvStore) {
        let backend = Backend::open(&dir.join("db")).unwrap();
        let kv = KvStore::open(backend.clone()).unwrap();
        {
            let mut btx = backend.batch_tx();
            let mut w = kv.write(&mut btx);
            for i in 0..n {
                w.put(format!("key/{i:05}").as_bytes(), &[b'v'; 100], 0);
            }
            w.end();
            btx.set_consistent_index(index, 3);
        }
        backend.commit().unwrap();
        (backend, kv)
    }

    /// What a sender streams and a receiver writes, without the network.
    fn export_to_file(backend: &Backend, snap_dir: &Path) -> ReceivedSnapshot {
        let export = backend.export().unwrap();
        let mut w = SnapshotWriter::create(snap_dir, export.index, export.term).unwrap();
        export_chunks(&export, |records, _| {
            w.append(&records).unwrap();
            true
        })
        .unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn a_snapshot_file_installs_the_senders_store() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sender, sender_kv) = store(a.path(), 3000, 40);
        let snap = export_to_file(&sender, b.path());
        assert_eq!((snap.index, snap.term), (40, 3));
        assert_eq!(snap.path, db_file(b.path(), 40));

        let (receiver, receiver_kv) = store(b.path(), 5, 7);
        install(&receiver, &receiver_kv, &snap).unwrap();
        assert_eq!(receiver.consistent_index(), (40, 3));
        assert_eq!(receiver_kv.hash_kv(0).unwrap().hash, sender_kv.hash_kv(0).unwrap().hash);
        assert_eq!(receiver_kv.rev(), sender_kv.rev());
    }

    #[test]
    fn a_damaged_snapshot_file_is_refused_and_changes_nothing() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sender, _) = store(a.path(), 50, 40);
        let snap = export_to_file(&sender, b.path());
        let mut bytes = std::fs::read(&snap.path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&snap.path, &bytes).unwrap();

        let (receiver, receiver_kv) = store(b.path(), 5, 7);
        let before = receiver_kv.hash_kv(0).unwrap().hash;
        let err = install(&receiver, &receiver_kv, &snap).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert_eq!(receiver.consistent_index(), (7, 3));
        assert_eq!(receiver_kv.hash_kv(0).unwrap().hash, before);

        std::fs::write(&snap.path, &bytes[..3]).unwrap();
        assert!(verify_file(&snap.path).unwrap_err().to_string().contains("truncated"));
        // Nothing was staged: the member can still commit.
        receiver.commit().unwrap();
    }
}
