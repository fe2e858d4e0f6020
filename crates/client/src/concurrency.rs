//! Sessions, a distributed mutex and leader election built on leases, as etcd's
//! `clientv3/concurrency` package builds them (same keys, so retcd-client
//! and Go clients exclude each other).
//!
//! A [`Session`] is a lease kept alive in the background; a [`Mutex`] key is
//! `<name>/<lease id in hex>`, created with the session's lease. The holder
//! is the key with the lowest create revision under `<name>/`; a waiter
//! watches the deletion of the key just before its own. If the session's
//! lease expires, its keys go away and the lock passes on.

use retcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use retcd_api::etcdserverpb::{response_op, ResponseHeader};

use crate::error::{Error, Result};
use crate::lease::KeepAlive;
use crate::{
    compare, prefix_end, request_op, Client, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, WatchCreateRequest,
};

/// A lease kept alive until the session is closed or dropped.
#[derive(Debug)]
pub struct Session {
    client: Client,
    lease: i64,
    _keep_alive: KeepAlive,
}

impl Session {
    /// Grants a lease of `ttl` seconds and keeps it alive.
    pub async fn new(client: &Client, ttl: i64) -> Result<Session> {
        let lease = client.lease_grant(ttl, 0).await?.id;
        let keep_alive = client.lease_keep_alive(lease);
        Ok(Session { client: client.clone(), lease, _keep_alive: keep_alive })
    }

    /// The session's lease id.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// Revokes the lease (every key attached to it goes away).
    pub async fn close(self) -> Result<()> {
        self.client.lease_revoke(self.lease).await.map(|_| ())
    }
}

/// A held lock: its key and the header of the write that made it ours.
#[derive(Debug, Clone)]
pub struct Mutex {
    /// `<name>/<lease hex>`.
    pub key: Vec<u8>,
    /// Header of the response that granted the lock.
    pub header: ResponseHeader,
}

fn range_of(resp: &crate::etcdserverpb::ResponseOp) -> Option<&crate::etcdserverpb::RangeResponse> {
    match &resp.response {
        Some(response_op::Response::ResponseRange(r)) => Some(r),
        _ => None,
    }
}

impl Mutex {
    /// Waits until `session` holds the lock `name`.
    ///
    /// ```no_run
    /// # async fn demo() -> retcd_client::Result<()> {
    /// use retcd_client::concurrency::{Mutex, Session};
    /// use retcd_client::{Client, Config};
    /// let client = Client::new(Config::new(["127.0.0.1:2379"]))?;
    /// let session = Session::new(&client, 10).await?;
    /// let lock = Mutex::lock(&session, "jobs").await?;
    /// // ... critical section ...
    /// lock.unlock(&client).await?;
    /// session.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock(session: &Session, name: &str) -> Result<Mutex> {
        let client = &session.client;
        let pfx = format!("{name}/").into_bytes();
        let key = [pfx.clone(), format!("{:x}", session.lease).into_bytes()].concat();
        let owner = RangeRequest {
            key: pfx.clone(),
            range_end: prefix_end(&pfx),
            limit: 1,
            sort_order: SortOrder::Ascend as i32,
            sort_target: SortTarget::Create as i32,
            ..Default::default()
        };
        let put = PutRequest { key: key.clone(), lease: session.lease, ..Default::default() };
        let get = RangeRequest { key: key.clone(), ..Default::default() };
        let op = |r: request_op::Request| RequestOp { request: Some(r) };
        let txn = TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Create as i32,
                key: key.clone(),
                target_union: Some(compare::TargetUnion::CreateRevision(0)),
                ..Default::default()
            }],
            success: vec![
                op(request_op::Request::RequestPut(put)),
                op(request_op::Request::RequestRange(owner.clone())),
            ],
            failure: vec![op(request_op::Request::RequestRange(get)), op(request_op::Request::RequestRange(owner))],
        };
        let resp = client.txn(txn).await?;
        let header = resp.header.unwrap_or_default();
        let my_rev = if resp.succeeded {
            header.revision
        } else {
            resp.responses
                .first()
                .and_then(range_of)
                .and_then(|r| r.kvs.first())
                .map(|kv| kv.create_revision)
                .ok_or(Error::StreamClosed)?
        };
        let first = resp.responses.get(1).and_then(range_of).and_then(|r| r.kvs.first()).map(|kv| kv.create_revision);
        if first.is_none() || first == Some(my_rev) {
            return Ok(Mutex { key, header });
        }
        let header = wait_deletes(client, &pfx, my_rev - 1).await?;
        Ok(Mutex { key, header })
    }

    /// Releases the lock (deletes its key).
    pub async fn unlock(&self, client: &Client) -> Result<()> {
        client.delete(DeleteRangeRequest { key: self.key.clone(), ..Default::default() }).await.map(|_| ())
    }
}

