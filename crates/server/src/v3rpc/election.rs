//! The Election service (`v3electionpb.Election`), built as etcd's
//! `concurrency.Election`: a candidate is the key `name/<lease hex>` put with
//! its lease and value; the leader is the key under `name/` with the lowest
//! create revision; a campaign waits for the deletion of every key created
//! before its own. Proclaim and Resign act only while the leader key still
//! has the create revision the caller was elected with.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use retcd_api::etcdserverpb::range_request::SortOrder;
use retcd_api::mvccpb::event::EventType;
use retcd_api::v3electionpb::election_server::Election;
use retcd_api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::concurrency::{create_revision_is, create_txn, lease_key, prefix_end, range_kvs, Client, DeleteOnDrop};
use crate::server::EtcdServer;

/// etcd's texts (plain errors there, so gRPC code Unknown).
const NOT_LEADER: &str = "election: not leader";
const NO_LEADER: &str = "election: no leader";
const MISSING_LEADER: &str = "\"leader\" field must be provided";

pub struct ElectionService {
    pub server: Arc<EtcdServer>,
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

fn election_prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// Puts `value` on the leader key if it still has the elected revision.
async fn proclaim(c: &Client, leader: &LeaderKey, value: Vec<u8>) -> Result<ProclaimResponse, Status> {
    let lease = c.session_lease(leader.lease).await?;
    let put = retcd_api::etcdserverpb::PutRequest { key: leader.key.clone(), value, lease, ..Default::default() };
    let txn = retcd_api::etcdserverpb::TxnRequest {
        compare: vec![create_revision_is(&leader.key, leader.rev)],
        success: vec![retcd_api::etcdserverpb::RequestOp {
            request: Some(retcd_api::etcdserverpb::request_op::Request::RequestPut(put)),
        }],
        failure: Vec::new(),
    };
    let resp = c.txn(txn).await?;
    if !resp.succeeded {
        return Err(Status::unknown(NOT_LEADER));
    }
    Ok(ProclaimResponse { header: resp.header })
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, req: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let (metadata, _, r) = req.into_parts();
        let c = Client::new(&self.server, &metadata);
        let lease = c.session_lease(r.lease).await?;
        let prefix = election_prefix(&r.name);
        let key = lease_key(&prefix, lease);

        let resp = c.txn(create_txn(&key, r.value.clone(), lease)).await?;
        let header = resp.header.unwrap_or_default();
        let mut rev = header.revision;
        let leader = LeaderKey { name: r.name.clone(), key: key.clone(), rev, lease };
        if !resp.succeeded {
            // This lease campaigns already: take over its key, and its value.
            let existing = range_kvs(&resp, 0).first().cloned().unwrap_or_default();
            rev = existing.create_revision;
            if existing.value != r.value {
                let resumed = LeaderKey { rev, ..leader.clone() };
                if let Err(e) = proclaim(&c, &resumed, r.value.clone()).await {
                    let _ = c.delete_if_created_at(key, rev).await;
                    return Err(e);
                }
            }
        }

        // Resign if the caller goes away while waiting (etcd resigns when
        // the campaign's context is cancelled; a failed wait just returns).
        let guard = DeleteOnDrop::new(&c, key.clone(), Some(rev));
        let waited = c.wait_deletes(&prefix, rev - 1).await;
        guard.disarm();
        waited?;
        Ok(Response::new(CampaignResponse { header: Some(header), leader: Some(LeaderKey { rev, ..leader }) }))
    }

    async fn proclaim(&self, req: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let (metadata, _, r) = req.into_parts();
        let leader = r.leader.ok_or_else(|| Status::unknown(MISSING_LEADER))?;
        let c = Client::new(&self.server, &metadata);
        Ok(Response::new(proclaim(&c, &leader, r.value).await?))
    }

    async fn leader(&self, req: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let (metadata, _, r) = req.into_parts();
        let c = Client::new(&self.server, &metadata);
        let resp = c.top_created(&election_prefix(&r.name), SortOrder::Ascend, 0).await?;
        let kv = resp.kvs.into_iter().next().ok_or_else(|| Status::unknown(NO_LEADER))?;
        Ok(Response::new(LeaderResponse { header: resp.header, kv: Some(kv) }))
    }

    type ObserveStream = ObserveStream;

    async fn observe(&self, req: Request<LeaderRequest>) -> Result<Response<ObserveStream>, Status> {
        let (metadata, _, r) = req.into_parts();
        let c = Client::new(&self.server, &metadata);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let gone = tx.clone();
            tokio::select! {
                () = observe(c, election_prefix(&r.name), tx) => {}
                () = gone.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn resign(&self, req: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let (metadata, _, r) = req.into_parts();
        let leader = r.leader.ok_or_else(|| Status::unknown(MISSING_LEADER))?;
        let c = Client::new(&self.server, &metadata);
        let resp = c.delete_if_created_at(leader.key, leader.rev).await?;
        Ok(Response::new(ResignResponse { header: resp.header }))
    }
}

/// Sends the leader each time one is elected and each time it proclaims,
/// until the receiver goes away or a read fails (etcd's `Election.Observe`).
async fn observe(c: Client, prefix: Vec<u8>, tx: mpsc::Sender<Result<LeaderResponse, Status>>) {
    loop {
        let Ok(resp) = c.top_created(&prefix, SortOrder::Ascend, 0).await else { return };
        let (header, kv) = match resp.kvs.into_iter().next() {
            Some(kv) => (resp.header.unwrap_or_default(), kv),
            None => {
                // No leader yet: wait for the first put under the prefix.
                let from = resp.header.map_or(0, |h| h.revision);
                let Ok(mut w) = c.watch(prefix.clone(), prefix_end(&prefix), from).await else { return };
                loop {
                    let Ok(Some(wr)) = w.message().await else { return };
                    if wr.canceled {
                        return;
                    }
                    let put = wr.events.into_iter().find(|e| e.r#type == EventType::Put as i32);
                    if let Some(kv) = put.and_then(|e| e.kv) {
                        let mut h = wr.header.unwrap_or_default();
                        h.revision = kv.mod_revision;
                        break (h, kv);
                    }
                }
            }
        };
        let from = header.revision + 1;
        let key = kv.key.clone();
        if tx.send(Ok(LeaderResponse { header: Some(header), kv: Some(kv) })).await.is_err() {
            return;
        }
        // Follow this leader's proclamations until its key is deleted.
        let Ok(mut w) = c.watch(key, Vec::new(), from).await else { return };
        'leader: loop {
            let Ok(Some(wr)) = w.message().await else { return };
            if wr.canceled {
                return;
            }
            for ev in wr.events {
                if ev.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                if tx.send(Ok(LeaderResponse { header: wr.header, kv: ev.kv })).await.is_err() {
                    return;
                }
            }
        }
    }
}
