//! Raft snapshots that carry data: what a leader sends a member that fell
//! behind its compacted log, and how that member installs it.
//!
//! The data is every backend record at one applied index. The sender takes
//! it while holding the backend's writer (so no apply interleaves) and
//! streams it to the peer in chunks. The receiver first makes it durable in
//! `member/snap/<index>.snap.db`, then lets raft accept the snapshot (which
//! records it in the WAL and snap dir), then the apply thread replaces the
//! backend with it. A crash between those steps is finished on the next
//! start from the `.snap.db` file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message as _;
use prost011::Message as _;
use raft::eraftpb::Message;
use retcd_api::retcdpb::peer_client::PeerClient;
use retcd_api::retcdpb::{SnapshotChunk, SnapshotData, SnapshotRecord};
use retcd_storage::backend::{Backend, BackendError, Table};
use retcd_storage::mvcc::{KvStore, MvccError};

/// Records per streamed chunk.
const RECORDS_PER_CHUNK: usize = 1024;

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

/// Every backend record at the current applied index, with that index and
/// its term. Holds the backend's writer while reading, so the copy is
/// consistent.
pub fn dump(backend: &Backend) -> Result<SnapshotData, SnapshotError> {
    let _writer = backend.batch_tx();
    let (index, term) = backend.consistent_index();
    let mut records = Vec::new();
    for table in Table::ALL {
        for (key, value) in backend.range(table, &[], None, 0)? {
            records.push(SnapshotRecord { table: table.id(), key, value });
        }
    }
    Ok(SnapshotData { index, term, records })
}

/// Replaces the whole backend (and the store's index) with `data`.
pub fn install(backend: &Backend, kv: &KvStore, data: &SnapshotData) -> Result<(), SnapshotError> {
    retcd_storage::failpoints::crash_point("snapshot::before_install");
    kv.restore(|| {
        let mut old = Vec::new();
        for table in Table::ALL {
            for (key, _) in backend.range(table, &[], None, 0)? {
                old.push((table, key));
            }
        }
        let mut btx = backend.batch_tx();
        for (table, key) in old {
            btx.delete(table, &key);
        }
        for r in &data.records {
            if let Some(table) = Table::from_id(r.table) {
                btx.put(table, &r.key, &r.value);
            }
        }
        btx.set_consistent_index(data.index, data.term);
        Ok(())
    })?;
    backend.commit()?;
    retcd_storage::failpoints::crash_point("snapshot::after_install");
    Ok(())
}

pub fn db_file(snap_dir: &Path, index: u64) -> PathBuf {
    snap_dir.join(format!("{index:016x}.snap.db"))
}

/// Writes `data` durably (temp file, fsync, rename, fsync dir), CRC-checked.
pub fn save_file(snap_dir: &Path, data: &SnapshotData) -> Result<PathBuf, SnapshotError> {
    let path = db_file(snap_dir, data.index);
    let err = |reason: String| SnapshotError::File { path: path.clone(), reason };
    let body = data.encode_to_vec();
    let mut bytes = crc32c::crc32c(&body).to_le_bytes().to_vec();
    bytes.extend_from_slice(&body);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &bytes).map_err(|e| err(e.to_string()))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, &path).map_err(|e| err(e.to_string()))?;
    std::fs::File::open(snap_dir).and_then(|d| d.sync_all()).map_err(|e| err(e.to_string()))?;
    Ok(path)
}

pub fn load_file(path: &Path) -> Result<SnapshotData, SnapshotError> {
    let err = |reason: String| SnapshotError::File { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if bytes.len() < 4 {
        return Err(err("truncated".into()));
    }
    let (crc, body) = bytes.split_at(4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(err("checksum mismatch".into()));
    }
    SnapshotData::decode(body).map_err(|e| err(e.to_string()))
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

/// Removes `.snap.db` files at or below `index` (installed).
pub fn remove_installed(snap_dir: &Path, index: u64) {
    let Ok(entries) = std::fs::read_dir(snap_dir) else { return };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(i) = name.strip_suffix(".snap.db").and_then(|h| u64::from_str_radix(h, 16).ok()) else {
            continue;
        };
        if i <= index {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Streams `msg` (a MsgSnapshot whose metadata matches `data`) and `data`
/// to the peer at `url`.
pub async fn send(
    dialer: &crate::peer_dial::PeerDialer,
    url: &str,
    msg: &Message,
    data: SnapshotData,
) -> Result<(), SnapshotError> {
    let channel = dialer.connect(url, Duration::from_secs(2), None).await.map_err(SnapshotError::Send)?;
    let mut client = PeerClient::new(channel).max_encoding_message_size(usize::MAX >> 1);
    let mut chunks = vec![SnapshotChunk { message: msg.encode_to_vec(), records: Vec::new(), done: false }];
    let mut records = data.records.into_iter().peekable();
    while records.peek().is_some() {
        let batch: Vec<SnapshotRecord> = records.by_ref().take(RECORDS_PER_CHUNK).collect();
        chunks.push(SnapshotChunk { message: Vec::new(), records: batch, done: false });
    }
    if let Some(last) = chunks.last_mut() {
        last.done = true;
    }
    client.snapshot(futures::stream::iter(chunks)).await.map_err(|e| SnapshotError::Send(e.message().to_string()))?;
    Ok(())
}
