//! `put`, `range`, `txn-put` and `txn-mixed`: request/response load on the
//! KV service through the closed-loop [`driver`](crate::driver).

use std::sync::Arc;

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::{request_op, PutRequest, RangeRequest, RequestOp, TxnRequest};
use tonic::transport::Channel;
use tonic::Status;

use super::{Ctx, Outcome};
use crate::cli::Consistency;
use crate::driver::{self, Op, Plan};
use crate::keys::{KeySpace, Rng};
use crate::progress::Progress;
use crate::report::Summary;

/// etcd's default `--total` for these commands.
const DEFAULT_TOTAL: u64 = 10_000;
/// etcd's default `--key-size` / `--val-size` for these commands.
const DEFAULT_SIZE: u64 = 8;

fn kv_clients(ctx: &Ctx) -> Vec<KvClient<Channel>> {
    (0..ctx.clients()).map(|i| KvClient::new(ctx.channel(i))).collect()
}

fn key_space(ctx: &Ctx) -> Arc<KeySpace> {
    let ks = KeySpace::new(ctx.g.key_space_size, ctx.key_size(DEFAULT_SIZE));
    if !ks.fits() {
        eprintln!(
            "warning: --key-size {} is too small for --key-space-size {}: some keys repeat",
            ctx.key_size(DEFAULT_SIZE),
            ctx.g.key_space_size
        );
    }
    Arc::new(ks)
}

/// Runs one op per client over `total` requests with a progress bar.
async fn drive<O: Op>(ctx: &Ctx, ops: Vec<O>, total: u64, reports: &[&str]) -> Vec<Summary> {
    let progress = Progress::start(total);
    let plan = Plan { total, reports: reports.len(), limiter: ctx.limiter(ctx.g.rate), done: progress.counter() };
    let (samples, elapsed) = driver::run(ops, plan).await;
    progress.finish();
    reports.iter().zip(samples).map(|(name, s)| Summary::new(name, s, elapsed)).collect()
}

fn text(ctx: &Ctx, summaries: &[Summary]) -> String {
    summaries.iter().map(|s| s.text(ctx.g.precise)).collect::<Vec<_>>().join("\n")
}

struct PutOp {
    kv: KvClient<Channel>,
    keys: Arc<KeySpace>,
    value: Arc<Vec<u8>>,
    sequential: bool,
    rng: Rng,
}

impl Op for PutOp {
    async fn call(&mut self, i: u64) -> (usize, Result<(), Status>) {
        let idx = if self.sequential { i } else { self.rng.below(self.keys.size()) };
        let req = PutRequest { key: self.keys.key(idx), value: self.value.to_vec(), ..Default::default() };
        (0, self.kv.put(req).await.map(drop))
    }
}

pub async fn put(ctx: &Ctx) -> Result<Outcome, String> {
    let keys = key_space(ctx);
    let value = Arc::new(Rng::new(0).bytes(ctx.val_size(DEFAULT_SIZE)));
    let ops: Vec<PutOp> = kv_clients(ctx)
        .into_iter()
        .enumerate()
        .map(|(i, kv)| PutOp {
            kv,
            keys: keys.clone(),
            value: value.clone(),
            sequential: ctx.g.sequential_keys,
            rng: Rng::new(i as u64 + 1),
        })
        .collect();
    let summaries = drive(ctx, ops, ctx.total(DEFAULT_TOTAL), &["put"]).await;
    Ok(Outcome { text: text(ctx, &summaries) + "\n", summaries })
}

struct RangeOp {
    kv: KvClient<Channel>,
    req: RangeRequest,
}

impl Op for RangeOp {
    async fn call(&mut self, _i: u64) -> (usize, Result<(), Status>) {
        (0, self.kv.range(self.req.clone()).await.map(drop))
    }
}

fn range_request(key: &str, end: Option<&str>, consistency: Consistency) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.map(|e| e.as_bytes().to_vec()).unwrap_or_default(),
        serializable: consistency == Consistency::S,
        ..Default::default()
    }
}

fn announce_consistency(ctx: &Ctx, consistency: Consistency) {
    ctx.say(match consistency {
        Consistency::L => "bench with linearizable range",
        Consistency::S => "bench with serializable range",
    });
}

pub async fn range(ctx: &Ctx, key: String, end: Option<String>, consistency: Consistency) -> Result<Outcome, String> {
    announce_consistency(ctx, consistency);
    let req = range_request(&key, end.as_deref(), consistency);
    let ops: Vec<RangeOp> = kv_clients(ctx).into_iter().map(|kv| RangeOp { kv, req: req.clone() }).collect();
    let summaries = drive(ctx, ops, ctx.total(DEFAULT_TOTAL), &["range"]).await;
    Ok(Outcome { text: text(ctx, &summaries), summaries })
}

