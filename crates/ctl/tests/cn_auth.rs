//! Certificate-based auth (etcd 3.4's AuthInfoFromTLS): with
//! `--client-cert-auth` and auth enabled, a request without a token is
//! made as the user named by the common name of its verified client
//! certificate; a token, when sent, wins. User `alice` (no password, a role
//! with read/write on the prefix `/alice/`) reads and writes her prefix with
//! a CN=alice certificate and is denied elsewhere with etcd's error; a
//! certificate naming no user is denied. The same command lines run with
//! etcdctl against real etcd and against retcd, and with retcdctl against
//! retcd: the transcripts must match. Certificates are made in the test.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use retcd_testkit::pki::Pki;
use retcd_testkit::{require_tool, wait_output, TlsServer};

const RETCDCTL: &str = env!("CARGO_BIN_EXE_retcdctl");

fn start(binary: &Path, pki: &Pki) -> TlsServer {
    let args = ["--cert-file", &pki.path("server.pem"), "--key-file", &pki.path("server-key.pem")]
        .into_iter()
        .chain(["--trusted-ca-file", &pki.path("ca.pem"), "--client-cert-auth"])
        .map(String::from)
        .collect::<Vec<_>>();
    TlsServer::start(binary, &args)
}

#[derive(Clone, Copy, Debug)]
enum Tool {
    Etcdctl,
    Retcdctl,
}

fn run(tool: Tool, endpoint: &str, args: &[&str]) -> Output {
    let mut cmd = match tool {
        Tool::Etcdctl => {
            let mut c = Command::new("etcdctl");
            c.env("ETCDCTL_API", "3");
            c
        }
        Tool::Retcdctl => Command::new(RETCDCTL),
    };
    let child = cmd
        .arg(format!("--endpoints={endpoint}"))
        .arg("--dial-timeout=2s")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(30))
}

/// Exit code, stdout and the last line of stderr (etcdctl's client also
/// logs its retries there as JSON lines, which retcdctl does not).
fn summary(o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr);
    let last = stderr.lines().rfind(|l| !l.starts_with('{')).unwrap_or("").to_string();
    format!("exit {:?} stdout {:?} stderr {:?}", o.status.code(), String::from_utf8_lossy(&o.stdout), last)
}

fn creds(pki: &Pki, name: &str) -> Vec<String> {
    vec![
        format!("--cacert={}", pki.path("ca.pem")),
        format!("--cert={}", pki.path(&format!("{name}.pem"))),
        format!("--key={}", pki.path(&format!("{name}-key.pem"))),
    ]
}

fn wait_ready(server: &TlsServer, pki: &Pki) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let root = creds(pki, "root");
    let args: Vec<&str> = root.iter().map(String::as_str).chain(["endpoint", "health"]).collect();
    while !run(Tool::Etcdctl, &server.endpoint(), &args).status.success() {
        assert!(
            Instant::now() < deadline,
            "not serving; log:\n{}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Creates root and alice (no password, read/write on `/alice/`) and
/// enables auth, with the root certificate (auth is still off then).
fn set_up_auth(server: &TlsServer, pki: &Pki) {
    let root = creds(pki, "root");
    let steps: [&[&str]; 7] = [
        &["user", "add", "root:rootpw"],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice", "--no-password"],
        &["role", "add", "alice-role"],
        &["role", "grant-permission", "alice-role", "--prefix=true", "readwrite", "/alice/"],
        &["user", "grant-role", "alice", "alice-role"],
        &["auth", "enable"],
    ];
    for step in steps {
        let args: Vec<&str> = root.iter().map(String::as_str).chain(step.iter().copied()).collect();
        let out = run(Tool::Etcdctl, &server.endpoint(), &args);
        assert!(out.status.success(), "{step:?}: {}", summary(&out));
    }
}

/// The requests of the scenario, each with the certificate it is made with.
fn transcript(tool: Tool, server: &TlsServer, pki: &Pki) -> Vec<String> {
    let steps: [(&str, &[&str]); 8] = [
        ("alice", &["put", "/alice/k", "v1"]),
        ("alice", &["get", "/alice/k"]),
        ("alice", &["get", "/alice/", "--prefix", "--keys-only"]),
        ("alice", &["put", "/bob/k", "x"]),
        ("alice", &["get", "/bob/k"]),
        ("alice", &["get", "", "--from-key"]),
        // A token wins over the certificate.
        ("alice", &["--user=root:rootpw", "put", "/bob/k", "by-root"]),
        // A verified certificate naming no user is no one.
        ("mallory", &["get", "/alice/k"]),
    ];
    steps
        .iter()
        .map(|(cert, step)| {
            let c = creds(pki, cert);
            let args: Vec<&str> = c.iter().map(String::as_str).chain(step.iter().copied()).collect();
            format!("{cert} {step:?}: {}", summary(&run(tool, &server.endpoint(), &args)))
        })
        .collect()
}

#[test]
fn common_name_authenticates_the_user() {
    let (Some(retcd), Some(_)) = (retcd_testkit::retcd_binary_if_built(), require_tool("etcdctl")) else { return };
    let pki = Pki::new("retcd test CA");
    pki.issue("server", &["127.0.0.1", "localhost"], "server");
    for user in ["root", "alice", "mallory"] {
        pki.issue(user, &[], user);
    }
    let ours = start(&retcd, &pki);
    wait_ready(&ours, &pki);
    set_up_auth(&ours, &pki);
    let with_etcdctl = transcript(Tool::Etcdctl, &ours, &pki);
    assert!(with_etcdctl[0].contains("stdout \"OK\\n\""), "{with_etcdctl:#?}");
    assert!(with_etcdctl[3].contains("etcdserver: permission denied"), "{with_etcdctl:#?}");
    let with_retcdctl = transcript(Tool::Retcdctl, &ours, &pki);
    assert_eq!(with_etcdctl, with_retcdctl, "etcdctl (left) and retcdctl (right) against retcd differ");

    if let Some(etcd) = require_tool("etcd") {
        let theirs = start(&etcd, &pki);
        wait_ready(&theirs, &pki);
        set_up_auth(&theirs, &pki);
        let reference = transcript(Tool::Etcdctl, &theirs, &pki);
        assert_eq!(reference, with_etcdctl, "etcd (left) and retcd (right) differ");
    }
}
