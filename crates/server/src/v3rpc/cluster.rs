//! The Cluster service: the member list and membership changes (add,
//! remove, promote go through raft configuration changes; update of peer
//! URLs is an ordinary log entry), with etcd's checks and errors.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType};
use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::cluster_server::Cluster;
use retcd_api::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use retcd_api::retcdpb::InternalRequest;
use tonic::{Request, Response, Status};

use crate::config::parse_listen_urls;
use crate::server::EtcdServer;

pub struct ClusterService {
    pub server: Arc<EtcdServer>,
}

impl ClusterService {
    /// etcd's ClusterServer header carries no revision.
    fn header(&self) -> Option<retcd_api::etcdserverpb::ResponseHeader> {
        Some(self.server.header(0))
    }

    /// Waits until this member has applied every membership change
    /// committed so far (a read index): a follower must not refuse a change
    /// for a member the leader just added, nor allow one it just removed.
    async fn synced(&self) -> Result<(), EtcdError> {
        self.server.linearizable_read().await
    }

    fn check_urls(urls: &[String]) -> Result<(), EtcdError> {
        if urls.is_empty() || parse_listen_urls(&urls.join(","), "peer-urls").is_err() {
            return Err(EtcdError::MemberBadURLs);
        }
        Ok(())
    }

    /// Refuses a change that would leave fewer started voting members than
    /// a quorum of the voters after it (etcd's strict reconfiguration check).
    fn check_quorum_after(&self, removed: Option<u64>, added_voter: bool) -> Result<(), EtcdError> {
        let members = self.server.members();
        let voters: Vec<&Member> = members.iter().filter(|m| !m.is_learner && Some(m.id) != removed).collect();
        let total = voters.len() + usize::from(added_voter);
        let started = voters.iter().filter(|m| !m.name.is_empty()).count();
        if total == 0 || started < total / 2 + 1 {
            return Err(EtcdError::MemberNotEnoughStarted);
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        self.server.check_admin(&crate::auth::credentials::Creds::from_request(&req)).await?;
        self.synced().await?;
        let r = req.into_inner();
        Self::check_urls(&r.peer_ur_ls)?;
        let members = self.server.members();
        if members.iter().any(|m| m.peer_ur_ls.iter().any(|u| r.peer_ur_ls.contains(u))) {
            return Err(EtcdError::PeerURLExist.into());
        }
        if !r.is_learner {
            self.check_quorum_after(None, true)?;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let member = Member {
            id: crate::ids::added_member_id(&r.peer_ur_ls, now),
            name: String::new(),
            peer_ur_ls: r.peer_ur_ls,
            client_ur_ls: Vec::new(),
            is_learner: r.is_learner,
        };
        if members.iter().any(|m| m.id == member.id) {
            return Err(EtcdError::MemberExist.into());
        }
        let cc = ConfChange {
            change_type: if r.is_learner { ConfChangeType::AddLearnerNode } else { ConfChangeType::AddNode } as i32,
            node_id: member.id,
            context: member.encode_to_vec(),
            ..Default::default()
        };
        let members = self.server.propose_conf_change(cc).await?;
        Ok(Response::new(MemberAddResponse { header: self.header(), member: Some(member), members }))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        self.server.check_admin(&crate::auth::credentials::Creds::from_request(&req)).await?;
        self.synced().await?;
        let id = req.into_inner().id;
        let member = self.server.membership.get(id).ok_or(EtcdError::MemberNotFound)?;
        if !member.is_learner {
            self.check_quorum_after(Some(id), false)?;
        }
        let cc = ConfChange { change_type: ConfChangeType::RemoveNode as i32, node_id: id, ..Default::default() };
        let members = self.server.propose_conf_change(cc).await?;
        Ok(Response::new(MemberRemoveResponse { header: self.header(), members }))
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        self.server.check_admin(&crate::auth::credentials::Creds::from_request(&req)).await?;
        self.synced().await?;
        let r = req.into_inner();
        Self::check_urls(&r.peer_ur_ls)?;
        self.server.membership.get(r.id).ok_or(EtcdError::MemberNotFound)?;
        let others = self.server.members().into_iter().filter(|m| m.id != r.id);
        if others.flat_map(|m| m.peer_ur_ls).any(|u| r.peer_ur_ls.contains(&u)) {
            return Err(EtcdError::PeerURLExist.into());
        }
        let members = self.server.propose(InternalRequest { member_update: Some(r), ..Default::default() }).await?;
        Ok(Response::new(MemberUpdateResponse { header: self.header(), members }))
    }

    async fn member_list(&self, _req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(MemberListResponse { header: self.header(), members: self.server.members() }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.server.check_admin(&crate::auth::credentials::Creds::from_request(&req)).await?;
        self.synced().await?;
        let id = req.into_inner().id;
        let member = self.server.membership.get(id).ok_or(EtcdError::MemberNotFound)?;
        if !member.is_learner {
            return Err(EtcdError::MemberNotLearner.into());
        }
        if !self.server.learner_in_sync(id).await? {
            return Err(EtcdError::LearnerNotReady.into());
        }
        let cc = ConfChange { change_type: ConfChangeType::AddNode as i32, node_id: id, ..Default::default() };
        let members = self.server.propose_conf_change(cc).await?;
        Ok(Response::new(MemberPromoteResponse { header: self.header(), members }))
    }
}
