//! Membership as [`EtcdServer`] serves it: the member list, and add,
//! remove, update and promote, each checked as etcd checks it before it is
//! proposed. Under `--strict-reconfig-check` (the default) a change is
//! refused when the started members would not make a quorum after it, or
//! when this member's links to the others have not been up long enough to
//! tell that the quorum is healthy.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType};
use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
    ResponseHeader,
};
use retcd_api::retcdpb::{InternalRequest, LearnerSyncRequest};

use super::EtcdServer;
use crate::apply::Applied;
use crate::auth::credentials::Creds;
use crate::config::parse_listen_urls;
use crate::raft::RaftInput;

/// How long a link to a peer must have been up for it to count as healthy
/// (etcd's `HealthInterval`).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

impl EtcdServer {
    /// etcd's Cluster service headers carry no revision.
    fn cluster_header(&self) -> Option<ResponseHeader> {
        Some(self.header(0))
    }

    pub fn member_list(&self, _r: MemberListRequest) -> MemberListResponse {
        MemberListResponse { header: self.cluster_header(), members: self.members() }
    }

    pub async fn member_add(&self, r: MemberAddRequest, creds: &Creds) -> Result<MemberAddResponse, EtcdError> {
        check_peer_urls(&r.peer_ur_ls)?;
        self.check_admin(creds).await?;
        // The quorum checks look at this member's own view, as etcd's do,
        // so a cluster that lost its quorum says why.
        if self.settings.strict_reconfig_check {
            let members = self.members();
            if !r.is_learner && !ready_to_add_voter(&members) {
                return Err(EtcdError::MemberNotEnoughStarted);
            }
            if !self.connected_to_all_since(Instant::now().checked_sub(HEALTH_INTERVAL), &members) {
                return Err(EtcdError::Unhealthy);
            }
        }
        // Apply what is committed first: a follower must judge a clash
        // against the members the leader knows.
        self.linearizable_read().await?;
        let members = self.members();
        if members.iter().any(|m| m.peer_ur_ls.iter().any(|u| r.peer_ur_ls.contains(u))) {
            return Err(EtcdError::PeerURLExist);
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
            return Err(EtcdError::MemberExist);
        }
        let cc = ConfChange {
            change_type: if r.is_learner { ConfChangeType::AddLearnerNode } else { ConfChangeType::AddNode } as i32,
            node_id: member.id,
            context: member.encode_to_vec(),
            ..Default::default()
        };
        let members = self.propose_conf_change(cc).await?;
        Ok(MemberAddResponse { header: self.cluster_header(), member: Some(member), members })
    }

    pub async fn member_remove(
        &self,
        r: MemberRemoveRequest,
        creds: &Creds,
    ) -> Result<MemberRemoveResponse, EtcdError> {
        self.check_admin(creds).await?;
        if self.settings.strict_reconfig_check && self.membership.get(r.id).is_some_and(|m| !m.is_learner) {
            self.may_remove_voter(r.id)?;
        }
        self.linearizable_read().await?;
        self.membership.get(r.id).ok_or(EtcdError::MemberNotFound)?;
        let cc = ConfChange { change_type: ConfChangeType::RemoveNode as i32, node_id: r.id, ..Default::default() };
        let members = self.propose_conf_change(cc).await?;
        Ok(MemberRemoveResponse { header: self.cluster_header(), members })
    }

    /// A change of peer URLs is an ordinary log entry, not a raft
    /// configuration change.
    pub async fn member_update(
        &self,
        r: MemberUpdateRequest,
        creds: &Creds,
    ) -> Result<MemberUpdateResponse, EtcdError> {
        self.check_admin(creds).await?;
        check_peer_urls(&r.peer_ur_ls)?;
        self.linearizable_read().await?;
        self.membership.get(r.id).ok_or(EtcdError::MemberNotFound)?;
        let others = self.members().into_iter().filter(|m| m.id != r.id);
        if others.flat_map(|m| m.peer_ur_ls).any(|u| r.peer_ur_ls.contains(&u)) {
            return Err(EtcdError::PeerURLExist);
        }
        let members = self.propose(InternalRequest { member_update: Some(r), ..Default::default() }).await?;
        Ok(MemberUpdateResponse { header: self.cluster_header(), members })
    }

    pub async fn member_promote(
        &self,
        r: MemberPromoteRequest,
        creds: &Creds,
    ) -> Result<MemberPromoteResponse, EtcdError> {
        self.check_admin(creds).await?;
        self.linearizable_read().await?;
        let member = self.membership.get(r.id).ok_or(EtcdError::MemberNotFound)?;
        if !member.is_learner {
            return Err(EtcdError::MemberNotLearner);
        }
        if !self.learner_in_sync(r.id).await? {
            return Err(EtcdError::LearnerNotReady);
        }
        if self.settings.strict_reconfig_check && !ready_to_promote(&self.members()) {
            return Err(EtcdError::MemberNotEnoughStarted);
        }
        let cc = ConfChange { change_type: ConfChangeType::AddNode as i32, node_id: r.id, ..Default::default() };
        let members = self.propose_conf_change(cc).await?;
        Ok(MemberPromoteResponse { header: self.cluster_header(), members })
    }

    /// etcd's `mayRemoveMember` for a voting member: enough started voters
    /// stay; a member this one cannot reach is not part of the active
    /// quorum and may go; otherwise the links still up must make a quorum
    /// without it.
    fn may_remove_voter(&self, id: u64) -> Result<(), EtcdError> {
        let members = self.members();
        if !ready_to_remove_voter(&members, id) {
            return Err(EtcdError::MemberNotEnoughStarted);
        }
        if id != self.settings.member_id && self.peer_activity.active_since(id).is_none() {
            return Ok(());
        }
        let voters = voters(&members).count();
        let active = self.connected_since(Instant::now().checked_sub(HEALTH_INTERVAL), &members);
        if active.saturating_sub(1) < 1 + voters.saturating_sub(1) / 2 {
            return Err(EtcdError::Unhealthy);
        }
        Ok(())
    }

