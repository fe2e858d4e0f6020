//! retcdctl over TLS: against a retcd serving https (server-auth TLS, then
//! mutual TLS), the same command lines given to etcdctl and to retcdctl
//! must print the same and exit the same; `ETCDCTL_CACERT` and friends work
//! as the flags; a bare `host:port` endpoint uses TLS once a CA is given;
//! bad TLS settings fail with etcdctl's message and exit code, never a
//! panic. Certificates are made in the test.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use retcd_testkit::pki::Pki;
use retcd_testkit::{require_tool, wait_output, TlsServer};

const RETCDCTL: &str = env!("CARGO_BIN_EXE_retcdctl");

#[derive(Clone, Copy, Debug)]
enum Tool {
    Etcdctl,
    Retcdctl,
}

fn run(tool: Tool, endpoint: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = match tool {
        Tool::Etcdctl => {
            let mut c = Command::new("etcdctl");
            c.env("ETCDCTL_API", "3");
            c
        }
        Tool::Retcdctl => Command::new(RETCDCTL),
    };
    let child = cmd
        .envs(env.iter().copied())
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

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}stderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn wait_ready(server: &TlsServer, creds: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let endpoint = format!("https://127.0.0.1:{}", server.port);
    loop {
        if run(Tool::Retcdctl, &endpoint, &[], &[creds, &["endpoint", "health"]].concat()).status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not serving over TLS; log:\n{}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the same write/read/delete sequence with each tool (keys apart, so
/// revisions line up) and requires equal outputs, stderr included.
fn same_transcript(endpoint: &str, env: &[(&str, &str)], creds: &[&str]) {
    let mut outs = Vec::new();
    for tool in [Tool::Etcdctl, Tool::Retcdctl] {
        let steps: [&[&str]; 4] = [&["put", "k", "v"], &["get", "k"], &["get", "k", "-w", "fields"], &["del", "k"]];
        let transcript: Vec<String> =
            steps.iter().map(|s| format!("{s:?}: {}", text(&run(tool, endpoint, env, &[creds, s].concat())))).collect();
        outs.push(transcript);
    }
    assert!(outs[0][0].contains("OK"), "{:?}", outs[0]);
    // `fields` prints the revision, which the second tool's writes raise:
    // compare that step's shape only through the other steps plus its key.
    for (step, (a, b)) in outs[0].iter().zip(&outs[1]).enumerate() {
        if step == 2 {
            assert!(a.contains("\"Key\" : \"k\"") && b.contains("\"Key\" : \"k\""), "{a}\n{b}");
            continue;
        }
        assert_eq!(a, b, "etcdctl (left) and retcdctl (right) differ");
    }
}

#[test]
fn retcdctl_speaks_tls_as_etcdctl_does() {
    let (Some(retcd), Some(_)) = (retcd_testkit::retcd_binary_if_built(), require_tool("etcdctl")) else { return };
    let pki = Pki::new("retcd test CA");
    pki.issue("server", &["127.0.0.1", "localhost"], "server");
    let tls = vec!["--cert-file".into(), pki.path("server.pem"), "--key-file".into(), pki.path("server-key.pem")];
    let server = TlsServer::start(&retcd, &tls);
    let cacert = format!("--cacert={}", pki.path("ca.pem"));
    wait_ready(&server, &[&cacert]);
    let https = format!("https://127.0.0.1:{}", server.port);
    let bare = format!("127.0.0.1:{}", server.port);

    same_transcript(&https, &[], &[&cacert]);
    // A CA alone turns TLS on for a bare endpoint (etcd's clientv3 rule).
    same_transcript(&bare, &[], &[&cacert]);
    // The environment works as the flag.
    same_transcript(&https, &[("ETCDCTL_CACERT", &pki.path("ca.pem"))], &[]);
    // No verification: encrypted, the server not authenticated.
    same_transcript(&https, &[], &["--insecure-transport=false", "--insecure-skip-tls-verify"]);

    // Errors before dialing: etcdctl's text and exit code.
    for args in [
        vec!["--cacert=/nonexistent/ca.pem", "get", "k"],
        vec!["--cert=/nonexistent/c.pem", "get", "k"],
        vec!["--cert=/nonexistent/c.pem", "--key=/nonexistent/k.pem", "get", "k"],
        vec!["--cacert=", "get", "k"],
    ] {
        let a = run(Tool::Etcdctl, &https, &[], &args);
        let b = run(Tool::Retcdctl, &https, &[], &args);
        assert_eq!(text(&a), text(&b), "{args:?}: etcdctl (left) and retcdctl (right) differ");
    }

    // Without the CA the server is not trusted, and a plaintext client is not
    // served: both fail cleanly (etcdctl prints the gRPC retry noise; we
    // compare the outcome, not the text).
    for (endpoint, args) in [(&https, vec!["get", "k"]), (&bare, vec!["get", "k"])] {
        let a = run(Tool::Etcdctl, endpoint, &[], &args);
        let b = run(Tool::Retcdctl, endpoint, &[], &args);
        assert_eq!(a.status.code(), b.status.code(), "{endpoint} {args:?}:\n{}\n{}", text(&a), text(&b));
        assert!(!b.status.success() && !text(&b).contains("panicked"), "{}", text(&b));
    }
}

#[test]
fn retcdctl_mutual_tls() {
    let (Some(retcd), Some(_)) = (retcd_testkit::retcd_binary_if_built(), require_tool("etcdctl")) else { return };
    let pki = Pki::new("retcd test CA");
    pki.issue("server", &["127.0.0.1", "localhost"], "server");
    pki.issue("client", &[], "client");
    let tls: Vec<String> = vec![
        "--cert-file".into(),
        pki.path("server.pem"),
        "--key-file".into(),
        pki.path("server-key.pem"),
        "--trusted-ca-file".into(),
        pki.path("ca.pem"),
        "--client-cert-auth".into(),
    ];
    let server = TlsServer::start(&retcd, &tls);
    let cacert = format!("--cacert={}", pki.path("ca.pem"));
    let cert = format!("--cert={}", pki.path("client.pem"));
    let key = format!("--key={}", pki.path("client-key.pem"));
    wait_ready(&server, &[&cacert, &cert, &key]);
    let https = format!("https://127.0.0.1:{}", server.port);

    same_transcript(&https, &[], &[&cacert, &cert, &key]);
    let env = [
        ("ETCDCTL_CACERT", pki.path("ca.pem")),
        ("ETCDCTL_CERT", pki.path("client.pem")),
        ("ETCDCTL_KEY", pki.path("client-key.pem")),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    same_transcript(&https, &env, &[]);

    // Without a client certificate the server refuses the connection.
    let a = run(Tool::Etcdctl, &https, &[], &[&cacert, "get", "k"]);
    let b = run(Tool::Retcdctl, &https, &[], &[&cacert, "get", "k"]);
    assert_eq!(a.status.code(), b.status.code(), "{}\n{}", text(&a), text(&b));
    assert!(!b.status.success() && !text(&b).contains("panicked"), "{}", text(&b));
}
