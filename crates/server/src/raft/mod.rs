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
#[cfg(test)]
mod tests;
pub mod transport;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::snapshot::ReceivedSnapshot;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use raft::eraftpb::{ConfChange, ConfState, Entry, Message, Snapshot};
use raft::storage::MemStorage;
use raft::{RawNode, StateRole};
use retcd_api::errors::EtcdError;
use retcd_storage::backend::Backend;
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
    /// This member's peer address refused a connection: its process is gone.
    PeerGone(u64),
    /// A snapshot sent to `to` was delivered (or not).
    SnapshotStatus { to: u64, delivered: bool },
    /// A snapshot from the leader, its data received in full and durable.
    InstallSnapshot { msg: Box<Message>, data: ReceivedSnapshot },
    /// Propose a membership change; `cc.id` is the request id its waiter is
    /// registered under.
    ProposeConfChange(ConfChange),
    /// The apply thread reached a committed membership change: apply it to
    /// raft and answer with the resulting configuration.
    ApplyConfChange { index: u64, cc: ConfChange, urls: Vec<String>, done: Sender<Option<ConfState>> },
    /// A member's peer URLs changed (MemberUpdate).
    PeerUrls { id: u64, urls: Vec<String> },
    /// Hand leadership to another voter (MoveLeader).
    TransferLeader(u64),
    /// The leader is stopping: hand leadership to the most up-to-date
    /// voter, so the cluster does not wait an election timeout for a new
    /// one. Answers whether a transfer started.
    HandOffLeadership(oneshot::Sender<bool>),
}

/// Work for the apply thread, in log order.
pub enum ApplyTask {
    Entries(Vec<Entry>),
    /// Replace the store with a snapshot's data (already durable on disk).
    Snapshot(ReceivedSnapshot),
}

/// What the rest of the server can read about raft without asking the loop.
#[derive(Default)]
pub struct RaftStatus {
    pub id: u64,
    pub term: AtomicU64,
    pub leader: AtomicU64,
    pub commit: AtomicU64,
    pub is_leader: AtomicBool,
    /// On the leader, while the cluster has learners: each member's matched log index.
    pub matched: parking_lot::Mutex<HashMap<u64, u64>>,
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

