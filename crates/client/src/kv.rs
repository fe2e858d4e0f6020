//! Key-value calls: range, put, delete, txn, compact, plus small helpers.
//!
//! Reads and compaction are idempotent and fail over freely; put, delete and
//! any txn that writes are retried only when nothing can have happened (see
//! [`crate::client`]).

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::{
    request_op, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};

use crate::client::{Client, Retry, MAX_DECODE};
use crate::error::Result;

/// The range end that selects every key starting with `prefix` (etcd's
/// `GetPrefixRangeEnd`): the prefix with its last byte below 0xff
/// incremented; `"\0"` (every key) when there is none.
///
/// ```
/// assert_eq!(retcd_client::prefix_end(b"foo"), b"fop".to_vec());
/// assert_eq!(retcd_client::prefix_end(b"a\xff"), b"b".to_vec());
/// assert_eq!(retcd_client::prefix_end(b""), b"\0".to_vec());
/// ```
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

fn txn_writes(req: &TxnRequest) -> bool {
    req.success.iter().chain(req.failure.iter()).any(|op| match &op.request {
        Some(request_op::Request::RequestRange(_)) | None => false,
        Some(request_op::Request::RequestTxn(t)) => txn_writes(t),
        Some(_) => true,
    })
}

impl Client {
    /// KV.Range.
    ///
    /// ```no_run
    /// # async fn demo() -> retcd_client::Result<()> {
    /// use retcd_client::{Client, Config};
    /// let client = Client::new(Config::new(["127.0.0.1:2379"]))?;
    /// client.put("greeting", "hello").await?;
    /// let resp = client.get("greeting").await?;
    /// assert_eq!(resp.kvs[0].value, b"hello");
    /// # Ok(()) }
    /// ```
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.unary(Retry::Idempotent, req, |ch, r| async move {
            KvClient::new(ch).max_decoding_message_size(MAX_DECODE).range(r).await
        })
        .await
    }

    /// The value of one key (a linearizable read).
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<RangeResponse> {
        self.range(RangeRequest { key: key.into(), ..Default::default() }).await
    }

    /// Every key starting with `prefix`.
    pub async fn get_prefix(&self, prefix: impl Into<Vec<u8>>) -> Result<RangeResponse> {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        self.range(RangeRequest { key, range_end, ..Default::default() }).await
    }

    /// KV.Put.
    pub async fn put_request(&self, req: PutRequest) -> Result<PutResponse> {
        self.unary(Retry::NotIdempotent, req, |ch, r| async move {
            KvClient::new(ch).max_decoding_message_size(MAX_DECODE).put(r).await
        })
        .await
    }

    /// Puts `value` at `key`.
    pub async fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<PutResponse> {
        self.put_request(PutRequest { key: key.into(), value: value.into(), ..Default::default() }).await
    }

    /// KV.DeleteRange.
    pub async fn delete(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        self.unary(Retry::NotIdempotent, req, |ch, r| async move {
            KvClient::new(ch).max_decoding_message_size(MAX_DECODE).delete_range(r).await
        })
        .await
    }

    /// KV.Txn; a txn with only reads is retried like a read.
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        let retry = if txn_writes(&req) { Retry::NotIdempotent } else { Retry::Idempotent };
        self.unary(
            retry,
            req,
            |ch, r| async move { KvClient::new(ch).max_decoding_message_size(MAX_DECODE).txn(r).await },
        )
        .await
    }

    /// KV.Compact (compacting twice to the same revision is harmless).
    pub async fn compact(&self, req: CompactionRequest) -> Result<CompactionResponse> {
        self.unary(Retry::Idempotent, req, |ch, r| async move { KvClient::new(ch).compact(r).await }).await
    }
}
