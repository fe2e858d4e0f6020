//! The apply thread: applies committed raft entries to the store in log
//! order, answers the proposer of each, and tells watchers what changed.
//!
//! Every entry's changes and the consistent index are staged in one backend
//! batch (the whole ready's worth of entries shares it), so a backend commit
//! never holds data without the index that produced it. Replayed entries at or
//! below the backend's consistent index are skipped: applying is idempotent
//! across crashes.

pub mod kv;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use prost::Message as _;
use raft::eraftpb::{Entry, EntryType};
use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, CompactionRequest, CompactionResponse, DeleteRangeResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeResponse, Member, PutResponse, TxnRequest, TxnResponse,
};
use retcd_api::retcdpb::{InternalRequest, LeaseRecord};
use retcd_storage::backend::{Backend, BatchTx, Table, CONF_STATE_KEY};
use retcd_storage::mvcc::{Compaction, KvStore, WriteTxn};
use tokio::sync::oneshot;

use crate::alarm::{AlarmStore, WriteKind};
use crate::lease::Lessor;
use crate::membership::Membership;
use crate::raft::{ApplyTask, RaftInput};
use crate::snapshot;
use crate::stop::{StopReason, StopSignal};
use crate::wait::Wait;
use crate::watch::WatchHub;
use kv::{KvError, KvRead, Writer};

/// What applying one request produced, delivered to its proposer (as
/// `Ok`; a refusal is the proposer's `Err`). Each request kind has its own
/// variant; [`FromApplied`] takes it back out as the kind's type.
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    /// `physical` resolves once the compacted records are gone from disk.
    Compaction(CompactionResponse, oneshot::Receiver<()>),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    Alarm(AlarmResponse),
    Auth(crate::auth::apply::AuthApplied),
    /// A v2 keys store change (or its v2 error).
    V2(Result<crate::v2store::Event, crate::v2store::V2Error>),
    /// Applied; nothing to report (member attributes).
    Done,
    /// A membership change was applied: the members now.
    Members(Vec<Member>),
}

/// What a proposer waits for.
pub type Outcome = Result<Applied, EtcdError>;

/// The result type of one request kind, taken out of [`Applied`].
pub trait FromApplied: Sized {
    fn from_applied(applied: Applied) -> Option<Self>;
}

macro_rules! from_applied {
    ($($variant:ident => $ty:ty),* $(,)?) => {$(
        impl FromApplied for $ty {
            fn from_applied(applied: Applied) -> Option<Self> {
                match applied {
                    Applied::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    )*};
}

from_applied! {
    Put => PutResponse,
    DeleteRange => DeleteRangeResponse,
    Txn => TxnResponse,
    LeaseGrant => LeaseGrantResponse,
    LeaseRevoke => LeaseRevokeResponse,
    Alarm => AlarmResponse,
    Auth => crate::auth::apply::AuthApplied,
    V2 => Result<crate::v2store::Event, crate::v2store::V2Error>,
    Members => Vec<Member>,
}

impl FromApplied for (CompactionResponse, oneshot::Receiver<()>) {
    fn from_applied(applied: Applied) -> Option<Self> {
        match applied {
            Applied::Compaction(resp, physical) => Some((resp, physical)),
            _ => None,
        }
    }
}

/// Requests whose proposer only needs to know they were applied.
impl FromApplied for () {
    fn from_applied(_: Applied) -> Option<Self> {
        Some(())
    }
}

/// Why a request was not applied as asked.
enum ApplyError {
    /// The request's result is this error, on every member alike.
    Refused(EtcdError),
    /// This member could not apply it (its store failed): it must stop
    /// rather than go on with a result the others do not have.
    Failed(String),
}

impl From<EtcdError> for ApplyError {
    fn from(e: EtcdError) -> Self {
        ApplyError::Refused(e)
    }
}

impl From<KvError> for ApplyError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Refused(e) => ApplyError::Refused(e),
            KvError::Storage(e) => ApplyError::Failed(format!("storage error: {e}")),
        }
    }
}

