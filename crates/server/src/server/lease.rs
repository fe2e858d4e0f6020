//! Lease grants and revocations as [`EtcdServer`] serves them (renewals and
//! time-to-live queries are answered by the leader's lessor, see
//! `crate::v3rpc::lease`).

use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::{LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse};
use retcd_api::retcdpb::InternalRequest;

use super::EtcdServer;
use crate::auth::credentials::Creds;

impl EtcdServer {
    /// Id 0 asks the server to choose one.
    pub async fn lease_grant(&self, mut r: LeaseGrantRequest, creds: &Creds) -> Result<LeaseGrantResponse, EtcdError> {
        if r.id == 0 {
            // Server-chosen ids are positive (etcd masks the sign bit).
            r.id = (self.ids.next() & (i64::MAX as u64)) as i64;
        }
        let mut resp: LeaseGrantResponse =
            self.propose_as(InternalRequest { lease_grant: Some(r), ..Default::default() }, creds).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    pub async fn lease_revoke(&self, r: LeaseRevokeRequest, creds: &Creds) -> Result<LeaseRevokeResponse, EtcdError> {
        let mut resp: LeaseRevokeResponse =
            self.propose_as(InternalRequest { lease_revoke: Some(r), ..Default::default() }, creds).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }
}
