//! Request checks done before a request reaches raft, with etcd's errors:
//! empty keys, ignore_value/ignore_lease conflicts, too many txn ops, and
//! puts that overlap other puts or deletes in the same txn branch.

use std::collections::HashSet;

use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::request_op::Request;
use retcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

pub fn check_range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// etcd's `checkTxnRequest` followed by its overlap check of both branches.
pub fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn_shape(r, max_txn_ops as i64)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_shape(r: &TxnRequest, max_txn_ops: i64) -> Result<(), EtcdError> {
    let ops = r.compare.len().max(r.success.len()).max(r.failure.len()) as i64;
    if ops > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in r.success.iter().chain(r.failure.iter()) {
        check_op(op, max_txn_ops - ops)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_txn_ops: i64) -> Result<(), EtcdError> {
    match &op.request {
        Some(Request::RequestRange(r)) => check_range(r),
        Some(Request::RequestPut(r)) => check_put(r),
        Some(Request::RequestDeleteRange(r)) => check_delete(r),
        Some(Request::RequestTxn(t)) => check_txn_shape(t, max_txn_ops),
        // An empty op: etcd answers "key not found".
        None => Err(EtcdError::KeyNotFound),
    }
}

/// A delete's key range; `end` empty is the single key, `[0]` is from-key.
struct Span {
    key: Vec<u8>,
    end: Vec<u8>,
}

impl Span {
    fn contains(&self, k: &[u8]) -> bool {
        if self.end.is_empty() {
            k == self.key.as_slice()
        } else if self.end == [0] {
            k >= self.key.as_slice()
        } else {
            k >= self.key.as_slice() && k < self.end.as_slice()
        }
    }
}

fn deleted(dels: &[Span], k: &[u8]) -> bool {
    dels.iter().any(|d| d.contains(k))
}

/// Returns the puts and deletes of one branch (with its nested txns) or
/// DuplicateKey when a key is put twice, or put and deleted, where both could
/// run. A nested txn's then/else are exclusive, so a key put in both is fine.
fn check_intervals(reqs: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Span>), EtcdError> {
    let mut dels: Vec<Span> = reqs
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(Span { key: d.key.clone(), end: d.range_end.clone() }),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in reqs {
        let Some(Request::RequestTxn(t)) = &op.request else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || deleted(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in reqs {
        let Some(Request::RequestPut(p)) = &op.request else { continue };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp { request: Some(Request::RequestPut(PutRequest { key: k.into(), ..Default::default() })) }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest { success, failure, ..Default::default() }
    }

    #[test]
    fn duplicate_puts_and_put_delete_overlap() {
        assert_eq!(check_txn(&txn(vec![put("a"), put("a")], vec![]), 128), Err(EtcdError::DuplicateKey));
        assert_eq!(check_txn(&txn(vec![put("b"), del("a", "c")], vec![]), 128), Err(EtcdError::DuplicateKey));
        assert_eq!(check_txn(&txn(vec![put("a")], vec![put("a")]), 128), Ok(()));
        let nested = RequestOp { request: Some(Request::RequestTxn(txn(vec![put("a")], vec![put("a")]))) };
        assert_eq!(check_txn(&txn(vec![nested.clone()], vec![]), 128), Ok(()));
        assert_eq!(check_txn(&txn(vec![nested, put("a")], vec![]), 128), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn too_many_ops_and_empty_keys() {
        let ops: Vec<RequestOp> = (0..3).map(|i| put(&format!("k{i}"))).collect();
        assert_eq!(check_txn(&txn(ops, vec![]), 2), Err(EtcdError::TooManyOps));
        assert_eq!(check_txn(&txn(vec![put("")], vec![]), 2), Err(EtcdError::EmptyKey));
        assert_eq!(check_txn(&txn(vec![RequestOp { request: None }], vec![]), 2), Err(EtcdError::KeyNotFound));
    }
}