pub struct Applier {
    pub kv: Arc<KvStore>,
    pub backend: Arc<Backend>,
    pub lessor: Arc<Lessor>,
    pub membership: Arc<Membership>,
    pub alarms: Arc<AlarmStore>,
    pub auth: Arc<crate::auth::AuthStore>,
    pub v2: Arc<crate::v2store::V2Store>,
    pub watch: Arc<WatchHub>,
    pub wait: Arc<Wait<Outcome>>,
    pub applied: Arc<AtomicU64>,
    pub applied_tx: tokio::sync::watch::Sender<u64>,
    pub raft_tx: Sender<RaftInput>,
    pub snapshot_count: u64,
    pub last_snapshot_index: u64,
    pub snap_dir: std::path::PathBuf,
    pub member_id: u64,
    /// Set when a membership change removed this member.
    pub removed: bool,
    pub compactor: Sender<(Compaction, oneshot::Sender<()>)>,
    /// Told when this member must stop (removed, or applying failed).
    pub stop: StopSignal,
}

/// Debug builds only (the test profile): while the file named by
/// `RETCD_TEST_PAUSE_APPLY` exists, applying waits (at most a minute), so a
/// test can make committed run ahead of applied. Release builds ignore it.
fn pause_for_tests() {
    #[cfg(debug_assertions)]
    {
        static PAUSE_FILE: std::sync::LazyLock<Option<std::path::PathBuf>> =
            std::sync::LazyLock::new(|| std::env::var_os("RETCD_TEST_PAUSE_APPLY").map(Into::into));
        if let Some(path) = PAUSE_FILE.as_ref() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while path.exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// Whether a request needs space (refused while NOSPACE is raised) or
/// frees it.
fn write_kind(req: &InternalRequest) -> WriteKind {
    let grows = req.put.is_some() || req.lease_grant.is_some() || req.txn.as_ref().is_some_and(kv::txn_has_puts);
    if grows {
        WriteKind::Grows
    } else {
        WriteKind::Shrinks
    }
}

pub fn lease_key(id: i64) -> [u8; 8] {
    id.to_be_bytes()
}

impl Applier {
    pub fn run(mut self, tasks: Receiver<ApplyTask>) {
        while let Ok(task) = tasks.recv() {
            let applied = match task {
                ApplyTask::Entries(entries) => self.apply_entries(entries),
                ApplyTask::Snapshot(data) => self.install_snapshot(data),
            };
            if let Err(reason) = applied {
                self.stop.stop(reason);
                break;
            }
        }
        tracing::debug!("apply thread stopped");
    }

    /// Applies one ready's committed entries in one backend batch. A failure
    /// abandons the whole batch (see [`BatchTx::abandon`]) and answers no one.
    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), StopReason> {
        pause_for_tests();
        let (consistent, _) = self.backend.consistent_index();
        let Some(last) = entries.last() else { return Ok(()) };
        let (last_index, last_term) = (last.index, last.term);
        if last_index <= consistent {
            // All applied before a restart: staging their index would move
            // the consistent index back and the next batch would apply again.
            return Ok(());
        }
        let mut results = Vec::new();
        {
            let backend = self.backend.clone();
            let mut btx = backend.batch_tx();
            for e in &entries {
                if e.index <= consistent {
                    continue;
                }
                match self.apply_entry(&mut btx, e) {
                    Ok(Some(r)) => results.push(r),
                    Ok(None) => {}
                    Err(why) => {
                        btx.abandon();
                        return Err(StopReason::Failed(format!("applying entry {}: {why}", e.index)));
                    }
                }
            }
            btx.set_consistent_index(last_index, last_term);
        }
        // Answer proposers only after the batch's writes are visible to
        // readers and the watch hub, so a client that reads after its write
        // returns always sees it.
        for (id, result) in results {
            self.wait.trigger(id, result);
        }
        self.applied.store(last_index, Ordering::Release);
        self.applied_tx.send_replace(last_index);
        self.maybe_snapshot(last_index, last_term);
        if self.removed {
            // As etcd: a removed member stops; its data dir must not be reused.
            if let Err(e) = self.backend.commit() {
                tracing::error!("final backend commit failed: {e}");
            }
            return Err(StopReason::Removed);
        }
        Ok(())
    }

    /// Applies one entry; returns its proposer's id and outcome, or the
    /// reason this member cannot go on.
    fn apply_entry(&mut self, btx: &mut BatchTx<'_>, e: &Entry) -> Result<Option<(u64, Outcome)>, String> {
        if e.get_entry_type() == EntryType::EntryConfChange {
            return Ok(self.apply_conf_change(btx, e));
        }
        if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
            // The empty entry a new leader appends carries nothing to apply.
            return Ok(None);
        }
        // Every member decodes the same bytes the same way, so skipping an
        // entry that is not a request keeps them alike.
        let req = match InternalRequest::decode(e.data.as_slice()) {
            Ok(r) => r,
            Err(err) => {
                tracing::error!("entry {} is not a request ({err}); skipped", e.index);
                return Ok(None);
            }
        };
        let id = req.header.as_ref().map(|h| h.id).unwrap_or(0);
        match self.apply_request(btx, req, e.index) {
            Ok(applied) => Ok(Some((id, Ok(applied)))),
            Err(ApplyError::Refused(err)) => Ok(Some((id, Err(err)))),
            Err(ApplyError::Failed(why)) => Err(why),
        }
    }

    fn apply_request(
        &mut self,
        btx: &mut BatchTx<'_>,
        req: InternalRequest,
        index: u64,
    ) -> Result<Applied, ApplyError> {
        crate::auth::checks::check_proposal(&self.auth, &self.lessor, &req)?;
        if let Some(a) = req.alarm {
            return Ok(self.apply_alarm(btx, &a));
        }
        if let Some(e) = self.alarms.refuses(write_kind(&req)) {
            return Err(e.into());
        }
        if req.auth.is_some() {
            let ai = crate::auth::checks::proposer(&req);
            let a = req.auth.unwrap_or_default();
            return Ok(Applied::Auth(self.auth.apply(btx, ai.as_ref(), a, index)?));
        }
        if let Some(p) = req.put {
            let lessor = &self.lessor;
            let (resp, _) = self.write(btx, |w| {
                kv::check_put(w, &p, lessor)?;
                kv::put(w, &p, lessor)
            })?;
            return Ok(Applied::Put(resp));
        }
        if let Some(d) = req.delete_range {
            let lessor = &self.lessor;
            let (resp, _) = self.write(btx, |w| Ok(kv::delete_range(w, &d, lessor)))?;
            return Ok(Applied::DeleteRange(resp));
        }
        if let Some(t) = req.txn {
            return Ok(Applied::Txn(self.apply_txn(btx, &t)?));
        }
        if let Some(c) = req.compaction {
            return self.apply_compaction(btx, &c);
        }
        if let Some(g) = req.lease_grant {
            return self.apply_lease_grant(btx, &g);
        }
        if let Some(r) = req.lease_revoke {
            self.revoke_lease(btx, r.id)?;
            return Ok(Applied::LeaseRevoke(LeaseRevokeResponse::default()));
        }
        if let Some(u) = req.member_update {
            if self.membership.get(u.id).is_none() {
                return Err(EtcdError::MemberNotFound.into());
            }
            self.membership.update_peer_urls(btx, u.id, u.peer_ur_ls.clone());
            let _ = self.raft_tx.send(RaftInput::PeerUrls { id: u.id, urls: u.peer_ur_ls });
            return Ok(Applied::Members(self.membership.list()));
        }
        if let Some(r) = req.v2 {
            return Ok(Applied::V2(self.v2.apply(btx, &r)));
        }
        if let Some(a) = req.member_attributes {
            self.membership.set_attributes(btx, a.id, &a.name, &a.client_urls);
            return Ok(Applied::Done);
        }
        Err(EtcdError::NotCapable.into())
    }

    fn apply_alarm(&mut self, btx: &mut BatchTx<'_>, a: &AlarmRequest) -> Applied {
        use retcd_api::etcdserverpb::alarm_request::AlarmAction;
        use retcd_api::etcdserverpb::AlarmType;
        let alarms = match AlarmAction::try_from(a.action) {
            Ok(AlarmAction::Get) => self.alarms.list(AlarmType::try_from(a.alarm).unwrap_or(AlarmType::None)),
            // Activating "no alarm" does nothing (as etcd).
            Ok(AlarmAction::Activate) if a.alarm == AlarmType::None as i32 => vec![],
            Ok(AlarmAction::Activate) => {
                let m = self.alarms.activate(btx, a.member_id, a.alarm);
                tracing::warn!("alarm {:?} raised by member {:x}", AlarmType::try_from(a.alarm), a.member_id);
                vec![m]
            }
            Ok(AlarmAction::Deactivate) => self.alarms.deactivate(btx, a.member_id, a.alarm).into_iter().collect(),
            Err(_) => vec![],
        };
        // etcd's applied alarm response carries no header.
        Applied::Alarm(AlarmResponse { header: None, alarms })
    }

    /// A membership change: the member list (in this batch) and raft's
    /// configuration (on the raft thread, waited for) change together; the
    /// resulting configuration is kept in the backend so a restart knows it
    /// without replaying the entry.
    fn apply_conf_change(&mut self, btx: &mut BatchTx<'_>, e: &Entry) -> Option<(u64, Outcome)> {
        use prost011::Message as _;
        use raft::eraftpb::ConfChangeType;
        let cc = match raft::eraftpb::ConfChange::decode(e.data.as_slice()) {
            Ok(cc) => cc,
            Err(err) => {
                tracing::error!("entry {} is not a membership change ({err}); skipped", e.index);
                return None;
            }
        };
        let member = (!cc.context.is_empty()).then(|| Member::decode(cc.context.as_slice()).ok()).flatten();
        let change = cc.get_change_type();
        let id = cc.node_id;
        match change {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                let mut m = member.unwrap_or(Member { id, ..Default::default() });
                if let Some(existing) = self.membership.get(id) {
                    // Promotion of a learner: only the role changes.
                    m = Member { is_learner: false, ..existing };
                }
                m.is_learner = change == ConfChangeType::AddLearnerNode;
                self.membership.add(btx, m);
            }
            ConfChangeType::RemoveNode => self.membership.remove(btx, id),
        }
        let urls = self.membership.get(id).map(|m| m.peer_ur_ls).unwrap_or_default();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let request_id = cc.id;
        if self.raft_tx.send(RaftInput::ApplyConfChange { index: e.index, cc, urls, done: done_tx }).is_err() {
            return None;
        }
        if let Ok(Some(cs)) = done_rx.recv() {
            btx.put(Table::Meta, CONF_STATE_KEY, &prost011::Message::encode_to_vec(&cs));
        }
        if change == ConfChangeType::RemoveNode && id == self.member_id {
            tracing::error!("this member has been permanently removed from the cluster; stopping");
            self.removed = true;
        }
        Some((request_id, Ok(Applied::Members(self.membership.list()))))
    }

    /// Runs `f` in a write transaction. Its changes become visible and go to
    /// the watchers only if it succeeded and the store met no error on the
    /// way; otherwise they are abandoned (a refusal has made none). Returns
    /// `f`'s result and the revision reads in the transaction were at.
    fn write<T>(
        &self,
        btx: &mut BatchTx<'_>,
        f: impl FnOnce(&mut Writer<'_, '_>) -> Result<T, KvError>,
    ) -> Result<(T, i64), ApplyError> {
        let mut w = Writer { txn: self.kv.write(btx), store: &self.kv, changed: false };
        let out = f(&mut w);
        let failed = match (w.txn.take_error(), out) {
            (None, Ok(t)) => {
                let rev = w.read_rev();
                self.watch.notify(rev, &w.txn.end());
                return Ok((t, rev));
            }
            (None, Err(KvError::Refused(e))) => ApplyError::Refused(e),
            (Some(e), _) | (None, Err(KvError::Storage(e))) => ApplyError::Failed(format!("storage error: {e}")),
        };
        WriteTxn::abandon(w.txn);
        Err(failed)
    }

    fn apply_txn(&mut self, btx: &mut BatchTx<'_>, t: &TxnRequest) -> Result<TxnResponse, ApplyError> {
        let lessor = &self.lessor;
        let (mut resp, rev) = self.write(btx, |w| {
            let path = kv::txn_path(w, t)?;
            kv::check_txn(w, t, &path, &mut 0, Some(lessor))?;
            kv::run_txn(w, t, &path, &mut 0, lessor)
        })?;
        resp.header = Some(retcd_api::etcdserverpb::ResponseHeader { revision: rev, ..Default::default() });
        Ok(resp)
    }

    fn apply_compaction(&mut self, btx: &mut BatchTx<'_>, c: &CompactionRequest) -> Result<Applied, ApplyError> {
        let job = self.kv.compact(btx, c.revision).map_err(KvError::from)?;
        let (done_tx, done_rx) = oneshot::channel();
        // The compactor thread lives as long as the server.
        let _ = self.compactor.send((job, done_tx));
        let header = Some(retcd_api::etcdserverpb::ResponseHeader { revision: self.kv.rev(), ..Default::default() });
        Ok(Applied::Compaction(CompactionResponse { header }, done_rx))
    }

    fn apply_lease_grant(&mut self, btx: &mut BatchTx<'_>, g: &LeaseGrantRequest) -> Result<Applied, ApplyError> {
        let ttl = self.lessor.grant(g.id, g.ttl)?;
        let rec = LeaseRecord { id: g.id, ttl };
        btx.put(Table::Lease, &lease_key(g.id), &rec.encode_to_vec());
        Ok(Applied::LeaseGrant(LeaseGrantResponse {
            header: Some(retcd_api::etcdserverpb::ResponseHeader { revision: self.kv.rev(), ..Default::default() }),
            id: g.id,
            ttl,
            error: String::new(),
        }))
    }

    /// Revokes a lease and deletes its keys in one revision.
    fn revoke_lease(&mut self, btx: &mut BatchTx<'_>, id: i64) -> Result<(), ApplyError> {
        let keys = self.lessor.revoke(id)?;
        btx.delete(Table::Lease, &lease_key(id));
        if !keys.is_empty() {
            self.write(btx, |w| {
                for key in &keys {
                    if !w.txn.delete_range(key, &[]).is_empty() {
                        w.changed = true;
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Replaces the store with a leader's snapshot. A failure here leaves the
    /// member unable to continue safely: it stops, and the durable
    /// `.snap.db` file is installed on the next start.
    fn install_snapshot(&mut self, data: snapshot::ReceivedSnapshot) -> Result<(), StopReason> {
        let index = data.index;
        let installed = snapshot::install(&self.backend, &self.kv, &data)
            .map_err(|e| e.to_string())
            .and_then(|()| self.lessor.reload(&self.backend, &self.kv).map_err(|e| e.to_string()))
            .and_then(|()| self.membership.reload(&self.backend).map_err(|e| e.to_string()))
            .and_then(|()| self.alarms.reload(&self.backend).map_err(|e| e.to_string()))
            .and_then(|()| self.auth.reload(&self.backend).map_err(|e| e.to_string()))
            .and_then(|()| self.v2.reload(&self.backend).map_err(|e| e.to_string()));
        if let Err(e) = installed {
            return Err(StopReason::Failed(format!("installing the snapshot at index {index} failed: {e}")));
        }
        self.watch.reset(self.kv.rev());
        snapshot::remove_installed(&self.snap_dir, index);
        self.last_snapshot_index = index;
        self.applied.store(index, Ordering::Release);
        self.applied_tx.send_replace(index);
        tracing::info!("installed the snapshot at index {index} (revision {})", self.kv.rev());
        Ok(())
    }

    /// Every `snapshot_count` entries: make the backend durable, then let the
    /// raft thread record a snapshot and drop the log before it.
    fn maybe_snapshot(&mut self, index: u64, term: u64) {
        if index.saturating_sub(self.last_snapshot_index) < self.snapshot_count {
            return;
        }
        if let Err(e) = self.backend.commit() {
            tracing::error!("backend commit before snapshot failed: {e}");
            return;
        }
        self.last_snapshot_index = index;
        let _ = self.raft_tx.send(RaftInput::SnapshotReady { index, term });
    }
}
