//! The Watch service: one bidirectional stream carries many watches.
//!
//! A receive task handles create/cancel/progress requests; everything the
//! client is sent (created and canceled notices, events, progress) flows
//! through one bounded queue per stream, which keeps it in order: a watch's
//! "created" response always precedes its first event.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::Stream;
use prost::Message as _;
use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::watch_request::RequestUnion;
use retcd_api::etcdserverpb::watch_server::Watch;
use retcd_api::etcdserverpb::{watch_create_request::FilterType, WatchCreateRequest, WatchRequest, WatchResponse};
use retcd_api::mvccpb::Event;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::server::EtcdServer;
use crate::watch::{StreamMsg, StreamTx, WatchSpec};

/// Messages queued per stream before its watchers fall back to catching up
/// from history (the bound on a slow consumer's memory).
const STREAM_QUEUE: usize = 128;

static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

pub struct WatchService {
    pub server: Arc<EtcdServer>,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        // Each create is checked against the stream's token, as etcd does.
        let creds = crate::auth::credentials::Creds::from_request(&req);
        let mut inbound = req.into_inner();
        let stream_id = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel::<StreamMsg>(STREAM_QUEUE);
        let (out_tx, out_rx) = mpsc::channel::<Result<WatchResponse, Status>>(16);
        let server = self.server.clone();

        // Receive side: create, cancel, progress.
        let recv_server = server.clone();
        let recv_tx = tx.clone();
        tokio::spawn(async move {
            let mut next_id: i64 = 0;
            let mut half_closed = false;
            loop {
                let req = match inbound.message().await {
                    Ok(Some(req)) => req,
                    // The client closed its side but may still be reading:
                    // its watches live on (as etcd's), until the send side
                    // sees the client go.
                    Ok(None) => {
                        half_closed = true;
                        break;
                    }
                    Err(_) => break,
                };
                let alive = match req.request_union {
                    Some(RequestUnion::CreateRequest(c)) => {
                        create(&recv_server, &creds, stream_id, &mut next_id, c, &recv_tx).await
                    }
                    Some(RequestUnion::CancelRequest(c)) => {
                        // Cancelling an unknown watch is silently ignored, as etcd.
                        !recv_server.watch.remove(stream_id, c.watch_id) || {
                            let revision = recv_server.kv.rev();
                            let msg = StreamMsg::Canceled { watch_id: c.watch_id, revision, compact_revision: 0 };
                            recv_tx.send(msg).await.is_ok()
                        }
                    }
                    Some(RequestUnion::ProgressRequest(_)) => {
                        recv_server.watch.request_progress(stream_id, &recv_tx);
                        !recv_tx.is_closed()
                    }
                    None => true,
                };
                if !alive {
                    break;
                }
            }
            if !half_closed {
                recv_server.watch.remove_stream(stream_id);
            }
        });

        // Send side: turn queued messages into responses. etcd's watch
        // server fragments at --max-request-bytes plus the gRPC overhead
        // allowance, the same limit as its receive side.
        let max_bytes = server.settings.max_request_bytes + super::GRPC_OVERHEAD_BYTES;
        tokio::spawn(async move {
            'stream: loop {
                let msg = tokio::select! {
                    msg = rx.recv() => msg,
                    // The client dropped the response stream.
                    () = out_tx.closed() => None,
                };
                let Some(msg) = msg else { break };
                for r in to_responses(&server, msg, max_bytes) {
                    if out_tx.send(Ok(r)).await.is_err() {
                        break 'stream;
                    }
                }
            }
            server.watch.remove_stream(stream_id);
        });
        drop(tx);

        let out = tokio_stream::wrappers::ReceiverStream::new(out_rx);
        Ok(Response::new(Box::pin(out)))
    }
}

