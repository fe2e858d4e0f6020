//! Requests whose HTTP/2 `:authority` is a URL (grpc-go's passthrough dial
//! of an endpoint written `http://host:port`, as etcdctl 3.4 does for
//! `defrag`, `endpoint hashkv` and `endpoint status`) are served as etcd
//! serves them, over plain TCP and TLS, on the client port and the peer
//! port, instead of being reset with PROTOCOL_ERROR.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use retcd_testkit::pki::Pki;
use retcd_testkit::{etcdctl, require_tool, wait_output, Kind, Server, TlsServer};

/// An empty gRPC message (flag 0, length 0).
const EMPTY_MESSAGE: &[u8] = &[0, 0, 0, 0, 0];

/// The issue's probe: `curl --http2-prior-knowledge` (or h2 over TLS) to
/// `url` with `Host: http://127.0.0.1:PORT`, which curl sends as
/// `:authority`. Returns curl's verbose output.
fn curl_with_url_authority(url: &str, port: u16, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("empty");
    std::fs::write(&body, EMPTY_MESSAGE).unwrap();
    let child = Command::new("curl")
        .args(["-sv", "--http2-prior-knowledge", "-o", "/dev/null"])
        .args(extra)
        .args(["-H", &format!("Host: http://127.0.0.1:{port}")])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(20));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether the curl transcript shows an answered gRPC call with `status`.
fn answered(transcript: &str, status: u32) -> bool {
    transcript.contains("< HTTP/2 200") && transcript.contains(&format!("< grpc-status: {status}"))
}

fn servers() -> Vec<(Kind, PathBuf)> {
    let mut kinds = vec![(Kind::Retcd, PathBuf::from(env!("CARGO_BIN_EXE_retcd")))];
    if let Some(etcd) = require_tool("etcd") {
        kinds.push((Kind::Etcd, etcd));
    }
    kinds
}

fn ok(out: &Output) -> bool {
    out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("RST_STREAM")
}

#[test]
fn a_url_as_authority_is_served_on_the_client_port() {
    if require_tool("curl").is_none() || require_tool("etcdctl").is_none() {
        return;
    }
    for (kind, binary) in servers() {
        let server = Server::start(kind, &binary, &[]);
        let port = server.client_port;
        let url = format!("http://127.0.0.1:{port}/etcdserverpb.Maintenance/Status");
        let transcript = curl_with_url_authority(&url, port, &[]);
        assert!(answered(&transcript, 0), "{kind:?}: {transcript}");
        // etcdctl's one-endpoint commands dial the URL as written.
        let endpoint = format!("http://localhost:{port}");
        for args in [&["defrag"][..], &["endpoint", "hashkv"], &["endpoint", "status"]] {
            let out = etcdctl(&endpoint, args, None);
            assert!(ok(&out), "{kind:?} {args:?}: {out:?}");
        }
    }
}

#[test]
fn a_url_as_authority_is_served_over_tls() {
    if require_tool("curl").is_none() {
        return;
    }
    let pki = Pki::new("authority test CA");
    pki.issue("server", &["127.0.0.1", "localhost"], "server");
    let tls = vec!["--cert-file".into(), pki.path("server.pem"), "--key-file".into(), pki.path("server-key.pem")];
    let cacert = pki.path("ca.pem");
    for (kind, binary) in servers() {
        let server = TlsServer::start(&binary, &tls);
        let url = format!("{}/etcdserverpb.Maintenance/Status", server.endpoint());
        // Bounded wait for the TLS port to come up.
        let deadline = Instant::now() + Duration::from_secs(30);
        let transcript = loop {
            let t = curl_with_url_authority(&url, server.port, &["--cacert", &cacert]);
            if answered(&t, 0) || Instant::now() > deadline {
                break t;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(answered(&transcript, 0), "{kind:?}: {transcript}");
    }
}

/// retcd's peer port serves gRPC too: a request with a URL as authority is
/// answered (the member list a joining member asks for), not
/// reset.
#[test]
fn a_url_as_authority_is_answered_on_the_peer_port() {
    if require_tool("curl").is_none() {
        return;
    }
    let server = Server::start(Kind::Retcd, env!("CARGO_BIN_EXE_retcd").as_ref(), &[]);
    let port = server.peer_port;
    let url = format!("http://127.0.0.1:{port}/retcdpb.Peer/Members");
    let transcript = curl_with_url_authority(&url, port, &[]);
    assert!(answered(&transcript, 0), "{transcript}");
}
