//! The KV service: Range, Put, DeleteRange, Txn, Compact.
//!
//! Reads (ranges and read-only txns) are served locally, after a read-index
//! round unless the request is serializable; writes go through raft.

use std::sync::Arc;

use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::kv_server::Kv;
use retcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use retcd_api::retcdpb::InternalRequest;
use tonic::{Request, Response, Status};

use super::validate;
use crate::apply::kv::{self as kvops, PinnedRead};
use crate::apply::ApplyResult;
use crate::auth::request as auth;
use crate::server::EtcdServer;

pub struct KvService {
    pub server: Arc<EtcdServer>,
}

/// A result of the wrong kind for the request: a bug, not a client error.
fn unexpected() -> Status {
    Status::internal("retcd: unexpected apply result")
}

pub fn apply_error(r: ApplyResult) -> Status {
    match r {
        ApplyResult::Error(e) => e.into(),
        _ => unexpected(),
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        crate::metrics::get().range_total.inc();
        let creds = auth::Creds::from_request(&req);
        let r = req.into_inner();
        validate::check_range(&r)?;
        if !r.serializable {
            self.server.linearizable_read().await?;
        }
        let ai = self.server.auth_info(&creds).await?;
        auth::check_range(&self.server.auth, ai.as_ref(), &r)?;
        let mut view = PinnedRead::new(&self.server.kv);
        let mut resp = kvops::range(&mut view, &r)?;
        self.server.auth.check_unchanged(ai.as_ref())?;
        self.server.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        crate::metrics::get().put_total.inc();
        let creds = auth::Creds::from_request(&req);
        let r = req.into_inner();
        validate::check_put(&r)?;
        let res = self.server.propose_as(InternalRequest { put: Some(r), ..Default::default() }, &creds).await?;
        match res {
            ApplyResult::Put(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(apply_error(other)),
        }
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        crate::metrics::get().delete_total.inc();
        let creds = auth::Creds::from_request(&req);
        let r = req.into_inner();
        validate::check_delete(&r)?;
        let res =
            self.server.propose_as(InternalRequest { delete_range: Some(r), ..Default::default() }, &creds).await?;
        match res {
            ApplyResult::DeleteRange(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(apply_error(other)),
        }
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        crate::metrics::get().txn_total.inc();
        let creds = auth::Creds::from_request(&req);
        let r = req.into_inner();
        validate::check_txn(&r, self.server.settings.max_txn_ops)?;
        if kvops::is_txn_read_only(&r) {
            if !is_txn_serializable(&r) {
                self.server.linearizable_read().await?;
            }
            let ai = self.server.auth_info(&creds).await?;
            auth::check_txn(&self.server.auth, &self.server.lessor, ai.as_ref(), &r)?;
            let mut view = PinnedRead::new(&self.server.kv);
            let path = kvops::txn_path(&mut view, &r);
            kvops::check_txn(&mut view, &r, &path, &mut 0, None)?;
            let mut resp = kvops::run_read_txn(&mut view, &r, &path, &mut 0);
            self.server.auth.check_unchanged(ai.as_ref())?;
            self.server.fill_header(&mut resp.header);
            return Ok(Response::new(resp));
        }
        let res = self.server.propose_as(InternalRequest { txn: Some(r), ..Default::default() }, &creds).await?;
        match res {
            ApplyResult::Txn(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(apply_error(other)),
        }
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let creds = auth::Creds::from_request(&req);
        let r = req.into_inner();
        let physical = r.physical;
        let res = self.server.propose_as(InternalRequest { compaction: Some(r), ..Default::default() }, &creds).await?;
        match res {
            ApplyResult::Compaction(mut resp, done) => {
                if physical {
                    done.await.map_err(|_| Status::from(EtcdError::Stopped))?;
                }
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(apply_error(other)),
        }
    }
}

/// A read-only txn is served locally without a read-index round only if
/// every range in it is serializable (etcd's `isTxnSerializable`).
fn is_txn_serializable(r: &TxnRequest) -> bool {
    use retcd_api::etcdserverpb::request_op::Request as Op;
    r.success.iter().chain(r.failure.iter()).all(|op| match &op.request {
        Some(Op::RequestRange(rr)) => rr.serializable,
        Some(Op::RequestTxn(t)) => is_txn_serializable(t),
        _ => true,
    })
}
