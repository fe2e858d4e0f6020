//! The Maintenance service: Status, Hash, HashKV, MoveLeader, alarms,
//! defragmentation and snapshots (backups).

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::maintenance_server::Maintenance;
use retcd_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest,
    HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use retcd_api::retcdpb::InternalRequest;
use retcd_storage::backend::{Table, CONSISTENT_INDEX_KEY};
use tonic::{Request, Response, Status};

use crate::apply::kv::mvcc_error;
use crate::raft::RaftInput;
use crate::server::EtcdServer;

pub struct MaintenanceService {
    pub server: Arc<EtcdServer>,
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// Every action goes through raft (as etcd), so the answer reflects
    /// the cluster's state at a point in the log.
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(self.server.propose(InternalRequest { alarm: Some(r), ..Default::default() }).await?))
    }

    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let s = &self.server;
        let applied = s.applied.load(std::sync::atomic::Ordering::Acquire);
        Ok(Response::new(StatusResponse {
            header: Some(s.header(s.kv.rev())),
            version: crate::version::SERVER.to_string(),
            db_size: s.backend.size() as i64,
            leader: s.raft.leader(),
            raft_index: s.raft.commit.load(std::sync::atomic::Ordering::Acquire),
            raft_term: s.raft.term(),
            raft_applied_index: applied,
            errors: status_errors(s),
            db_size_in_use: s.backend.size_in_use() as i64,
            is_learner: s.membership.get(s.settings.member_id).is_some_and(|m| m.is_learner),
        }))
    }

    /// Rewrites the backend file without its free pages; writes wait.
    async fn defragment(&self, req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        self.server
            .check_admin(&crate::auth::credentials::Creds::from_request(&req))
            .await
            .map_err(crate::auth::untranslated)?;
        let s = self.server.clone();
        tracing::info!("starting to defragment the backend");
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || s.backend.defragment())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("etcdserver: defragment failed: {e}")))?;
        crate::metrics::get().defrag.observe(started.elapsed().as_secs_f64());
        tracing::info!(
            "finished defragmenting the backend in {:?} (size {})",
            started.elapsed(),
            self.server.backend.size()
        );
        Ok(Response::new(DefragmentResponse { header: Some(self.server.header(self.server.kv.rev())) }))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.server
            .check_admin(&crate::auth::credentials::Creds::from_request(&req))
            .await
            .map_err(crate::auth::untranslated)?;
        let s = self.server.clone();
        let hash = tokio::task::spawn_blocking(move || backend_hash(&s))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(HashResponse { header: Some(self.server.header(self.server.kv.rev())), hash }))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.server
            .check_admin(&crate::auth::credentials::Creds::from_request(&req))
            .await
            .map_err(crate::auth::untranslated)?;
        let rev = req.into_inner().revision;
        let s = self.server.clone();
        let h = tokio::task::spawn_blocking(move || s.kv.hash_kv(rev))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(mvcc_error)?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.server.header(h.revision)),
            hash: h.hash,
            compact_revision: h.compact_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    /// Streams a consistent copy of the backend and its SHA-256 (see
    /// [`crate::backup`]).
    async fn snapshot(&self, req: Request<SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        self.server
            .check_admin(&crate::auth::credentials::Creds::from_request(&req))
            .await
            .map_err(crate::auth::untranslated)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let s = self.server.clone();
        tokio::task::spawn_blocking(move || {
            let dir = s.backend.path().parent().map(Path::to_path_buf).unwrap_or_default();
            crate::backup::stream(&s.backend, &dir, tx);
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    /// Only the leader moves leadership, to a voting member; the call returns
    /// once the target leads (or times out, as etcd).
    async fn move_leader(&self, req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = req.into_inner().target_id;
        let s = &self.server;
        if !s.raft.is_leader() {
            return Err(EtcdError::NotLeader.into());
        }
        match s.membership.get(target) {
            Some(m) if !m.is_learner => {}
            _ => return Err(EtcdError::BadLeaderTransferee.into()),
        }
        if target != s.settings.member_id {
            s.raft_tx.send(RaftInput::TransferLeader(target)).map_err(|_| Status::from(EtcdError::Stopped))?;
            let deadline = tokio::time::Instant::now() + s.settings.request_timeout;
            while s.raft.leader() != target {
                if tokio::time::Instant::now() >= deadline {
                    return Err(Status::unavailable("etcdserver: request timed out, leader transfer took too long"));
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        Ok(Response::new(MoveLeaderResponse { header: Some(s.header(s.kv.rev())) }))
    }
}

/// What etcd lists as a member's errors: no leader, and each active alarm
/// in protobuf text form.
fn status_errors(s: &EtcdServer) -> Vec<String> {
    use retcd_api::etcdserverpb::AlarmType;
    let mut errors = Vec::new();
    if s.raft.leader() == 0 {
        errors.push(EtcdError::NoLeader.message().to_string());
    }
    for a in s.alarms.list(AlarmType::None) {
        let name = AlarmType::try_from(a.alarm).map(|t| t.as_str_name()).unwrap_or("NONE");
        errors.push(format!("memberID:{} alarm:{name} ", a.member_id));
    }
    errors
}

/// CRC-32C over every table's keys and values in order: the whole backend,
/// as etcd's Hash covers every bucket (but the consistent index).
fn backend_hash(s: &EtcdServer) -> Result<u32, Status> {
    let mut crc = 0u32;
    for table in Table::ALL {
        let pairs = s.backend.range(table, &[], None, 0).map_err(|e| Status::internal(e.to_string()))?;
        for (k, v) in pairs {
            // Which raft entry a member applied last is not part of its data
            // (etcd's Hash ignores the consistent index too).
            if table == Table::Meta && k == CONSISTENT_INDEX_KEY {
                continue;
            }
            crc = crc32c::crc32c_append(crc, &k);
            crc = crc32c::crc32c_append(crc, &v);
        }
    }
    Ok(crc)
}
