//! Watches that survive the loss of a member.
//!
//! [`Client::watch`] opens one watch on one endpoint and returns once the
//! server confirmed it. A background task forwards every response; when the
//! stream breaks it reopens the watch on the next endpoint from the revision
//! after the last one delivered, and drops any event older than that, so no
//! event is lost or delivered twice. Progress notifications advance the
//! resume point too. A server cancellation (compaction, ...) is delivered
//! as-is and ends the watch.
//!
//! Events of one revision arrive in one response (fragmentation is never
//! requested), so resuming at "last revision + 1" cannot split a revision.

use std::sync::{Arc, Mutex};

use retcd_api::etcdserverpb::watch_client::WatchClient;
use retcd_api::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest, WatchResponse};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::client::{backoff, retriable, Client, MAX_DECODE};
use crate::endpoints::Endpoint;
use crate::error::{Error, Result};

impl Client {
    /// Watches what `req` describes (key, range_end, start_revision, prev_kv,
    /// filters, progress_notify; `watch_id` and `fragment` are ignored).
    ///
    /// ```no_run
    /// # async fn demo() -> retcd_client::Result<()> {
    /// use retcd_client::{Client, Config, WatchCreateRequest, prefix_end};
    /// let client = Client::new(Config::new(["127.0.0.1:2379", "127.0.0.1:22379"]))?;
    /// let req = WatchCreateRequest { key: b"app/".to_vec(), range_end: prefix_end(b"app/"), ..Default::default() };
    /// let mut watch = client.watch(req).await?;
    /// while let Some(resp) = watch.next().await {
    ///     for ev in resp?.events {
    ///         println!("{:?}", ev.kv);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch(&self, mut req: WatchCreateRequest) -> Result<Watcher> {
        req.watch_id = 0;
        req.fragment = false;
        let (tx, rx) = mpsc::channel(64);
        let (ready_tx, ready_rx) = oneshot::channel();
        let endpoint = Arc::new(Mutex::new(String::new()));
        let task = tokio::spawn(watch_loop(self.clone(), req, tx, ready_tx, endpoint.clone()));
        let started = async {
            match ready_rx.await {
                Ok(r) => r,
                Err(_) => Err(Error::StreamClosed),
            }
        };
        match self.with_timeout(started).await {
            Ok(()) => Ok(Watcher { rx, task, endpoint }),
            Err(e) => {
                task.abort();
                Err(e)
            }
        }
    }
}

/// The responses of one watch, from [`Client::watch`].
#[derive(Debug)]
pub struct Watcher {
    rx: mpsc::Receiver<Result<WatchResponse>>,
    task: JoinHandle<()>,
    endpoint: Arc<Mutex<String>>,
}

impl Watcher {
    /// The next response: first the server's creation confirmation
    /// (`created`), then events, progress notifications or a cancellation.
    /// Confirmations of watches reopened after a failover are not
    /// delivered. `None` when the watch ended (after a cancellation or a
    /// final error).
    pub async fn next(&mut self) -> Option<Result<WatchResponse>> {
        self.rx.recv().await
    }

    /// The endpoint the watch currently streams from.
    pub fn endpoint(&self) -> String {
        self.endpoint.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where the watch stands: the next revision it must deliver (0 until the
/// server told us the start revision).
struct Progress {
    next_rev: i64,
}

async fn watch_loop(
    client: Client,
    req: WatchCreateRequest,
    out: mpsc::Sender<Result<WatchResponse>>,
    ready: oneshot::Sender<Result<()>>,
    endpoint: Arc<Mutex<String>>,
) {
    let mut ready = Some(ready);
    let mut progress = Progress { next_rev: req.start_revision };
    let mut failures: u32 = 0;
    let max_failures = client.inner.cfg.max_retry_rounds.max(1) * 3;
    loop {
        for ep in client.order() {
            if let Ok(mut e) = endpoint.lock() {
                e.clone_from(&ep.addr);
            }
            let result = run_stream(&client, &ep, &req, &mut progress, &out, &mut ready, &mut failures).await;
            let err = match result {
                Ok(()) => return,
                Err(e) => e,
            };
            failures += 1;
            if !retriable(&err) || failures > max_failures {
                match ready.take() {
                    Some(r) => {
                        let _ = r.send(Err(err));
                    }
                    None => {
                        let _ = out.send(Err(err)).await;
                    }
                }
                return;
            }
            tokio::time::sleep(backoff(failures.min(5))).await;
        }
    }
}

/// Streams from one endpoint. Ok: the watch is over (canceled by the server
/// or nobody listens); Err: the stream failed and may be resumed.
async fn run_stream(
    client: &Client,
    ep: &Endpoint,
    req: &WatchCreateRequest,
    progress: &mut Progress,
    out: &mpsc::Sender<Result<WatchResponse>>,
    ready: &mut Option<oneshot::Sender<Result<()>>>,
    failures: &mut u32,
) -> Result<()> {
    let (tx, rx) = mpsc::channel(4);
    let mut create = req.clone();
    create.start_revision = progress.next_rev;
    let msg = WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) };
    tx.send(msg).await.map_err(|_| Error::StreamClosed)?;
    let mut request = client.request(ReceiverStream::new(rx));
    if client.inner.cfg.require_leader {
        request.metadata_mut().insert("hasleader", tonic::metadata::MetadataValue::from_static("true"));
    }
    let mut stream: Streaming<WatchResponse> =
        WatchClient::new(ep.channel()).max_decoding_message_size(MAX_DECODE).watch(request).await?.into_inner();
    loop {
        let Some(mut resp) = stream.message().await? else {
            return Err(Error::Rpc(tonic::Status::unavailable("watch stream closed")));
        };
        *failures = 0;
        if resp.created {
            if progress.next_rev == 0 {
                progress.next_rev = resp.header.map(|h| h.revision).unwrap_or(0) + 1;
            }
            if let Some(r) = ready.take() {
                let _ = r.send(Ok(()));
                if out.send(Ok(resp)).await.is_err() {
                    return Ok(());
                }
            }
            continue;
        }
        if resp.canceled {
            if let Some(r) = ready.take() {
                let _ = r.send(Ok(()));
            }
            let _ = out.send(Ok(resp)).await;
            return Ok(());
        }
        let next = progress.next_rev;
        let had_events = !resp.events.is_empty();
        resp.events.retain(|ev| ev.kv.as_ref().map(|kv| kv.mod_revision).unwrap_or(0) >= next);
        if let Some(last) = resp.events.last().and_then(|ev| ev.kv.as_ref()) {
            progress.next_rev = last.mod_revision + 1;
        } else if had_events {
            // Everything in it was delivered before the failover.
            continue;
        } else if let Some(h) = resp.header {
            progress.next_rev = progress.next_rev.max(h.revision + 1);
        }
        if out.send(Ok(resp)).await.is_err() {
            return Ok(());
        }
    }
}
