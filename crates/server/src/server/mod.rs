//! `EtcdServer`: what the gRPC services call. It turns writes into raft
//! proposals and waits for their results, serves linearizable reads after a
//! read-index round, and fills response headers.

mod auth;
mod cluster;
mod kv;
mod lease;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use prost::Message as _;
use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::alarm_request::AlarmAction;
use retcd_api::etcdserverpb::request_op::Request;
use retcd_api::etcdserverpb::{AlarmRequest, AlarmType, Member, ResponseHeader, TxnRequest};
use retcd_api::retcdpb::peer_client::PeerClient;
use retcd_api::retcdpb::{InternalRequest, RequestHeader};
use retcd_storage::backend::Backend;
use retcd_storage::mvcc::KvStore;
use tokio::sync::oneshot;

use crate::alarm::AlarmStore;
use crate::apply::{Applied, FromApplied, Outcome};
use crate::auth::credentials::Creds;
use crate::auth::token::SimpleTokens;
use crate::auth::{AuthInfo, AuthStore};
use crate::ids::IdGenerator;
use crate::lease::Lessor;
use crate::membership::Membership;
use crate::raft::{RaftInput, RaftStatus};
use crate::wait::Wait;
use crate::watch::WatchHub;

/// What etcd's quota guard charges a write, in bytes: 0 for writes that
/// do not need space.
fn quota_cost(req: &InternalRequest) -> u64 {
    const KV_OVERHEAD: u64 = 256;
    const LEASE_OVERHEAD: u64 = 64;
    fn txn_cost(t: &TxnRequest) -> u64 {
        let ops = t.success.iter().chain(t.failure.iter());
        ops.map(|op| match &op.request {
            Some(Request::RequestPut(p)) => KV_OVERHEAD + (p.key.len() + p.value.len()) as u64,
            Some(Request::RequestTxn(t)) => txn_cost(t),
            _ => 0,
        })
        .sum()
    }
    if let Some(p) = &req.put {
        return KV_OVERHEAD + (p.key.len() + p.value.len()) as u64;
    }
    if req.lease_grant.is_some() {
        return LEASE_OVERHEAD;
    }
    req.txn.as_ref().map(txn_cost).unwrap_or(0)
}

/// etcd refuses new proposals when the apply loop is this far behind commit.
const MAX_GAP_BETWEEN_APPLY_AND_COMMIT: u64 = 5000;

pub struct ServerSettings {
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
    pub client_urls: Vec<String>,
    pub max_txn_ops: usize,
    pub max_request_bytes: usize,
    pub request_timeout: Duration,
    /// `--quota-backend-bytes` in effect; None when disabled.
    pub quota_bytes: Option<u64>,
    /// `--strict-reconfig-check`: refuse membership changes that could
    /// cost the quorum.
    pub strict_reconfig_check: bool,
}

pub struct EtcdServer {
    pub settings: ServerSettings,
    pub kv: Arc<KvStore>,
    pub backend: Arc<Backend>,
    pub lessor: Arc<Lessor>,
    pub watch: Arc<WatchHub>,
    pub raft: Arc<RaftStatus>,
    pub wait: Arc<Wait<Outcome>>,
    pub applied: Arc<AtomicU64>,
    pub applied_rx: tokio::sync::watch::Receiver<u64>,
    pub raft_tx: Sender<RaftInput>,
    pub ids: IdGenerator,
    pub membership: Arc<Membership>,
    pub alarms: Arc<AlarmStore>,
    pub auth: Arc<AuthStore>,
    /// The v2 keys store (served only with `--enable-v2`, always applied).
    pub v2: Arc<crate::v2store::V2Store>,
    /// The leader's peer URL and a channel to it (see [`EtcdServer::leader_peer`]).
    pub leader_channel: parking_lot::Mutex<Option<(String, tonic::transport::Channel)>>,
    /// How to reach other members (peer TLS included).
    pub peer_dialer: crate::peer_dial::PeerDialer,
    /// How long each link to another member has been up.
    pub peer_activity: crate::raft::transport::PeerActivity,
}

