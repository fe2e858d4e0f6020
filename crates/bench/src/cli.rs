//! Command-line flags: etcd's benchmark names and defaults.
//!
//! etcd's tool declares `--total`, `--key-size`, `--val-size`, `--rate`,
//! `--key-space-size` and `--sequential-keys` per command with per-command
//! defaults; here they are global flags (accepted before or after the
//! command) and each command fills in etcd's default when one is not given.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "retcd-bench",
    version,
    about = "A low-level benchmark tool for etcd v3 servers (retcd or etcd).",
    long_about = "retcd-bench drives an etcd v3 server over gRPC directly (no client library) \
                  and prints a latency summary in the layout of etcd's tools/benchmark."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// gRPC endpoints (host:port or http://host:port), comma separated
    #[arg(long, global = true, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// Total number of gRPC connections
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub conns: u64,
    /// Total number of gRPC clients (concurrent requests)
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// Total number of requests [default: 10000]
    #[arg(long, global = true)]
    pub total: Option<u64>,
    /// Key size of a request in bytes [default: 8; watch: 32]
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_size: Option<u64>,
    /// Value size of a request in bytes [default: 8]
    #[arg(long, global = true)]
    pub val_size: Option<u64>,
    /// Maximum possible keys
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_space_size: u64,
    /// Use sequential keys (request i uses key i % key-space-size) instead of random ones
    #[arg(long, global = true)]
    pub sequential_keys: bool,
    /// Maximum requests per second (0 is no limit)
    #[arg(long, global = true, default_value_t = 0)]
    pub rate: u64,
    /// Use full floating point precision in the text summary
    #[arg(long, global = true)]
    pub precise: bool,
    /// Print the summary as JSON on stdout (instead of text)
    #[arg(long, global = true)]
    pub json: bool,
    /// Also write the JSON summary to this file
    #[arg(long, global = true, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// Dial timeout for client connections, in seconds
    #[arg(long, global = true, default_value_t = 5.0)]
    pub dial_timeout: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable
    L,
    /// Serializable
    S,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Benchmark put
    Put,
    /// Benchmark range
    Range {
        /// Key to read
        key: String,
        /// Range end (exclusive); omitted: the single key
        end: Option<String>,
        /// Linearizable(l) or Serializable(s)
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
    },
    /// Benchmark txn-put (a txn of --txn-ops puts per request)
    TxnPut {
        /// Number of puts per txn
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        txn_ops: u64,
    },
    /// Benchmark a mixed load of txn-put and txn-range
    TxnMixed {
        /// Read range end key (default: every key)
        #[arg(long)]
        end_key: Option<String>,
        /// Read operation range result limit
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// Linearizable(l) or Serializable(s)
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
        /// Read/write ops ratio
        #[arg(long, default_value_t = 1.0)]
        rw_ratio: f64,
    },
    /// Benchmark watch: many watchers, the latency from a put to each of its events
    Watch {
        /// Total watch streams
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        streams: u64,
        /// Total watchers per stream
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        watch_per_stream: u64,
        /// Total number of keys to be watched
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        watched_key_total: u64,
        /// Number of put requests [default: --total, else 1000]
        #[arg(long)]
        put_total: Option<u64>,
        /// Number of keys to put per second (0 is no limit) [default: --rate]
        #[arg(long)]
        put_rate: Option<u64>,
    },
    /// Benchmark serializable gets while many unsynced watchers catch up
    WatchGet {
        /// Total number of watchers
        #[arg(long, default_value_t = 10000, value_parser = clap::value_parser!(u64).range(1..))]
        watchers: u64,
        /// Total number of watcher streams
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        streams: u64,
        /// Number of events per watcher
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
        events: u64,
    },
    /// Benchmark lease keepalive
    LeaseKeepalive,
}

impl Cmd {
    pub fn name(&self) -> &'static str {
        match self {
            Cmd::Put => "put",
            Cmd::Range { .. } => "range",
            Cmd::TxnPut { .. } => "txn-put",
            Cmd::TxnMixed { .. } => "txn-mixed",
            Cmd::Watch { .. } => "watch",
            Cmd::WatchGet { .. } => "watch-get",
            Cmd::LeaseKeepalive => "lease-keepalive",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_before_and_after_the_command() {
        let cli = Cli::try_parse_from([
            "retcd-bench",
            "--endpoints=a:1,b:2",
            "--conns",
            "10",
            "range",
            "foo",
            "--consistency",
            "s",
            "--clients=100",
            "--total",
            "5",
        ])
        .unwrap();
        assert_eq!(cli.global.endpoints, vec!["a:1", "b:2"]);
        assert_eq!((cli.global.conns, cli.global.clients, cli.global.total), (10, 100, Some(5)));
        match cli.cmd {
            Cmd::Range { key, end, consistency } => {
                assert_eq!((key.as_str(), end, consistency), ("foo", None, Consistency::S));
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["retcd-bench", "range"]).is_err());
        assert!(Cli::try_parse_from(["retcd-bench", "put", "--clients", "0"]).is_err());
    }
}
