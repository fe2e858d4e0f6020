//! `--rate`: a token bucket shared by every worker.
//!
//! Each request claims the next free send slot (`interval` apart) and sleeps
//! until it. Slots are claimed from the previous slot rather than from "now",
//! so tokio's millisecond timer does not cap the rate at 1000/s for a single
//! client; a backlog older than [`MAX_BURST`] is forgotten, so an idle or slow
//! period is not followed by an unbounded burst.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_BURST: Duration = Duration::from_millis(10);

pub struct Limiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Limiter {
    /// `None` for `rate == 0` (no limit).
    pub fn new(rate: u64) -> Option<Limiter> {
        (rate > 0).then(|| Limiter {
            interval: Duration::from_nanos((1_000_000_000 / rate).max(1)),
            next: Mutex::new(Instant::now()),
        })
    }

    pub async fn wait(&self) {
        let now = Instant::now();
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let at = (*next).max(now.checked_sub(MAX_BURST).unwrap_or(now));
            *next = at + self.interval;
            at
        };
        if at > now {
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paces_requests() {
        let l = Limiter::new(1000).unwrap();
        let st = Instant::now();
        for _ in 0..50 {
            l.wait().await;
        }
        // 50 slots 1 ms apart: about 40-50 ms (the first few may be a burst).
        assert!(st.elapsed() >= Duration::from_millis(35), "{:?}", st.elapsed());
        assert!(Limiter::new(0).is_none());
    }
}
