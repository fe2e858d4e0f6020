//! `check perf`: etcdctl's one-minute write benchmark. Many clients put
//! 256-byte random keys with 1 KiB values under a prefix at the load
//! model's rate, then the keys are deleted and the run is judged as etcdctl
//! judges it: throughput above 90% of the target, the slowest request under
//! 500 ms, the standard deviation under 100 ms, and no errors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use retcd_client::etcdserverpb::{CompactionRequest, DeleteRangeRequest, RangeRequest};
use retcd_client::prefix_end;
use tokio::sync::{mpsc, Mutex};

use crate::cli::CheckPerfArgs;
use crate::context::{out, Ctx};
use crate::exit::{CtlError, EXIT_BAD_FEATURE, EXIT_ERROR, EXIT_INVALID_INPUT};
use crate::printer::gofmt::quote;

/// A load model: puts per second, clients, seconds.
struct Model {
    limit: u32,
    clients: usize,
    duration: u64,
}

fn model(name: &str) -> Option<Model> {
    let (limit, clients) = match name {
        "s" | "small" => (150, 50),
        "m" | "medium" => (1000, 200),
        "l" | "large" => (8000, 500),
        "xl" | "xLarge" => (15000, 1000),
        _ => return None,
    };
    Some(Model { limit, clients, duration: 60 })
}

/// Go's `binary.PutVarint` (zig-zag, then base-128).
fn put_varint(buf: &mut [u8], v: i64) {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    let mut i = 0;
    while u >= 0x80 {
        buf[i] = (u as u8) | 0x80;
        u >>= 7;
        i += 1;
    }
    buf[i] = u as u8;
}

/// A small xorshift generator: the keys only need to differ.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 1) as i64
    }
}

/// Latency statistics of the successful requests, in seconds.
#[derive(Debug, Default, PartialEq)]
struct Stats {
    rps: f64,
    slowest: f64,
    stddev: f64,
    errors: BTreeMap<String, u64>,
}

fn stats(results: &[(Duration, Option<String>)], total: Duration) -> Stats {
    let mut s = Stats::default();
    let mut lats = Vec::new();
    for (lat, err) in results {
        match err {
            Some(e) => *s.errors.entry(e.clone()).or_default() += 1,
            None => lats.push(lat.as_secs_f64()),
        }
    }
    if lats.is_empty() {
        return s;
    }
    let n = lats.len() as f64;
    let mean = lats.iter().sum::<f64>() / n;
    s.slowest = lats.iter().copied().fold(0.0, f64::max);
    s.stddev = (lats.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n).sqrt();
    s.rps = n / total.as_secs_f64();
    s
}

/// The verdict lines and whether the check passed.
fn verdict(s: &Stats, limit: u32) -> (String, bool) {
    let mut text = String::new();
    let mut ok = true;
    if !s.errors.is_empty() {
        text.push_str("FAIL: too many errors\n");
        for (e, n) in &s.errors {
            text.push_str(&format!("FAIL: ERROR({e}) -> {n}\n"));
        }
        ok = false;
    }
    if s.rps / f64::from(limit) <= 0.9 {
        text.push_str(&format!("FAIL: Throughput too low: {} writes/s\n", s.rps as i64 + 1));
        ok = false;
    } else {
        text.push_str(&format!("PASS: Throughput is {} writes/s\n", s.rps as i64 + 1));
    }
    if s.slowest > 0.5 {
        text.push_str(&format!("Slowest request took too long: {:.6}s\n", s.slowest));
        ok = false;
    } else {
        text.push_str(&format!("PASS: Slowest request took {:.6}s\n", s.slowest));
    }
    if s.stddev > 0.1 {
        text.push_str(&format!("Stddev too high: {:.6}s\n", s.stddev));
        ok = false;
    } else {
        text.push_str(&format!("PASS: Stddev is {:.6}s\n", s.stddev));
    }
    text.push_str(if ok { "PASS\n" } else { "FAIL\n" });
    (text, ok)
}

/// One line of progress, redrawn in place as etcdctl's bar (pb) draws it
/// when stdout is not a terminal: count, percentage, then the time left,
/// or the time taken once done.
fn progress(done: u64, of: u64, tail: &str) -> String {
    format!("\r {done} / {of} {:7.2}%{tail}", done as f64 * 100.0 / of.max(1) as f64)
}

