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
