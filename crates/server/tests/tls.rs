//! TLS on the client port, with certificates made in the test (rcgen): real
//! etcdctl 3.4 over https with `--cacert`, mutual TLS with
//! `--client-cert-auth`, `--auto-tls`, a plaintext client refused cleanly
//! (the member keeps serving), and an https URL without a certificate
//! refused at start with etcd's message. Where cheap, the same commands run
//! against real etcd with the same flags and must print the same.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use retcd_testkit::{require_tool, wait_output, TlsServer};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate.
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "retcd test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        for (name, sans, cn) in [("server", vec!["127.0.0.1", "localhost"], "server"), ("client", vec![], "root")] {
            let mut p = CertificateParams::new(sans.into_iter().map(String::from).collect::<Vec<_>>()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

fn etcdctl(port: u16, scheme: &str, args: &[&str]) -> Output {
    let child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={scheme}://127.0.0.1:{port}"))
        .arg("--dial-timeout=2s")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(30))
}

/// Waits (bounded) until `etcdctl args` succeeds over https.
fn wait_ready(server: &TlsServer, args: &[&str]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if etcdctl(server.port, "https", &[args, &["endpoint", "health"]].concat()).status.success() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not serving over TLS; log:\n{}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The commands' outputs (stdout, and exit codes) on one server.
fn transcript(server: &TlsServer, creds: &[&str]) -> Vec<String> {
    let run = |args: &[&str]| {
        let o = etcdctl(server.port, "https", &[creds, args].concat());
        format!("{args:?} -> {:?}: {}", o.status.code(), stdout(&o))
    };
    vec![run(&["put", "secret", "s3cr3t"]), run(&["get", "secret"]), run(&["del", "secret"])]
}

fn binaries() -> Vec<(&'static str, PathBuf)> {
    let mut out = vec![("retcd", PathBuf::from(env!("CARGO_BIN_EXE_retcd")))];
    if let Some(etcd) = require_tool("etcd") {
        out.push(("etcd", etcd));
    }
    out
}

#[test]
fn client_tls_serves_etcdctl_and_refuses_plaintext() {
    if require_tool("etcdctl").is_none() {
        return;
    }
    let pki = Pki::new();
    let tls = vec!["--cert-file".into(), pki.path("server.pem"), "--key-file".into(), pki.path("server-key.pem")];
    let cacert = format!("--cacert={}", pki.path("ca.pem"));
    let mut transcripts = Vec::new();
    for (name, binary) in binaries() {
        let server = TlsServer::start(&binary, &tls);
        wait_ready(&server, &[&cacert]);
        transcripts.push((name, transcript(&server, &[&cacert])));
        // Plaintext against the TLS port: refused, nothing stored, still serving.
        let plain = etcdctl(server.port, "http", &["put", "plain", "x"]);
        assert!(!plain.status.success(), "{name}: a plaintext client was served");
        // Without the CA the server's certificate is not trusted.
        let untrusted = etcdctl(server.port, "https", &["get", "secret"]);
        assert!(!untrusted.status.success(), "{name}: an unverified server certificate was accepted");
        let got = etcdctl(server.port, "https", &[&cacert, "get", "plain"]);
        assert!(got.status.success() && stdout(&got).is_empty(), "{name}: {got:?}");
    }
    let (_, ours) = &transcripts[0];
    assert_eq!(ours[0], "[\"put\", \"secret\", \"s3cr3t\"] -> Some(0): OK\n");
    for (name, theirs) in &transcripts[1..] {
        assert_eq!(ours, theirs, "retcd differs from {name}");
    }
}

#[test]
fn mutual_tls_requires_a_client_certificate() {
    if require_tool("etcdctl").is_none() {
        return;
    }
    let pki = Pki::new();
    let tls: Vec<String> = vec![
        "--cert-file".into(),
        pki.path("server.pem"),
        "--key-file".into(),
        pki.path("server-key.pem"),
        "--trusted-ca-file".into(),
        pki.path("ca.pem"),
        "--client-cert-auth".into(),
    ];
    let cacert = format!("--cacert={}", pki.path("ca.pem"));
    let cert = format!("--cert={}", pki.path("client.pem"));
    let key = format!("--key={}", pki.path("client-key.pem"));
    for (name, binary) in binaries() {
        let server = TlsServer::start(&binary, &tls);
        wait_ready(&server, &[&cacert, &cert, &key]);
        let ok = etcdctl(server.port, "https", &[&cacert, &cert, &key, "put", "k", "v"]);
        assert!(ok.status.success(), "{name}: {ok:?}");
        let no_cert = etcdctl(server.port, "https", &[&cacert, "get", "k"]);
        assert!(!no_cert.status.success(), "{name}: served a client without a certificate");
        let got = etcdctl(server.port, "https", &[&cacert, &cert, &key, "get", "k", "--print-value-only"]);
        assert_eq!(stdout(&got), "v\n", "{name}");
    }
}

#[test]
fn auto_tls_makes_its_own_certificate() {
    if require_tool("etcdctl").is_none() {
        return;
    }
    for (name, binary) in binaries() {
        // (etcdctl 3.4 skips verification only with --insecure-transport=false.)
        let insecure = ["--insecure-transport=false", "--insecure-skip-tls-verify"];
        let server = TlsServer::start(&binary, &["--auto-tls".into()]);
        wait_ready(&server, &insecure);
        let ok = etcdctl(server.port, "https", &[&insecure[..], &["put", "k", "v"]].concat());
        assert!(ok.status.success(), "{name}: {ok:?}");
    }
}

#[test]
fn https_without_a_certificate_is_refused_at_start() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_retcd"));
    let mut server = TlsServer::start(&binary, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "started without a certificate");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(&server.log).unwrap();
    let expected = format!(
        "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:{} with HTTPS scheme",
        server.port
    );
    assert!(log.contains(&expected), "{log}");
}
