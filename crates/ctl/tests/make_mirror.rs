//! `retcdctl make-mirror`: a prefix of one retcd copied to another under a
//! new prefix, first what exists, then every later change (a txn's puts and
//! deletes arrive together); its flag errors are etcdctl's.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use retcd_testkit::{require_tool, wait_output, Cluster};

const RETCDCTL: &str = env!("CARGO_BIN_EXE_retcdctl");

fn ctl(program: &str, endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(program)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    wait_output(child, Duration::from_secs(30))
}

fn keys(endpoint: &str) -> String {
    String::from_utf8(ctl(RETCDCTL, endpoint, &["get", "", "--from-key"], None).stdout).unwrap()
}

/// Kills the mirror when the test ends, passed or not.
struct Mirror(Child);

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(endpoint: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = keys(endpoint);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "destination has\n{got}\nwanted\n{want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_prefix_is_mirrored_then_kept_in_sync() {
    let Some(retcd) = retcd_testkit::retcd_binary_if_built() else { return };
    let source = Cluster::start(&retcd, 1, &[]);
    let dest = Cluster::start(&retcd, 1, &[]);
    let (src, dst) = (source.members[0].endpoint(), dest.members[0].endpoint());
    for (k, v) in [("a/1", "one"), ("a/2", "two"), ("b/1", "other")] {
        assert!(ctl(RETCDCTL, &src, &["put", k, v], None).status.success());
    }

    let _mirror = Mirror(
        Command::new(RETCDCTL)
            .args([&format!("--endpoints={src}"), "make-mirror", "--prefix", "a/", "--dest-prefix", "m/", &dst])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&dst, "m/1\none\nm/2\ntwo\n");

    // One source revision: a put and a delete.
    let txn = ctl(RETCDCTL, &src, &["txn"], Some("\nput a/3 three\ndel a/1\n\n\n"));
    assert!(txn.status.success(), "{txn:?}");
    assert!(ctl(RETCDCTL, &src, &["put", "a/2", "TWO"], None).status.success());
    assert!(ctl(RETCDCTL, &src, &["put", "b/2", "not mirrored"], None).status.success());
    wait_for(&dst, "m/2\nTWO\nm/3\nthree\n");
}

#[test]
fn conflicting_prefix_flags_are_refused_as_etcdctl_refuses_them() {
    let Some(retcd) = retcd_testkit::retcd_binary_if_built() else { return };
    let Some(etcdctl) = require_tool("etcdctl") else { return };
    let source = Cluster::start(&retcd, 1, &[]);
    let src = source.members[0].endpoint();
    for args in [
        &["make-mirror", "--dest-prefix", "x/", "--no-dest-prefix", "127.0.0.1:1"][..],
        &["make-mirror"][..],
        &["make-mirror", "a", "b"][..],
    ] {
        let ours = ctl(RETCDCTL, &src, args, None);
        let theirs = ctl(etcdctl.to_str().unwrap(), &src, args, None);
        assert_eq!(ours.status.code(), theirs.status.code(), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&ours.stderr), String::from_utf8_lossy(&theirs.stderr), "{args:?}");
    }
}