/// A won election: our key (value = the proposal) under `<name>/`.
#[derive(Debug, Clone)]
pub struct Leadership {
    /// `<name>/<lease hex>`.
    pub key: Vec<u8>,
    /// Header of the response that made us leader.
    pub header: ResponseHeader,
}

impl Leadership {
    /// Campaigns in election `name` with `proposal`; returns once this
    /// session is the leader (the candidate with the oldest key).
    pub async fn campaign(session: &Session, name: &str, proposal: &[u8]) -> Result<Leadership> {
        let client = &session.client;
        let pfx = format!("{name}/").into_bytes();
        let key = [pfx.clone(), format!("{:x}", session.lease).into_bytes()].concat();
        let put = PutRequest { key: key.clone(), value: proposal.to_vec(), lease: session.lease, ..Default::default() };
        let get = RangeRequest { key: key.clone(), ..Default::default() };
        let txn = TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Create as i32,
                key: key.clone(),
                target_union: Some(compare::TargetUnion::CreateRevision(0)),
                ..Default::default()
            }],
            success: vec![RequestOp { request: Some(request_op::Request::RequestPut(put.clone())) }],
            failure: vec![RequestOp { request: Some(request_op::Request::RequestRange(get)) }],
        };
        let resp = client.txn(txn).await?;
        let mut my_rev = resp.header.unwrap_or_default().revision;
        if !resp.succeeded {
            let kv =
                resp.responses.first().and_then(range_of).and_then(|r| r.kvs.first()).ok_or(Error::StreamClosed)?;
            my_rev = kv.create_revision;
            if kv.value != proposal {
                client.put_request(put).await?;
            }
        }
        let header = wait_deletes(client, &pfx, my_rev - 1).await?;
        Ok(Leadership { key, header })
    }

    /// Steps down (deletes our key).
    pub async fn resign(&self, client: &Client) -> Result<()> {
        client.delete(DeleteRangeRequest { key: self.key.clone(), ..Default::default() }).await.map(|_| ())
    }
}

/// The current leader of election `name` (its key and proposal), if any.
pub async fn leader(client: &Client, name: &str) -> Result<crate::etcdserverpb::RangeResponse> {
    let pfx = format!("{name}/").into_bytes();
    client
        .range(RangeRequest {
            key: pfx.clone(),
            range_end: prefix_end(&pfx),
            limit: 1,
            sort_order: SortOrder::Ascend as i32,
            sort_target: SortTarget::Create as i32,
            ..Default::default()
        })
        .await
}

/// Waits until no key under `pfx` has a create revision <= `max_rev`.
async fn wait_deletes(client: &Client, pfx: &[u8], max_rev: i64) -> Result<ResponseHeader> {
    loop {
        let last = RangeRequest {
            key: pfx.to_vec(),
            range_end: prefix_end(pfx),
            limit: 1,
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Create as i32,
            max_create_revision: max_rev,
            ..Default::default()
        };
        let resp = client.range(last).await?;
        let header = resp.header.unwrap_or_default();
        let Some(kv) = resp.kvs.first() else {
            return Ok(header);
        };
        // Wait for that key's deletion, from the revision we looked at.
        let req = WatchCreateRequest { key: kv.key.clone(), start_revision: header.revision + 1, ..Default::default() };
        let mut watch = client.watch(req).await?;
        'events: while let Some(msg) = watch.next().await {
            let msg = msg?;
            if msg.canceled {
                return Err(Error::WatchCanceled(msg.cancel_reason));
            }
            if msg.events.iter().any(|e| e.r#type == 1) {
                break 'events;
            }
        }
    }
}
