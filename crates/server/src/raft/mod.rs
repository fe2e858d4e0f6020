//! The raft node: one thread owns raft-rs's `RawNode`, the WAL and the
//! snapshotter, and runs the ready loop.
//!
//! Everything reaches the loop through one channel (proposals, read-index
//! requests, snapshot notices from the apply thread); each iteration drains
//! what has queued up, so proposals that arrive together become one raft
//! ready, one WAL write and one fsync. Ordering rules, as etcd's raft loop:
//!
//! 1. a leader sends its messages before persisting (replication overlaps the fsync);
//! 2. entries and hard state are fsynced to the WAL before the ready is advanced
//!    and before followers send `persisted_messages`;
//! 3. committed entries go to the apply thread in log order; the loop never
//!    waits for them to be applied.
//!
//! No lock is held across the WAL fsync: the loop owns the WAL outright.

pub mod boot;
mod logger;
pub mod transport;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use raft::eraftpb::{Entry, Message, Snapshot};
use raft::storage::MemStorage;
use raft::{RawNode, StateRole};
use retcd_api::errors::EtcdError;
use retcd_storage::snap::Snapshotter;
use retcd_storage::wal::{Wal, WalSnapshot};
use tokio::sync::oneshot;

pub use boot::{Boot, BootError};

/// Raft entries kept in memory after a snapshot so that a slightly slow
/// follower can catch up from the log rather than from a snapshot (etcd's
/// `SnapshotCatchUpEntries`).
const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5000;

/// Input to the raft loop.
pub enum RaftInput {
    /// Propose `data`; `id` is the request id its waiter is registered under.
    Propose { id: u64, data: Vec<u8> },
    /// Ask for a read index; answered once the leader has confirmed it.
    ReadIndex(oneshot::Sender<Result<u64, EtcdError>>),
    /// The apply thread made the backend durable up to `index`; a snapshot
    /// may be recorded there and the log compacted.
    SnapshotReady { index: u64, term: u64 },
    /// A raft message from another member.
    Step(Box<Message>),
    /// The transport could not reach this member.
    Unreachable(u64),
}

/// Work for the apply thread, in log order.
pub enum ApplyTask {
    Entries(Vec<Entry>),
}

/// What the rest of the server can read about raft without asking the loop.
#[derive(Default)]
pub struct RaftStatus {
    pub id: u64,
    pub term: AtomicU64,
    pub leader: AtomicU64,
    pub commit: AtomicU64,
    pub is_leader: AtomicBool,
}

impl RaftStatus {
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }
    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }
    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }
}

pub struct RaftSettings {
    pub id: u64,
    pub heartbeat: Duration,
    pub election_ticks: usize,
    pub max_snapshots: usize,
    pub max_wals: usize,
}

/// Called on the raft thread when the leader changes: (new leader id, is it us).
pub type LeaderChangeHook = Box<dyn Fn(u64, bool) + Send>;

/// Called on the raft thread when a proposal cannot be accepted (no leader).
pub type DropHook = Box<dyn Fn(u64) + Send>;

