//! `lease grant|revoke|timetolive|list|keep-alive`, with etcdctl's messages
//! and exit codes (timetolive, list and keep-alive report failures with
//! exit code 2 and run without the command timeout, as etcdctl does).

use crate::cli::LeaseCommand;
use crate::context::{out, Ctx};
use crate::exit::{go_parse_i64, CtlError, EXIT_BAD_CONNECTION, EXIT_ERROR};
use crate::printer::lease::TimeToLive;
use crate::printer::{Format, HeaderOnly};

fn lease_id(arg: &str) -> Result<i64, CtlError> {
    go_parse_i64(arg, 16).map_err(|e| CtlError::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

pub async fn run(ctx: &Ctx, cmd: LeaseCommand) -> Result<(), CtlError> {
    match cmd {
        LeaseCommand::Grant(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::bad_args("lease grant command needs TTL argument"));
            }
            let ttl = go_parse_i64(&a.args[0], 10).map_err(|e| CtlError::bad_args(format!("bad TTL ({e})")))?;
            let client = ctx.client()?;
            let printer = ctx.printer()?;
            let resp = ctx
                .timed(async {
                    client
                        .lease_grant(ttl, 0)
                        .await
                        .map_err(|e| CtlError::new(EXIT_ERROR, format!("failed to grant lease ({e})")))
                })
                .await?;
            out(printer.print(&resp)?);
        }
        LeaseCommand::Revoke(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::bad_args("lease revoke command needs 1 argument"));
            }
            let id = lease_id(&a.args[0])?;
            let client = ctx.client()?;
            let printer = ctx.printer()?;
            let resp = ctx
                .timed(async {
                    client
                        .lease_revoke(id)
                        .await
                        .map_err(|e| CtlError::new(EXIT_ERROR, format!("failed to revoke lease ({e})")))
                })
                .await?;
            out(printer.print(&HeaderOnly { header: &resp.header, text: format!("lease {id:016x} revoked\n") })?);
        }
        LeaseCommand::Timetolive(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::bad_args("lease timetolive command needs lease ID as argument"));
            }
            let id = lease_id(&a.args[0])?;
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let printer = ctx.printer()?;
            let resp =
                client.lease_time_to_live(id, a.keys).await.map_err(|e| CtlError::client(EXIT_BAD_CONNECTION, e))?;
            out(printer.print(&TimeToLive { resp: &resp, keys: a.keys })?);
        }
        LeaseCommand::List(_) => {
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let printer = ctx.printer()?;
            let resp = client.lease_leases().await.map_err(|e| CtlError::client(EXIT_BAD_CONNECTION, e))?;
            out(printer.print(&resp)?);
        }
        LeaseCommand::KeepAlive(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::bad_args("lease keep-alive command needs lease ID as argument"));
            }
            let id = lease_id(&a.args[0])?;
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let printer = ctx.printer()?;
            if a.once {
                let resp =
                    client.lease_keep_alive_once(id).await.map_err(|e| CtlError::client(EXIT_BAD_CONNECTION, e))?;
                if resp.ttl <= 0 {
                    return Err(CtlError::new(EXIT_BAD_CONNECTION, retcd_client::EtcdError::LeaseNotFound.message()));
                }
                out(printer.print(&resp)?);
                return Ok(());
            }
            let mut ka = client.lease_keep_alive(id);
            let mut first = true;
            while let Some(resp) = ka.next().await {
                let resp = match resp {
                    Ok(r) => r,
                    Err(e) if first => return Err(CtlError::client(EXIT_BAD_CONNECTION, e)),
                    Err(_) => break,
                };
                first = false;
                if resp.ttl <= 0 {
                    break;
                }
                out(printer.print(&resp)?);
            }
            if printer.format == Format::Simple {
                out(format!("lease {id:016x} expired or revoked.\n"));
            }
        }
    }
    Ok(())
}
