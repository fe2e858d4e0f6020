//! The building blocks of the lock and election services, done as etcd's
//! `clientv3/concurrency` package does them, but against our own services in
//! process: a session lease, "first/last created key under a prefix", and
//! waiting for the deletion of keys created before ours.
//!
//! Everything goes through the KV, Lease and Watch services (never the
//! store directly), so validation, raft and auth apply unchanged.

use std::sync::Arc;

use futures::StreamExt;
use retcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use retcd_api::etcdserverpb::kv_server::Kv;
use retcd_api::etcdserverpb::lease_server::Lease;
use retcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use retcd_api::etcdserverpb::request_op::Request as Op;
use retcd_api::etcdserverpb::watch_request::RequestUnion;
use retcd_api::etcdserverpb::watch_server::Watch;
use retcd_api::etcdserverpb::{
    response_op, Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, TxnRequest, TxnResponse, WatchCreateRequest, WatchRequest,
};
use retcd_api::mvccpb::event::EventType;
use retcd_api::mvccpb::KeyValue;
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::inproc::{request, request_stream};
use super::kv::KvService;
use super::lease::LeaseService;
use super::watch::WatchService;
use crate::server::EtcdServer;

/// The TTL of the lease granted for a caller that brings none (etcd's
/// default session TTL).
pub const SESSION_TTL: i64 = 60;

/// The services, called in process with the caller's metadata.
#[derive(Clone)]
pub struct Client {
    pub server: Arc<EtcdServer>,
    pub metadata: MetadataMap,
}

impl Client {
    pub fn new(server: &Arc<EtcdServer>, metadata: &MetadataMap) -> Client {
        Client { server: server.clone(), metadata: metadata.clone() }
    }

    fn kv(&self) -> KvService {
        KvService { server: self.server.clone() }
    }

    pub async fn txn(&self, r: TxnRequest) -> Result<TxnResponse, Status> {
        Ok(self.kv().txn(request(r, &self.metadata)).await.map_err(as_client_error)?.into_inner())
    }

    pub async fn range(&self, r: RangeRequest) -> Result<RangeResponse, Status> {
        Ok(self.kv().range(request(r, &self.metadata)).await.map_err(as_client_error)?.into_inner())
    }

    pub async fn delete(&self, key: Vec<u8>) -> Result<Option<ResponseHeader>, Status> {
        let r = DeleteRangeRequest { key, ..Default::default() };
        Ok(self.kv().delete_range(request(r, &self.metadata)).await.map_err(as_client_error)?.into_inner().header)
    }

    /// Deletes `key` if its create revision is `revision`; the txn's header.
    pub async fn delete_if_created_at(&self, key: Vec<u8>, revision: i64) -> Result<TxnResponse, Status> {
        let del = DeleteRangeRequest { key: key.clone(), ..Default::default() };
        let txn = TxnRequest {
            compare: vec![create_revision_is(&key, revision)],
            success: vec![RequestOp { request: Some(Op::RequestDeleteRange(del)) }],
            failure: Vec::new(),
        };
        self.txn(txn).await
    }

    /// The caller's lease, or (for 0) a new one of [`SESSION_TTL`] that
    /// nobody keeps alive, as etcd's lock and election servers do.
    pub async fn session_lease(&self, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let svc = LeaseService { server: self.server.clone() };
        let r = LeaseGrantRequest { ttl: SESSION_TTL, id: 0 };
        Ok(svc.lease_grant(request(r, &self.metadata)).await.map_err(as_client_error)?.into_inner().id)
    }

    /// The key under `prefix` created first (ascending) or last.
    pub async fn top_created(
        &self,
        prefix: &[u8],
        order: SortOrder,
        max_create_revision: i64,
    ) -> Result<RangeResponse, Status> {
        self.range(top_created_request(prefix, order, max_create_revision)).await
    }

    /// A watch on `key` (with `range_end`) from `start_revision`: the
    /// responses, until the stream ends or is dropped.
    pub async fn watch(&self, key: Vec<u8>, range_end: Vec<u8>, start_revision: i64) -> Result<WatchReader, Status> {
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key,
                range_end,
                start_revision,
                ..Default::default()
            })),
        };
        // The request side stays open while the reader lives (it holds the
        // sender), and closes when it is dropped, so the service's tasks for
        // this stream end with it.
        let (requests, rx) = tokio::sync::mpsc::channel(1);
        let _ = requests.try_send(create);
        let reqs = tokio_stream::wrappers::ReceiverStream::new(rx);
        let svc = WatchService { server: self.server.clone() };
        let resp = svc.watch(request(request_stream(reqs), &self.metadata)).await.map_err(as_client_error)?;
        Ok(WatchReader { stream: resp.into_inner(), _requests: requests })
    }

    /// Waits until `key` is deleted, watching from `revision`.
    pub async fn wait_delete(&self, key: &[u8], revision: i64) -> Result<(), Status> {
        let mut watch = self.watch(key.to_vec(), Vec::new(), revision).await?;
        while let Some(resp) = watch.message().await? {
            if resp.canceled {
                let reason = if resp.compact_revision != 0 {
                    retcd_api::EtcdError::Compacted.into()
                } else {
                    Status::unknown(resp.cancel_reason)
                };
                return Err(reason);
            }
            if resp.events.iter().any(|e| e.r#type == EventType::Delete as i32) {
                return Ok(());
            }
        }
        Err(Status::unknown("lost watcher waiting for delete"))
    }

    /// Waits until every key under `prefix` created at or before
    /// `max_create_revision` is gone, newest first; the header of the last
    /// (empty) read.
    pub async fn wait_deletes(&self, prefix: &[u8], max_create_revision: i64) -> Result<ResponseHeader, Status> {
        loop {
            let resp = self.top_created(prefix, SortOrder::Descend, max_create_revision).await?;
            let header = resp.header.unwrap_or_default();
            let Some(last) = resp.kvs.first() else { return Ok(header) };
            self.wait_delete(&last.key, header.revision).await?;
        }
    }
}

