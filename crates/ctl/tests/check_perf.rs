//! `retcdctl check perf`: the minute-long write check runs against retcd,
//! cleans up its keys, compacts when asked, and prints etcdctl's verdict
//! (which of PASS or FAIL depends on the machine, so the test checks the
//! shape and that the exit code agrees with it); its refusals match
//! etcdctl's.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use retcd_testkit::{require_tool, wait_output, Cluster};

const RETCDCTL: &str = env!("CARGO_BIN_EXE_retcdctl");

fn ctl(program: &str, endpoint: &str, args: &[&str], timeout: Duration) -> Output {
    let child = Command::new(program)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, timeout)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_perf_writes_for_a_minute_then_cleans_up_and_judges() {
    let Some(retcd) = retcd_testkit::retcd_binary_if_built() else { return };
    let server = Cluster::start(&retcd, 1, &[]);
    let ep = server.members[0].endpoint();
    let run = ctl(RETCDCTL, &ep, &["check", "perf", "--auto-compact"], Duration::from_secs(150));
    let stdout = text(&run.stdout);
    assert_eq!(text(&run.stderr), "");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 6, "{stdout}");
    // The bar, redrawn in place, ends at 60 of 60.
    assert!(lines[0].starts_with("\r 0 / 60    0.00%"), "{stdout:?}");
    assert!(lines[0].contains("\r 60 / 60  100.00% 1m"), "{stdout:?}");
    let compacting = lines[1].strip_prefix("Compacting with revision ").unwrap();
    let rev: i64 = compacting.parse().unwrap();
    // At least 90% of 150 puts/s for 60 s would be 8100 revisions; a slow
    // machine may manage fewer, but never next to none.
    assert!(rev > 1000, "{stdout}");
    assert_eq!(lines[2], format!("Compacted with revision {rev}"));
    let verdict = &lines[3..];
    assert!(verdict[0].starts_with("PASS: Throughput is ") || verdict[0].starts_with("FAIL: "), "{stdout}");
    let last = *verdict.last().unwrap();
    assert!(last == "PASS" || last == "FAIL", "{stdout}");
    assert_eq!(run.status.code(), Some(if last == "PASS" { 0 } else { 1 }), "{stdout}");

    let left = ctl(RETCDCTL, &ep, &["get", "/etcdctl-check-perf/", "--prefix", "--keys-only"], Duration::from_secs(30));
    assert!(left.status.success() && left.stdout.is_empty(), "{left:?}");
    let old = ctl(RETCDCTL, &ep, &["get", "x", "--rev", &(rev - 1).to_string()], Duration::from_secs(30));
    assert_eq!(text(&old.stderr), "Error: etcdserver: mvcc: required revision has been compacted\n");
}

#[test]
fn check_perf_refusals_match_etcdctl() {
    let Some(retcd) = retcd_testkit::retcd_binary_if_built() else { return };
    let Some(etcdctl) = require_tool("etcdctl") else { return };
    let server = Cluster::start(&retcd, 1, &[]);
    let ep = server.members[0].endpoint();
    assert!(ctl(RETCDCTL, &ep, &["put", "/etcdctl-check-perf/x", "1"], Duration::from_secs(30)).status.success());
    for args in [&["check", "perf"][..], &["check", "perf", "--load", "huge"][..]] {
        let ours = ctl(RETCDCTL, &ep, args, Duration::from_secs(30));
        let theirs = ctl(etcdctl.to_str().unwrap(), &ep, args, Duration::from_secs(30));
        assert_eq!(ours.status.code(), theirs.status.code(), "{args:?}");
        assert_eq!(text(&ours.stderr), text(&theirs.stderr), "{args:?}");
        assert_eq!(text(&ours.stdout), text(&theirs.stdout), "{args:?}");
    }
}
