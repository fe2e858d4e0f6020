//! Latency samples and the summaries printed at the end of a run.
//!
//! Workers record raw latencies into their own [`Samples`] (a pre-sized
//! vector of nanoseconds: no locking, no channel, no allocation per request);
//! the samples are merged once at the end into a [`Summary`], printed in the
//! layout of etcd's `pkg/report` (Summary, Response time histogram, Latency
//! distribution, Error distribution) or serialized as JSON for scripts.
//!
//! Percentiles are exact (all samples are kept and sorted) and follow etcd's
//! rule: the p-th percentile is the first sample whose rank is at least p% of
//! the count.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// The percentiles etcd's report prints.
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// Raw results of one kind of request, as gathered by one worker.
#[derive(Debug, Default)]
pub struct Samples {
    lat_ns: Vec<u64>,
    errors: HashMap<String, u64>,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Samples {
        Samples { lat_ns: Vec::with_capacity(n), errors: HashMap::new() }
    }

    /// A successful request that took `d`.
    #[inline]
    pub fn record(&mut self, d: Duration) {
        self.lat_ns.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// A successful request that took `ns` nanoseconds.
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        self.lat_ns.push(ns);
    }

    /// A failed gRPC request, counted under Go gRPC's error text so the
    /// distribution reads like etcd's benchmark.
    pub fn error(&mut self, status: &tonic::Status) {
        let text = format!("rpc error: code = {:?} desc = {}", status.code(), status.message());
        *self.errors.entry(text).or_default() += 1;
    }

    /// A failure that is not a gRPC status (e.g. a missing watch event).
    pub fn error_text(&mut self, text: &str, n: u64) {
        *self.errors.entry(text.to_string()).or_default() += n;
    }

