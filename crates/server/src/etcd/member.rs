//! Start-up, step three: the restored stores wired to the threads that run
//! them (raft's ready loop with its WAL and transport, apply, the backend's
//! committer, physical compaction) and to the [`EtcdServer`] the request
//! handlers call. Nothing is served yet.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use retcd_storage::backend::CommitterHandle;
use retcd_storage::mvcc::Compaction;
use tokio::sync::oneshot;

use super::bootstrap::Restored;
use super::plan::StartPlan;
use super::StartError;
use crate::apply::Applier;
use crate::config::split_list;
use crate::ids;
use crate::raft::transport::{PeerActivity, PeerTransport, PeerTransportParts, Rejection};
use crate::raft::{RaftLinks, RaftNode, RaftSettings, RaftStatus};
use crate::server::{EtcdServer, ServerSettings};
use crate::stop::{StopReason, StopSignal};
use crate::wait::Wait;
use crate::watch::WatchHub;

/// A member whose threads run.
pub struct Member {
    pub server: Arc<EtcdServer>,
    pub threads: Threads,
    /// Where the raft and apply threads report that the member must stop.
    pub stop_signal: StopSignal,
    /// Set when the other members refuse this one as not of their cluster.
    pub rejected: Rejection,
}

/// The member's threads, to stop and join in order.
pub struct Threads {
    stop: Arc<AtomicBool>,
    raft: JoinHandle<()>,
    apply: JoinHandle<()>,
    committer: CommitterHandle,
}

impl Threads {
    /// Stops raft, lets the apply thread finish what raft handed it, then
    /// commits the backend (which refuses if applying failed, keeping its
    /// last commit). Blocks.
    pub fn join(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.raft.join();
        let _ = self.apply.join();
        if let Err(e) = self.committer.stop() {
            tracing::error!("final backend commit failed: {e}");
        }
    }
}

/// Starts the threads of a restored member.
pub fn start(plan: &StartPlan, restored: Restored) -> Result<Member, StartError> {
    let cfg = &plan.cfg;
    let Restored {
        raft: boot,
        backend,
        kv,
        lessor,
        membership,
        alarms,
        auth,
        v2,
        member_id,
        cluster_id,
        applied_index,
    } = restored;
    let committer = backend.spawn_committer(Duration::from_millis(100), 10_000);
    let (raft_tx, raft_rx) = crossbeam_channel::unbounded();
    let (apply_tx, apply_rx) = crossbeam_channel::unbounded();
    let status = Arc::new(RaftStatus { id: member_id, ..Default::default() });
    let applied = Arc::new(AtomicU64::new(applied_index));
    let (applied_tx, applied_rx) = tokio::sync::watch::channel(applied_index);
    let wait = Arc::new(Wait::default());
    let watch = Arc::new(WatchHub::new(kv.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let stop_signal = StopSignal::default();

    let compactor = spawn_compactor();
    let applier = Applier {
        kv: kv.clone(),
        backend: backend.clone(),
        lessor: lessor.clone(),
        membership: membership.clone(),
        alarms: alarms.clone(),
        auth: auth.clone(),
        v2: v2.clone(),
        watch: watch.clone(),
        wait: wait.clone(),
        applied: applied.clone(),
        applied_tx,
        raft_tx: raft_tx.clone(),
        snapshot_count: cfg.snapshot_count.max(1),
        last_snapshot_index: boot.snapshot_index,
        snap_dir: plan.dirs.snap.clone(),
        member_id,
        removed: false,
        compactor,
        stop: stop_signal.clone(),
    };
    let apply_thread = std::thread::Builder::new()
        .name("apply".into())
        .spawn(move || applier.run(apply_rx))
        .map_err(|e| StartError::NotReady(e.to_string()))?;

    let lease_hook = lessor.clone();
    let drop_wait = wait.clone();
    let rejected = Rejection::default();
    let peer_urls_by_id =
        membership.list().into_iter().filter(|m| m.id != member_id).map(|m| (m.id, m.peer_ur_ls)).collect();
    let peer_activity = PeerActivity::default();
    let transport = PeerTransport::new(PeerTransportParts {
        cluster_id,
        self_id: member_id,
        runtime: tokio::runtime::Handle::current(),
        raft_tx: raft_tx.clone(),
        urls: peer_urls_by_id,
        rejected: rejected.clone(),
        dialer: plan.peer_dialer.clone(),
        activity: peer_activity.clone(),
    });
    let node = RaftNode::new(
        boot,
        Box::new(transport),
        backend.clone(),
        RaftSettings {
            id: member_id,
            heartbeat: cfg.heartbeat(),
            election_ticks: cfg.election_ticks(),
            max_snapshots: cfg.max_snapshots,
            max_wals: cfg.max_wals,
        },
        applied_index,
        RaftLinks {
            inputs: raft_rx,
            apply_tx,
            status: status.clone(),
            applied: applied.clone(),
            stop: stop.clone(),
            on_leader_change: Box::new(
                move |_leader, is_me| {
                    if is_me {
                        lease_hook.promote()
                    } else {
                        lease_hook.demote()
                    }
                },
            ),
            on_drop: Box::new(move |id| drop_wait.trigger(id, Err(retcd_api::EtcdError::NoLeader))),
        },
    )?;
    let raft_stop = stop_signal.clone();
    let raft_thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || {
            if let Err(e) = node.run() {
                // Continuing without a durable log would lose writes.
                raft_stop.stop(StopReason::Failed(format!("raft loop failed: {e}")));
            }
        })
        .map_err(|e| StartError::NotReady(e.to_string()))?;

    let request_timeout = Duration::from_secs(5) + 2 * Duration::from_millis(cfg.election_timeout);
    let server = Arc::new(EtcdServer {
        settings: ServerSettings {
            name: cfg.name.clone(),
            member_id,
            cluster_id,
            client_urls: split_list(&cfg.advertise_client_urls),
            max_txn_ops: cfg.max_txn_ops,
            max_request_bytes: cfg.max_request_bytes as usize,
            request_timeout,
            quota_bytes: cfg.quota_bytes(),
            strict_reconfig_check: cfg.strict_reconfig_check,
        },
        kv,
        backend,
        lessor,
        watch,
        raft: status,
        wait,
        applied,
        applied_rx,
        raft_tx,
        ids: ids::IdGenerator::new(member_id),
        membership: membership.clone(),
        alarms,
        auth,
        v2,
        leader_channel: Default::default(),
        peer_dialer: plan.peer_dialer.clone(),
        peer_activity,
    });

    Ok(Member {
        server,
        threads: Threads { stop, raft: raft_thread, apply: apply_thread, committer },
        stop_signal,
        rejected,
    })
}

/// Physical compaction runs on its own thread, off the apply path.
fn spawn_compactor() -> crossbeam_channel::Sender<(Compaction, oneshot::Sender<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded::<(Compaction, oneshot::Sender<()>)>();
    let _ = std::thread::Builder::new().name("compactor".into()).spawn(move || {
        while let Ok((job, done)) = rx.recv() {
            let rev = job.revision();
            match job.run() {
                Ok(()) => tracing::info!("finished scheduled compaction at {rev}"),
                Err(e) => tracing::error!("compaction at {rev} failed: {e}"),
            }
            let _ = done.send(());
        }
    });
    tx
}
