//! Who a client request comes from (its token) and whether it may do what
//! it asks: the key permission checks of Range, Put, DeleteRange, Txn and
//! LeaseRevoke, run on the read path and, for writes, on the apply thread
//! against the credentials stamped into the proposal (so a permission
//! revoked between proposing and applying is honoured).

use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::request_op::Request as Op;
use retcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};
use retcd_api::retcdpb::InternalRequest;
use tonic::metadata::MetadataMap;

use super::perms::Access;
use super::token::SimpleTokens;
use super::{AuthInfo, AuthStore};
use crate::lease::Lessor;
use crate::server::EtcdServer;

/// The token a request carries (etcd's gRPC metadata key "token", or
/// "authorization", which its gateway forwards), and the common name of
/// the client certificate its connection was verified with (if any), taken
/// before the request is consumed: no copy of the rest of its metadata.
#[derive(Debug, Clone, Default)]
pub struct Creds {
    token: Option<String>,
    cert_cn: Option<String>,
}

impl Creds {
    /// The token in `meta`; no certificate.
    pub fn of(meta: &MetadataMap) -> Creds {
        let v = meta.get("token").or_else(|| meta.get("authorization"));
        // A value that is not text cannot be a token we issued.
        Creds { token: v.map(|v| v.to_str().unwrap_or("").to_string()), cert_cn: None }
    }

    /// The token of a gRPC request and the verified client certificate of
    /// its connection. The certificate's name comes from a request
    /// extension only the TLS listener sets (a client cannot forge it; the
    /// JSON gateway, like etcd's, passes none on).
    pub fn from_request<T>(req: &tonic::Request<T>) -> Creds {
        let mut creds = Creds::of(req.metadata());
        creds.cert_cn = req.extensions().get::<crate::listener::VerifiedCn>().map(|cn| cn.0.clone());
        creds
    }
}

/// The credentials of a request: None without a token; an invalid or
/// expired token is etcd's "invalid auth token". A token naming a raft
/// index this member has not applied yet waits for it (the Authenticate
/// may have been served by another member). Without a token, a client
/// certificate verified under `--client-cert-auth` names the user by its
/// common name (etcd's AuthInfoFromTLS): a token, when sent, wins.
pub async fn auth_info(server: &EtcdServer, creds: &Creds) -> Result<Option<AuthInfo>, EtcdError> {
    let Some(token) = creds.token.as_deref() else {
        // Only connections verified against --trusted-ca-file carry a name
        // (the listener asks for certificates only with --client-cert-auth).
        return Ok(creds
            .cert_cn
            .as_ref()
            .filter(|cn| !cn.is_empty())
            .map(|cn| AuthInfo { username: cn.clone(), revision: server.auth.revision() }));
    };
    if !server.auth.tokens.is_simple() {
        return server.auth.info_from_token(token).map(Some).ok_or(EtcdError::InvalidAuthToken);
    }
    let index = SimpleTokens::index_of(token).ok_or(EtcdError::InvalidAuthToken)?;
    let mut applied = server.applied_rx.clone();
    if *applied.borrow() < index {
        let reached = tokio::time::timeout(server.settings.request_timeout, applied.wait_for(|a| *a >= index)).await;
        if !matches!(reached, Ok(Ok(_))) {
            return Err(EtcdError::InvalidAuthToken);
        }
    }
    server.auth.info_from_token(token).map(Some).ok_or(EtcdError::InvalidAuthToken)
}

/// The credentials stamped into a proposal's header.
pub fn proposer(req: &InternalRequest) -> Option<AuthInfo> {
    let h = req.header.as_ref()?;
    Some(AuthInfo { username: h.username.clone(), revision: h.auth_revision })
}

pub fn check_range(store: &AuthStore, ai: Option<&AuthInfo>, r: &RangeRequest) -> Result<(), EtcdError> {
    store.check_key(ai, Access::Read, &r.key, &r.range_end)
}

/// A put needs write on the key, read on it for prev_kv, and write on the
/// keys already attached to the lease it attaches to (revoking the lease
/// would delete them).
pub fn check_put(store: &AuthStore, lessor: &Lessor, ai: Option<&AuthInfo>, p: &PutRequest) -> Result<(), EtcdError> {
    store.check_key(ai, Access::Write, &p.key, &[])?;
    if p.lease != 0 {
        check_lease_keys(store, lessor, ai, p.lease)?;
    }
    if p.prev_kv {
        store.check_key(ai, Access::Read, &p.key, &[])?;
    }
    Ok(())
}

pub fn check_delete(store: &AuthStore, ai: Option<&AuthInfo>, d: &DeleteRangeRequest) -> Result<(), EtcdError> {
    store.check_key(ai, Access::Write, &d.key, &d.range_end)?;
    if d.prev_kv {
        store.check_key(ai, Access::Read, &d.key, &d.range_end)?;
    }
    Ok(())
}

/// Every compare and every op of both branches, nested txns included.
pub fn check_txn(store: &AuthStore, lessor: &Lessor, ai: Option<&AuthInfo>, t: &TxnRequest) -> Result<(), EtcdError> {
    for c in &t.compare {
        store.check_key(ai, Access::Read, &c.key, &c.range_end)?;
    }
    for op in t.success.iter().chain(t.failure.iter()) {
        match &op.request {
            Some(Op::RequestRange(r)) => check_range(store, ai, r)?,
            Some(Op::RequestPut(p)) => check_put(store, lessor, ai, p)?,
            Some(Op::RequestDeleteRange(d)) => check_delete(store, ai, d)?,
            Some(Op::RequestTxn(inner)) => check_txn(store, lessor, ai, inner)?,
            None => {}
        }
    }
    Ok(())
}

/// Write on every key attached to the lease (revoking deletes them).
pub fn check_lease_keys(store: &AuthStore, lessor: &Lessor, ai: Option<&AuthInfo>, id: i64) -> Result<(), EtcdError> {
    if !store.is_enabled() {
        return Ok(());
    }
    let keys = lessor.time_to_live(id).map(|t| t.keys).unwrap_or_default();
    for key in &keys {
        store.check_key(ai, Access::Write, key, &[])?;
    }
    Ok(())
}

/// The apply-time check of a proposed KV or lease write.
pub fn check_proposal(store: &AuthStore, lessor: &Lessor, req: &InternalRequest) -> Result<(), EtcdError> {
    if !store.is_enabled() {
        return Ok(());
    }
    let ai = proposer(req);
    let ai = ai.as_ref();
    if let Some(p) = &req.put {
        check_put(store, lessor, ai, p)?;
    }
    if let Some(d) = &req.delete_range {
        check_delete(store, ai, d)?;
    }
    if let Some(t) = &req.txn {
        check_txn(store, lessor, ai, t)?;
    }
    if let Some(r) = &req.lease_revoke {
        check_lease_keys(store, lessor, ai, r.id)?;
    }
    Ok(())
}
