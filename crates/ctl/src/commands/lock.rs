//! `lock <name> [command ...]`: holds a named lock (etcd's concurrency
//! mutex, so etcdctl and retcdctl exclude each other) until SIGINT/SIGTERM,
//! or runs the command with `ETCD_LOCK_KEY`/`ETCD_LOCK_REV` while holding it.
//! `elect <name> <proposal>` campaigns and leads until a signal;
//! `elect -l <name>` prints each leader as it changes.

use retcd_client::concurrency::{leader, Leadership, Mutex, Session};
use retcd_client::{prefix_end, Client, RangeRequest, WatchCreateRequest};

use crate::cli::{ElectArgs, LockArgs};
use crate::commands::int_flag;
use crate::context::{out, Ctx};
use crate::exit::{CtlError, EXIT_ERROR};

pub async fn lock(ctx: &Ctx, a: LockArgs) -> Result<(), CtlError> {
    if a.args.is_empty() {
        return Err(CtlError::bad_args("lock takes a lock name argument and an optional command to execute"));
    }
    let ttl = int_flag("ttl", &a.ttl)?;
    let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
    let printer = ctx.printer()?;
    let session = Session::new(&client, ttl).await?;
    let mutex = tokio::select! {
        m = Mutex::lock(&session, &a.args[0]) => m?,
        _ = signal() => return Err(CtlError::new(EXIT_ERROR, "context canceled")),
    };
    if a.args.len() > 1 {
        let key = String::from_utf8_lossy(&mutex.key).into_owned();
        let status = std::process::Command::new(&a.args[1])
            .args(&a.args[2..])
            .env("ETCD_LOCK_KEY", key)
            .env("ETCD_LOCK_REV", mutex.header.revision.to_string())
            .status();
        let unlocked = mutex.unlock(&client).await;
        let _ = session.close().await;
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                let why = s.code().map_or("signal: killed".to_string(), |c| format!("exit status {c}"));
                return Err(CtlError::new(EXIT_ERROR, why));
            }
            Err(e) => return Err(CtlError::new(EXIT_ERROR, e.to_string())),
        }
        return unlocked.map_err(Into::into);
    }
    let got = client.range(RangeRequest { key: mutex.key.clone(), ..Default::default() }).await?;
    if got.kvs.is_empty() {
        return Err(CtlError::new(EXIT_ERROR, "lock lost on init"));
    }
    out(printer.print(&got)?);
    signal().await;
    mutex.unlock(&client).await?;
    let _ = session.close().await;
    Ok(())
}

pub async fn elect(ctx: &Ctx, a: ElectArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 && a.args.len() != 2 {
        return Err(CtlError::bad_args("elect takes one election name argument and an optional proposal argument"));
    }
    if a.args.len() == 1 && !a.listen {
        return Err(CtlError::bad_args("no proposal argument but -l not set"));
    }
    if a.args.len() == 2 && a.listen {
        return Err(CtlError::bad_args("proposal given but -l is set"));
    }
    let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
    let printer = ctx.printer()?;
    if a.listen {
        tokio::select! {
            r = observe(&client, &a.args[0], printer) => return r,
            _ = signal() => return Ok(()),
        }
    }
    let session = Session::new(&client, 60).await?;
    let won = tokio::select! {
        l = Leadership::campaign(&session, &a.args[0], a.args[1].as_bytes()) => l?,
        _ = signal() => return Err(CtlError::new(EXIT_ERROR, "context canceled")),
    };
    let got = client.range(RangeRequest { key: won.key.clone(), ..Default::default() }).await?;
    out(printer.print(&got)?);
    signal().await;
    won.resign(&client).await?;
    let _ = session.close().await;
    Ok(())
}

/// Prints the leader of `name` each time it changes (or changes its value).
async fn observe(client: &Client, name: &str, printer: crate::printer::Printer) -> Result<(), CtlError> {
    let pfx = format!("{name}/").into_bytes();
    loop {
        let resp = leader(client, name).await?;
        let rev = resp.header.map(|h| h.revision).unwrap_or(0);
        let (key, range_end) = match resp.kvs.first() {
            Some(kv) => {
                out(printer.print(&resp)?);
                (kv.key.clone(), Vec::new())
            }
            // No leader yet: wait for a candidate under the prefix.
            None => (pfx.clone(), prefix_end(&pfx)),
        };
        let mut watch =
            client.watch(WatchCreateRequest { key, range_end, start_revision: rev + 1, ..Default::default() }).await?;
        'leader: while let Some(msg) = watch.next().await {
            let msg = msg?;
            if msg.canceled {
                return Err(CtlError::new(EXIT_ERROR, "elect: observer lost"));
            }
            for ev in msg.events {
                if ev.r#type == 1 || resp.kvs.is_empty() {
                    break 'leader;
                }
                // The leader proclaimed a new value.
                let mut update = resp.clone();
                update.header = msg.header;
                update.kvs = ev.kv.into_iter().collect();
                out(printer.print(&update)?);
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
