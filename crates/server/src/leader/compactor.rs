//! Automatic compaction (`--auto-compaction-mode`, `--auto-compaction-retention`),
//! run by the leader only, as etcd's v3compactor:
//!
//! - `periodic`: keep the history of the last retention period. The current
//!   revision is sampled every tenth of the period (of an hour, for periods
//!   longer than an hour); once a period has passed, the store is compacted
//!   to the oldest sample, then again every period (at most every hour).
//! - `revision`: every five minutes, compact to the current revision minus
//!   the retention.
//!
//! A compaction is an ordinary proposal, so every member compacts at the
//! same point of the log.

use std::sync::{Arc, Weak};
use std::time::Duration;

use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::CompactionRequest;
use retcd_api::retcdpb::InternalRequest;
use tokio::time::Instant;

use crate::config::ConfigError;
use crate::server::EtcdServer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    Periodic(Duration),
    Revision(i64),
}

const HOUR: Duration = Duration::from_secs(3600);
/// etcd's revision-mode check interval.
const REVISION_INTERVAL: Duration = Duration::from_secs(300);

/// Parses the flags as etcd: a plain number is hours (periodic) or
/// revisions (revision); otherwise a Go duration such as "30m" (periodic).
/// None when disabled (retention 0).
pub fn parse(mode: &str, retention: &str) -> Result<Option<AutoCompaction>, ConfigError> {
    let bad = || ConfigError(format!("error parsing CompactionRetention: invalid duration {retention:?}"));
    let parsed = match (mode, retention.trim().parse::<i64>()) {
        ("revision", Ok(n)) if n >= 0 => AutoCompaction::Revision(n),
        ("periodic", Ok(n)) if n >= 0 => AutoCompaction::Periodic(HOUR * n as u32),
        ("periodic" | "revision", _) => {
            if mode == "revision" {
                return Err(bad());
            }
            AutoCompaction::Periodic(crate::config::parse_duration(retention).map_err(|_| bad())?)
        }
        _ => return Err(ConfigError(format!("unknown auto-compaction-mode {mode:?}"))),
    };
    Ok(match parsed {
        AutoCompaction::Periodic(d) if d.is_zero() => None,
        AutoCompaction::Revision(0) => None,
        p => Some(p),
    })
}

/// Starts the compactor task; it ends when the server is dropped.
pub fn spawn(server: &Arc<EtcdServer>, mode: AutoCompaction) {
    let weak = Arc::downgrade(server);
    match mode {
        AutoCompaction::Periodic(period) => {
            tokio::spawn(periodic(weak, period));
        }
        AutoCompaction::Revision(retention) => {
            tokio::spawn(revision(weak, retention, revision_interval()));
        }
    }
    tracing::info!("auto compaction: {mode:?}");
}

/// Debug builds (tests) may shorten the five-minute revision-mode interval
/// with `RETCD_TEST_REVISION_COMPACT_INTERVAL_MS`; release builds ignore it.
fn revision_interval() -> Duration {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("RETCD_TEST_REVISION_COMPACT_INTERVAL_MS").ok().and_then(|v| v.parse().ok()) {
        return Duration::from_millis(ms);
    }
    REVISION_INTERVAL
}

async fn compact(server: &EtcdServer, rev: i64, mode: &str) -> bool {
    tracing::info!("starting auto {mode} compaction (revision {rev})");
    let req = InternalRequest {
        compaction: Some(CompactionRequest { revision: rev, physical: false }),
        ..Default::default()
    };
    match server.propose::<()>(req).await {
        Ok(()) | Err(EtcdError::Compacted) => {
            tracing::info!("completed auto {mode} compaction (revision {rev})");
            true
        }
        Err(e) => {
            tracing::warn!("failed auto {mode} compaction (revision {rev}): {e}");
            false
        }
    }
}

async fn periodic(weak: Weak<EtcdServer>, period: Duration) {
    let window = period.min(HOUR);
    let retry = window / 10;
    let keep = (period.as_nanos() / retry.as_nanos().max(1)) as usize + 1;
    let mut revs: Vec<i64> = Vec::new();
    let mut last_success = Instant::now();
    let mut base = period;
    loop {
        {
            let Some(server) = weak.upgrade() else { return };
            revs.push(server.kv.rev());
        }
        if revs.len() > keep {
            revs.remove(0);
        }
        tokio::time::sleep(retry).await;
        let Some(server) = weak.upgrade() else { return };
        if !server.raft.is_leader() || last_success.elapsed() < base {
            continue;
        }
        base = window;
        if compact(&server, revs[0], "periodic").await {
            last_success = Instant::now();
        }
    }
}

async fn revision(weak: Weak<EtcdServer>, retention: i64, interval: Duration) {
    let mut prev = 0;
    loop {
        tokio::time::sleep(interval).await;
        let Some(server) = weak.upgrade() else { return };
        if !server.raft.is_leader() {
            continue;
        }
        let rev = server.kv.rev() - retention;
        if rev <= 0 || rev == prev {
            continue;
        }
        if compact(&server, rev, "revision").await {
            prev = rev;
        }
    }
}
