//! The Lock service (`v3lockpb.Lock`): a lock is the key `name/<lease hex>`,
//! put with the caller's lease; its holder is the key under `name/` with the
//! lowest create revision, and a waiter waits for the deletion of every key
//! created before its own (etcd's `concurrency.Mutex`).
//!
//! A waiter whose caller goes away (or whose wait fails) deletes its key, so
//! an abandoned waiter never becomes a phantom holder.

use std::sync::Arc;

use retcd_api::etcdserverpb::range_request::SortOrder;
use retcd_api::v3lockpb::lock_server::Lock;
use retcd_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use super::concurrency::{create_txn, lease_key, Client, DeleteOnDrop};
use crate::server::EtcdServer;

pub struct LockService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let (metadata, _, r) = req.into_parts();
        let c = Client::new(&self.server, &metadata);
        let lease = c.session_lease(r.lease).await?;
        let mut prefix = r.name;
        prefix.push(b'/');
        let key = lease_key(&prefix, lease);

        // Create our key unless this lease already has one, and read the
        // current holder in the same revision.
        let mut txn = create_txn(&key, Vec::new(), lease);
        let owner = super::concurrency::top_created_request(&prefix, SortOrder::Ascend, 0);
        txn.success.push(super::concurrency::range_op(owner.clone()));
        txn.failure.push(super::concurrency::range_op(owner));
        let resp = c.txn(txn).await?;
        let header = resp.header.unwrap_or_default();
        let mut my_rev = header.revision;
        if !resp.succeeded {
            my_rev = super::concurrency::range_kvs(&resp, 0).first().map_or(my_rev, |kv| kv.create_revision);
        }
        let holder = super::concurrency::range_kvs(&resp, 1).first().map(|kv| kv.create_revision);
        if holder.is_none_or(|rev| rev == my_rev) {
            return Ok(Response::new(LockResponse { header: Some(header), key }));
        }

        let guard = DeleteOnDrop::new(&c, key.clone(), None);
        let header = c.wait_deletes(&prefix, my_rev - 1).await?;
        guard.disarm();
        Ok(Response::new(LockResponse { header: Some(header), key }))
    }

    async fn unlock(&self, req: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let (metadata, _, r) = req.into_parts();
        let c = Client::new(&self.server, &metadata);
        let header = c.delete(r.key).await?;
        Ok(Response::new(UnlockResponse { header }))
    }
}
