//! The benchmark commands and what they share.

pub mod kv;
pub mod lease;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;

use crate::cli::Global;
use crate::limiter::Limiter;
use crate::report::Summary;

/// What every command gets: the flags and the open connections.
pub struct Ctx {
    pub g: Global,
    pub channels: Vec<Channel>,
    pub dial_timeout: Duration,
}

impl Ctx {
    pub fn clients(&self) -> usize {
        self.g.clients as usize
    }

    /// The connection client `i` uses.
    pub fn channel(&self, i: usize) -> Channel {
        crate::conn::for_client(&self.channels, i)
    }

    pub fn total(&self, default: u64) -> u64 {
        self.g.total.unwrap_or(default)
    }

    pub fn key_size(&self, default: u64) -> usize {
        self.g.key_size.unwrap_or(default) as usize
    }

    pub fn val_size(&self, default: u64) -> usize {
        self.g.val_size.unwrap_or(default) as usize
    }

    pub fn limiter(&self, rate: u64) -> Option<Arc<Limiter>> {
        Limiter::new(rate).map(Arc::new)
    }

    /// A line for the reader (e.g. "bench with linearizable range"): on
    /// stdout, or on stderr when stdout carries the JSON summary.
    pub fn say(&self, line: &str) {
        if self.g.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

/// What a command produced: the text to print and the summaries for JSON.
pub struct Outcome {
    pub text: String,
    pub summaries: Vec<Summary>,
}
