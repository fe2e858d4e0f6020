//! `member add|remove|update|list|promote`.

use crate::cli::MemberCommand;
use crate::context::{out, Ctx};
use crate::exit::{go_parse_u64, CtlError};
use crate::printer::gofmt::quote;
use crate::printer::member::MemberChanged;
use crate::printer::Format;

fn member_id(args: &[String]) -> Result<u64, CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("member ID is not provided"));
    }
    go_parse_u64(&args[0], 16).map_err(|e| CtlError::bad_args(format!("bad member ID arg ({e}), expecting ID in Hex")))
}

pub async fn run(ctx: &Ctx, cmd: MemberCommand) -> Result<(), CtlError> {
    match cmd {
        MemberCommand::Add(a) => {
            if a.args.is_empty() {
                return Err(CtlError::bad_args("member name not provided"));
            }
            if a.args.len() > 1 {
                let mut msg = "too many arguments".to_string();
                for s in &a.args {
                    if s.to_lowercase().starts_with("http") {
                        msg.push_str(&format!(", did you mean --peer-urls={s}"));
                    }
                }
                return Err(CtlError::bad_args(msg));
            }
            let name = a.args[0].clone();
            if a.peer_urls.is_empty() {
                return Err(CtlError::bad_args("member peer urls not provided"));
            }
            let urls: Vec<String> = a.peer_urls.split(',').map(str::to_string).collect();
            let client = ctx.client()?;
            let printer = ctx.printer()?;
            let resp = ctx.timed(async { Ok(client.member_add(urls, a.learner).await?) }).await?;
            let new_id = resp.member.as_ref().map(|m| m.id).unwrap_or(0);
            let change = MemberChanged {
                id: new_id,
                verb: "added to",
                header: &resp.header,
                member: resp.member.as_ref(),
                members: &resp.members,
            };
            out(printer.print(&change)?);
            if printer.format == Format::Simple {
                let mut conf = Vec::new();
                for m in &resp.members {
                    for u in &m.peer_ur_ls {
                        let n = if m.id == new_id { name.as_str() } else { m.name.as_str() };
                        conf.push(format!("{n}={u}"));
                    }
                }
                out(format!(
                    "\nETCD_NAME={}\nETCD_INITIAL_CLUSTER={}\nETCD_INITIAL_ADVERTISE_PEER_URLS={}\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n",
                    quote(name.as_bytes()),
                    quote(conf.join(",").as_bytes()),
                    quote(a.peer_urls.as_bytes())
                ));
            }
        }
        MemberCommand::Remove(a) => {
            let id = member_id(&a.args)?;
            let client = ctx.client()?;
            let printer = ctx.printer()?;
            let resp = ctx.timed(async { Ok(client.member_remove(id).await?) }).await?;
            let change =
                MemberChanged { id, verb: "removed from", header: &resp.header, member: None, members: &resp.members };
            out(printer.print(&change)?);
        }
        MemberCommand::Update(a) => {
            let id = member_id(&a.args)?;
            if a.peer_urls.is_empty() {
                return Err(CtlError::bad_args("member peer urls not provided"));
            }
            let urls: Vec<String> = a.peer_urls.split(',').map(str::to_string).collect();
            let client = ctx.client()?;
            let printer = ctx.printer()?;
            let resp = ctx.timed(async { Ok(client.member_update(id, urls).await?) }).await?;
            let change =
                MemberChanged { id, verb: "updated in", header: &resp.header, member: None, members: &resp.members };
            out(printer.print(&change)?);
        }
        MemberCommand::List(_) => {
            let client = ctx.client()?;
            let printer = ctx.printer()?;
            let resp = ctx.timed(async { Ok(client.member_list().await?) }).await?;
            out(printer.print(&resp)?);
        }
        MemberCommand::Promote(a) => {
            let id = member_id(&a.args)?;
            let client = ctx.client()?;
            let printer = ctx.printer()?;
            let resp = ctx.timed(async { Ok(client.member_promote(id).await?) }).await?;
            let change =
                MemberChanged { id, verb: "promoted in", header: &resp.header, member: None, members: &resp.members };
            out(printer.print(&change)?);
        }
    }
    Ok(())
}
