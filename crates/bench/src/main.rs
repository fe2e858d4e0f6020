//! `retcd-bench`: a load generator for etcd v3 servers, in the spirit of
//! etcd's `tools/benchmark`. It speaks the gRPC API directly (the generated
//! tonic clients of `retcd-api`), so it drives real etcd and retcd alike.
//!
//! Layout: `cli` (flags), `conn` (gRPC connections), `driver` (the closed
//! load loop), `keys`, `limiter`, `progress`, `report` (summaries), and one
//! module per group of commands under `cmd/`.

mod cli;
mod cmd;
mod conn;
mod driver;
mod keys;
mod limiter;
mod progress;
mod report;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Cmd};
use crate::cmd::Ctx;
use crate::report::RunJson;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("retcd-bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("retcd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let g = cli.global;
    let dial_timeout = std::time::Duration::from_secs_f64(g.dial_timeout.max(0.001));
    let channels = conn::connect(&g.endpoints, g.conns as usize, dial_timeout).await?;
    let ctx = Ctx { g, channels, dial_timeout };
    let name = cli.cmd.name();
    let outcome = match cli.cmd {
        Cmd::Put => cmd::kv::put(&ctx).await?,
        Cmd::Range { key, end, consistency } => cmd::kv::range(&ctx, key, end, consistency).await?,
        Cmd::TxnPut { txn_ops } => cmd::kv::txn_put(&ctx, txn_ops).await?,
        Cmd::TxnMixed { end_key, limit, consistency, rw_ratio } => {
            cmd::kv::txn_mixed(&ctx, end_key, limit, consistency, rw_ratio).await?
        }
        Cmd::Watch { streams, watch_per_stream, watched_key_total, put_total, put_rate } => {
            let args = cmd::watch::WatchArgs { streams, watch_per_stream, watched_key_total, put_total, put_rate };
            cmd::watch::watch(&ctx, args).await?
        }
        Cmd::WatchGet { watchers, streams, events } => cmd::watch::watch_get(&ctx, watchers, streams, events).await?,
        Cmd::LeaseKeepalive => cmd::lease::keepalive(&ctx).await?,
    };

    let doc = RunJson {
        command: name.to_string(),
        endpoints: ctx.g.endpoints.clone(),
        conns: ctx.g.conns as usize,
        clients: ctx.g.clients as usize,
        reports: outcome.summaries.iter().map(|s| s.json()).collect(),
    };
    let json = serde_json::to_string_pretty(&doc).map_err(|e| format!("cannot encode the JSON summary: {e}"))?;
    if ctx.g.json {
        println!("{json}");
    } else {
        print!("{}", outcome.text);
    }
    if let Some(path) = &ctx.g.summary_json {
        std::fs::write(path, format!("{json}\n")).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