/// `if create_revision(key) == 0 then put(key, value, lease) else get(key)`:
/// creates the caller's key unless it exists already.
pub fn create_txn(key: &[u8], value: Vec<u8>, lease: i64) -> TxnRequest {
    let put = PutRequest { key: key.to_vec(), value, lease, ..Default::default() };
    TxnRequest {
        compare: vec![create_revision_is(key, 0)],
        success: vec![RequestOp { request: Some(Op::RequestPut(put)) }],
        failure: vec![range_op(RangeRequest { key: key.to_vec(), ..Default::default() })],
    }
}

/// The comparison `create_revision(key) == revision`.
pub fn create_revision_is(key: &[u8], revision: i64) -> Compare {
    Compare {
        key: key.to_vec(),
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        target_union: Some(TargetUnion::CreateRevision(revision)),
        ..Default::default()
    }
}

pub fn range_op(r: RangeRequest) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(r)) }
}

/// The key-values of the `i`-th response of a txn, if it is a range.
pub fn range_kvs(resp: &TxnResponse, i: usize) -> &[KeyValue] {
    match resp.responses.get(i).and_then(|r| r.response.as_ref()) {
        Some(response_op::Response::ResponseRange(r)) => &r.kvs,
        _ => &[],
    }
}

/// Deletes a key when dropped, unless disarmed: the clean-up of a lock
/// waiter or election candidate whose caller went away mid-wait (the
/// request future is dropped) or whose wait failed. With `revision`, the key
/// is deleted only if it still has that create revision.
pub struct DeleteOnDrop {
    client: Option<Client>,
    key: Vec<u8>,
    revision: Option<i64>,
}

impl DeleteOnDrop {
    pub fn new(client: &Client, key: Vec<u8>, revision: Option<i64>) -> DeleteOnDrop {
        DeleteOnDrop { client: Some(client.clone()), key, revision }
    }

    pub fn disarm(mut self) {
        self.client = None;
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let Some(c) = self.client.take() else { return };
        let key = std::mem::take(&mut self.key);
        let revision = self.revision;
        // Best effort, like etcd's clean-up: the key's lease bounds its life
        // if this fails.
        tokio::spawn(async move {
            let _ = match revision {
                None => c.delete(key).await.map(|_| ()),
                Some(rev) => c.delete_if_created_at(key, rev).await.map(|_| ()),
            };
        });
    }
}

/// An error of an inner call, as etcd's lock and election servers pass it
/// on: their client library turns etcd's own errors into plain errors, which
/// reach the caller with gRPC code Unknown and the same text.
pub fn as_client_error(s: Status) -> Status {
    if s.message().starts_with("etcdserver: ") {
        Status::unknown(s.message().to_string())
    } else {
        s
    }
}

/// The range for the first (ascending) or last created key under `prefix`.
pub fn top_created_request(prefix: &[u8], order: SortOrder, max_create_revision: i64) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision,
        ..Default::default()
    }
}

/// The end of the range of keys starting with `prefix` (etcd's
/// `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The key that stands for `lease` under `prefix` (`%x` of the lease id).
pub fn lease_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(format!("{lease:x}").as_bytes());
    k
}

type BoxedWatch =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<retcd_api::etcdserverpb::WatchResponse, Status>> + Send>>;

/// Reads a watch response stream one message at a time.
pub struct WatchReader {
    stream: BoxedWatch,
    _requests: tokio::sync::mpsc::Sender<WatchRequest>,
}

impl WatchReader {
    pub async fn message(&mut self) -> Result<Option<retcd_api::etcdserverpb::WatchResponse>, Status> {
        self.stream.next().await.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn lease_key_is_lower_hex() {
        assert_eq!(lease_key(b"l/", 0x694d_7d1a_1f2b_6a0b), b"l/694d7d1a1f2b6a0b".to_vec());
    }
}
