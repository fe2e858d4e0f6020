//! The peer listener: what other members call on `--listen-peer-urls`.
//! Raft message batches go to the raft thread; forwarded lease requests are
//! answered by this member's lessor (they are sent here because this member
//! leads). [`crate::peer_dial`] is the other side: how this member calls
//! its peers.

use std::sync::Arc;

use crossbeam_channel::Sender;
use prost011::Message as _;
use raft::eraftpb::Message;
use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::{
    HashKvRequest, HashKvResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse, ResponseHeader,
};
use retcd_api::retcdpb::peer_server::{Peer, PeerServer};
use retcd_api::retcdpb::{
    LearnerSyncRequest, LearnerSyncResponse, MembersRequest, MembersResponse, PeerAck, RaftBatch, SnapshotChunk,
};
use tonic::{Request, Response, Status, Streaming};

use retcd_storage::mvcc::KvStore;

use crate::lease::Lessor;
use crate::membership::Membership;
use crate::raft::transport::CLUSTER_ID_MISMATCH;
use crate::raft::{RaftInput, RaftStatus};
use crate::snapshot::SnapshotWriter;

pub struct PeerService {
    pub cluster_id: u64,
    pub membership: Arc<Membership>,
    pub raft_tx: Sender<RaftInput>,
    pub lessor: Arc<Lessor>,
    pub raft: Arc<RaftStatus>,
    pub kv: Arc<KvStore>,
    pub member_id: u64,
    /// Where received snapshots are written as they arrive.
    pub snap_dir: std::path::PathBuf,
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<PeerAck>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.message().await? {
            if batch.cluster_id != self.cluster_id {
                tracing::error!(
                    "rejecting raft messages from member {:x}: cluster ID mismatch (theirs {:x}, ours {:x})",
                    batch.from,
                    batch.cluster_id,
                    self.cluster_id
                );
                return Err(Status::failed_precondition(format!(
                    "{CLUSTER_ID_MISMATCH}: request cluster ID {:x}, local cluster ID {:x}",
                    batch.cluster_id, self.cluster_id
                )));
            }
            for bytes in batch.messages {
                let msg = Message::decode(bytes.as_slice())
                    .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
                if self.raft_tx.send(RaftInput::Step(Box::new(msg))).is_err() {
                    return Err(EtcdError::Stopped.into());
                }
            }
        }
        Ok(Response::new(PeerAck {}))
    }

    async fn snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<PeerAck>, Status> {
        let mut stream = req.into_inner();
        let file_err = |e: crate::snapshot::SnapshotError| Status::internal(e.to_string());
        let Some(first) = stream.message().await? else {
            return Err(Status::invalid_argument("incomplete snapshot stream"));
        };
        let msg = Message::decode(first.message.as_slice())
            .map_err(|e| Status::invalid_argument(format!("bad snapshot message: {e}")))?;
        let meta = msg.get_snapshot().get_metadata();
        let (index, term) = (meta.index, meta.term);
        let snap_dir = self.snap_dir.clone();
        let mut writer = blocking(move || SnapshotWriter::create(&snap_dir, index, term)).await.map_err(file_err)?;
        // Each chunk goes to the file as it arrives: memory holds one chunk.
        let mut chunk = first;
        loop {
            let done = chunk.done;
            writer = blocking(move || writer.append(&chunk.records).map(|()| writer)).await.map_err(file_err)?;
            if done {
                break;
            }
            chunk = match stream.message().await? {
                Some(c) => c,
                None => return Err(Status::invalid_argument("incomplete snapshot stream")),
            };
        }
        let data = blocking(move || writer.finish()).await.map_err(file_err)?;
        tracing::info!("received a snapshot at index {index} from member {:x} ({})", msg.from, data.path.display());
        self.raft_tx
            .send(RaftInput::InstallSnapshot { msg: Box::new(msg), data })
            .map_err(|_| Status::from(EtcdError::Stopped))?;
        Ok(Response::new(PeerAck {}))
    }

    async fn members(&self, _req: Request<MembersRequest>) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse { cluster_id: self.cluster_id, members: self.membership.list() }))
    }

    async fn learner_in_sync(&self, req: Request<LearnerSyncRequest>) -> Result<Response<LearnerSyncResponse>, Status> {
        if !self.raft.is_leader() {
            return Err(EtcdError::NotLeader.into());
        }
        Ok(Response::new(LearnerSyncResponse { in_sync: self.raft.learner_in_sync(req.into_inner().id) }))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        let rev = req.into_inner().revision;
        let kv = self.kv.clone();
        let h = tokio::task::spawn_blocking(move || kv.hash_kv(rev))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(crate::apply::kv::mvcc_error)?;
        let header = ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision: h.revision,
            raft_term: self.raft.term(),
        };
        Ok(Response::new(HashKvResponse { header: Some(header), hash: h.hash, compact_revision: h.compact_revision }))
    }

    async fn lease_keep_alive(
        &self,
        req: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let id = req.into_inner().id;
        let ttl = match self.lessor.renew(id) {
            Ok(ttl) => ttl,
            Err(EtcdError::LeaseNotFound) => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(Response::new(LeaseKeepAliveResponse { header: None, id, ttl }))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let r = req.into_inner();
        if !self.lessor.is_primary() {
            return Err(EtcdError::NotLeader.into());
        }
        Ok(Response::new(self.lessor.time_to_live_response(r.id, r.keys)))
    }
}

pub fn routes(service: PeerService) -> axum::Router {
    tonic::service::Routes::new(PeerServer::new(service).max_decoding_message_size(usize::MAX >> 1)).into_axum_router()
}

/// Runs file I/O off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::snapshot::SnapshotError> + Send + 'static,
) -> Result<T, crate::snapshot::SnapshotError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| crate::snapshot::SnapshotError::Send(e.to_string()))?
}
