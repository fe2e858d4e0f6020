//! Membership calls: list, add (voter or learner), remove, update, promote.
//!
//! Listing is retried anywhere; changes only when nothing can have happened.

use retcd_api::etcdserverpb::cluster_client::ClusterClient;
use retcd_api::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};

use crate::client::{Client, Retry};
use crate::error::Result;

impl Client {
    /// Cluster.MemberList.
    pub async fn member_list(&self) -> Result<MemberListResponse> {
        self.unary(Retry::Idempotent, MemberListRequest {}, |ch, r| async move {
            ClusterClient::new(ch).member_list(r).await
        })
        .await
    }

    /// Cluster.MemberAdd.
    pub async fn member_add(&self, peer_urls: Vec<String>, is_learner: bool) -> Result<MemberAddResponse> {
        let req = MemberAddRequest { peer_ur_ls: peer_urls, is_learner };
        self.unary(Retry::NotIdempotent, req, |ch, r| async move { ClusterClient::new(ch).member_add(r).await }).await
    }

    /// Cluster.MemberRemove.
    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse> {
        self.unary(Retry::NotIdempotent, MemberRemoveRequest { id }, |ch, r| async move {
            ClusterClient::new(ch).member_remove(r).await
        })
        .await
    }

    /// Cluster.MemberUpdate.
    pub async fn member_update(&self, id: u64, peer_urls: Vec<String>) -> Result<MemberUpdateResponse> {
        let req = MemberUpdateRequest { id, peer_ur_ls: peer_urls };
        self.unary(Retry::NotIdempotent, req, |ch, r| async move { ClusterClient::new(ch).member_update(r).await })
            .await
    }

    /// Cluster.MemberPromote.
    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse> {
        self.unary(Retry::NotIdempotent, MemberPromoteRequest { id }, |ch, r| async move {
            ClusterClient::new(ch).member_promote(r).await
        })
        .await
    }
}
