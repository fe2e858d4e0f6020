//! The Lease service. Grants and revokes go through raft; keep-alives and
//! time-to-live queries are answered by this member's lessor (the leader's,
//! in a single-member cluster).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::lease_server::Lease;
use retcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::server::EtcdServer;

pub struct LeaseService {
    pub server: Arc<EtcdServer>,
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let creds = crate::auth::credentials::Creds::from_request(&req);
        Ok(Response::new(self.server.lease_grant(req.into_inner(), &creds).await?))
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        let creds = crate::auth::credentials::Creds::from_request(&req);
        Ok(Response::new(self.server.lease_revoke(req.into_inner(), &creds).await?))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let server = self.server.clone();
        tokio::spawn(async move {
            while let Ok(Some(r)) = inbound.message().await {
                // The header is taken before renewing, so its revision is
                // never newer than the moment the renewal happened.
                let header = Some(server.header(server.kv.rev()));
                let ttl = match renew(&server, r.id).await {
                    Ok(ttl) => ttl,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let resp = LeaseKeepAliveResponse { header, id: r.id, ttl };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let creds = crate::auth::credentials::Creds::from_request(&req);
        let r = req.into_inner();
        let ai = self.server.auth_info(&creds).await?;
        let header = Some(self.server.header(self.server.kv.rev()));
        let mut resp = if self.server.lessor.is_primary() {
            self.server.lessor.time_to_live_response(r.id, r.keys)
        } else {
            // Only the leader knows how much time a lease has left.
            let mut leader = self.server.leader_peer()?;
            leader.lease_time_to_live(r).await?.into_inner()
        };
        // The attached keys are shown only to whom may read them all.
        for key in &resp.keys {
            self.server.auth.check_key(ai.as_ref(), crate::auth::perms::Access::Read, key, &[])?;
        }
        resp.header = header;
        Ok(Response::new(resp))
    }

    async fn lease_leases(&self, _req: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        let leases = self.server.lessor.ids().into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(Response::new(LeaseLeasesResponse { header: Some(self.server.header(self.server.kv.rev())), leases }))
    }
}

/// Renews a lease at the leader: locally when this member leads, otherwise
/// through the leader's peer service, retrying through a leader change until
/// the request timeout (as etcd's LeaseRenew does). An unknown or expired
/// lease answers TTL 0, as etcd.
async fn renew(server: &EtcdServer, id: i64) -> Result<i64, Status> {
    let deadline = tokio::time::Instant::now() + server.settings.request_timeout;
    loop {
        let attempt = if server.lessor.is_primary() {
            match server.lessor.renew(id) {
                Ok(ttl) => Ok(ttl),
                Err(EtcdError::LeaseNotFound) => return Ok(0),
                Err(e) => Err(Status::from(e)),
            }
        } else {
            match server.leader_peer() {
                Ok(mut leader) => {
                    leader.lease_keep_alive(LeaseKeepAliveRequest { id }).await.map(|r| r.into_inner().ttl)
                }
                Err(e) => Err(Status::from(e)),
            }
        };
        match attempt {
            Ok(ttl) => return Ok(ttl),
            Err(status) if tokio::time::Instant::now() >= deadline => return Err(status),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}
