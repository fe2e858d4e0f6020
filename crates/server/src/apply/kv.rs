//! The key-value semantics of Range, Put, DeleteRange and Txn, shared by the
//! apply thread (writes, in log order) and by the read path (ranges and
//! read-only txns served locally): sorting, filtering, limits, compares and
//! the branch a txn takes, exactly as etcd's applier.
//!
//! Every operation tells a refusal (the request's own fault, the same on
//! every member) from a storage failure (this member's store could not be
//! read): the read path answers the latter as an error, the apply path stops
//! the member on it, because going on would give this member a different
//! result from the others'.

use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use retcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use retcd_api::etcdserverpb::request_op::Request;
use retcd_api::etcdserverpb::response_op::Response;
use retcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use retcd_api::mvccpb::KeyValue;
use retcd_storage::mvcc::{KvStore, MvccError, RangeOptions, RangeResult, WriteTxn};

use crate::lease::Lessor;

/// Why a KV operation gave no result.
#[derive(Debug)]
pub enum KvError {
    /// Refused for the request's own reasons, which every member shares
    /// (a compacted or future revision, a missing lease or key).
    Refused(EtcdError),
    /// This member's store failed; another member would have answered.
    Storage(MvccError),
}

impl From<MvccError> for KvError {
    fn from(e: MvccError) -> Self {
        match e {
            MvccError::Compacted => KvError::Refused(EtcdError::Compacted),
            MvccError::FutureRev => KvError::Refused(EtcdError::FutureRev),
            other => KvError::Storage(other),
        }
    }
}

impl From<EtcdError> for KvError {
    fn from(e: EtcdError) -> Self {
        KvError::Refused(e)
    }
}

/// What a client is told: a storage failure is reported as etcd reports a
/// damaged store, and logged.
impl From<KvError> for EtcdError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Refused(e) => e,
            KvError::Storage(e) => {
                tracing::error!("storage error: {e}");
                EtcdError::Corrupt
            }
        }
    }
}

/// An mvcc error as a client sees it (see [`KvError`]).
pub fn mvcc_error(e: MvccError) -> EtcdError {
    KvError::from(e).into()
}

/// Something ranges can be served from: the store pinned at one revision, or
/// a write transaction (which sees its own changes).
pub trait KvRead {
    fn range_kvs(&mut self, key: &[u8], end: &[u8], opts: RangeOptions) -> Result<RangeResult, MvccError>;
    /// The revision reads without an explicit revision are served at.
    fn read_rev(&self) -> i64;
    fn compact_rev(&self) -> i64;
}

/// The store pinned at the revision current when it was created: every read
/// of a read-only txn sees the same state, and a response's header revision
/// is that revision, never a later one (a write applied while the range
/// runs must not lend the response its revision: a client that lists at the
/// header revision and watches from the next one would miss it).
pub struct PinnedRead<'a> {
    pub store: &'a KvStore,
    pub rev: i64,
}

impl<'a> PinnedRead<'a> {
    pub fn new(store: &'a KvStore) -> Self {
        PinnedRead { store, rev: store.rev() }
    }
}

impl KvRead for PinnedRead<'_> {
    fn range_kvs(&mut self, key: &[u8], end: &[u8], opts: RangeOptions) -> Result<RangeResult, MvccError> {
        self.store.range_at(key, end, opts, Some(self.rev))
    }
    fn read_rev(&self) -> i64 {
        self.rev
    }
    fn compact_rev(&self) -> i64 {
        self.store.compact_rev()
    }
}

/// A write transaction plus what tells whether it changed anything yet.
pub struct Writer<'a, 'b> {
    pub txn: WriteTxn<'a, 'b>,
    pub store: &'a KvStore,
    pub changed: bool,
}

impl KvRead for Writer<'_, '_> {
    fn range_kvs(&mut self, key: &[u8], end: &[u8], opts: RangeOptions) -> Result<RangeResult, MvccError> {
        self.txn.range(key, end, opts)
    }
    fn read_rev(&self) -> i64 {
        if self.changed {
            self.txn.rev()
        } else {
            self.txn.rev() - 1
        }
    }
    fn compact_rev(&self) -> i64 {
        self.store.compact_rev()
    }
}

fn header(rev: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision: rev, ..Default::default() })
}

