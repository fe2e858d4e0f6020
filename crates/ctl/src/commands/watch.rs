//! `watch`: prints events as they arrive; `--` runs a command per event with
//! `ETCD_WATCH_*` in its environment; `-i` reads `watch ...` lines from
//! stdin. The watch resumes on another endpoint if its member goes away
//! (retcd-client's watcher), and ends with etcdctl's "watch is canceled by
//! the server" (exit 5) when the server cancels it.

use std::io::BufRead;

use clap::Parser;
use retcd_client::etcdserverpb::WatchResponse;
use retcd_client::{prefix_end, Client, WatchCreateRequest};

use crate::cli::WatchArgs;
use crate::commands::int_flag;
use crate::context::{err, out, Ctx};
use crate::exit::{CtlError, EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID_INPUT};
use crate::printer::gofmt::quote;
use crate::printer::kv::event_type;
use crate::printer::Printer;

const BAD_ARGS_NUM: &str = "bad number of arguments";
const BAD_ARGS_SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";
const BAD_ARGS_ENV: &str = "bad number of arguments (found conflicting environment key)";

fn env_key() -> (String, String) {
    (
        std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default(),
        std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default(),
    )
}

pub async fn watch(ctx: &Ctx, a: WatchArgs) -> Result<(), CtlError> {
    let (key, range) = env_key();
    if key.is_empty() && !range.is_empty() {
        return Err(CtlError::bad_args(format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
            quote(range.as_bytes())
        )));
    }
    if a.interactive {
        return interactive(ctx, &key, &range).await;
    }
    // Like etcdctl, find `--` in the raw command line (clap drops it).
    let raw: Vec<String> = std::env::args().skip_while(|s| s != "watch").skip(1).collect();
    let sep = raw.iter().position(|s| s == "--");
    if sep == Some(raw.len().saturating_sub(1)) && sep.is_some() {
        return Err(CtlError::bad_args(BAD_ARGS_SEPARATOR));
    }
    let exec: Vec<String> = sep.map(|i| raw[i + 1..].to_vec()).unwrap_or_default();
    let mut args: Vec<String> = a.args.iter().filter(|s| *s != "--").cloned().collect();
    if let Some(first) = exec.first() {
        if let Some(end) = args.iter().rposition(|s| s == first) {
            args.truncate(end);
        }
    }
    if !key.is_empty() {
        if !args.is_empty() {
            return Err(CtlError::bad_args(BAD_ARGS_ENV));
        }
        args.push(key);
        if !range.is_empty() {
            args.push(range);
        }
    }
    let req = create_request(&args, &a)?;
    let client = ctx.client_with(ctx.global.endpoints.clone(), false, true)?;
    let printer = ctx.printer()?;
    let watcher = client.watch(req).await.map_err(|e| CtlError::client(EXIT_ERROR, e))?;
    print_events(printer, watcher, exec).await;
    Err(CtlError::new(EXIT_INTERRUPTED, "watch is canceled by the server"))
}

fn create_request(args: &[String], a: &WatchArgs) -> Result<WatchCreateRequest, CtlError> {
    let Some(key) = args.first() else {
        return Err(CtlError::bad_args(BAD_ARGS_NUM));
    };
    let rev = int_flag("rev", &a.rev)?;
    let mut req = WatchCreateRequest {
        key: key.clone().into_bytes(),
        start_revision: rev,
        prev_kv: a.prev_kv,
        ..Default::default()
    };
    if args.len() == 2 {
        if a.prefix {
            return Err(CtlError::bad_args("`range_end` and `--prefix` are mutually exclusive"));
        }
        req.range_end = args[1].clone().into_bytes();
    }
    if a.prefix {
        if req.key.is_empty() {
            req.key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = prefix_end(&req.key);
        }
    }
    Ok(req)
}

/// Prints every response until the watch ends.
async fn print_events(printer: Printer, mut watcher: retcd_client::Watcher, exec: Vec<String>) {
    while let Some(resp) = watcher.next().await {
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                err(format!("watch was canceled ({e})\n"));
                return;
            }
        };
        if resp.created && resp.events.is_empty() {
            continue;
        }
        if resp.canceled {
            err(format!("watch was canceled ({})\n", cancel_error(&resp)));
        }
        let revision = resp.header.map(|h| h.revision).unwrap_or(0);
        if resp.events.is_empty() && !resp.canceled && resp.compact_revision == 0 && revision != 0 {
            out(format!("progress notify: {revision}\n"));
        }
        match printer.print(&resp) {
            Ok(text) => out(text),
            Err(e) => {
                err(format!("Error: {}\n", e.msg));
                std::process::exit(e.code);
            }
        }
        if !exec.is_empty() {
            run_exec(&exec, &resp);
        }
        if resp.canceled {
            return;
        }
    }
}

