//! `--max-concurrent-streams`: by default (etcd's: unlimited) one client
//! connection carries hundreds of concurrent watch streams; with a limit,
//! a stream past it waits until another one closes.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use retcd_api::etcdserverpb::watch_client::WatchClient;
use retcd_api::etcdserverpb::watch_request::RequestUnion;
use retcd_api::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use retcd_testkit::{Kind, Server};
use tokio::sync::mpsc;
use tonic::transport::Channel;

fn retcd() -> &'static str {
    env!("CARGO_BIN_EXE_retcd")
}

/// Opens a watch stream on `channel` and waits for its creation; returns
/// the request sender (dropping it ends the stream) and the response stream.
async fn open_watch(channel: Channel) -> (mpsc::Sender<WatchRequest>, tonic::Streaming<WatchResponse>) {
    let (tx, rx) = mpsc::channel(1);
    let create = WatchCreateRequest { key: b"k".to_vec(), ..Default::default() };
    tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.unwrap();
    let mut stream =
        WatchClient::new(channel).watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let created = stream.message().await.unwrap().unwrap();
    assert!(created.created);
    (tx, stream)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_connection_carries_hundreds_of_streams_by_default() {
    let server = Server::start_in_runtime(Kind::Retcd, retcd(), &[]);
    let channel = server.connect().await;
    let mut open = Vec::new();
    for _ in 0..300 {
        let watch = tokio::time::timeout(Duration::from_secs(10), open_watch(channel.clone())).await;
        open.push(watch.expect("a stream past the 200th was held back"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_past_the_limit_wait_for_a_free_one() {
    let server = Server::start_in_runtime(Kind::Retcd, retcd(), &["--max-concurrent-streams", "4"]);
    let channel = server.connect().await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(open_watch(channel.clone()).await);
    }
    let waiting = tokio::spawn(open_watch(channel.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "a fifth stream was served with a limit of four");
    drop(open.pop());
    let fifth = tokio::time::timeout(Duration::from_secs(10), waiting).await;
    fifth.expect("the fifth stream never started after one closed").unwrap();
}

/// A JSON-gateway watch through curl (`curl -sN`), its output in `out`.
fn gateway_watch(endpoint: &str, out: &std::path::Path) -> std::process::Child {
    std::process::Command::new("curl")
        .args(["-sN", "-X", "POST", &format!("http://{endpoint}/v3/watch")])
        .args(["-d", r#"{"create_request":{"key":"Zm9v"}}"#])
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn created(out: &std::path::Path) -> bool {
    std::fs::read_to_string(out).unwrap_or_default().contains(r#""created":true"#)
}

/// Waits (at most `limit`) until the watch writing to `out` is created.
fn wait_created(out: &std::path::Path, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while !created(out) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// etcd's gateway reaches its server over one gRPC connection, so the limit
/// holds for all gateway calls together: with two gateway watches open and
/// `--max-concurrent-streams 2`, a third waits until one ends. Run against
/// etcd and retcd alike.
#[test]
fn gateway_calls_past_the_limit_wait_as_etcds() {
    if retcd_testkit::require_tool("curl").is_none() {
        return;
    }
    let mut kinds = vec![(Kind::Retcd, std::path::PathBuf::from(retcd()))];
    if let Some(etcd) = retcd_testkit::require_tool("etcd") {
        kinds.push((Kind::Etcd, etcd));
    }
    for (kind, binary) in kinds {
        let server = Server::start(kind, &binary, &["--max-concurrent-streams", "2"]);
        let dir = tempfile::tempdir().unwrap();
        let outs: Vec<_> = (0..3).map(|i| dir.path().join(format!("w{i}"))).collect();
        let mut first = gateway_watch(&server.endpoint(), &outs[0]);
        let mut second = gateway_watch(&server.endpoint(), &outs[1]);
        assert!(wait_created(&outs[0], Duration::from_secs(10)), "{kind:?}: first watch");
        assert!(wait_created(&outs[1], Duration::from_secs(10)), "{kind:?}: second watch");
        let mut third = gateway_watch(&server.endpoint(), &outs[2]);
        assert!(!wait_created(&outs[2], Duration::from_secs(2)), "{kind:?}: a third call was served");
        let _ = first.kill();
        let _ = first.wait();
        let served = wait_created(&outs[2], Duration::from_secs(10));
        for c in [&mut second, &mut third] {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert!(served, "{kind:?}: the third call never started after the first ended");
    }
}