fn put_op(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestPut(PutRequest { key, value, ..Default::default() })) }
}

struct TxnPutOp {
    kv: KvClient<Channel>,
    keys: Arc<KeySpace>,
    value: Arc<Vec<u8>>,
    ops_per_txn: u64,
}

impl Op for TxnPutOp {
    async fn call(&mut self, i: u64) -> (usize, Result<(), Status>) {
        // Distinct keys within a txn (etcd refuses duplicates): consecutive
        // indexes, and --txn-ops is at most --key-space-size.
        let success = (0..self.ops_per_txn)
            .map(|j| put_op(self.keys.key(i * self.ops_per_txn + j), self.value.to_vec()))
            .collect();
        let req = TxnRequest { success, ..Default::default() };
        (0, self.kv.txn(req).await.map(drop))
    }
}

pub async fn txn_put(ctx: &Ctx, ops_per_txn: u64) -> Result<Outcome, String> {
    if ops_per_txn > ctx.g.key_space_size {
        return Err(format!(
            "expected --txn-ops no larger than --key-space-size, got txn-ops({ops_per_txn}) key-space-size({})",
            ctx.g.key_space_size
        ));
    }
    let keys = key_space(ctx);
    let value = Arc::new(Rng::new(0).bytes(ctx.val_size(DEFAULT_SIZE)));
    let ops: Vec<TxnPutOp> = kv_clients(ctx)
        .into_iter()
        .map(|kv| TxnPutOp { kv, keys: keys.clone(), value: value.clone(), ops_per_txn })
        .collect();
    let summaries = drive(ctx, ops, ctx.total(DEFAULT_TOTAL), &["txn-put"]).await;
    Ok(Outcome { text: text(ctx, &summaries) + "\n", summaries })
}

const READ: usize = 0;
const WRITE: usize = 1;

struct TxnMixedOp {
    kv: KvClient<Channel>,
    keys: Arc<KeySpace>,
    value: Arc<Vec<u8>>,
    read: RequestOp,
    read_share: f64,
    rng: Rng,
}

impl Op for TxnMixedOp {
    async fn call(&mut self, i: u64) -> (usize, Result<(), Status>) {
        let (kind, op) = if self.rng.unit() < self.read_share {
            (READ, self.read.clone())
        } else {
            (WRITE, put_op(self.keys.key(i), self.value.to_vec()))
        };
        let req = TxnRequest { success: vec![op], ..Default::default() };
        (kind, self.kv.txn(req).await.map(drop))
    }
}

pub async fn txn_mixed(
    ctx: &Ctx,
    end_key: Option<String>,
    limit: i64,
    consistency: Consistency,
    rw_ratio: f64,
) -> Result<Outcome, String> {
    if !(rw_ratio >= 0.0 && rw_ratio.is_finite()) {
        return Err(format!("expected a non-negative --rw-ratio, got {rw_ratio}"));
    }
    announce_consistency(ctx, consistency);
    let keys = key_space(ctx);
    let value = Arc::new(Rng::new(0).bytes(ctx.val_size(DEFAULT_SIZE)));
    // Reads cover every key from "\0" (etcd's empty-prefix range) up to --end-key.
    let read = RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: vec![0],
            range_end: end_key.map(String::into_bytes).unwrap_or_else(|| vec![0]),
            limit,
            serializable: consistency == Consistency::S,
            ..Default::default()
        })),
    };
    let read_share = rw_ratio / (1.0 + rw_ratio);
    let ops: Vec<TxnMixedOp> = kv_clients(ctx)
        .into_iter()
        .enumerate()
        .map(|(i, kv)| TxnMixedOp {
            kv,
            keys: keys.clone(),
            value: value.clone(),
            read: read.clone(),
            read_share,
            rng: Rng::new(i as u64 + 1),
        })
        .collect();
    let summaries = drive(ctx, ops, ctx.total(DEFAULT_TOTAL), &["txn-mixed-read", "txn-mixed-write"]).await;
    let mut out = String::new();
    for (label, s) in ["Read", "Write"].iter().zip(&summaries) {
        out.push_str(&format!("Total {label} Ops: {}\nDetails:{}\n", s.ok() + s.error_count(), s.text(ctx.g.precise)));
    }
    Ok(Outcome { text: out, summaries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_requests() {
        let r = range_request("a", Some("b"), Consistency::S);
        assert_eq!((r.key, r.range_end, r.serializable), (b"a".to_vec(), b"b".to_vec(), true));
        let r = range_request("a", None, Consistency::L);
        assert!(r.range_end.is_empty() && !r.serializable);
    }
}