/// What clientv3's `WatchResponse.Err()` says for a canceled watch.
fn cancel_error(resp: &WatchResponse) -> String {
    if resp.compact_revision != 0 {
        return retcd_client::EtcdError::Compacted.message().to_string();
    }
    if resp.cancel_reason.is_empty() {
        return retcd_client::EtcdError::FutureRev.message().to_string();
    }
    match retcd_client::EtcdError::from_message(&resp.cancel_reason) {
        Some(e) => e.message().to_string(),
        None => format!("rpc error: code = FailedPrecondition desc = {}", resp.cancel_reason),
    }
}

/// Runs the `--` command once per event, as etcdctl does.
fn run_exec(exec: &[String], resp: &WatchResponse) {
    for ev in &resp.events {
        let kv = ev.kv.clone().unwrap_or_default();
        let status = std::process::Command::new(&exec[0])
            .args(&exec[1..])
            .env("ETCD_WATCH_REVISION", resp.header.map(|h| h.revision).unwrap_or(0).to_string())
            .env("ETCD_WATCH_EVENT_TYPE", format!("\"{}\"", event_type(ev.r#type)))
            .env("ETCD_WATCH_KEY", quote(&kv.key))
            .env("ETCD_WATCH_VALUE", quote(&kv.value))
            .status();
        let failure = match status {
            Ok(s) if s.success() => None,
            Ok(s) => Some(match s.code() {
                Some(c) => format!("exit status {c}"),
                None => "signal: killed".to_string(),
            }),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failure {
            let list: Vec<String> = exec.iter().map(|s| quote(s.as_bytes())).collect();
            err(format!("command [{}] error ({why})\n", list.join(" ")));
            std::process::exit(1);
        }
    }
}

#[derive(Parser)]
#[command(name = "watch", no_binary_name = true)]
struct InteractiveLine {
    #[command(flatten)]
    args: WatchArgs,
}

/// `watch -i`: one watch per `watch ...` line read from stdin.
async fn interactive(ctx: &Ctx, key: &str, range: &str) -> Result<(), CtlError> {
    let client: Client = ctx.client_with(ctx.global.endpoints.clone(), false, true)?;
    let printer = ctx.printer()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<String>>(4);
    // stdin is blocking: read it on its own thread.
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(l) => {
                    if tx.blocking_send(Some(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.blocking_send(None);
    });
    while let Some(msg) = rx.recv().await {
        let Some(l) = msg else {
            return Err(CtlError::new(EXIT_INVALID_INPUT, "Error reading watch request line: EOF"));
        };
        let words = crate::commands::txn::argify(&l);
        if words.is_empty() {
            err(format!("Invalid command: {l} (watch and progress supported)\n"));
            continue;
        }
        match words[0].as_str() {
            "watch" => {
                if words.len() < 2 && key.is_empty() {
                    err(format!("Invalid command {l} (command type or key is not provided)\n"));
                    continue;
                }
                let rest = &words[1..];
                let sep = rest.iter().position(|s| s == "--");
                if sep.is_some() && sep == rest.len().checked_sub(1) {
                    return Err(CtlError::bad_args(BAD_ARGS_SEPARATOR));
                }
                let parsed = InteractiveLine::try_parse_from(rest.iter().take(sep.unwrap_or(rest.len())))
                    .map_err(|e| CtlError::new(EXIT_BAD_ARGS, e.kind().to_string()))?;
                let exec: Vec<String> = sep.map(|i| rest[i + 1..].to_vec()).unwrap_or_default();
                let mut args = parsed.args.args.clone();
                if !key.is_empty() {
                    if !args.is_empty() && exec.is_empty() {
                        return Err(CtlError::bad_args(BAD_ARGS_ENV));
                    }
                    let mut with_env = vec![key.to_string()];
                    if !range.is_empty() {
                        with_env.push(range.to_string());
                    }
                    with_env.extend(args);
                    args = with_env;
                }
                let req = match create_request(&args, &parsed.args) {
                    Ok(r) => r,
                    Err(e) => {
                        err(format!("Invalid command {l} ({})\n", e.msg));
                        continue;
                    }
                };
                let watcher = client.watch(req).await.map_err(|e| CtlError::client(EXIT_ERROR, e))?;
                tokio::spawn(print_events(printer, watcher, exec));
            }
            _ => err(format!("Invalid command {l} (only support watch)\n")),
        }
    }
    Ok(())
}
