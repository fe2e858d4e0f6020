//! The closed-loop load driver shared by the request/response benchmarks.
//!
//! `--clients` workers run as tokio tasks. Each repeatedly takes the next
//! request number from one shared atomic counter (so the work is spread as
//! etcd's channel of requests spreads it, without a channel), waits for the
//! rate limiter if any, times the request and records the latency into its
//! own [`Samples`]. Nothing is shared per request but that counter and the
//! progress counter.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::limiter::Limiter;
use crate::report::Samples;

/// One worker's request issuer.
pub trait Op: Send + 'static {
    /// Issues request number `i`. Returns the index of the report it belongs
    /// to (e.g. read or write for txn-mixed) and whether it succeeded.
    fn call(&mut self, i: u64) -> impl Future<Output = (usize, Result<(), tonic::Status>)> + Send;
}

pub struct Plan {
    /// Requests to issue in all.
    pub total: u64,
    /// How many reports the ops return indexes for.
    pub reports: usize,
    pub limiter: Option<Arc<Limiter>>,
    /// Incremented once per finished request (the progress bar reads it).
    pub done: Arc<AtomicU64>,
}

/// Runs `ops` (one per client) until `plan.total` requests are done; returns
/// the merged samples per report and the wall-clock time of the run.
pub async fn run<O: Op>(ops: Vec<O>, plan: Plan) -> (Vec<Samples>, Duration) {
    let next = Arc::new(AtomicU64::new(0));
    let per_client = (plan.total / ops.len().max(1) as u64 + 1) as usize;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(ops.len());
    for mut op in ops {
        let next = next.clone();
        let done = plan.done.clone();
        let limiter = plan.limiter.clone();
        let (total, reports) = (plan.total, plan.reports);
        tasks.push(tokio::spawn(async move {
            let mut samples: Vec<Samples> = (0..reports).map(|_| Samples::with_capacity(per_client)).collect();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if let Some(l) = &limiter {
                    l.wait().await;
                }
                let st = Instant::now();
                let (report, result) = op.call(i).await;
                let took = st.elapsed();
                let s = &mut samples[report.min(reports - 1)];
                match result {
                    Ok(()) => s.record(took),
                    Err(status) => s.error(&status),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            samples
        }));
    }
    let mut merged: Vec<Samples> = (0..plan.reports).map(|_| Samples::default()).collect();
    for t in tasks {
        match t.await {
            Ok(samples) => {
                for (m, s) in merged.iter_mut().zip(samples) {
                    m.merge(s);
                }
            }
            Err(e) => merged[0].error_text(&format!("worker failed: {e}"), 1),
        }
    }
    (merged, start.elapsed())
}
