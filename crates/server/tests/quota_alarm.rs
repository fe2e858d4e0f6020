//! The backend quota and the NOSPACE alarm, driven with real etcdctl 3.4
//! against retcd and against real etcd: a small `--quota-backend-bytes` is
//! filled until writes are refused with etcd's error and the alarm is
//! raised; while it is raised only deletes, compaction and defragmentation
//! pass; compaction + defrag + `alarm disarm` restore writes. Both servers
//! must print the same thing at every step (member IDs aside).

#![allow(clippy::unwrap_used)]

use std::path::Path;

use retcd_testkit::{etcdctl, require_tool, Kind, Server};

const QUOTA: &str = "4000000";

/// stdout and the `Error:` lines of stderr (etcdctl also logs its retries
/// there, with timestamps), exit code, member id replaced.
fn run(server: &Server, member: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = etcdctl(&server.endpoint(), args, stdin);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("Error:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = format!("{args:?} -> {:?}\n{stdout}{stderr}", out.status.code());
    let text = if member.is_empty() { text } else { text.replace(member, "<member>") };
    text.replace(&server.endpoint(), "<endpoint>")
}

/// The scenario's transcript on one server.
fn scenario(kind: Kind, binary: &Path) -> Vec<String> {
    let server = Server::start(kind, binary, &["--quota-backend-bytes", QUOTA]);
    let mut log = Vec::new();
    let status = server.etcdctl(&["endpoint", "status", "-w", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let member = status[0]["Status"]["header"]["member_id"].to_string();

    // Fill until refused (bounded: the quota holds at most ~40 such values).
    let value = "x".repeat(100_000);
    let mut refused = None;
    for i in 0..200 {
        let out = etcdctl(&server.endpoint(), &["put", &format!("k{i:03}")], Some(&value));
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("database space exceeded"), "{kind:?}: put {i} failed otherwise: {stderr}");
            refused = Some(i);
            break;
        }
    }
    let refused = refused.expect("the quota never refused a write");
    assert!(refused > 5, "{kind:?} refused too early ({refused})");
    log.push(run(&server, &member, &["put", "fill"], Some(&value)));
    log.push(run(&server, &member, &["alarm", "list"], None));
    let status = server.etcdctl(&["endpoint", "status", "-w", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    log.push(format!("status errors: {}\n", status[0]["Status"]["errors"]).replace(&member, "<member>"));
    // Refused while the alarm is raised, however small; a txn with a put too.
    log.push(run(&server, &member, &["put", "small", "v"], None));
    log.push(run(&server, &member, &["txn"], Some("\nput t v\n\n\n")));
    log.push(run(&server, &member, &["lease", "grant", "100"], None));
    // Reads and deletes pass.
    log.push(run(&server, &member, &["get", "k000", "--print-value-only", "--keys-only"], None));
    let deleted = etcdctl(&server.endpoint(), &["del", "k", "--prefix"], None);
    assert!(deleted.status.success(), "{kind:?}: delete refused: {deleted:?}");
    let count: usize = String::from_utf8_lossy(&deleted.stdout).trim().parse().unwrap();
    assert!(count >= refused, "{kind:?}: deleted {count} of {refused} keys");
    let rev = serde_json::from_slice::<serde_json::Value>(&server.etcdctl(&["get", "x", "-w", "json"]).stdout).unwrap()
        ["header"]["revision"]
        .as_i64()
        .unwrap();
    let compacted = server.etcdctl(&["compaction", "--physical", &rev.to_string()]);
    assert!(compacted.status.success(), "{kind:?}: {compacted:?}");
    log.push(run(&server, &member, &["defrag"], None));
    // Still refused until disarmed.
    log.push(run(&server, &member, &["put", "small", "v"], None));
    log.push(run(&server, &member, &["alarm", "disarm"], None));
    log.push(run(&server, &member, &["alarm", "list"], None));
    log.push(run(&server, &member, &["put", "small", "v"], None));
    log.push(run(&server, &member, &["get", "small", "--print-value-only"], None));
    log
}

#[test]
fn nospace_alarm_refuses_writes_until_space_is_reclaimed_and_disarmed() {
    let Some(etcd_binary) = require_tool("etcd") else { return };
    let etcd = scenario(Kind::Etcd, &etcd_binary);
    let ours = scenario(Kind::Retcd, Path::new(env!("CARGO_BIN_EXE_retcd")));
    for (e, r) in etcd.iter().zip(ours.iter()) {
        assert_eq!(r, e, "retcd differs from etcd");
    }
    assert_eq!(etcd.len(), ours.len());
    // The transcript is the one the scenario means (etcd's, so also ours).
    let full = ours.join("");
    eprintln!("{full}");
    assert!(ours[0].contains("Error: etcdserver: mvcc: database space exceeded"), "{}", ours[0]);
    assert!(ours[1].contains("memberID:<member> alarm:NOSPACE"), "{}", ours[1]);
    assert!(ours.last().unwrap().ends_with("\nv\n"), "{full}");
}