/// Range with etcd's sorting, filtering, limit and `more` semantics.
pub fn range(view: &mut dyn KvRead, r: &RangeRequest) -> Result<RangeResponse, KvError> {
    let needs_all = r.sort_order != SortOrder::None as i32
        || r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    let mut limit = if needs_all { 0 } else { r.limit.max(0) as usize };
    if limit > 0 {
        // One extra tells whether there is more.
        limit += 1;
    }
    let opts = RangeOptions { rev: r.revision, limit, count_only: r.count_only };
    let rr = view.range_kvs(&r.key, &r.range_end, opts)?;
    let mut kvs = rr.kvs;
    if r.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= r.max_mod_revision);
    }
    if r.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= r.min_mod_revision);
    }
    if r.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= r.max_create_revision);
    }
    if r.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= r.min_create_revision);
    }
    let mut order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    if target != SortTarget::Key && order == SortOrder::None {
        // The store returns key order; any other target sorts ascending by default.
        order = SortOrder::Ascend;
    }
    if order != SortOrder::None {
        // Stable sorts: equal elements keep key order, as Go's sort does not
        // promise but etcdctl users observe for keys. Descending compares in
        // reverse (etcd's sort.Reverse) rather than reversing the result, so
        // ties keep key order there too.
        let desc = order == SortOrder::Descend;
        let dir = |o: std::cmp::Ordering| if desc { o.reverse() } else { o };
        match target {
            SortTarget::Key => kvs.sort_by(|a, b| dir(a.key.cmp(&b.key))),
            SortTarget::Version => kvs.sort_by(|a, b| dir(a.version.cmp(&b.version))),
            SortTarget::Create => kvs.sort_by(|a, b| dir(a.create_revision.cmp(&b.create_revision))),
            SortTarget::Mod => kvs.sort_by(|a, b| dir(a.mod_revision.cmp(&b.mod_revision))),
            SortTarget::Value => kvs.sort_by(|a, b| dir(a.value.cmp(&b.value))),
        }
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse { header: header(rr.rev), kvs, more, count: rr.count as i64 })
}

/// One compare against the kvs in its range (etcd: every kv must satisfy it;
/// a VALUE compare on no kvs fails; other targets compare a zero kv).
fn compare(view: &mut dyn KvRead, c: &Compare) -> Result<bool, KvError> {
    let rr = view.range_kvs(&c.key, &c.range_end, RangeOptions::default())?;
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    if rr.kvs.is_empty() {
        if target == CompareTarget::Value {
            return Ok(false);
        }
        return Ok(compare_kv(c, target, &KeyValue::default()));
    }
    Ok(rr.kvs.iter().all(|kv| compare_kv(c, target, kv)))
}

