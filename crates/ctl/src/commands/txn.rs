//! `txn`: reads compares, success ops and failure ops from stdin (one per
//! line, each section ended by an empty line), as etcdctl does; `-i` prints
//! a prompt before each section. Operations are parsed by the `get`, `put`
//! and `del` argument parsers themselves.

use std::io::BufRead;

use clap::Parser;
use retcd_client::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use retcd_client::{request_op, Compare, RequestOp, TxnRequest};

use crate::cli::{DelArgs, GetArgs, PutArgs, TxnArgs};
use crate::commands::kv::{del_request, get_request, put_request};
use crate::context::{out, Ctx};
use crate::exit::{go_parse_i64, CtlError, EXIT_BAD_ARGS, EXIT_INVALID_INPUT};
use crate::printer::gofmt::quote;

pub async fn txn(ctx: &Ctx, a: TxnArgs) -> Result<(), CtlError> {
    if !a.args.is_empty() {
        return Err(CtlError::new(EXIT_BAD_ARGS, "txn command does not accept argument"));
    }
    let client = ctx.client()?;
    let printer = ctx.printer()?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let prompt = |s: &str| {
        if a.interactive {
            out(format!("{s}\n"));
        }
    };
    prompt("compares:");
    let compare = read_section(&mut input)?.iter().map(|l| parse_compare(l)).collect::<Result<Vec<_>, _>>()?;
    prompt("success requests (get, put, del):");
    let success = read_section(&mut input)?.iter().map(|l| parse_op(l)).collect::<Result<Vec<_>, _>>()?;
    prompt("failure requests (get, put, del):");
    let failure = read_section(&mut input)?.iter().map(|l| parse_op(l)).collect::<Result<Vec<_>, _>>()?;
    let req = TxnRequest { compare, success, failure };
    let resp = client.txn(req).await?;
    out(printer.print(&resp)?);
    Ok(())
}

/// Trimmed lines up to the first empty one; a missing newline is an error
/// (Go's `ReadString` reports EOF).
fn read_section(input: &mut dyn BufRead) -> Result<Vec<String>, CtlError> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = input.read_line(&mut line).map_err(|e| CtlError::new(EXIT_INVALID_INPUT, e.to_string()))?;
        if n == 0 || !line.ends_with('\n') {
            return Err(CtlError::new(EXIT_INVALID_INPUT, "EOF"));
        }
        let t = line.trim();
        if t.is_empty() {
            return Ok(lines);
        }
        lines.push(t.to_string());
    }
}

/// Reads a Go quoted string (`"..."` or a backquoted one) at the start of
/// `s` (after spaces); returns it and the rest.
fn scan_quoted(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    let mut chars = s.char_indices();
    let (_, open) = chars.next()?;
    if open == '`' {
        let end = s[1..].find('`')? + 1;
        return Some((s[1..end].to_string(), &s[end + 1..]));
    }
    if open != '"' {
        return None;
    }
    let mut outs = String::new();
    let mut escaped = false;
    for (i, c) in chars {
        if escaped {
            outs.push(match c {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                'a' => '\x07',
                'b' => '\x08',
                'f' => '\x0c',
                'v' => '\x0b',
                c => c,
            });
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some((outs, &s[i + 1..]));
        } else {
            outs.push(c);
        }
    }
    None
}