    pub fn merge(&mut self, other: Samples) {
        if self.lat_ns.is_empty() {
            self.lat_ns = other.lat_ns;
        } else {
            self.lat_ns.extend_from_slice(&other.lat_ns);
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

/// Statistics over every sample of one report.
#[derive(Debug, Clone)]
pub struct Summary {
    pub name: String,
    /// Wall-clock time of the whole run the samples belong to.
    pub elapsed: Duration,
    /// Sorted latencies, in seconds.
    lats: Vec<f64>,
    errors: BTreeMap<String, u64>,
    pub average: f64,
    pub stddev: f64,
    pub fastest: f64,
    pub slowest: f64,
    pub rps: f64,
}

impl Summary {
    pub fn new(name: &str, samples: Samples, elapsed: Duration) -> Summary {
        let mut lat_ns = samples.lat_ns;
        lat_ns.sort_unstable();
        let lats: Vec<f64> = lat_ns.iter().map(|&ns| ns as f64 / 1e9).collect();
        let n = lats.len();
        let (mut average, mut stddev) = (0.0, 0.0);
        if n > 0 {
            average = lats.iter().sum::<f64>() / n as f64;
            stddev = (lats.iter().map(|l| (l - average) * (l - average)).sum::<f64>() / n as f64).sqrt();
        }
        let secs = elapsed.as_secs_f64();
        Summary {
            name: name.to_string(),
            elapsed,
            fastest: lats.first().copied().unwrap_or(0.0),
            slowest: lats.last().copied().unwrap_or(0.0),
            rps: if secs > 0.0 { n as f64 / secs } else { 0.0 },
            average,
            stddev,
            lats,
            errors: samples.errors.into_iter().collect(),
        }
    }

    pub fn ok(&self) -> u64 {
        self.lats.len() as u64
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Latencies (seconds) at [`PERCENTILES`], etcd's way (0 when there are no samples).
    pub fn percentiles(&self) -> [f64; PERCENTILES.len()] {
        let mut out = [0.0; PERCENTILES.len()];
        let n = self.lats.len();
        let mut j = 0;
        for (i, &lat) in self.lats.iter().enumerate() {
            if j >= PERCENTILES.len() {
                break;
            }
            // Several percentiles can fall on the same sample when there are few.
            while j < PERCENTILES.len() && i as f64 * 100.0 / n as f64 >= PERCENTILES[j] {
                out[j] = lat;
                j += 1;
            }
        }
        // With few samples the top percentiles get no rank of their own:
        // they are the slowest sample.
        for v in out.iter_mut().skip(j) {
            *v = self.slowest;
        }
        out
    }

    /// The text report, in the layout of etcd's benchmark. `precise` prints
    /// every digit instead of four decimals.
    pub fn text(&self, precise: bool) -> String {
        let f = |x: f64| if precise { format!("{x}") } else { format!("{x:4.4}") };
        let mut s = String::new();
        if !self.lats.is_empty() {
            s.push_str("\nSummary:\n");
            let _ = writeln!(s, "  Total:\t{} secs.", f(self.elapsed.as_secs_f64()));
            let _ = writeln!(s, "  Slowest:\t{} secs.", f(self.slowest));
            let _ = writeln!(s, "  Fastest:\t{} secs.", f(self.fastest));
            let _ = writeln!(s, "  Average:\t{} secs.", f(self.average));
            let _ = writeln!(s, "  Stddev:\t{} secs.", f(self.stddev));
            let _ = writeln!(s, "  Requests/sec:\t{}", f(self.rps));
            s.push_str("\nResponse time histogram:\n");
            for (bucket, count, bar) in self.histogram() {
                let _ = writeln!(s, "  {} [{count}]\t|{bar}", f(bucket));
            }
            s.push_str("\nLatency distribution:\n");
            for (p, v) in PERCENTILES.iter().zip(self.percentiles()) {
                if v > 0.0 {
                    let _ = writeln!(s, "  {p}% in {} secs.", f(v));
                }
            }
        }
        if !self.errors.is_empty() {
            s.push_str("\nError distribution:\n");
            for (err, n) in &self.errors {
                let _ = writeln!(s, "  [{n}]\t{err}");
            }
        }
        s
    }

    /// Eleven buckets from fastest to slowest: (upper bound, count, bar of up to 40 marks).
    fn histogram(&self) -> Vec<(f64, usize, String)> {
        const BUCKETS: usize = 10;
        let step = (self.slowest - self.fastest) / BUCKETS as f64;
        let mut bounds: Vec<f64> = (0..BUCKETS).map(|i| self.fastest + step * i as f64).collect();
        bounds.push(self.slowest);
        let mut counts = vec![0usize; bounds.len()];
        let mut b = 0;
        for &lat in &self.lats {
            while lat > bounds[b] && b < bounds.len() - 1 {
                b += 1;
            }
            counts[b] += 1;
        }
        let max = counts.iter().copied().max().unwrap_or(0);
        bounds
            .into_iter()
            .zip(counts)
            .map(|(bound, count)| {
                let len = (count * 40).checked_div(max).unwrap_or(0);
                (bound, count, "∎".repeat(len))
            })
            .collect()
    }

    pub fn json(&self) -> ReportJson {
        let ms = |x: f64| x * 1e3;
        let p = self.percentiles();
        ReportJson {
            name: self.name.clone(),
            total: self.ok() + self.error_count(),
            ok: self.ok(),
            errors: self.error_count(),
            error_distribution: self.errors.clone(),
            elapsed_secs: self.elapsed.as_secs_f64(),
            requests_per_sec: self.rps,
            latency_ms: LatencyJson {
                fastest: ms(self.fastest),
                average: ms(self.average),
                stddev: ms(self.stddev),
                slowest: ms(self.slowest),
                p10: ms(p[0]),
                p25: ms(p[1]),
                p50: ms(p[2]),
                p75: ms(p[3]),
                p90: ms(p[4]),
                p95: ms(p[5]),
                p99: ms(p[6]),
                p99_9: ms(p[7]),
            },
        }
    }
}

/// One report in the JSON summary.
#[derive(Debug, Serialize)]
pub struct ReportJson {
    pub name: String,
    /// Requests issued: `ok + errors`.
    pub total: u64,
    pub ok: u64,
    pub errors: u64,
    pub error_distribution: BTreeMap<String, u64>,
    pub elapsed_secs: f64,
    /// Successful requests per second of wall-clock time.
    pub requests_per_sec: f64,
    pub latency_ms: LatencyJson,
}

#[derive(Debug, Serialize)]
pub struct LatencyJson {
    pub fastest: f64,
    pub average: f64,
    pub stddev: f64,
    pub slowest: f64,
    pub p10: f64,
    pub p25: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
}

/// The whole JSON document `--json` / `--summary-json` writes.
#[derive(Debug, Serialize)]
pub struct RunJson {
    pub command: String,
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub clients: usize,
    pub reports: Vec<ReportJson>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(ms: &[u64]) -> Summary {
        let mut s = Samples::default();
        for &m in ms {
            s.record(Duration::from_millis(m));
        }
        Summary::new("t", s, Duration::from_secs(1))
    }

    #[test]
    fn stats_and_percentiles() {
        let s = summary(&(1..=100).collect::<Vec<_>>());
        assert_eq!(s.ok(), 100);
        assert!((s.rps - 100.0).abs() < 1e-9);
        assert!((s.fastest - 0.001).abs() < 1e-12);
        assert!((s.slowest - 0.100).abs() < 1e-12);
        let p = s.percentiles();
        // rank i (0-based) is i% of 100 samples: p50 is the 51st sample.
        assert!((p[2] - 0.051).abs() < 1e-12);
        assert!((p[6] - 0.100).abs() < 1e-12);
        let text = s.text(false);
        assert!(text.contains("Requests/sec:\t100.0000"), "{text}");
        assert!(text.contains("  50% in 0.0510 secs."), "{text}");
        assert_eq!(text.matches('|').count(), 11);
    }

    #[test]
    fn few_samples_fill_every_percentile() {
        let s = summary(&[5]);
        assert!(s.percentiles().iter().all(|&p| (p - 0.005).abs() < 1e-12));
    }

    #[test]
    fn errors_are_counted_and_printed() {
        let mut samples = Samples::default();
        samples.error(&tonic::Status::unavailable("down"));
        samples.error(&tonic::Status::unavailable("down"));
        let s = Summary::new("t", samples, Duration::from_secs(1));
        assert_eq!(s.error_count(), 2);
        assert!(s.text(false).contains("[2]\trpc error: code = Unavailable desc = down"));
        let j = s.json();
        assert_eq!((j.total, j.ok, j.errors), (2, 0, 2));
    }
}
