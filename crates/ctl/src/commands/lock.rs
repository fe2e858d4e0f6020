//! `lock <name> [command ...]`: holds a named lock (etcd's concurrency
//! mutex, so etcdctl and retcdctl exclude each other) until SIGINT/SIGTERM,
//! or runs the command with `ETCD_LOCK_KEY`/`ETCD_LOCK_REV` while holding it.

use retcd_client::concurrency::{Mutex, Session};
use retcd_client::RangeRequest;

use crate::cli::LockArgs;
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
    out(printer.get(&got)?);
    signal().await;
    mutex.unlock(&client).await?;
    let _ = session.close().await;
    Ok(())
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