fn compare_kv(c: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord = match (target, &c.target_union) {
        (CompareTarget::Value, u) => {
            let v: &[u8] = match u {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(v)
        }
        (CompareTarget::Create, u) => {
            kv.create_revision.cmp(&matches_int(u, |t| matches!(t, TargetUnion::CreateRevision(_))))
        }
        (CompareTarget::Mod, u) => kv.mod_revision.cmp(&matches_int(u, |t| matches!(t, TargetUnion::ModRevision(_)))),
        (CompareTarget::Version, u) => kv.version.cmp(&matches_int(u, |t| matches!(t, TargetUnion::Version(_)))),
        (CompareTarget::Lease, u) => kv.lease.cmp(&matches_int(u, |t| matches!(t, TargetUnion::Lease(_)))),
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

/// The integer of a compare's target union when it is of the expected kind
/// (etcd compares against 0 when the union holds another kind).
fn matches_int(u: &Option<TargetUnion>, is_kind: impl Fn(&TargetUnion) -> bool) -> i64 {
    match u {
        Some(t) if is_kind(t) => match t {
            TargetUnion::Version(v)
            | TargetUnion::CreateRevision(v)
            | TargetUnion::ModRevision(v)
            | TargetUnion::Lease(v) => *v,
            TargetUnion::Value(_) => 0,
        },
        _ => 0,
    }
}

/// The branch each (nested) txn takes, decided up front against the state
/// before any op runs, as etcd's `compareToPath`.
pub fn txn_path(view: &mut dyn KvRead, r: &TxnRequest) -> Result<Vec<bool>, KvError> {
    let mut path = Vec::new();
    fill_path(view, r, &mut path)?;
    Ok(path)
}

fn fill_path(view: &mut dyn KvRead, r: &TxnRequest, path: &mut Vec<bool>) -> Result<(), KvError> {
    let mut ok = true;
    for c in &r.compare {
        // As etcd: the first failing compare decides.
        if !compare(view, c)? {
            ok = false;
            break;
        }
    }
    path.push(ok);
    for op in branch(r, ok) {
        if let Some(Request::RequestTxn(t)) = &op.request {
            fill_path(view, t, path)?;
        }
    }
    Ok(())
}

fn branch(r: &TxnRequest, success: bool) -> &[RequestOp] {
    if success {
        &r.success
    } else {
        &r.failure
    }
}

pub fn is_txn_read_only(r: &TxnRequest) -> bool {
    r.success.iter().chain(r.failure.iter()).all(|op| match &op.request {
        Some(Request::RequestRange(_)) | None => true,
        Some(Request::RequestTxn(t)) => is_txn_read_only(t),
        Some(_) => false,
    })
}

/// Whether any branch (nested included) puts a key: such a txn needs space.
pub fn txn_has_puts(r: &TxnRequest) -> bool {
    r.success.iter().chain(r.failure.iter()).any(|op| match &op.request {
        Some(Request::RequestPut(_)) => true,
        Some(Request::RequestTxn(t)) => txn_has_puts(t),
        _ => false,
    })
}

/// Checks the ops on the chosen path before anything runs: leases of puts
/// must exist, ignore_value/ignore_lease need an existing key, and range
/// revisions must be servable.
pub fn check_txn(
    view: &mut dyn KvRead,
    r: &TxnRequest,
    path: &[bool],
    pos: &mut usize,
    lessor: Option<&Lessor>,
) -> Result<(), KvError> {
    let ok = path.get(*pos).copied().unwrap_or(false);
    *pos += 1;
    for op in branch(r, ok) {
        match &op.request {
            Some(Request::RequestRange(rr)) => check_range_rev(view, rr.revision)?,
            Some(Request::RequestPut(p)) => {
                if let Some(lessor) = lessor {
                    check_put(view, p, lessor)?;
                }
            }
            Some(Request::RequestTxn(t)) => check_txn(view, t, path, pos, lessor)?,
            _ => {}
        }
    }
    Ok(())
}

fn check_range_rev(view: &dyn KvRead, rev: i64) -> Result<(), KvError> {
    if rev > view.read_rev() {
        return Err(EtcdError::FutureRev.into());
    }
    if rev > 0 && rev < view.compact_rev() {
        return Err(EtcdError::Compacted.into());
    }
    Ok(())
}

/// etcd's put preconditions: the lease exists, and ignore_value /
/// ignore_lease need the key to exist.
pub fn check_put(view: &mut dyn KvRead, p: &PutRequest, lessor: &Lessor) -> Result<(), KvError> {
    if p.lease != 0 && !lessor.exists(p.lease) {
        return Err(EtcdError::LeaseNotFound.into());
    }
    if p.ignore_value || p.ignore_lease {
        let rr = view.range_kvs(&p.key, &[], RangeOptions::default())?;
        if rr.kvs.is_empty() {
            return Err(EtcdError::KeyNotFound.into());
        }
    }
    Ok(())
}

/// Applies a put whose preconditions were checked; keeps lease attachments
/// in step with the key.
pub fn put(w: &mut Writer<'_, '_>, p: &PutRequest, lessor: &Lessor) -> Result<PutResponse, KvError> {
    // The previous kv is read first only when it shapes the new one; the
    // store returns it from the put anyway (for prev_kv).
    let mut lease = p.lease;
    let mut kept_value = None;
    if p.ignore_value || p.ignore_lease {
        let rr = w.range_kvs(&p.key, &[], RangeOptions::default())?;
        if let Some(prev) = rr.kvs.into_iter().next() {
            if p.ignore_lease {
                lease = prev.lease;
            }
            if p.ignore_value {
                kept_value = Some(prev.value);
            }
        }
    }
    let value = kept_value.as_deref().unwrap_or(&p.value);
    let prev = w.txn.put(&p.key, value, lease);
    w.changed = true;
    if let Some(prev) = &prev {
        if prev.lease != 0 && prev.lease != lease {
            lessor.detach(prev.lease, &p.key);
        }
    }
    if lease != 0 {
        lessor.attach(lease, &p.key);
    }
    Ok(PutResponse { header: header(w.txn.rev()), prev_kv: if p.prev_kv { prev } else { None } })
}

pub fn delete_range(w: &mut Writer<'_, '_>, d: &DeleteRangeRequest, lessor: &Lessor) -> DeleteRangeResponse {
    let deleted = w.txn.delete_range(&d.key, &d.range_end);
    if !deleted.is_empty() {
        w.changed = true;
    }
    for kv in &deleted {
        if kv.lease != 0 {
            lessor.detach(kv.lease, &kv.key);
        }
    }
    DeleteRangeResponse {
        header: header(w.read_rev()),
        deleted: deleted.len() as i64,
        prev_kvs: if d.prev_kv { deleted } else { Vec::new() },
    }
}

/// Runs the ops of the chosen path in a write transaction (read-only txns
/// are served by [`run_read_txn`]). The ops were checked beforehand, so an
/// error here is a storage failure.
pub fn run_txn(
    w: &mut Writer<'_, '_>,
    r: &TxnRequest,
    path: &[bool],
    pos: &mut usize,
    lessor: &Lessor,
) -> Result<TxnResponse, KvError> {
    let ok = path.get(*pos).copied().unwrap_or(false);
    *pos += 1;
    let mut responses = Vec::with_capacity(branch(r, ok).len());
    for op in branch(r, ok) {
        let response = match &op.request {
            Some(Request::RequestRange(rr)) => Some(Response::ResponseRange(range(w, rr)?)),
            Some(Request::RequestPut(p)) => Some(Response::ResponsePut(put(w, p, lessor)?)),
            Some(Request::RequestDeleteRange(d)) => Some(Response::ResponseDeleteRange(delete_range(w, d, lessor))),
            Some(Request::RequestTxn(t)) => Some(Response::ResponseTxn(run_txn(w, t, path, pos, lessor)?)),
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse { header: None, succeeded: ok, responses })
}

/// Serves a read-only txn from a pinned view.
pub fn run_read_txn(
    view: &mut dyn KvRead,
    r: &TxnRequest,
    path: &[bool],
    pos: &mut usize,
) -> Result<TxnResponse, KvError> {
    let ok = path.get(*pos).copied().unwrap_or(false);
    *pos += 1;
    let mut responses = Vec::new();
    for op in branch(r, ok) {
        let response = match &op.request {
            Some(Request::RequestRange(rr)) => Some(Response::ResponseRange(range(view, rr)?)),
            Some(Request::RequestTxn(t)) => Some(Response::ResponseTxn(run_read_txn(view, t, path, pos)?)),
            _ => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse { header: header(view.read_rev()), succeeded: ok, responses })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use retcd_api::etcdserverpb::RequestOp;
    use retcd_storage::backend::Backend;

    use super::*;

    fn put(store: &KvStore, k: &str, v: &str) {
        let backend = Arc::clone(store.backend());
        let mut btx = backend.batch_tx();
        let mut txn = store.write(&mut btx);
        txn.put(k.as_bytes(), v.as_bytes(), 0);
        assert!(txn.take_error().is_none());
        txn.end();
    }

    /// The race of issue 11: a write applied between pinning the read and
    /// building the response must not lend the response its revision.
    #[test]
    fn reads_report_the_revision_their_data_was_read_at() {
        let dir = tempfile::tempdir().unwrap();
        let store = KvStore::open(Backend::open(&dir.path().join("db")).unwrap()).unwrap();
        put(&store, "k", "old");
        let mut view = PinnedRead::new(&store);
        put(&store, "k", "new");
        let get = RangeRequest { key: b"k".to_vec(), ..Default::default() };

        let resp = range(&mut view, &get).unwrap();
        assert_eq!(resp.header.unwrap().revision, 2);
        assert_eq!(resp.kvs[0].value, b"old");
        assert_eq!(resp.kvs[0].mod_revision, 2);

        let txn =
            TxnRequest { success: vec![RequestOp { request: Some(Request::RequestRange(get)) }], ..Default::default() };
        let path = txn_path(&mut view, &txn).unwrap();
        let resp = run_read_txn(&mut view, &txn, &path, &mut 0).unwrap();
        assert_eq!(resp.header.unwrap().revision, 2);
        let Some(Response::ResponseRange(inner)) = &resp.responses[0].response else { panic!("{resp:?}") };
        assert_eq!(inner.header.as_ref().unwrap().revision, 2);
        assert_eq!(inner.kvs[0].value, b"old");
    }
}