/// Handles a create request; false if the stream is gone.
async fn create(
    server: &Arc<EtcdServer>,
    creds: &crate::auth::credentials::Creds,
    stream_id: u64,
    next_id: &mut i64,
    c: WatchCreateRequest,
    tx: &StreamTx,
) -> bool {
    let rev = server.watch.notified_rev();
    if let Err(e) = watch_permitted(server, creds, &c).await {
        // etcd answers a refused watch with a created-and-canceled response
        // whose reason is the gRPC error's Go text.
        let reason = match e {
            EtcdError::InvalidAuthToken | EtcdError::AuthOldRevision | EtcdError::UserEmpty => e,
            _ => EtcdError::PermissionDenied,
        };
        let code = match reason.code() {
            tonic::Code::Unauthenticated => "Unauthenticated",
            tonic::Code::InvalidArgument => "InvalidArgument",
            _ => "PermissionDenied",
        };
        let reason = format!("rpc error: code = {code} desc = {}", reason.message());
        let msg = StreamMsg::Created { watch_id: -1, revision: rev, canceled: true, reason };
        return tx.send(msg).await.is_ok();
    }
    let range_empty = !c.range_end.is_empty() && c.range_end != [0] && c.key >= c.range_end;
    let id = if c.watch_id != 0 { c.watch_id } else { auto_id(server, stream_id, next_id) };
    let error = if range_empty {
        Some("mvcc: watcher range is empty")
    } else if c.watch_id != 0 && server.watch.contains(stream_id, c.watch_id) {
        Some("mvcc: duplicate watch ID provided on the WatchStream")
    } else {
        None
    };
    if let Some(reason) = error {
        let msg = StreamMsg::Created { watch_id: -1, revision: rev, canceled: true, reason: reason.to_string() };
        return tx.send(msg).await.is_ok();
    }
    let spec = WatchSpec {
        key: c.key,
        end: c.range_end,
        prev_kv: c.prev_kv,
        no_put: c.filters.contains(&(FilterType::Noput as i32)),
        no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
        progress_notify: c.progress_notify,
        fragment: c.fragment,
    };
    let start = if c.start_revision == 0 { rev + 1 } else { c.start_revision };
    let created = StreamMsg::Created { watch_id: id, revision: rev, canceled: false, reason: String::new() };
    if tx.send(created).await.is_err() {
        return false;
    }
    server.watch.add(stream_id, id, spec, start, tx.clone());
    true
}

/// Read permission on the range exactly as the client asked for it.
async fn watch_permitted(
    server: &EtcdServer,
    creds: &crate::auth::credentials::Creds,
    c: &WatchCreateRequest,
) -> Result<(), EtcdError> {
    let ai = server.auth_info(creds).await?;
    server.auth.check_key(ai.as_ref(), crate::auth::perms::Access::Read, &c.key, &c.range_end)
}

fn auto_id(server: &EtcdServer, stream_id: u64, next_id: &mut i64) -> i64 {
    while server.watch.contains(stream_id, *next_id) {
        *next_id += 1;
    }
    let id = *next_id;
    *next_id += 1;
    id
}

fn to_responses(server: &EtcdServer, msg: StreamMsg, max_bytes: usize) -> Vec<WatchResponse> {
    match msg {
        StreamMsg::Created { watch_id, revision, canceled, reason } => vec![WatchResponse {
            header: Some(server.header(revision)),
            watch_id,
            created: true,
            canceled,
            cancel_reason: reason,
            ..Default::default()
        }],
        StreamMsg::Canceled { watch_id, revision, compact_revision } => vec![WatchResponse {
            header: Some(server.header(revision)),
            watch_id,
            canceled: true,
            compact_revision,
            ..Default::default()
        }],
        StreamMsg::Progress { watch_id, revision } => {
            vec![WatchResponse { header: Some(server.header(revision)), watch_id, ..Default::default() }]
        }
        StreamMsg::Events { watch_id, revision, events, fragment } => {
            let resp = WatchResponse { header: Some(server.header(revision)), watch_id, events, ..Default::default() };
            if fragment && resp.events.len() > 1 && resp.encoded_len() >= max_bytes {
                fragments(resp, max_bytes)
            } else {
                vec![resp]
            }
        }
    }
}

/// Splits a response whose encoding reaches `max_bytes` into several, each
/// but the last flagged `fragment`, as etcd does for watches created with
/// `fragment: true`: a fragment takes events while its encoding stays below
/// `max_bytes`, and always at least one.
fn fragments(mut resp: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    let events = std::mem::take(&mut resp.events);
    let template = WatchResponse { fragment: true, ..resp };
    let base = template.encoded_len();
    let mut out = Vec::new();
    let mut cur: Vec<Event> = Vec::new();
    let mut size = base;
    for ev in events {
        // Field 11 (one tag byte), the length, the event.
        let len = ev.encoded_len();
        let ev_size = 1 + prost::encoding::encoded_len_varint(len as u64) + len;
        if !cur.is_empty() && size + ev_size >= max_bytes {
            out.push(WatchResponse { events: std::mem::take(&mut cur), ..template.clone() });
            size = base;
        }
        size += ev_size;
        cur.push(ev);
    }
    out.push(WatchResponse { events: cur, fragment: false, ..template });
    out
}
