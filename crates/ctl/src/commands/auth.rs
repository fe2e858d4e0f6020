//! `user`, `role` and `auth` commands, with etcdctl's messages. Passwords
//! not given on the command line are read from stdin (etcdctl reads the
//! terminal without echo when `--interactive`; retcdctl reads a line).

use std::io::BufRead;

use retcd_client::authpb::{permission, Permission, UserAddOptions};
use retcd_client::etcdserverpb::*;
use retcd_client::{prefix_end, EtcdError};

use crate::cli::{AuthCommand, PermArgs, RoleCommand, UserCommand};
use crate::context::{out, Ctx};
use crate::exit::{CtlError, EXIT_ERROR};
use crate::printer::auth::{RoleGet, UserGet};
use crate::printer::{HeaderOnly, Printer};

fn read_line() -> Result<String, CtlError> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| CtlError::new(EXIT_ERROR, e.to_string()))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Asks twice, as etcdctl's interactive password prompt does.
fn ask_password(name: &str, interactive: bool) -> Result<String, CtlError> {
    if !interactive {
        // fmt.Scanf("%s"): the first word.
        return Ok(read_line()?.split_whitespace().next().unwrap_or("").to_string());
    }
    out(format!("Password of {name}: "));
    let p1 = read_line()?;
    if p1.is_empty() {
        return Err(CtlError::bad_args("empty password"));
    }
    out(format!("Type password of {name} again for confirmation: "));
    let p2 = read_line()?;
    if p1 != p2 {
        return Err(CtlError::bad_args("given passwords are different"));
    }
    Ok(p1)
}

/// Prints a header-only auth response: `text` for `simple`.
fn done(p: &Printer, header: &Option<ResponseHeader>, text: String) -> Result<(), CtlError> {
    out(p.print(&HeaderOnly { header, text })?);
    Ok(())
}

pub async fn user(ctx: &Ctx, cmd: UserCommand) -> Result<(), CtlError> {
    match cmd {
        UserCommand::Add(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::bad_args("user add command requires user name as its argument"));
            }
            let (name, password) = if a.no_password {
                (a.args[0].clone(), String::new())
            } else if !a.new_user_password.is_empty() {
                (a.args[0].clone(), a.new_user_password.clone())
            } else if let Some((u, p)) = a.args[0].split_once(':') {
                if u.is_empty() {
                    return Err(CtlError::bad_args("empty user name is not allowed"));
                }
                (u.to_string(), p.to_string())
            } else {
                (a.args[0].clone(), ask_password(&a.args[0], a.interactive)?)
            };
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let p = ctx.printer()?;
            let options = Some(UserAddOptions { no_password: a.no_password });
            let r = client.user_add(AuthUserAddRequest { name: name.clone(), password, options }).await?;
            done(&p, &r.header, format!("User {name} created\n"))
        }
        UserCommand::Delete(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::bad_args("user delete command requires user name as its argument"));
            }
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let p = ctx.printer()?;
            let r = client.user_delete(AuthUserDeleteRequest { name: a.args[0].clone() }).await?;
            done(&p, &r.header, format!("User {} deleted\n", a.args[0]))
        }
        UserCommand::Get(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::bad_args("user get command requires user name as its argument"));
            }
            let name = a.args[0].clone();
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let p = ctx.printer()?;
            let r = client.user_get(AuthUserGetRequest { name: name.clone() }).await?;
            if a.detail {
                out(format!("User: {name}\n"));
                for role in &r.roles {
                    out("\n");
                    let rr = client.role_get(AuthRoleGetRequest { role: role.clone() }).await?;
                    out(p.print(&RoleGet { role, resp: &rr })?);
                }
                return Ok(());
            }
            out(p.print(&UserGet { name: &name, resp: &r })?);
            Ok(())
        }
        UserCommand::List(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("user list command requires no arguments"));
            }
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let p = ctx.printer()?;
            let r = client.user_list(AuthUserListRequest {}).await?;
            out(p.print(&r)?);
            Ok(())
        }
        UserCommand::Passwd(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::bad_args("user passwd command requires user name as its argument"));
            }
            let password = ask_password(&a.args[0], a.interactive)?;
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let p = ctx.printer()?;
            let r = client
                .user_change_password(AuthUserChangePasswordRequest { name: a.args[0].clone(), password })
                .await?;
            done(&p, &r.header, "Password updated\n".into())
        }
        UserCommand::GrantRole(a) => {
            if a.args.len() != 2 {
                return Err(CtlError::bad_args("user grant command requires user name and role name as its argument"));
            }
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let p = ctx.printer()?;
            let req = AuthUserGrantRoleRequest { user: a.args[0].clone(), role: a.args[1].clone() };
            let r = client.user_grant_role(req).await?;
            done(&p, &r.header, format!("Role {} is granted to user {}\n", a.args[1], a.args[0]))
        }
        UserCommand::RevokeRole(a) => {
            if a.args.len() != 2 {
                return Err(CtlError::bad_args("user revoke-role requires user name and role name as its argument"));
            }
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let p = ctx.printer()?;
            let req = AuthUserRevokeRoleRequest { name: a.args[0].clone(), role: a.args[1].clone() };
            let r = client.user_revoke_role(req).await?;
            done(&p, &r.header, format!("Role {} is revoked from user {}\n", a.args[1], a.args[0]))
        }
    }
}