pub struct RaftNode {
    node: RawNode<MemStorage>,
    transport: transport::Transport,
    wal: Wal,
    snapshotter: Snapshotter,
    settings: RaftSettings,
    inputs: Receiver<RaftInput>,
    apply_tx: Sender<ApplyTask>,
    status: Arc<RaftStatus>,
    applied: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    on_leader_change: LeaderChangeHook,
    on_drop: DropHook,
    /// Read-index requests waiting for the next read-index round.
    pending_reads: Vec<oneshot::Sender<Result<u64, EtcdError>>>,
    /// Read-index rounds sent to raft, by request context.
    reads_in_flight: HashMap<Vec<u8>, Vec<oneshot::Sender<Result<u64, EtcdError>>>>,
    read_seq: u64,
    last_applied_reported: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error(transparent)]
    Wal(#[from] retcd_storage::wal::WalError),
    #[error(transparent)]
    Snap(#[from] retcd_storage::snap::SnapError),
}

impl RaftNode {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        boot: Boot,
        transport: transport::Transport,
        settings: RaftSettings,
        applied_index: u64,
        inputs: Receiver<RaftInput>,
        apply_tx: Sender<ApplyTask>,
        status: Arc<RaftStatus>,
        applied: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
        on_leader_change: LeaderChangeHook,
        on_drop: DropHook,
    ) -> Result<RaftNode, RaftError> {
        let cfg = raft::Config {
            id: settings.id,
            election_tick: settings.election_ticks,
            heartbeat_tick: 1,
            applied: applied_index,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 512,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        cfg.validate()?;
        let node = RawNode::new(&cfg, boot.storage, &logger::raft_logger())?;
        Ok(RaftNode {
            node,
            transport,
            wal: boot.wal,
            snapshotter: boot.snapshotter,
            settings,
            inputs,
            apply_tx,
            status,
            applied,
            stop,
            on_leader_change,
            on_drop,
            pending_reads: Vec::new(),
            reads_in_flight: HashMap::new(),
            read_seq: 0,
            last_applied_reported: applied_index,
        })
    }

    /// Runs the ready loop until asked to stop. A WAL or
    /// snapshot error is fatal: continuing could acknowledge writes that are
    /// not durable.
    pub fn run(mut self) -> Result<(), RaftError> {
        let voters = self.node.raft.prs().conf().voters().ids().iter().collect::<Vec<_>>();
        if voters == [self.settings.id] {
            // A single voter need not wait out an election timeout.
            self.node.campaign()?;
        }
        let mut next_tick = Instant::now() + self.settings.heartbeat;
        while !self.stop.load(Ordering::Acquire) {
            // Work left from the last iteration (or from campaigning) first,
            // rather than after the next input or tick.
            if self.node.has_ready() {
                self.handle_ready()?;
            }
            let timeout = next_tick.saturating_duration_since(Instant::now());
            match self.inputs.recv_timeout(timeout) {
                Ok(input) => {
                    self.handle_input(input)?;
                    // Drain whatever else queued up: one ready for all of it.
                    while let Ok(input) = self.inputs.try_recv() {
                        self.handle_input(input)?;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if Instant::now() >= next_tick {
                self.node.tick();
                next_tick += self.settings.heartbeat;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + self.settings.heartbeat;
                }
            }
            self.report_applied();
            self.start_read_round();
            if self.node.has_ready() {
                self.handle_ready()?;
            }
        }
        Ok(())
    }

    fn handle_input(&mut self, input: RaftInput) -> Result<(), RaftError> {
        match input {
            RaftInput::Propose { id, data } => {
                // A follower's raft forwards the proposal to the leader; with
                // no leader known it is dropped at once (etcd: no leader).
                if self.status.leader() == raft::INVALID_ID {
                    (self.on_drop)(id);
                } else if let Err(e) = self.node.propose(Vec::new(), data) {
                    tracing::warn!("proposal {id:x} dropped: {e}");
                    (self.on_drop)(id);
                }
            }
            RaftInput::Step(msg) => {
                if let Err(e) = self.node.step(*msg) {
                    tracing::debug!("raft step: {e}");
                }
            }
            RaftInput::Unreachable(id) => self.node.report_unreachable(id),
            RaftInput::ReadIndex(tx) => self.pending_reads.push(tx),
            RaftInput::SnapshotReady { index, term } => self.record_snapshot(index, term)?,
        }
        Ok(())
    }

    /// Tells raft how far the apply thread has got (it gates conf changes).
    fn report_applied(&mut self) {
        let applied = self.applied.load(Ordering::Acquire);
        if applied > self.last_applied_reported {
            self.node.advance_apply_to(applied);
            self.last_applied_reported = applied;
        }
    }

    /// Batches all queued read requests into one read-index round.
    fn start_read_round(&mut self) {
        if self.pending_reads.is_empty() {
            return;
        }
        if self.status.leader() == raft::INVALID_ID {
            for tx in self.pending_reads.drain(..) {
                let _ = tx.send(Err(EtcdError::NoLeader));
            }
            return;
        }
        self.read_seq += 1;
        let ctx = self.read_seq.to_be_bytes().to_vec();
        self.node.read_index(ctx.clone());
        let waiters = std::mem::take(&mut self.pending_reads);
        self.reads_in_flight.insert(ctx, waiters);
    }

    fn handle_ready(&mut self) -> Result<(), RaftError> {
        let mut ready = self.node.ready();

        if let Some(ss) = ready.ss() {
            let is_leader = ss.raft_state == StateRole::Leader;
            let old_leader = self.status.leader.swap(ss.leader_id, Ordering::AcqRel);
            self.status.is_leader.store(is_leader, Ordering::Release);
            if old_leader != ss.leader_id {
                tracing::info!(
                    "raft.node: {:x} elected leader {:x} at term {}",
                    self.settings.id,
                    ss.leader_id,
                    self.node.raft.term
                );
                (self.on_leader_change)(ss.leader_id, is_leader);
            }
        }
        if !ready.messages().is_empty() {
            self.send(ready.take_messages());
        }
        if !ready.snapshot().is_empty() {
            // Snapshots from a leader arrive with clustering.
            tracing::warn!("ignoring a raft snapshot: no peers in a single-member cluster");
        }
        for rs in ready.take_read_states() {
            self.answer_reads(&rs.request_ctx, rs.index);
        }
        let committed = ready.take_committed_entries();
        self.hand_to_apply(committed);

        // Durability point: entries and hard state reach disk before raft is
        // told they are persisted (which is what lets them commit).
        let hs = ready.hs().cloned();
        if !ready.entries().is_empty() || hs.is_some() {
            self.wal.append(hs.as_ref(), ready.entries(), ready.must_sync())?;
        }
        if !ready.entries().is_empty() {
            self.node.mut_store().wl().append(ready.entries())?;
        }
        if let Some(hs) = hs {
            self.term_changed(hs.term);
            self.node.mut_store().wl().set_hardstate(hs);
        }
        if !ready.persisted_messages().is_empty() {
            self.send(ready.take_persisted_messages());
        }

        let mut light = self.node.advance_append(ready);
        if let Some(commit) = light.commit_index() {
            self.status.commit.store(commit, Ordering::Release);
            self.node.mut_store().wl().mut_hard_state().commit = commit;
        }
        if !light.messages().is_empty() {
            self.send(light.take_messages());
        }
        let committed = light.take_committed_entries();
        self.hand_to_apply(committed);
        Ok(())
    }

    fn term_changed(&self, term: u64) {
        self.status.term.store(term, Ordering::Release);
    }

    fn hand_to_apply(&mut self, entries: Vec<Entry>) {
        if let Some(last) = entries.last() {
            self.status.commit.fetch_max(last.index, Ordering::AcqRel);
            // The apply thread only stops when the server does.
            let _ = self.apply_tx.send(ApplyTask::Entries(entries));
        }
    }

    fn answer_reads(&mut self, ctx: &[u8], index: u64) {
        if let Some(waiters) = self.reads_in_flight.remove(ctx) {
            for tx in waiters {
                let _ = tx.send(Ok(index));
            }
        }
    }

    fn send(&mut self, msgs: Vec<Message>) {
        // Sending a snapshot needs the backend's data streamed along with it,
        // which the transport cannot do yet: a follower that fell behind the
        // compacted log stays behind rather than receive an empty snapshot.
        let (snaps, msgs): (Vec<Message>, Vec<Message>) =
            msgs.into_iter().partition(|m| m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot);
        for m in snaps {
            tracing::error!("member {:x} needs a snapshot; snapshot transfer is not implemented", m.to);
            self.node.report_snapshot(m.to, raft::SnapshotStatus::Failure);
        }
        for id in self.transport.send(msgs) {
            self.node.report_unreachable(id);
        }
    }

    /// Records a snapshot at `index` (the backend is already durable there),
    /// then compacts the in-memory log and purges old files.
    fn record_snapshot(&mut self, index: u64, term: u64) -> Result<(), RaftError> {
        let conf_state = self.node.raft.prs().conf().to_conf_state();
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap.mut_metadata().set_conf_state(conf_state);
        self.snapshotter.save(&snap)?;
        self.wal.save_snapshot(WalSnapshot { index, term })?;
        tracing::info!("saved snapshot at index {index}");

        let compact_to = index.saturating_sub(SNAPSHOT_CATCH_UP_ENTRIES);
        let store = self.node.store().clone();
        if compact_to > raft::Storage::first_index(&store)? {
            store.wl().compact(compact_to)?;
            tracing::info!("compacted raft log at {compact_to}");
        }
        if self.settings.max_snapshots > 0 {
            for p in self.snapshotter.purge(self.settings.max_snapshots)? {
                tracing::info!("purged snapshot file {}", p.display());
            }
        }
        if self.settings.max_wals > 0 {
            for p in self.wal.purge(index, self.settings.max_wals)? {
                tracing::info!("purged WAL file {}", p.display());
            }
        }
        Ok(())
    }
}
