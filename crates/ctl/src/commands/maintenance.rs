//! `alarm list|disarm`, `move-leader` and `defrag`.

use retcd_client::etcdserverpb::alarm_request::AlarmAction;
use retcd_client::etcdserverpb::{AlarmResponse, AlarmType};

use crate::cli::{AlarmCommand, DefragArgs, IdArgs};
use crate::commands::endpoint::endpoints;
use crate::context::{err, out, Ctx};
use crate::exit::{go_parse_u64, CtlError, EXIT_ERROR};

pub async fn alarm(ctx: &Ctx, cmd: AlarmCommand) -> Result<(), CtlError> {
    match cmd {
        AlarmCommand::List(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("alarm list command accepts no arguments"));
            }
            let client = ctx.client()?;
            let printer = ctx.printer()?;
            let resp = ctx.timed(async { Ok(client.alarm(AlarmAction::Get, 0, AlarmType::None).await?) }).await?;
            out(printer.alarm(&resp)?);
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
            out(printer.alarm(&resp)?);
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
    let eps = ctx.global.endpoints.clone();
    ctx.timed(async {
        for ep in &eps {
            let client = ctx.client_for(vec![ep.clone()], true)?;
            let st = client.status().await?;
            let member = st.header.map(|h| h.member_id).unwrap_or(0);
            if member == st.leader {
                let resp = client.move_leader(target).await?;
                out(printer.move_leader(st.leader, target, &resp.header)?);
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
