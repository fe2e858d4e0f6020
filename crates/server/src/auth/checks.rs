//! Whether a request's user may do what it asks: the key permission checks
//! of Range, Put, DeleteRange, Txn and LeaseRevoke, run on the read path and,
//! for writes, on the apply thread against the credentials stamped into the
//! proposal (so a permission revoked between proposing and applying is
//! honoured).

use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::request_op::Request as Op;
use retcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};
use retcd_api::retcdpb::InternalRequest;

use super::perms::Access;
use super::{AuthInfo, AuthStore};
use crate::lease::Lessor;

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
