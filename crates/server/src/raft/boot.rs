//! Starting raft from disk: a new member writes its bootstrap snapshot and an
//! empty WAL; a restarting member loads its newest snapshot and replays the
//! WAL after it into raft's in-memory log.
//!
//! A new cluster's initial membership is recorded as a snapshot at index 1,
//! term 1 whose conf state lists the initial voters. Every member of a new
//! cluster derives the same snapshot, so their logs agree from the start.

use std::path::{Path, PathBuf};

use prost::Message as _;
use raft::eraftpb::{ConfState, Snapshot};
use raft::storage::MemStorage;
use retcd_api::retcdpb::WalMetadata;
use retcd_storage::snap::{SnapError, Snapshotter};
use retcd_storage::wal::{Wal, WalError, WalSnapshot};

/// The WAL metadata format marker of this retcd version.
pub const WAL_FORMAT: &str = "retcd-wal-v1";

const BOOTSTRAP: WalSnapshot = WalSnapshot { index: 1, term: 1 };

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Snap(#[from] SnapError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

pub struct Boot {
    pub storage: MemStorage,
    pub wal: Wal,
    pub snapshotter: Snapshotter,
    pub metadata: WalMetadata,
    /// Index of the snapshot raft starts from.
    pub snapshot_index: u64,
    /// True when this start created the member's WAL.
    pub created: bool,
}

/// Opens the member's raft state in `wal_dir`/`snap_dir`, creating it for a
/// new member (with `metadata` and the initial `voters`, or empty for a
/// member joining a running cluster) if there is no WAL.
pub fn boot(wal_dir: &Path, snap_dir: &Path, metadata: WalMetadata, voters: &[u64]) -> Result<Boot, BootError> {
    let snapshotter = Snapshotter::new(snap_dir)?;
    if !Wal::exists(wal_dir) {
        return create(wal_dir, snapshotter, metadata, voters);
    }
    // A snapshot file is written before its marker in the WAL, so a crash in
    // between leaves a newest file the WAL does not know: use the newest
    // snapshot the WAL has a marker for (etcd's LoadNewestAvailable). The
    // orphan is harmless (the backend holds the data) and is purged later.
    let mut orphans: Vec<WalSnapshot> = Vec::new();
    let (snapshot, wal, contents) = loop {
        let snapshot = snapshotter.load_newest_where(|term, index| !orphans.contains(&WalSnapshot { index, term }))?;
        let at = snapshot
            .as_ref()
            .map(|s| WalSnapshot { index: s.get_metadata().index, term: s.get_metadata().term })
            .unwrap_or_default();
        match Wal::open(wal_dir, at) {
            Err(WalError::SnapshotNotFound { .. }) if at == BOOTSTRAP => {
                // Crashed between creating the WAL and recording the bootstrap
                // snapshot in it: finish the bootstrap.
                let (mut wal, contents) = Wal::open(wal_dir, WalSnapshot::default())?;
                wal.save_snapshot(BOOTSTRAP)?;
                break (snapshot, wal, contents);
            }
            Err(WalError::SnapshotNotFound { .. }) if snapshot.is_some() && orphans.is_empty() => {
                tracing::warn!(
                    "snapshot (index {}, term {}) has no marker in the WAL (a crash while it was being recorded); \
                     starting from the previous snapshot",
                    at.index,
                    at.term
                );
                orphans.push(at);
            }
            other => {
                let (wal, contents) = other?;
                break (snapshot, wal, contents);
            }
        }
    };
    let stored = WalMetadata::decode(contents.metadata.as_slice()).map_err(|e| BootError::Invalid {
        path: wal_dir.to_path_buf(),
        reason: format!("cannot decode WAL metadata: {e}"),
    })?;
    if stored.format != WAL_FORMAT {
        return Err(BootError::Invalid {
            path: wal_dir.to_path_buf(),
            reason: format!("WAL format {:?} is not supported (expected {WAL_FORMAT:?})", stored.format),
        });
    }
    let Some(snapshot) = snapshot else {
        if stored.joined {
            // A member that joined a running cluster and has not received its
            // first snapshot yet: it starts empty again.
            let storage = MemStorage::new();
            {
                let mut core = storage.wl();
                core.append(&contents.entries)?;
                core.set_hardstate(contents.hard_state);
            }
            return Ok(Boot { storage, wal, snapshotter, metadata: stored, snapshot_index: 0, created: false });
        }
        return Err(BootError::Invalid {
            path: snap_dir.to_path_buf(),
            reason: "no snapshot file: the member's bootstrap snapshot is missing".into(),
        });
    };
    let snapshot_index = snapshot.get_metadata().index;
    let storage = MemStorage::new();
    {
        let mut core = storage.wl();
        core.apply_snapshot(snapshot)?;
        core.append(&contents.entries)?;
        let mut hs = contents.hard_state;
        // A hard state saved before the snapshot was taken can lag it.
        hs.commit = hs.commit.max(snapshot_index);
        if hs.term < BOOTSTRAP.term {
            hs.term = BOOTSTRAP.term;
        }
        core.set_hardstate(hs);
    }
    Ok(Boot { storage, wal, snapshotter, metadata: stored, snapshot_index, created: false })
}

fn create(
    wal_dir: &Path,
    snapshotter: Snapshotter,
    mut metadata: WalMetadata,
    voters: &[u64],
) -> Result<Boot, BootError> {
    metadata.format = WAL_FORMAT.to_string();
    if metadata.joined {
        // Joining a running cluster: no configuration of its own; the
        // leader's snapshot brings it.
        let wal = Wal::create(wal_dir, &metadata.encode_to_vec())?;
        return Ok(Boot { storage: MemStorage::new(), wal, snapshotter, metadata, snapshot_index: 0, created: true });
    }
    let mut snap = Snapshot::default();
    snap.mut_metadata().index = BOOTSTRAP.index;
    snap.mut_metadata().term = BOOTSTRAP.term;
    snap.mut_metadata().set_conf_state(ConfState::from((voters.to_vec(), vec![])));
    // The snapshot file first: a WAL on disk then always has its bootstrap
    // snapshot beside it.
    snapshotter.save(&snap)?;
    let mut wal = Wal::create(wal_dir, &metadata.encode_to_vec())?;
    wal.save_snapshot(BOOTSTRAP)?;
    let storage = MemStorage::new();
    storage.wl().apply_snapshot(snap)?;
    Ok(Boot { storage, wal, snapshotter, metadata, snapshot_index: BOOTSTRAP.index, created: true })
}