    /// On the leader: whether learner `id` has replicated at least 90% of
    /// the leader's log (etcd's readiness rule for promotion).
    pub fn learner_in_sync(&self, id: u64) -> bool {
        let matched = self.matched.lock();
        let leader = matched.get(&self.id).copied().unwrap_or(0);
        let learner = matched.get(&id).copied().unwrap_or(0);
        learner as f64 >= leader as f64 * 0.9
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

/// What the raft thread shares with the rest of the member.
pub struct RaftLinks {
    /// Proposals, messages from peers, read-index and snapshot requests.
    pub inputs: Receiver<RaftInput>,
    /// Committed entries, to the apply thread.
    pub apply_tx: Sender<ApplyTask>,
    /// Leader, term and indexes, for the request handlers.
    pub status: Arc<RaftStatus>,
    /// The apply thread's progress (raft compacts its log behind it).
    pub applied: Arc<AtomicU64>,
    /// Set when the member stops.
    pub stop: Arc<AtomicBool>,
    pub on_leader_change: LeaderChangeHook,
    pub on_drop: DropHook,
}

pub struct RaftNode {
    node: RawNode<MemStorage>,
    transport: Box<dyn transport::RaftTransport>,
    /// Read when a lagging member needs a snapshot.
    backend: Arc<Backend>,
    /// A received snapshot's data, until raft hands the snapshot back in a ready.
    pending_install: Option<ReceivedSnapshot>,
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
    #[error("raft accepted a snapshot at index {0} whose data never arrived")]
    MissingSnapshotData(u64),
}

impl RaftNode {
    /// A node restarting from `boot` at `applied_index` (the backend's).
    pub fn new(
        boot: Boot,
        transport: Box<dyn transport::RaftTransport>,
        backend: Arc<Backend>,
        settings: RaftSettings,
        applied_index: u64,
        links: RaftLinks,
    ) -> Result<RaftNode, RaftError> {
        let RaftLinks { inputs, apply_tx, status, applied, stop, on_leader_change, on_drop } = links;
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
            backend,
            pending_install: None,
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
            read_seq: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
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
            RaftInput::PeerGone(id) => self.leader_gone(id),
            RaftInput::SnapshotStatus { to, delivered } => {
                let status = if delivered { raft::SnapshotStatus::Finish } else { raft::SnapshotStatus::Failure };
                self.node.report_snapshot(to, status);
            }
            RaftInput::ProposeConfChange(cc) => {
                let id = cc.id;
                if self.status.leader() == raft::INVALID_ID {
                    (self.on_drop)(id);
                } else if let Err(e) = self.node.propose_conf_change(Vec::new(), cc) {
                    tracing::warn!("membership change {id:x} dropped: {e}");
                    (self.on_drop)(id);
                }
            }
            RaftInput::ApplyConfChange { index, cc, urls, done } => {
                // Everything up to this entry is applied: tell raft now, so a
                // leader accepts the next membership change at once (raft-rs
                // drops one proposed while the previous is unapplied).
                if index > self.last_applied_reported {
                    self.node.advance_apply_to(index);
                    self.last_applied_reported = index;
                }
                let cs = match self.node.apply_conf_change(&cc) {
                    Ok(cs) => {
                        self.node.mut_store().wl().set_conf_state(cs.clone());
                        self.transport.set_peer(cc.node_id, urls, cc.get_change_type());
                        Some(cs)
                    }
                    Err(e) => {
                        tracing::error!("membership change rejected by raft: {e}");
                        None
                    }
                };
                let _ = done.send(cs);
            }
            RaftInput::TransferLeader(target) => self.node.transfer_leader(target),
            RaftInput::HandOffLeadership(started) => {
                let target = self.hand_off_target();
                if let Some(target) = target {
                    tracing::info!("stopping: handing leadership to {target:x}");
                    self.node.transfer_leader(target);
                }
                let _ = started.send(target.is_some());
            }
            RaftInput::PeerUrls { id, urls } => {
                self.transport.set_peer(id, urls, raft::eraftpb::ConfChangeType::AddNode)
            }
            RaftInput::InstallSnapshot { msg, data } => {
                // The peer service made the data durable before raft may
                // record the snapshot in the WAL.
                self.pending_install = Some(data);
                if let Err(e) = self.node.step(*msg) {
                    tracing::warn!("raft rejected the snapshot: {e}");
                }
            }
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
        // The context must be unique in the whole cluster: the leader's raft
        // keeps one pending read per context and ignores a second request
        // with the same one, so equal counters on two members left one of
        // them unanswered until its timeout. Member id + counter (seeded from
        // the clock, so a restart does not reuse old contexts) is unique.
        let mut ctx = self.node.raft.id.to_be_bytes().to_vec();
        ctx.extend_from_slice(&self.read_seq.to_be_bytes());
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
                if ss.leader_id != 0 {
                    crate::metrics::get().leader_changes.inc();
                }
                tracing::info!(
                    "raft.node: {:x} elected leader {:x} at term {}",
                    self.settings.id,
                    ss.leader_id,
                    self.node.raft.term
                );
                (self.on_leader_change)(ss.leader_id, is_leader);
                // A read-index request sent to the old leader will not be
                // answered: fail it now with etcd's retryable error rather
                // than at the request timeout (clients retry it).
                for (_, waiters) in self.reads_in_flight.drain() {
                    for tx in waiters {
                        let _ = tx.send(Err(EtcdError::LeaderChanged));
                    }
                }
            }
        }
        if !ready.messages().is_empty() {
            self.send(ready.take_messages());
        }
        if !ready.snapshot().is_empty() {
            self.accept_snapshot(ready.snapshot().clone())?;
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
            let started = std::time::Instant::now();
            self.wal.append(hs.as_ref(), ready.entries(), ready.must_sync())?;
            if ready.must_sync() {
                // The write and its fsync (the fsync dominates).
                crate::metrics::get().wal_fsync.observe(started.elapsed().as_secs_f64());
            }
        }
        if !ready.entries().is_empty() {
            self.node.mut_store().wl().append(ready.entries())?;
        }
        if let Some(hs) = hs {
            self.status.term.store(hs.term, Ordering::Release);
            self.node.mut_store().wl().set_hardstate(hs);
        }
        if !ready.persisted_messages().is_empty() {
            self.send(ready.take_persisted_messages());
        }

        let mut light = self.node.advance_append(ready);
        // Only MemberPromote reads this, and only for learners: keep the
        // allocation off the write path of a cluster without any.
        if self.node.raft.state == StateRole::Leader && !self.node.raft.prs().conf().learners().is_empty() {
            let matched = self.node.raft.prs().iter().map(|(id, pr)| (*id, pr.matched)).collect();
            *self.status.matched.lock() = matched;
        }
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

    /// A follower whose leader's peer address refuses connections knows the
    /// leader's process is gone (after kill -9 or a crash; a graceful stop
    /// hands leadership over first): it forgets that leader and campaigns
    /// within 1 to 3 ticks rather than an election timeout of 10 to 20.
    /// Raft's safety does not depend on when a member campaigns; pre-vote
    /// keeps a wrong guess harmless (members still hearing the leader refuse
    /// it), and the random ticks keep two such followers from splitting the
    /// vote.
    fn leader_gone(&mut self, id: u64) {
        let raft = &mut self.node.raft;
        if raft.state != StateRole::Follower || id == raft::INVALID_ID || raft.leader_id != id {
            return;
        }
        let ticks = rand::Rng::gen_range(&mut rand::thread_rng(), 1..=3usize);
        tracing::info!("leader {id:x} refuses connections: campaigning in {ticks} ticks");
        raft.leader_id = raft::INVALID_ID;
        raft.election_elapsed = raft.randomized_election_timeout().saturating_sub(ticks);
    }

    /// On the leader: the voter (not this member) whose log matches the
    /// furthest among those heard from recently (etcd picks its longest
    /// connected peer; the most caught-up one takes over soonest).
    fn hand_off_target(&self) -> Option<u64> {
        if self.node.raft.state != StateRole::Leader {
            return None;
        }
        let prs = self.node.raft.prs();
        let voters = prs.conf().voters().ids();
        prs.iter()
            .filter(|(id, pr)| **id != self.settings.id && voters.contains(**id) && pr.recent_active)
            .max_by_key(|(_, pr)| pr.matched)
            .map(|(id, _)| *id)
    }

    fn send(&mut self, msgs: Vec<Message>) {
        let (snaps, msgs): (Vec<Message>, Vec<Message>) =
            msgs.into_iter().partition(|m| m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot);
        for m in snaps {
            self.send_snapshot(m);
        }
        for id in self.transport.send(msgs) {
            self.node.report_unreachable(id);
        }
    }

    /// Sends a lagging member the backend's data at the applied index (see
    /// [`transport::RaftTransport::send_snapshot`]).
    fn send_snapshot(&mut self, msg: Message) {
        let to = msg.to;
        let conf_state = self.node.raft.prs().conf().to_conf_state();
        if !self.transport.send_snapshot(msg, self.backend.clone(), conf_state) {
            self.node.report_snapshot(to, raft::SnapshotStatus::Failure);
        }
    }

    /// Records a snapshot raft accepted from the leader, then has the apply
    /// thread replace the store with its data.
    fn accept_snapshot(&mut self, snap: Snapshot) -> Result<(), RaftError> {
        let index = snap.get_metadata().index;
        let term = snap.get_metadata().term;
        let data = match self.pending_install.take() {
            Some(d) if d.index == index => d,
            _ => return Err(RaftError::MissingSnapshotData(index)),
        };
        self.snapshotter.save(&snap)?;
        self.wal.save_snapshot(WalSnapshot { index, term })?;
        self.node.mut_store().wl().apply_snapshot(snap)?;
        self.status.commit.fetch_max(index, Ordering::AcqRel);
        tracing::info!("installing a snapshot from the leader at index {index}");
        let _ = self.apply_tx.send(ApplyTask::Snapshot(data));
        Ok(())
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