impl EtcdServer {
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.settings.cluster_id,
            member_id: self.settings.member_id,
            revision,
            raft_term: self.raft.term(),
        }
    }

    /// Fills the parts of a header the apply path does not know; keeps its revision.
    pub fn fill_header(&self, h: &mut Option<ResponseHeader>) {
        let rev = h.as_ref().map(|h| h.revision).unwrap_or_else(|| self.kv.rev());
        *h = Some(self.header(rev));
    }

    pub fn members(&self) -> Vec<Member> {
        self.membership.list()
    }

    /// A client of the leader's peer service, for requests only the leader
    /// can answer (lease renewals). None without a known leader.
    /// The channel is kept while the leader's URL stays the same, so
    /// forwarded keep-alives share one connection.
    pub fn leader_peer(&self) -> Result<PeerClient<tonic::transport::Channel>, EtcdError> {
        let leader = self.raft.leader();
        let member = self.membership.get(leader).ok_or(EtcdError::NoLeader)?;
        let url = member.peer_ur_ls.first().ok_or(EtcdError::NoLeader)?;
        let mut cached = self.leader_channel.lock();
        if let Some((cached_url, channel)) = cached.as_ref() {
            if cached_url == url {
                return Ok(PeerClient::new(channel.clone()));
            }
        }
        let channel = self.peer_dialer.lazy(url, Duration::from_secs(1)).map_err(|_| EtcdError::NoLeader)?;
        *cached = Some((url.clone(), channel.clone()));
        Ok(PeerClient::new(channel))
    }

    /// The user a client request acts as: None without a token; an invalid
    /// or expired token is etcd's "invalid auth token". A token naming a
    /// raft index this member has not applied yet waits for it (the
    /// Authenticate may have been served by another member). Without a
    /// token, a client certificate verified under `--client-cert-auth` names
    /// the user by its common name (etcd's AuthInfoFromTLS): a token, when
    /// sent, wins.
    pub async fn auth_info(&self, creds: &Creds) -> Result<Option<AuthInfo>, EtcdError> {
        let Some(token) = creds.token.as_deref() else {
            // Only connections verified against --trusted-ca-file carry a
            // name (the listener asks for certificates only with
            // --client-cert-auth).
            return Ok(creds
                .cert_cn
                .as_ref()
                .filter(|cn| !cn.is_empty())
                .map(|cn| AuthInfo { username: cn.clone(), revision: self.auth.revision() }));
        };
        if !self.auth.tokens.is_simple() {
            return self.auth.info_from_token(token).map(Some).ok_or(EtcdError::InvalidAuthToken);
        }
        let index = SimpleTokens::index_of(token).ok_or(EtcdError::InvalidAuthToken)?;
        let mut applied = self.applied_rx.clone();
        if *applied.borrow() < index {
            let reached = tokio::time::timeout(self.settings.request_timeout, applied.wait_for(|a| *a >= index)).await;
            if !matches!(reached, Ok(Ok(_))) {
                return Err(EtcdError::InvalidAuthToken);
            }
        }
        self.auth.info_from_token(token).map(Some).ok_or(EtcdError::InvalidAuthToken)
    }

    /// Refuses a request only root may make (when auth is enabled).
    pub async fn check_admin(&self, creds: &Creds) -> Result<(), EtcdError> {
        let ai = self.auth_info(creds).await?;
        self.auth.check_admin(ai.as_ref())
    }

    /// Proposes a client's request with its credentials in the header; the
    /// apply thread checks its permissions against them.
    pub async fn propose_as<T: FromApplied>(&self, mut req: InternalRequest, creds: &Creds) -> Result<T, EtcdError> {
        if let Some(ai) = self.auth_info(creds).await? {
            req.header = Some(RequestHeader { id: 0, username: ai.username, auth_revision: ai.revision });
        }
        self.propose(req).await
    }

    /// Proposes `req` through raft and waits for the result of applying it,
    /// as the type of the request's kind. Credentials already in its header
    /// are kept.
    pub async fn propose<T: FromApplied>(&self, req: InternalRequest) -> Result<T, EtcdError> {
        let applied = self.propose_applied(req).await?;
        T::from_applied(applied).ok_or_else(|| {
            tracing::error!("bug: the applied result is not a {}", std::any::type_name::<T>());
            EtcdError::NotCapable
        })
    }

    async fn propose_applied(&self, mut req: InternalRequest) -> Result<Applied, EtcdError> {
        let applied = self.applied.load(Ordering::Acquire);
        let committed = self.raft.commit.load(Ordering::Acquire);
        if committed > applied + MAX_GAP_BETWEEN_APPLY_AND_COMMIT {
            return Err(EtcdError::TooManyRequests);
        }
        self.check_quota(&req).await?;
        let id = self.ids.next();
        let creds = req.header.take().unwrap_or_default();
        req.header = Some(RequestHeader { id, ..creds });
        let data = req.encode_to_vec();
        if data.len() > self.settings.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let metrics = crate::metrics::get();
        metrics.proposals_pending.inc();
        let result = self.wait_applied(id, RaftInput::Propose { id, data }).await;
        metrics.proposals_pending.dec();
        if result.is_err() {
            metrics.proposals_failed.inc();
        }
        result
    }

    /// Hands `proposal` (identified by `id`) to raft and waits, at most the
    /// request timeout, for the apply thread's outcome.
    async fn wait_applied(&self, id: u64, proposal: RaftInput) -> Result<Applied, EtcdError> {
        let rx = self.wait.register(id);
        if self.raft_tx.send(proposal).is_err() {
            self.wait.cancel(id);
            return Err(EtcdError::Stopped);
        }
        match tokio::time::timeout(self.settings.request_timeout, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => {
                self.wait.cancel(id);
                Err(EtcdError::Timeout)
            }
        }
    }

    /// etcd's quota guard: a write that needs space while the backend would
    /// exceed `--quota-backend-bytes` raises the NOSPACE alarm cluster-wide
    /// and is refused. (Once raised, the apply path refuses such writes on
    /// every member until the alarm is disarmed.)
    async fn check_quota(&self, req: &InternalRequest) -> Result<(), EtcdError> {
        let Some(quota) = self.settings.quota_bytes else { return Ok(()) };
        let cost = quota_cost(req);
        if cost == 0 || self.backend.size() + cost <= quota {
            return Ok(());
        }
        let alarm = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.settings.member_id,
            alarm: AlarmType::Nospace as i32,
        };
        if !self.alarms.is_active(AlarmType::Nospace) {
            tracing::warn!(
                "backend size {} plus request {cost} exceeds the quota of {quota} bytes",
                self.backend.size()
            );
            // Box::pin: propose is recursive through here.
            Box::pin(self.propose::<()>(InternalRequest { alarm: Some(alarm), ..Default::default() })).await?;
        }
        Err(EtcdError::NoSpace)
    }

    /// Waits until this member has applied everything committed when the
    /// call started, as confirmed by the leader (raft's ReadIndex).
    pub async fn linearizable_read(&self) -> Result<(), EtcdError> {
        let (tx, rx) = oneshot::channel();
        self.raft_tx.send(RaftInput::ReadIndex(tx)).map_err(|_| EtcdError::Stopped)?;
        let index = match tokio::time::timeout(self.settings.request_timeout, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => return Err(EtcdError::Stopped),
            Err(_) => return Err(EtcdError::Timeout),
        };
        let mut applied = self.applied_rx.clone();
        let reached = tokio::time::timeout(self.settings.request_timeout, async {
            applied.wait_for(|a| *a >= index).await.map(|_| ())
        })
        .await;
        match reached {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => Err(EtcdError::Timeout),
        }
    }
}