    /// How many voting members (this one included) have been linked to
    /// this member since `since` (etcd's `numConnectedSince`). A `since`
    /// before the clock could count (just after boot) counts no peer.
    fn connected_since(&self, since: Option<Instant>, members: &[Member]) -> usize {
        voters(members)
            .filter(|m| {
                m.id == self.settings.member_id
                    || since.zip(self.peer_activity.active_since(m.id)).is_some_and(|(since, up)| up < since)
            })
            .count()
    }

    fn connected_to_all_since(&self, since: Option<Instant>, members: &[Member]) -> bool {
        self.connected_since(since, members) == voters(members).count()
    }

    /// Whether learner `id` is in sync with the leader, asked of the leader
    /// (only it tracks each member's progress).
    pub async fn learner_in_sync(&self, id: u64) -> Result<bool, EtcdError> {
        if self.raft.is_leader() {
            return Ok(self.raft.learner_in_sync(id));
        }
        let mut leader = self.leader_peer()?;
        let resp = leader.learner_in_sync(LearnerSyncRequest { id }).await.map_err(|_| EtcdError::NoLeader)?;
        Ok(resp.into_inner().in_sync)
    }

    /// Proposes a membership change and waits until it is applied; returns
    /// the members after it.
    pub async fn propose_conf_change(&self, mut cc: ConfChange) -> Result<Vec<Member>, EtcdError> {
        let id = self.ids.next();
        cc.id = id;
        match self.wait_applied(id, RaftInput::ProposeConfChange(cc)).await? {
            Applied::Members(members) => Ok(members),
            _ => Err(EtcdError::Stopped),
        }
    }
}

fn check_peer_urls(urls: &[String]) -> Result<(), EtcdError> {
    if urls.is_empty() || parse_listen_urls(&urls.join(","), "peer-urls").is_err() {
        return Err(EtcdError::MemberBadURLs);
    }
    Ok(())
}

fn voters(members: &[Member]) -> impl Iterator<Item = &Member> {
    members.iter().filter(|m| !m.is_learner)
}

/// A majority of `n` voters.
fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// A member has started once it published its name.
fn started(m: &Member) -> bool {
    !m.name.is_empty()
}

/// etcd's `IsReadyToAddVotingMember`: the started voters make a quorum of
/// the voters after the addition, except that a one-member cluster may
/// always grow to two (how a cluster restored from a backup grows again).
fn ready_to_add_voter(members: &[Member]) -> bool {
    let after = voters(members).count() + 1;
    let started = voters(members).filter(|m| started(m)).count();
    if started == 1 && after == 2 {
        return true;
    }
    started >= quorum(after)
}

/// etcd's `IsReadyToRemoveVotingMember`: the started voters other than
/// `id` make a quorum of the voters other than `id`.
fn ready_to_remove_voter(members: &[Member], id: u64) -> bool {
    let rest: Vec<&Member> = voters(members).filter(|m| m.id != id).collect();
    let started = rest.iter().filter(|m| started(m)).count();
    started >= quorum(rest.len())
}

/// etcd's `IsReadyToPromoteMember`: counting the learner as a started
/// voter, the started voters make a quorum of the voters after it.
fn ready_to_promote(members: &[Member]) -> bool {
    let after = voters(members).count() + 1;
    let started = voters(members).filter(|m| started(m)).count() + 1;
    started >= quorum(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, is_learner: bool) -> Member {
        Member { id, name: name.into(), peer_ur_ls: vec![], client_ur_ls: vec![], is_learner }
    }

    #[test]
    fn a_one_member_cluster_may_grow_to_two() {
        assert!(ready_to_add_voter(&[member(1, "a", false)]));
        // Two started of three after: quorum is two.
        assert!(ready_to_add_voter(&[member(1, "a", false), member(2, "b", false)]));
        // The second member never started: one started of three.
        assert!(!ready_to_add_voter(&[member(1, "a", false), member(2, "", false)]));
    }

    #[test]
    fn adding_to_three_needs_three_started() {
        let three = [member(1, "a", false), member(2, "b", false), member(3, "c", false)];
        assert!(ready_to_add_voter(&three));
        let one_unstarted = [member(1, "a", false), member(2, "b", false), member(3, "", false)];
        assert!(!ready_to_add_voter(&one_unstarted));
        // Learners neither count nor help.
        let with_learner = [member(1, "a", false), member(2, "b", false), member(3, "", false), member(4, "l", true)];
        assert!(!ready_to_add_voter(&with_learner));
    }

    #[test]
    fn removal_keeps_a_started_quorum_of_the_rest() {
        let members = [member(1, "a", false), member(2, "b", false), member(3, "", false)];
        // Removing the unstarted one leaves two started of two.
        assert!(ready_to_remove_voter(&members, 3));
        // Removing a started one leaves one started of two.
        assert!(!ready_to_remove_voter(&members, 1));
    }

    #[test]
    fn promotion_counts_the_learner_as_started() {
        assert!(ready_to_promote(&[member(1, "a", false), member(9, "l", true)]));
        let members = [member(1, "a", false), member(2, "", false), member(3, "", false), member(9, "l", true)];
        // Two started (one with the learner) of four after: quorum is three.
        assert!(!ready_to_promote(&members));
    }
}