/// Whole seconds as Go prints a duration ("59s", "1m0s").
fn go_seconds(s: u64) -> String {
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

pub async fn perf(ctx: &Ctx, a: CheckPerfArgs) -> Result<(), CtlError> {
    let Some(m) = model(&a.load) else {
        return Err(CtlError::new(EXIT_BAD_FEATURE, format!("unknown load option {}", a.load)));
    };
    let mut clients = Vec::with_capacity(m.clients);
    for _ in 0..m.clients {
        clients.push(ctx.client_for(ctx.global.endpoints.clone(), false)?);
    }
    let prefix = a.prefix.as_bytes().to_vec();
    let first = &clients[0];
    let probe = RangeRequest { key: prefix.clone(), range_end: prefix_end(&prefix), limit: 1, ..Default::default() };
    let existing = tokio::time::timeout(Duration::from_secs(m.duration), first.range(probe))
        .await
        .map_err(|_| CtlError::new(EXIT_ERROR, "context deadline exceeded"))??;
    if !existing.kvs.is_empty() {
        return Err(CtlError::new(
            EXIT_INVALID_INPUT,
            format!("prefix {:?} has keys. Delete with etcdctl del --prefix {} first", a.prefix, a.prefix),
        ));
    }

    let (req_tx, req_rx) = mpsc::channel::<Vec<u8>>(m.clients);
    let req_rx = Arc::new(Mutex::new(req_rx));
    let (res_tx, mut res_rx) = mpsc::unbounded_channel::<(Duration, Option<String>)>();
    let start = Instant::now();
    let mut workers = Vec::new();
    for c in &clients {
        let (c, req_rx, res_tx) = (c.clone(), req_rx.clone(), res_tx.clone());
        workers.push(tokio::spawn(async move {
            let value = vec![0u8; 1024];
            loop {
                let Some(key) = req_rx.lock().await.recv().await else { return };
                let st = Instant::now();
                let r = c.put(key, value.clone()).await;
                let _ = res_tx.send((st.elapsed(), r.err().map(|e| e.to_string())));
            }
        }));
    }
    drop(res_tx);
    let producer = {
        let prefix = prefix.clone();
        let (limit, duration) = (m.limit, Duration::from_secs(m.duration));
        tokio::spawn(async move {
            let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64);
            let mut rng = Rng(seed.unwrap_or(1) | 1);
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(limit)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let end = tokio::time::Instant::now() + duration;
            let mut key = vec![0u8; 256];
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tokio::time::sleep_until(end) => return,
                }
                key.iter_mut().for_each(|b| *b = 0);
                put_varint(&mut key, rng.next());
                if req_tx.send([prefix.as_slice(), &key].concat()).await.is_err() {
                    return;
                }
            }
        })
    };
    let bar = tokio::spawn(async move {
        out(progress(0, m.duration, ""));
        for i in 1..m.duration {
            tokio::time::sleep(Duration::from_secs(1)).await;
            out(progress(i, m.duration, &format!(" {:02}m{:02}s", (m.duration - i) / 60, (m.duration - i) % 60)));
        }
    });
    let mut results = Vec::new();
    while let Some(r) = res_rx.recv().await {
        results.push(r);
    }
    let elapsed = start.elapsed();
    let _ = producer.await;
    for w in workers {
        let _ = w.await;
    }
    bar.abort();
    out(progress(m.duration, m.duration, &format!(" {}\n", go_seconds(elapsed.as_secs_f64().round() as u64))));

    let delete = DeleteRangeRequest { key: prefix.clone(), range_end: prefix_end(&prefix), ..Default::default() };
    let deleted = within_30s(first.delete(delete)).await?;
    if a.auto_compact {
        let rev = deleted.header.map(|h| h.revision).unwrap_or(0);
        out(format!("Compacting with revision {rev}\n"));
        within_30s(first.compact(CompactionRequest { revision: rev, physical: true })).await?;
        out(format!("Compacted with revision {rev}\n"));
    }
    if a.auto_defrag {
        for ep in first.endpoints() {
            out(format!("Defragmenting {}\n", quote(ep.as_bytes())));
            let one = ctx.client_for(vec![ep.clone()], false)?;
            within_30s(one.defragment()).await?;
            out(format!("Defragmented {}\n", quote(ep.as_bytes())));
        }
    }
    let (text, ok) = verdict(&stats(&results, elapsed), m.limit);
    out(text);
    if !ok {
        std::process::exit(EXIT_ERROR);
    }
    Ok(())
}

/// etcdctl's 30-second bound on the clean-up requests.
async fn within_30s<T>(fut: impl std::future::Future<Output = retcd_client::Result<T>>) -> Result<T, CtlError> {
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(CtlError::new(EXIT_ERROR, "context deadline exceeded")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_drawn_as_etcdctls_bar() {
        assert_eq!(progress(0, 60, ""), "\r 0 / 60    0.00%");
        assert_eq!(progress(11, 60, " 00m49s"), "\r 11 / 60   18.33% 00m49s");
        assert_eq!(progress(60, 60, &format!(" {}", go_seconds(60))), "\r 60 / 60  100.00% 1m0s");
        assert_eq!(go_seconds(59), "59s");
    }

    #[test]
    fn varints_are_go_varints() {
        let enc = |v: i64| {
            let mut b = [0u8; 10];
            put_varint(&mut b, v);
            b
        };
        assert_eq!(enc(0)[0], 0);
        assert_eq!(enc(-1)[0], 1);
        assert_eq!(enc(1)[0], 2);
        assert_eq!(enc(64)[..2], [0x80, 0x01]);
    }

    #[test]
    fn a_run_is_judged_as_etcdctl_judges_it() {
        let ms = Duration::from_millis;
        let fast: Vec<_> = (0..150).map(|_| (ms(2), None)).collect();
        let s = stats(&fast, Duration::from_secs(1));
        let (text, ok) = verdict(&s, 150);
        assert!(ok);
        assert_eq!(
            text,
            "PASS: Throughput is 151 writes/s\nPASS: Slowest request took 0.002000s\nPASS: Stddev is 0.000000s\nPASS\n"
        );
        let mut slow = fast.clone();
        slow.push((ms(900), None));
        slow.push((ms(1), Some("etcdserver: request timed out".into())));
        let (text, ok) = verdict(&stats(&slow, Duration::from_secs(2)), 150);
        assert!(!ok);
        assert!(text.starts_with("FAIL: too many errors\nFAIL: ERROR(etcdserver: request timed out) -> 1\nFAIL: Throughput too low: 76 writes/s\nSlowest request took too long: 0.900000s\n"), "{text}");
        assert!(text.ends_with("FAIL\n"));
    }
}