/// One compare line: `<target>("<key>") <op> "<value>"`.
pub fn parse_compare(line: &str) -> Result<Compare, CtlError> {
    let bad = |m: String| CtlError::new(EXIT_INVALID_INPUT, m);
    let Some((target, rest)) = line.split_once('(') else {
        return Err(bad(format!("malformed comparison: {line}")));
    };
    let parsed = (|| {
        let (key, rest) = scan_quoted(rest)?;
        let rest = rest.strip_prefix(')')?;
        let rest = rest.trim_start();
        let op_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (op, rest) = rest.split_at(op_end);
        let (val, _) = scan_quoted(rest)?;
        Some((key, op.to_string(), val))
    })();
    let Some((key, op, val)) = parsed else {
        return Err(bad(format!("malformed comparison: {line}; got {target}(\"\") \"\"")));
    };
    let result = match op.as_str() {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        _ => {
            return Err(bad(format!(
                "invalid txn compare request: {line} (unknown result op {})",
                quote(op.as_bytes())
            )))
        }
    };
    let int = || go_parse_i64(&val, 10).map_err(|_| bad(format!("invalid txn compare request: {line}")));
    let (target, union) = match target {
        "ver" | "version" => (CompareTarget::Version, TargetUnion::Version(int()?)),
        "c" | "create" => (CompareTarget::Create, TargetUnion::CreateRevision(int()?)),
        "m" | "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(int()?)),
        "val" | "value" => (CompareTarget::Value, TargetUnion::Value(val.clone().into_bytes())),
        "lease" => (CompareTarget::Lease, TargetUnion::Lease(int()?)),
        t => return Err(bad(format!("malformed comparison: {line} (unknown target {t})"))),
    };
    Ok(Compare {
        result: result as i32,
        target: target as i32,
        key: key.into_bytes(),
        range_end: Vec::new(),
        target_union: Some(union),
    })
}

/// etcdctl's `argify`: splits a line into words, honouring double quotes
/// (Go escapes) and single quotes.
pub fn argify(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        if rest.starts_with('"') {
            if let Some((w, r)) = scan_quoted(rest) {
                words.push(w);
                rest = r;
                continue;
            }
        }
        if let Some(body) = rest.strip_prefix('\'') {
            if let Some(end) = body.find('\'') {
                words.push(body[..end].to_string());
                rest = &body[end + 1..];
                continue;
            }
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        words.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    words
}

#[derive(Parser)]
#[command(name = "txn-op", no_binary_name = true)]
enum TxnOp {
    Get(GetArgs),
    Put(PutArgs),
    Del(DelArgs),
}

/// One operation line: a `get`, `put` or `del` command line.
pub fn parse_op(line: &str) -> Result<RequestOp, CtlError> {
    let args = argify(line);
    if args.len() < 2 {
        return Err(CtlError::new(EXIT_INVALID_INPUT, format!("invalid txn compare request: {line}")));
    }
    let op = TxnOp::try_parse_from(&args)
        .map_err(|_| CtlError::new(EXIT_INVALID_INPUT, format!("invalid txn request: {line}")))?;
    let request = match op {
        TxnOp::Get(a) => request_op::Request::RequestRange(get_request(&a)?),
        TxnOp::Put(a) => request_op::Request::RequestPut(put_request(&a, &mut std::io::empty())?),
        TxnOp::Del(a) => request_op::Request::RequestDeleteRange(del_request(&a)?),
    };
    Ok(RequestOp { request: Some(request) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares() {
        let c = parse_compare("mod(\"k2\") > \"0\"").expect("compare");
        assert_eq!(c.key, b"k2");
        assert_eq!(c.result, CompareResult::Greater as i32);
        assert_eq!(c.target_union, Some(TargetUnion::ModRevision(0)));
        let c = parse_compare("value(\"a b\") = \"x\\\"y\"").expect("compare");
        assert_eq!(c.target_union, Some(TargetUnion::Value(b"x\"y".to_vec())));
        assert!(parse_compare("nonsense").is_err());
        assert!(parse_compare("foo(\"k\") = \"1\"").is_err());
    }

    #[test]
    fn ops() {
        assert_eq!(argify("put k \"v w\""), ["put", "k", "v w"]);
        let op = parse_op("put k v --prev-kv").expect("op");
        assert!(matches!(op.request, Some(request_op::Request::RequestPut(ref p)) if p.prev_kv && p.value == b"v"));
        assert!(parse_op("get").is_err());
        assert!(parse_op("frob k").is_err());
    }
}
