//! `endpoint health|status|hashkv [--cluster]`: one request per endpoint,
//! each on its own single-endpoint client, so every member answers for
//! itself.

use std::time::Instant;

use crate::cli::{EndpointArgs, EndpointCommand};
use crate::commands::int_flag;
use crate::context::{err, out, Ctx};
use crate::exit::{CtlError, EXIT_ERROR};
use crate::printer::endpoint::EpHealth;
use crate::printer::Format;

/// `--endpoints`, or with `--cluster` every member's client URLs.
pub async fn endpoints(ctx: &Ctx, cluster: bool) -> Result<Vec<String>, CtlError> {
    if !cluster {
        return ctx.endpoints();
    }
    let client = ctx.client()?;
    let resp = ctx
        .timed(async {
            client.member_list().await.map_err(|e| {
                CtlError::new(EXIT_ERROR, format!("failed to fetch endpoints from etcd cluster member list: {e}"))
            })
        })
        .await?;
    Ok(resp.members.into_iter().flat_map(|m| m.client_ur_ls).collect())
}

pub async fn run(ctx: &Ctx, a: EndpointArgs) -> Result<(), CtlError> {
    match a.command {
        EndpointCommand::Health => health(ctx, a.cluster).await,
        EndpointCommand::Status => status(ctx, a.cluster).await,
        EndpointCommand::Hashkv(h) => {
            let rev = int_flag("rev", &h.rev)?;
            hashkv(ctx, a.cluster, rev).await
        }
    }
}

async fn health(ctx: &Ctx, cluster: bool) -> Result<(), CtlError> {
    let printer = ctx.printer()?;
    let eps = endpoints(ctx, cluster).await?;
    let mut tasks = Vec::new();
    for ep in eps {
        let client = ctx.client_for(vec![ep.clone()], true)?;
        let timeout = ctx.global.command_timeout;
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let r = tokio::time::timeout(timeout, client.get("health")).await;
            let took = start.elapsed();
            let error = match r {
                Ok(Ok(_)) => String::new(),
                Ok(Err(e)) if e.etcd_kind() == Some(retcd_client::EtcdError::PermissionDenied) => String::new(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "context deadline exceeded".to_string(),
            };
            EpHealth { ep, health: error.is_empty(), took, error }
        }));
    }
    let mut list = Vec::new();
    for t in tasks {
        if let Ok(h) = t.await {
            list.push(h);
        }
    }
    let text = printer.print(list.as_slice())?;
    // etcdctl's simple health report goes to stderr; the others to stdout.
    if printer.format == Format::Simple {
        err(String::from_utf8_lossy(&text));
    } else {
        out(text);
    }
    if list.iter().any(|h| !h.error.is_empty()) {
        return Err(CtlError::new(EXIT_ERROR, "unhealthy cluster"));
    }
    Ok(())
}

async fn status(ctx: &Ctx, cluster: bool) -> Result<(), CtlError> {
    ctx.client()?;
    let printer = ctx.printer()?;
    let mut list = Vec::new();
    let mut failed = false;
    for ep in endpoints(ctx, cluster).await? {
        let client = ctx.client_for(vec![ep.clone()], true)?;
        match ctx.timed(async { Ok(client.status().await?) }).await {
            Ok(r) => list.push((ep, r)),
            Err(e) => {
                failed = true;
                err(format!("Failed to get the status of endpoint {ep} ({})\n", e.msg));
            }
        }
    }
    out(printer.print(list.as_slice())?);
    if failed {
        std::process::exit(EXIT_ERROR);
    }
    Ok(())
}

async fn hashkv(ctx: &Ctx, cluster: bool, rev: i64) -> Result<(), CtlError> {
    ctx.client()?;
    let printer = ctx.printer()?;
    let mut list = Vec::new();
    let mut last_err = None;
    for ep in endpoints(ctx, cluster).await? {
        let client = ctx.client_for(vec![ep.clone()], true)?;
        match ctx.timed(async { Ok(client.hash_kv(rev).await?) }).await {
            Ok(r) => list.push((ep, r)),
            Err(e) => {
                err(format!("Failed to get the hash of endpoint {ep} ({})\n", e.msg));
                last_err = Some(e);
            }
        }
    }
    out(printer.print(list.as_slice())?);
    match last_err {
        Some(e) => Err(CtlError::new(EXIT_ERROR, e.msg)),
        None => Ok(()),
    }
}
