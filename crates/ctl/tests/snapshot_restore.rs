//! `retcdctl snapshot save` from a three-member retcd cluster while a
//! client writes, then `retcdctl snapshot restore` into the data dirs of a
//! new three-member cluster: every key acknowledged before the snapshot is
//! there, on every member, and the new cluster takes writes.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use retcd_testkit::{wait_output, Cluster};

const RETCDCTL: &str = env!("CARGO_BIN_EXE_retcdctl");

fn retcdctl(endpoint: &str, args: &[&str]) -> Output {
    let child = Command::new(RETCDCTL)
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(30))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn snapshot_saved_under_load_restores_into_a_new_cluster() {
    let Some(retcd) = retcd_testkit::retcd_binary_if_built() else { return };
    let source = Cluster::start(&retcd, 3, &[]);

    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, endpoint) = (acked.clone(), stop.clone(), source.members[1].endpoint());
        std::thread::spawn(move || {
            for i in 0..5_000usize {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let out = retcdctl(&endpoint, &["put", &format!("key-{i:05}"), &format!("value-{i}")]);
                assert!(out.status.success(), "put {i}: {out:?}");
                acked.store(i + 1, Ordering::Release);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::Acquire) < 30 {
        assert!(Instant::now() < deadline, "the writer made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    // What was acknowledged so far is applied on member 0 once a
    // linearizable read there returns; the snapshot comes after it.
    let before = acked.load(Ordering::Acquire);
    let m0 = source.members[0].endpoint();
    assert!(retcdctl(&m0, &["get", "key-00000"]).status.success());
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("backup.db");
    let saved = retcdctl(&m0, &["snapshot", "save", file.to_str().unwrap()]);
    assert!(saved.status.success(), "{saved:?}");
    assert_eq!(stdout(&saved), format!("Snapshot saved at {}\n", file.display()));
    // Writes keep coming while the snapshot streams; then stop.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    drop(source);

    let mut restored = Cluster::new(&retcd, 3, &[]);
    let initial = restored.initial_cluster();
    for m in &restored.members {
        let out = Command::new(RETCDCTL)
            .args(["snapshot", "restore", file.to_str().unwrap()])
            .args(["--data-dir", m.data_dir.to_str().unwrap(), "--name", &m.name])
            .args(["--initial-cluster", &initial, "--initial-cluster-token", &restored.token])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{}", m.peer_port)])
            .output()
            .unwrap();
        assert!(out.status.success(), "restore: {out:?}");
    }
    // Restoring over an existing data dir is refused.
    let again = Command::new(RETCDCTL)
        .args(["snapshot", "restore", file.to_str().unwrap()])
        .arg("--data-dir")
        .arg(&restored.members[0].data_dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    restored.start_all();

    for m in &restored.members {
        let listed = retcdctl(&m.endpoint(), &["get", "key-", "--prefix", "--consistency=s"]);
        let lines: Vec<String> = stdout(&listed).lines().map(String::from).collect();
        assert!(
            lines.len() / 2 >= before,
            "{}: {} keys, {before} acknowledged before the snapshot",
            m.name,
            lines.len() / 2
        );
        for (i, pair) in lines.chunks(2).enumerate() {
            assert_eq!(pair, [format!("key-{i:05}"), format!("value-{i}")]);
        }
    }
    let put = retcdctl(&restored.members[2].endpoint(), &["put", "after-restore", "1"]);
    assert_eq!(stdout(&put), "OK\n");
    let members = stdout(&retcdctl(&restored.members[0].endpoint(), &["member", "list"]));
    assert_eq!(members.lines().count(), 3, "{members}");
}

/// `snapshot status` on a saved snapshot: its revision is the server's,
/// and every output format has etcdctl's shape.
#[test]
fn snapshot_status_reports_the_saved_revision() {
    let Some(retcd) = retcd_testkit::retcd_binary_if_built() else { return };
    let server = Cluster::start(&retcd, 1, &[]);
    let ep = server.members[0].endpoint();
    for i in 0..5 {
        assert!(retcdctl(&ep, &["put", &format!("k{i}"), "v"]).status.success());
    }
    assert!(retcdctl(&ep, &["del", "k0"]).status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.db");
    let file = file.to_str().unwrap();
    assert!(retcdctl(&ep, &["snapshot", "save", file]).status.success());
    drop(server);

    let simple = stdout(&retcdctl(&ep, &["snapshot", "status", file]));
    let fields: Vec<&str> = simple.trim_end().split(", ").collect();
    assert_eq!(fields.len(), 4, "{simple}");
    assert!(u32::from_str_radix(fields[0], 16).is_ok(), "{simple}");
    // Five puts and a delete after revision 1.
    assert_eq!(fields[1], "7", "{simple}");
    let size = std::fs::metadata(file).unwrap().len() - 32;
    let json = stdout(&retcdctl(&ep, &["snapshot", "status", file, "-w", "json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["revision"], 7);
    assert_eq!(v["totalSize"], size);
    assert_eq!(format!("{:x}", v["hash"].as_u64().unwrap()), fields[0]);
    // Six revisions at least, plus metadata records.
    assert!(v["totalKey"].as_u64().unwrap() >= 6, "{json}");
    let table = stdout(&retcdctl(&ep, &["snapshot", "status", file, "-w", "table"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    // Column widths follow the content (a hash with a leading zero nibble
    // is seven hex digits wide), so compare the cells, not the padding.
    let cells =
        |line: &str| line.split('|').map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect::<Vec<_>>();
    assert_eq!(cells(lines[1]), ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], "{table}");
    assert_eq!(cells(lines[3])[..2], [fields[0].to_string(), "7".to_string()], "{table}");
    assert_eq!(
        stdout(&retcdctl(&ep, &["snapshot", "status", file, "-w", "fields"])).lines().next().unwrap(),
        format!("\"Hash\" : {}", v["hash"])
    );

    let missing = retcdctl(&ep, &["snapshot", "status", "/nonexistent/s.db"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&missing.stderr), "Error: stat /nonexistent/s.db: no such file or directory\n");
}
