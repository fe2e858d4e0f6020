//! The KV service: Range, Put, DeleteRange, Txn, Compact.
//!
//! Each call is validate, then [`EtcdServer`]'s request, then the error as
//! a status (see `crate::server::kv` for how each is served).

use std::sync::Arc;

use retcd_api::etcdserverpb::kv_server::Kv;
use retcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use super::validate;
use crate::auth::credentials::Creds;
use crate::server::EtcdServer;

pub struct KvService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        crate::metrics::get().range_total.inc();
        let creds = Creds::from_request(&req);
        let r = req.into_inner();
        validate::check_range(&r)?;
        Ok(Response::new(self.server.range(r, &creds).await?))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        crate::metrics::get().put_total.inc();
        let creds = Creds::from_request(&req);
        let r = req.into_inner();
        validate::check_put(&r)?;
        Ok(Response::new(self.server.put(r, &creds).await?))
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        crate::metrics::get().delete_total.inc();
        let creds = Creds::from_request(&req);
        let r = req.into_inner();
        validate::check_delete(&r)?;
        Ok(Response::new(self.server.delete_range(r, &creds).await?))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        crate::metrics::get().txn_total.inc();
        let creds = Creds::from_request(&req);
        let r = req.into_inner();
        validate::check_txn(&r, self.server.settings.max_txn_ops)?;
        Ok(Response::new(self.server.txn(r, &creds).await?))
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let creds = Creds::from_request(&req);
        Ok(Response::new(self.server.compact(req.into_inner(), &creds).await?))
    }
}
