//! `alarm list|disarm`, `move-leader` and `defrag`.

use retcd_client::etcdserverpb::alarm_request::AlarmAction;
use retcd_client::etcdserverpb::{AlarmResponse, AlarmType};
use std::path::Path;

use crate::cli::{AlarmCommand, DefragArgs, IdArgs, SnapshotCommand};
use crate::commands::endpoint::endpoints;
use crate::context::{err, out, Ctx};
use crate::exit::{go_parse_u64, CtlError, EXIT_ERROR, EXIT_INTERRUPTED};
use crate::printer::maintenance::MoveLeader;

pub async fn alarm(ctx: &Ctx, cmd: AlarmCommand) -> Result<(), CtlError> {
    match cmd {
        AlarmCommand::List(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("alarm list command accepts no arguments"));
            }
            let client = ctx.client()?;
            let printer = ctx.printer()?;
            let resp = ctx.timed(async { Ok(client.alarm(AlarmAction::Get, 0, AlarmType::None).await?) }).await?;
            out(printer.print(&resp)?);
        }
        AlarmCommand::Disarm(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("alarm disarm command accepts no arguments"));
            }
            let client = ctx.client()?;
            let printer = ctx.printer()?;
            // As clientv3 does: list the alarms, then deactivate each one.
            let resp = ctx
                .timed(async {
                    let list = client.alarm(AlarmAction::Get, 0, AlarmType::None).await?;
                    let mut all = AlarmResponse::default();
                    for am in list.alarms {
                        let alarm = AlarmType::try_from(am.alarm).unwrap_or(AlarmType::None);
                        let r = client.alarm(AlarmAction::Deactivate, am.member_id, alarm).await?;
                        all.alarms.extend(r.alarms);
                    }
                    Ok(all)
                })
                .await?;
            out(printer.print(&resp)?);
        }
    }
    Ok(())
}

pub async fn move_leader(ctx: &Ctx, a: IdArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("move-leader command needs 1 argument"));
    }
    let target = go_parse_u64(&a.args[0], 16).map_err(CtlError::bad_args)?;
    ctx.client()?;
    let printer = ctx.printer()?;
    let eps = ctx.endpoints()?;
    ctx.timed(async {
        for ep in &eps {
            let client = ctx.client_for(vec![ep.clone()], true)?;
            let st = client.status().await?;
            let member = st.header.map(|h| h.member_id).unwrap_or(0);
            if member == st.leader {
                let resp = client.move_leader(target).await?;
                out(printer.print(&MoveLeader { leader: st.leader, target, header: &resp.header })?);
                return Ok(());
            }
        }
        Err(CtlError::bad_args(format!("no leader endpoint given at [{}]", eps.join(" "))))
    })
    .await
}

pub async fn defrag(ctx: &Ctx, a: DefragArgs) -> Result<(), CtlError> {
    if !a.data_dir.is_empty() {
        err(format!(
            "Failed to defragment etcd data[{}] (offline defragmentation is not supported by retcdctl)\n",
            a.data_dir
        ));
        std::process::exit(EXIT_ERROR);
    }
    ctx.client()?;
    let mut failures = 0;
    for ep in endpoints(ctx, a.cluster).await? {
        let client = ctx.client_for(vec![ep.clone()], true)?;
        match ctx.timed(async { Ok(client.defragment().await?) }).await {
            Ok(_) => out(format!("Finished defragmenting etcd member[{ep}]\n")),
            Err(e) => {
                failures += 1;
                err(format!("Failed to defragment etcd member[{ep}] ({})\n", e.msg));
            }
        }
    }
    if failures != 0 {
        std::process::exit(EXIT_ERROR);
    }
    Ok(())
}

/// `snapshot save <file>`: the backend of the one given endpoint, written to
/// `<file>.part`, checked for etcd's trailing sha256 (the stream is a
/// multiple of 512 bytes plus the 32-byte digest), fsynced, then renamed.
pub async fn snapshot(ctx: &Ctx, cmd: SnapshotCommand) -> Result<(), CtlError> {
    let a = match cmd {
        SnapshotCommand::Save(a) => a,
        SnapshotCommand::Restore(r) => return restore(r),
        SnapshotCommand::Status(a) => return status(ctx, a),
    };
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("snapshot save expects one argument"));
    }
    let path = a.args[0].clone();
    let eps = &ctx.endpoints()?;
    if eps.len() != 1 {
        return Err(CtlError::new(
            EXIT_INTERRUPTED,
            format!("snapshot must be requested to one selected node, not multiple [{}]", eps.join(" ")),
        ));
    }
    let client = ctx.client_for(eps.clone(), false)?;
    let part = format!("{path}.part");
    let result = save_to(&client, &part, &path).await;
    let _ = std::fs::remove_file(&part);
    result.map_err(|msg| CtlError::new(EXIT_INTERRUPTED, msg))?;
    out(format!("Snapshot saved at {path}\n"));
    Ok(())
}

/// `snapshot status <file>`: hash, revision, record count and size of a
/// saved snapshot (see `retcd_storage::backup::status`).
fn status(ctx: &Ctx, a: crate::cli::PlainArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("snapshot status requires exactly one argument"));
    }
    let printer = ctx.printer()?;
    let st =
        retcd_storage::backup::status(Path::new(&a.args[0])).map_err(|e| CtlError::new(EXIT_ERROR, e.to_string()))?;
    out(printer.print(&st)?);
    Ok(())
}

/// `snapshot restore <file>`: a new data dir (default `<name>.etcd`) whose
/// backend is the snapshot's database (see `retcd_storage::backup`).
fn restore(r: crate::cli::RestoreArgs) -> Result<(), CtlError> {
    if r.args.len() != 1 {
        return Err(CtlError::bad_args("snapshot restore requires exactly one argument"));
    }
    if !r.wal_dir.is_empty() {
        return Err(CtlError::bad_args("--wal-dir is not supported by retcd (the WAL lives in the data dir)"));
    }
    let data_dir = if r.data_dir.is_empty() { format!("{}.etcd", r.name) } else { r.data_dir };
    retcd_storage::backup::restore(Path::new(&r.args[0]), Path::new(&data_dir), r.skip_hash_check)
        .map_err(|e| CtlError::new(EXIT_ERROR, e.to_string()))
}

async fn save_to(client: &retcd_client::Client, part: &str, path: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Private, as etcd writes it: the snapshot holds every key and value.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(part)
        .map_err(|e| format!("could not open {part} ({e})"))?;
    let mut stream = client.snapshot().await.map_err(|e| e.to_string())?;
    let mut size: u64 = 0;
    while let Some(chunk) = stream.message().await.map_err(|e| retcd_client::Error::from(e).to_string())? {
        file.write_all(&chunk.blob).map_err(|e| e.to_string())?;
        size += chunk.blob.len() as u64;
    }
    if size % 512 != 32 {
        return Err(format!("sha256 checksum not found [bytes: {size}]"));
    }
    file.sync_all().map_err(|e| e.to_string())?;
    drop(file);
    std::fs::rename(part, path).map_err(|e| format!("could not rename {part} to {path} ({e})"))
}
