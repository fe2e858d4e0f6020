//! The Cluster service: each call goes to [`EtcdServer`]'s membership
//! methods (see `crate::server::cluster` for etcd's checks).

use std::sync::Arc;

use retcd_api::etcdserverpb::cluster_server::Cluster;
use retcd_api::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::auth::credentials::Creds;
use crate::server::EtcdServer;

pub struct ClusterService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let creds = Creds::from_request(&req);
        Ok(Response::new(self.server.member_add(req.into_inner(), &creds).await?))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        let creds = Creds::from_request(&req);
        Ok(Response::new(self.server.member_remove(req.into_inner(), &creds).await?))
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        let creds = Creds::from_request(&req);
        Ok(Response::new(self.server.member_update(req.into_inner(), &creds).await?))
    }

    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(self.server.member_list(req.into_inner())))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let creds = Creds::from_request(&req);
        Ok(Response::new(self.server.member_promote(req.into_inner(), &creds).await?))
    }
}
