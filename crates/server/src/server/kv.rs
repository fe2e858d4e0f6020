//! The KV requests as [`EtcdServer`] serves them: reads after a read-index
//! round (unless serializable), checked against the caller's permissions and
//! served from the store pinned at one revision; writes through raft. Each
//! returns its response with the header filled, and the header's revision
//! is the revision the data was read or written at.

use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::request_op::Request as Op;
use retcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use retcd_api::retcdpb::InternalRequest;

use super::EtcdServer;
use crate::apply::kv::{self as kvops, PinnedRead};
use crate::auth::checks as auth;
use crate::auth::credentials::Creds;

impl EtcdServer {
    pub async fn range(&self, r: RangeRequest, creds: &Creds) -> Result<RangeResponse, EtcdError> {
        if !r.serializable {
            self.linearizable_read().await?;
        }
        let ai = self.auth_info(creds).await?;
        auth::check_range(&self.auth, ai.as_ref(), &r)?;
        let mut view = PinnedRead::new(&self.kv);
        let mut resp = kvops::range(&mut view, &r)?;
        // A permission revoked while the range ran must not let it answer.
        self.auth.check_unchanged(ai.as_ref())?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    pub async fn put(&self, r: PutRequest, creds: &Creds) -> Result<PutResponse, EtcdError> {
        let mut resp: PutResponse =
            self.propose_as(InternalRequest { put: Some(r), ..Default::default() }, creds).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    pub async fn delete_range(&self, r: DeleteRangeRequest, creds: &Creds) -> Result<DeleteRangeResponse, EtcdError> {
        let mut resp: DeleteRangeResponse =
            self.propose_as(InternalRequest { delete_range: Some(r), ..Default::default() }, creds).await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// A read-only txn is served locally as a range is; any other goes
    /// through raft.
    pub async fn txn(&self, r: TxnRequest, creds: &Creds) -> Result<TxnResponse, EtcdError> {
        if !kvops::is_txn_read_only(&r) {
            let mut resp: TxnResponse =
                self.propose_as(InternalRequest { txn: Some(r), ..Default::default() }, creds).await?;
            self.fill_header(&mut resp.header);
            return Ok(resp);
        }
        if !is_txn_serializable(&r) {
            self.linearizable_read().await?;
        }
        let ai = self.auth_info(creds).await?;
        auth::check_txn(&self.auth, &self.lessor, ai.as_ref(), &r)?;
        let mut view = PinnedRead::new(&self.kv);
        let path = kvops::txn_path(&mut view, &r)?;
        kvops::check_txn(&mut view, &r, &path, &mut 0, None)?;
        let mut resp = kvops::run_read_txn(&mut view, &r, &path, &mut 0)?;
        self.auth.check_unchanged(ai.as_ref())?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// With `physical`, answers once the compacted records are gone from
    /// this member's backend.
    pub async fn compact(&self, r: CompactionRequest, creds: &Creds) -> Result<CompactionResponse, EtcdError> {
        let physical = r.physical;
        let (mut resp, done): (CompactionResponse, _) =
            self.propose_as(InternalRequest { compaction: Some(r), ..Default::default() }, creds).await?;
        if physical {
            done.await.map_err(|_| EtcdError::Stopped)?;
        }
        self.fill_header(&mut resp.header);
        Ok(resp)
    }
}

/// A read-only txn is served locally without a read-index round only if
/// every range in it is serializable (etcd's `isTxnSerializable`).
fn is_txn_serializable(r: &TxnRequest) -> bool {
    r.success.iter().chain(r.failure.iter()).all(|op| match &op.request {
        Some(Op::RequestRange(rr)) => rr.serializable,
        Some(Op::RequestTxn(t)) => is_txn_serializable(t),
        _ => true,
    })
}
