//! `get`, `put`, `del` and `compaction`: etcdctl's argument checks (same
//! messages, same exit codes, checked before any request), the request
//! they build, and the printers.
//!
//! The request builders are shared with `txn`, which parses its operations
//! with these same commands.

use std::io::Read;

use retcd_client::etcdserverpb::range_request::{SortOrder, SortTarget};
use retcd_client::etcdserverpb::CompactionRequest;
use retcd_client::{prefix_end, DeleteRangeRequest, PutRequest, RangeRequest};

use crate::cli::{CompactionArgs, DelArgs, GetArgs, PutArgs};
use crate::commands::int_flag;
use crate::context::{out, Ctx};
use crate::exit::{go_parse_i64, CtlError, EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_ERROR};
use crate::printer::Format;

const PREFIX_AND_FROM_KEY: &str = "`--prefix` and `--from-key` cannot be set at the same time, choose one";
const TOO_MANY_WITH_PREFIX: &str =
    "too many arguments, only accept one argument when `--prefix` or `--from-key` is set";

/// The RangeRequest `etcdctl get` sends for `a`.
pub fn get_request(a: &GetArgs) -> Result<RangeRequest, CtlError> {
    if a.args.is_empty() {
        return Err(CtlError::bad_args("get command needs one argument as key and an optional argument as range_end"));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args(PREFIX_AND_FROM_KEY));
    }
    let limit = int_flag("limit", &a.limit)?;
    let rev = int_flag("rev", &a.rev)?;
    let mut req = RangeRequest { key: a.args[0].clone().into_bytes(), limit, ..Default::default() };
    match a.consistency.as_str() {
        "s" => req.serializable = true,
        "l" => {}
        c => {
            return Err(CtlError::new(
                EXIT_BAD_FEATURE,
                format!("unknown consistency flag {}", crate::printer::gofmt::quote(c.as_bytes())),
            ))
        }
    }
    if a.args.len() > 1 {
        if a.prefix || a.from_key {
            return Err(CtlError::bad_args(TOO_MANY_WITH_PREFIX));
        }
        req.range_end = a.args[1].clone().into_bytes();
    }
    if rev > 0 {
        req.revision = rev;
    }
    let order = match a.order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => return Err(CtlError::new(EXIT_BAD_FEATURE, format!("bad sort order {}", a.order))),
    };
    let target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => return Err(CtlError::new(EXIT_BAD_FEATURE, format!("bad sort target {}", a.sort_by))),
    };
    // Keys come back in ascending key order anyway; clientv3 drops that sort.
    let order = if target == SortTarget::Key && order == SortOrder::Ascend { SortOrder::None } else { order };
    req.sort_order = order as i32;
    req.sort_target = target as i32;
    if a.prefix {
        if req.key.is_empty() {
            req.key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = prefix_end(&req.key);
        }
    }
    if a.from_key {
        if req.key.is_empty() {
            req.key = vec![0];
        }
        req.range_end = vec![0];
    }
    req.keys_only = a.keys_only;
    Ok(req)
}

pub async fn get(ctx: &Ctx, a: GetArgs) -> Result<(), CtlError> {
    let req = get_request(&a)?;
    let client = ctx.client()?;
    let mut printer = ctx.printer()?;
    let resp = ctx.timed(async { Ok(client.range(req).await?) }).await?;
    if a.print_value_only {
        if printer.format != Format::Simple {
            return Err(CtlError::bad_args("print-value-only is only for `--write-out=simple`"));
        }
        printer.value_only = true;
    }
    out(printer.print(&resp)?);
    Ok(())
}

/// The PutRequest `etcdctl put` sends; `stdin` supplies a missing value.
pub fn put_request(a: &PutArgs, stdin: &mut dyn Read) -> Result<PutRequest, CtlError> {
    const NEEDS: &str = "put command needs 1 argument and input from stdin or 2 arguments";
    if a.args.is_empty() {
        return Err(CtlError::bad_args(NEEDS));
    }
    if a.ignore_value && a.args.len() > 1 {
        return Err(CtlError::bad_args("put command needs only 1 argument when 'ignore-value' is set"));
    }
    let mut value = Vec::new();
    if !a.ignore_value {
        match a.args.get(1) {
            Some(v) => value = v.clone().into_bytes(),
            None => {
                if stdin.read_to_end(&mut value).is_err() || value.is_empty() {
                    return Err(CtlError::bad_args(NEEDS));
                }
            }
        }
    }
    let lease = go_parse_i64(&a.lease, 16)
        .map_err(|e| CtlError::bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(PutRequest {
        key: a.args[0].clone().into_bytes(),
        value,
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

pub async fn put(ctx: &Ctx, a: PutArgs) -> Result<(), CtlError> {
    let req = put_request(&a, &mut std::io::stdin())?;
    let client = ctx.client()?;
    let printer = ctx.printer()?;
    let resp = ctx.timed(async { Ok(client.put_request(req).await?) }).await?;
    out(printer.print(&resp)?);
    Ok(())
}

/// The DeleteRangeRequest `etcdctl del` sends.
pub fn del_request(a: &DelArgs) -> Result<DeleteRangeRequest, CtlError> {
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(CtlError::bad_args("del command needs one argument as key and an optional argument as range_end"));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args(PREFIX_AND_FROM_KEY));
    }
    let mut req = DeleteRangeRequest { key: a.args[0].clone().into_bytes(), ..Default::default() };
    if a.args.len() > 1 {
        if a.prefix || a.from_key {
            return Err(CtlError::bad_args(TOO_MANY_WITH_PREFIX));
        }
        req.range_end = a.args[1].clone().into_bytes();
    }
    if a.prefix {
        if req.key.is_empty() {
            req.key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = prefix_end(&req.key);
        }
    }
    req.prev_kv = a.prev_kv;
    if a.from_key {
        if req.key.is_empty() {
            req.key = vec![0];
        }
        req.range_end = vec![0];
    }
    Ok(req)
}

pub async fn del(ctx: &Ctx, a: DelArgs) -> Result<(), CtlError> {
    let req = del_request(&a)?;
    let client = ctx.client()?;
    let printer = ctx.printer()?;
    let resp = ctx.timed(async { Ok(client.delete(req).await?) }).await?;
    out(printer.print(&resp)?);
    Ok(())
}

pub async fn compaction(ctx: &Ctx, a: CompactionArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "compaction command needs 1 argument"));
    }
    let revision = go_parse_i64(&a.args[0], 10).map_err(|e| CtlError::new(EXIT_ERROR, e))?;
    let client = ctx.client()?;
    let req = CompactionRequest { revision, physical: a.physical };
    ctx.timed(async { Ok(client.compact(req).await?) }).await?;
    out(format!("compacted revision {revision}\n"));
    Ok(())
}
