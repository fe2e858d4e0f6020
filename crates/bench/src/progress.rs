//! The progress bar: drawn on stderr only when stderr is a terminal.
//!
//! Workers bump a shared atomic counter (one relaxed add per request); a
//! ticker task copies it into the bar ten times a second, so the bar costs
//! the load loop nothing.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    done: Arc<AtomicU64>,
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts a bar of `total` steps. Call inside the tokio runtime.
    pub fn start(total: u64) -> Progress {
        Progress::with_counter(total, Arc::new(AtomicU64::new(0)))
    }

    /// A bar over a counter the caller already shares with its workers.
    pub fn with_counter(total: u64, done: Arc<AtomicU64>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { done, bar: None, ticker: None };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{pos:>7}/{len:7} [{bar:50}] {percent:>3}% {per_sec:>12} {elapsed_precise}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        let ticker = {
            let (bar, done) = (bar.clone(), done.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    bar.set_position(done.load(Ordering::Relaxed));
                }
            })
        };
        Progress { done, bar: Some(bar), ticker: Some(ticker) }
    }

    pub fn counter(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }

    pub fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        if let Some(bar) = self.bar {
            bar.set_position(self.done.load(Ordering::Relaxed));
            bar.finish();
        }
    }
}