/// etcdctl's `permRange`: key and range end from the args and flags.
fn perm_range(a: &PermArgs, args: &[String]) -> Result<(Vec<u8>, Vec<u8>), CtlError> {
    let key = args[0].clone().into_bytes();
    if key.is_empty() {
        if a.prefix && a.from_key {
            return Err(CtlError::bad_args("--from-key and --prefix flags are mutually exclusive"));
        }
        let end = if a.prefix || a.from_key { vec![0] } else { Vec::new() };
        return Ok((vec![0], end));
    }
    if args.len() == 1 {
        if a.prefix {
            if a.from_key {
                return Err(CtlError::bad_args("--from-key and --prefix flags are mutually exclusive"));
            }
            return Ok((key.clone(), prefix_end(&key)));
        }
        if a.from_key {
            return Ok((key, vec![0]));
        }
        return Ok((key, Vec::new()));
    }
    if a.prefix {
        return Err(CtlError::bad_args("unexpected endkey argument with --prefix flag"));
    }
    if a.from_key {
        return Err(CtlError::bad_args("unexpected endkey argument with --from-key flag"));
    }
    Ok((key, args[1].clone().into_bytes()))
}

pub async fn role(ctx: &Ctx, cmd: RoleCommand) -> Result<(), CtlError> {
    let one = |args: &[String], what: &str| -> Result<String, CtlError> {
        if args.len() != 1 {
            return Err(CtlError::bad_args(format!("role {what} command requires role name as its argument")));
        }
        Ok(args[0].clone())
    };
    match cmd {
        RoleCommand::Add(a) => {
            let role = one(&a.args, "add")?;
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let p = ctx.printer()?;
            let r = client.role_add(AuthRoleAddRequest { name: role.clone() }).await?;
            done(&p, &r.header, format!("Role {role} created\n"))
        }
        RoleCommand::Delete(a) => {
            let role = one(&a.args, "delete")?;
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let p = ctx.printer()?;
            let r = client.role_delete(AuthRoleDeleteRequest { role: role.clone() }).await?;
            done(&p, &r.header, format!("Role {role} deleted\n"))
        }
        RoleCommand::Get(a) => {
            let role = one(&a.args, "get")?;
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let p = ctx.printer()?;
            let r = client.role_get(AuthRoleGetRequest { role: role.clone() }).await?;
            out(p.print(&RoleGet { role: &role, resp: &r })?);
            Ok(())
        }
        RoleCommand::List(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("role list command requires no arguments"));
            }
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let p = ctx.printer()?;
            let r = client.role_list(AuthRoleListRequest {}).await?;
            out(p.print(&r)?);
            Ok(())
        }
        RoleCommand::GrantPermission(a) => {
            if a.args.len() < 3 {
                return Err(CtlError::bad_args(
                    "role grant command requires role name, permission type, and key [endkey] as its argument",
                ));
            }
            let perm_type = match a.args[1].to_uppercase().as_str() {
                "READ" => permission::Type::Read,
                "WRITE" => permission::Type::Write,
                "READWRITE" => permission::Type::Readwrite,
                _ => return Err(CtlError::bad_args(format!("invalid permission type: {}", a.args[1]))),
            };
            let (key, range_end) = perm_range(&a, &a.args[2..])?;
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let p = ctx.printer()?;
            let perm = Some(Permission { perm_type: perm_type as i32, key, range_end });
            let r =
                client.role_grant_permission(AuthRoleGrantPermissionRequest { name: a.args[0].clone(), perm }).await?;
            done(&p, &r.header, format!("Role {} updated\n", a.args[0]))
        }
        RoleCommand::RevokePermission(a) => {
            if a.args.len() < 2 {
                return Err(CtlError::bad_args(
                    "role revoke-permission command requires role name and key [endkey] as its argument",
                ));
            }
            let (key, range_end) = perm_range(&a, &a.args[1..])?;
            let client = ctx.client_for(ctx.global.endpoints.clone(), false)?;
            let p = ctx.printer()?;
            let req = AuthRoleRevokePermissionRequest { role: a.args[0].clone(), key, range_end: range_end.clone() };
            let r = client.role_revoke_permission(req).await?;
            let (role, k) = (&a.args[0], &a.args[1]);
            let text = if range_end.is_empty() {
                format!("Permission of key {k} is revoked from role {role}\n")
            } else if range_end != [0] {
                format!(
                    "Permission of range [{k}, {}) is revoked from role {role}\n",
                    String::from_utf8_lossy(&range_end)
                )
            } else {
                format!("Permission of range [{k}, <open ended> is revoked from role {role}\n")
            };
            done(&p, &r.header, text)
        }
    }
}

pub async fn auth(ctx: &Ctx, cmd: AuthCommand) -> Result<(), CtlError> {
    match cmd {
        AuthCommand::Enable(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("auth enable command does not accept any arguments"));
            }
            let client = ctx.client()?;
            ctx.timed(async {
                // As etcdctl: create the root role on demand, then retry.
                for _ in 0..3 {
                    match client.auth_enable(AuthEnableRequest {}).await {
                        Ok(_) => return Ok(()),
                        Err(e) if e.etcd_kind() == Some(EtcdError::RootRoleNotExist) => {
                            client.role_add(AuthRoleAddRequest { name: "root".into() }).await?;
                            let req = AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() };
                            client.user_grant_role(req).await?;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(())
            })
            .await?;
            out("Authentication Enabled\n");
            Ok(())
        }
        AuthCommand::Disable(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("auth disable command does not accept any arguments"));
            }
            let client = ctx.client()?;
            ctx.timed(async { Ok(client.auth_disable(AuthDisableRequest {}).await?) }).await?;
            out("Authentication Disabled\n");
            Ok(())
        }
    }
}
