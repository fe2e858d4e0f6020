//! The JSON gateway: etcd 3.4's grpc-gateway paths (`/v3/...` and the same
//! under `/v3beta/`) on the client port, in front of the gRPC services.
//!
//! Each path calls the gRPC service's trait method in process, with the
//! request decoded from JSON ([`json`]), so every check, error and behaviour
//! is the gRPC one. Replies follow grpc-gateway v1 as etcd 3.4 ships it:
//! unary answers are one JSON object; streaming ones (watch, lease
//! keep-alive, election observe, snapshot) are `{"result":{...}}` objects,
//! one per line, and a stream that fails ends with `{"error":{...}}`;
//! errors are `{"error":..,"message":..,"code":..}` with the HTTP status
//! grpc-gateway derives from the gRPC code. The `Authorization` header is
//! passed on as the `authorization` and `token` metadata.
//!
//! etcd's gateway reaches its gRPC server over one internal connection, so
//! `--max-concurrent-streams` bounds all gateway calls together: a call past
//! the limit waits until one in progress (a watch, say) ends. Each call here
//! holds one of as many permits until its response body is dropped.
//!
//! The gateway must never answer differently from the gRPC service it fronts:
//! it only translates.

pub mod json;
pub mod objects;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use futures::{Stream, StreamExt};
use prost::Message;
use prost_reflect::MessageDescriptor;
use retcd_api::etcdserverpb::auth_server::Auth;
use retcd_api::etcdserverpb::cluster_server::Cluster;
use retcd_api::etcdserverpb::kv_server::Kv;
use retcd_api::etcdserverpb::lease_server::Lease;
use retcd_api::etcdserverpb::maintenance_server::Maintenance;
use retcd_api::etcdserverpb::watch_server::Watch;
use retcd_api::v3electionpb::election_server::Election;
use retcd_api::v3lockpb::lock_server::Lock;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Status, Streaming};

use self::objects::JsonObjects;
use crate::server::EtcdServer;
use crate::v3rpc::inproc::{request, request_stream};
use crate::v3rpc::{auth, cluster, election, kv, lease, lock, maintenance, watch};

/// What every gateway call shares.
#[derive(Clone)]
struct Gateway {
    server: Arc<EtcdServer>,
    /// One permit per call in progress, when `--max-concurrent-streams` is
    /// set (etcd's default is no limit).
    streams: Option<Arc<Semaphore>>,
}

/// The gateway's routes, to be merged with the gRPC ones; at most
/// `max_streams` calls run at once.
pub fn routes(server: &Arc<EtcdServer>, max_streams: u32) -> axum::Router {
    let streams = (max_streams != u32::MAX).then(|| Arc::new(Semaphore::new(max_streams as usize)));
    axum::Router::new()
        .route("/v3/", axum::routing::any(handle))
        .route("/v3/{*path}", axum::routing::any(handle))
        .route("/v3beta/", axum::routing::any(handle))
        .route("/v3beta/{*path}", axum::routing::any(handle))
        .with_state(Gateway { server: server.clone(), streams })
}

/// A response body that holds its call's stream permit until it is
/// dropped (sent in full, or its client gone).
struct Held {
    body: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Every path served (after `/v3/`), for telling a wrong method (405) from
/// an unknown path (404).
const PATHS: &[&str] = &[
    "kv/range",
    "kv/put",
    "kv/deleterange",
    "kv/txn",
    "kv/compaction",
    "watch",
    "lease/grant",
    "lease/revoke",
    "kv/lease/revoke",
    "lease/keepalive",
    "lease/timetolive",
    "kv/lease/timetolive",
    "lease/leases",
    "kv/lease/leases",
    "cluster/member/add",
    "cluster/member/remove",
    "cluster/member/update",
    "cluster/member/list",
    "cluster/member/promote",
    "maintenance/alarm",
    "maintenance/status",
    "maintenance/defragment",
    "maintenance/hash",
    "maintenance/snapshot",
    "maintenance/transfer-leadership",
    "auth/enable",
    "auth/disable",
    "auth/authenticate",
    "auth/user/add",
    "auth/user/get",
    "auth/user/list",
    "auth/user/delete",
    "auth/user/changepw",
    "auth/user/grant",
    "auth/user/revoke",
    "auth/role/add",
    "auth/role/get",
    "auth/role/list",
    "auth/role/delete",
    "auth/role/grant",
    "auth/role/revoke",
    "lock/lock",
    "lock/unlock",
    "election/campaign",
    "election/proclaim",
    "election/leader",
    "election/observe",
    "election/resign",
];

/// What one gateway call has to work with.
struct Call {
    server: Arc<EtcdServer>,
    body: Body,
    metadata: MetadataMap,
}

/// Unary call: `svc.method(request)`.
macro_rules! unary {
    ($call:expr, $svc:expr, $service:literal, $method:literal, $fn:ident) => {{
        let svc = $svc;
        unary($call, $service, $method, move |r| async move { svc.$fn(r).await }).await
    }};
}

async fn handle(
    State(Gateway { server, streams }): State<Gateway>,
    uri: Uri,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path();
    let path = path.strip_prefix("/v3/").or_else(|| path.strip_prefix("/v3beta/")).unwrap_or(path);
    // etcd answers CORS preflights on every path with an empty 200.
    if method == Method::OPTIONS {
        return with_cors(Response::new(Body::empty()));
    }
    if method != Method::POST {
        return with_cors(if PATHS.contains(&path) {
            plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
        } else {
            plain(StatusCode::NOT_FOUND, "Not Found\n")
        });
    }
    // Waits, as a stream past the limit on etcd's internal connection does.
    let permit = match streams {
        Some(streams) => match streams.acquire_owned().await {
            Ok(p) => Some(p),
            Err(_) => return plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n"),
        },
        None => None,
    };
    let s = server.clone();
    let call = Call { server, body, metadata: metadata(&headers) };
    let resp = match path {
        "kv/range" => unary!(call, kv::KvService { server: s }, "etcdserverpb.KV", "Range", range),
        "kv/put" => unary!(call, kv::KvService { server: s }, "etcdserverpb.KV", "Put", put),
        "kv/deleterange" => unary!(call, kv::KvService { server: s }, "etcdserverpb.KV", "DeleteRange", delete_range),
        "kv/txn" => unary!(call, kv::KvService { server: s }, "etcdserverpb.KV", "Txn", txn),
        "kv/compaction" => unary!(call, kv::KvService { server: s }, "etcdserverpb.KV", "Compact", compact),
        "watch" => {
            let svc = watch::WatchService { server: s };
            bidi(call, "etcdserverpb.Watch", "Watch", move |r| async move { svc.watch(r).await }).await
        }
        "lease/grant" => {
            unary!(call, lease::LeaseService { server: s }, "etcdserverpb.Lease", "LeaseGrant", lease_grant)
        }
        "lease/revoke" | "kv/lease/revoke" => {
            unary!(call, lease::LeaseService { server: s }, "etcdserverpb.Lease", "LeaseRevoke", lease_revoke)
        }
        "lease/keepalive" => {
            let svc = lease::LeaseService { server: s };
            bidi(call, "etcdserverpb.Lease", "LeaseKeepAlive", move |r| async move { svc.lease_keep_alive(r).await })
                .await
        }
        "lease/timetolive" | "kv/lease/timetolive" => {
            unary!(call, lease::LeaseService { server: s }, "etcdserverpb.Lease", "LeaseTimeToLive", lease_time_to_live)
        }
        "lease/leases" | "kv/lease/leases" => {
            unary!(call, lease::LeaseService { server: s }, "etcdserverpb.Lease", "LeaseLeases", lease_leases)
        }
        "cluster/member/add" => {
            unary!(call, cluster::ClusterService { server: s }, "etcdserverpb.Cluster", "MemberAdd", member_add)
        }
        "cluster/member/remove" => {
            unary!(call, cluster::ClusterService { server: s }, "etcdserverpb.Cluster", "MemberRemove", member_remove)
        }
        "cluster/member/update" => {
            unary!(call, cluster::ClusterService { server: s }, "etcdserverpb.Cluster", "MemberUpdate", member_update)
        }
        "cluster/member/list" => {
            unary!(call, cluster::ClusterService { server: s }, "etcdserverpb.Cluster", "MemberList", member_list)
        }
        "cluster/member/promote" => {
            unary!(call, cluster::ClusterService { server: s }, "etcdserverpb.Cluster", "MemberPromote", member_promote)
        }
        "maintenance/alarm" => {
            unary!(call, maintenance::MaintenanceService { server: s }, "etcdserverpb.Maintenance", "Alarm", alarm)
        }
        "maintenance/status" => {
            unary!(call, maintenance::MaintenanceService { server: s }, "etcdserverpb.Maintenance", "Status", status)
        }
        "maintenance/defragment" => {
            unary!(
                call,
                maintenance::MaintenanceService { server: s },
                "etcdserverpb.Maintenance",
                "Defragment",
                defragment
            )
        }
        // etcd 3.4 maps both Hash and HashKV to this path; Hash is the one
        // that answers there.
        "maintenance/hash" => {
            unary!(call, maintenance::MaintenanceService { server: s }, "etcdserverpb.Maintenance", "Hash", hash)
        }
        "maintenance/snapshot" => {
            let svc = maintenance::MaintenanceService { server: s };
            server_stream(call, "etcdserverpb.Maintenance", "Snapshot", move |r| async move { svc.snapshot(r).await })
                .await
        }
        "maintenance/transfer-leadership" => {
            unary!(
                call,
                maintenance::MaintenanceService { server: s },
                "etcdserverpb.Maintenance",
                "MoveLeader",
                move_leader
            )
        }
        "auth/enable" => unary!(call, auth_service(&s), "etcdserverpb.Auth", "AuthEnable", auth_enable),
        "auth/disable" => unary!(call, auth_service(&s), "etcdserverpb.Auth", "AuthDisable", auth_disable),
        "auth/authenticate" => unary!(call, auth_service(&s), "etcdserverpb.Auth", "Authenticate", authenticate),
        "auth/user/add" => unary!(call, auth_service(&s), "etcdserverpb.Auth", "UserAdd", user_add),
        "auth/user/get" => unary!(call, auth_service(&s), "etcdserverpb.Auth", "UserGet", user_get),
        "auth/user/list" => unary!(call, auth_service(&s), "etcdserverpb.Auth", "UserList", user_list),
        "auth/user/delete" => unary!(call, auth_service(&s), "etcdserverpb.Auth", "UserDelete", user_delete),
        "auth/user/changepw" => {
            unary!(call, auth_service(&s), "etcdserverpb.Auth", "UserChangePassword", user_change_password)
        }
        "auth/user/grant" => unary!(call, auth_service(&s), "etcdserverpb.Auth", "UserGrantRole", user_grant_role),
        "auth/user/revoke" => unary!(call, auth_service(&s), "etcdserverpb.Auth", "UserRevokeRole", user_revoke_role),
        "auth/role/add" => unary!(call, auth_service(&s), "etcdserverpb.Auth", "RoleAdd", role_add),
        "auth/role/get" => unary!(call, auth_service(&s), "etcdserverpb.Auth", "RoleGet", role_get),
        "auth/role/list" => unary!(call, auth_service(&s), "etcdserverpb.Auth", "RoleList", role_list),
        "auth/role/delete" => unary!(call, auth_service(&s), "etcdserverpb.Auth", "RoleDelete", role_delete),
        "auth/role/grant" => {
            unary!(call, auth_service(&s), "etcdserverpb.Auth", "RoleGrantPermission", role_grant_permission)
        }
        "auth/role/revoke" => {
            unary!(call, auth_service(&s), "etcdserverpb.Auth", "RoleRevokePermission", role_revoke_permission)
        }
        "lock/lock" => unary!(call, lock::LockService { server: s }, "v3lockpb.Lock", "Lock", lock),
        "lock/unlock" => unary!(call, lock::LockService { server: s }, "v3lockpb.Lock", "Unlock", unlock),
        "election/campaign" => {
            unary!(call, election::ElectionService { server: s }, "v3electionpb.Election", "Campaign", campaign)
        }
        "election/proclaim" => {
            unary!(call, election::ElectionService { server: s }, "v3electionpb.Election", "Proclaim", proclaim)
        }
        "election/leader" => {
            unary!(call, election::ElectionService { server: s }, "v3electionpb.Election", "Leader", leader)
        }
        "election/observe" => {
            let svc = election::ElectionService { server: s };
            server_stream(call, "v3electionpb.Election", "Observe", move |r| async move { svc.observe(r).await }).await
        }
        "election/resign" => {
            unary!(call, election::ElectionService { server: s }, "v3electionpb.Election", "Resign", resign)
        }
        _ => plain(StatusCode::NOT_FOUND, "Not Found\n"),
    };
    let resp = match permit {
        Some(permit) => resp.map(|body| Body::new(Held { body, _permit: permit })),
        None => resp,
    };
    with_cors(resp)
}

/// The Auth service the auth paths call (the one place to change when it
/// gains state).
fn auth_service(server: &Arc<EtcdServer>) -> auth::AuthService {
    auth::AuthService { server: server.clone() }
}

/// The `Authorization` header as gRPC metadata, under both names etcd's
/// auth looks at.
fn metadata(headers: &HeaderMap) -> MetadataMap {
    let mut md = MetadataMap::new();
    if let Some(token) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Ok(v) = MetadataValue::try_from(token) {
            md.insert("authorization", v.clone());
            md.insert("token", v);
        }
    }
    md
}

/// The request and response descriptors of a method we serve (a missing one
/// is a bug in the table above).
fn descriptors(service: &str, method: &str) -> Result<(MessageDescriptor, MessageDescriptor), Box<Response>> {
    json::method(service, method)
        .ok_or_else(|| Box::new(error(&Status::internal(format!("retcd: no descriptor for {service}.{method}")))))
}

/// The largest JSON body read for a unary call: base64 makes the protobuf
/// request's bytes a third larger, plus room for the field names.
fn max_body(server: &EtcdServer) -> usize {
    server.settings.max_request_bytes * 2 + 512 * 1024
}

async fn read_request<Req: Message + Default>(call: &mut Call, desc: &MessageDescriptor) -> Result<Req, Response> {
    let limit = max_body(&call.server);
    let body = std::mem::take(&mut call.body);
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| error(&Status::invalid_argument(e.to_string())))?;
    let req: Req = json::decode(desc, &bytes).map_err(|e| error(&Status::invalid_argument(e)))?;
    check_size(&call.server, &req).map_err(|s| error(&s))?;
    Ok(req)
}

/// The gRPC receive limit the request would meet on the wire (etcd's
/// gateway forwards over gRPC, so an oversized request gets grpc-go's
/// error there).
fn check_size<Req: Message>(server: &EtcdServer, req: &Req) -> Result<(), Status> {
    let limit = server.settings.max_request_bytes + crate::v3rpc::GRPC_OVERHEAD_BYTES;
    let len = req.encoded_len();
    if len > limit {
        return Err(Status::resource_exhausted(format!("grpc: received message larger than max ({len} vs. {limit})")));
    }
    Ok(())
}

async fn unary<Req, Resp, F, Fut>(mut call: Call, service: &str, method: &str, f: F) -> Response
where
    Req: Message + Default,
    Resp: Message,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let (input, output) = match descriptors(service, method) {
        Ok(d) => d,
        Err(resp) => return *resp,
    };
    let req = match read_request::<Req>(&mut call, &input).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match f(request(req, &call.metadata)).await {
        Ok(resp) => match json::encode(&output, resp.get_ref()) {
            Ok(body) => json_response(StatusCode::OK, body),
            Err(e) => error(&Status::internal(e)),
        },
        Err(status) => error(&status),
    }
}

/// A client-and-server streaming call: the body's JSON values are the
/// requests, the answer streams the responses.
async fn bidi<Req, Resp, S, F, Fut>(call: Call, service: &str, method: &str, f: F) -> Response
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + Unpin + 'static,
    F: FnOnce(tonic::Request<Streaming<Req>>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    let (input, output) = match descriptors(service, method) {
        Ok(d) => d,
        Err(resp) => return *resp,
    };
    let mut values = JsonObjects::new(call.body);
    // As grpc-gateway: a bad first request fails the call; a bad later one
    // only ends the request side.
    let first = match values.next().await {
        Ok(v) => v,
        Err(e) => return error(&Status::unknown(e)),
    };
    let first: Option<Req> = match first.map(|v| json::decode_value(&input, v)).transpose() {
        Ok(r) => r,
        Err(e) => return error(&Status::invalid_argument(e)),
    };
    let (tx, rx) = mpsc::channel::<Req>(16);
    if let Some(first) = first {
        tokio::spawn(async move {
            if tx.send(first).await.is_err() {
                return;
            }
            while let Ok(Some(v)) = values.next().await {
                let Ok(r) = json::decode_value::<Req>(&input, v) else { break };
                if tx.send(r).await.is_err() {
                    break;
                }
            }
        });
    }
    let requests = request_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    match f(request(requests, &call.metadata)).await {
        Ok(resp) => stream_response(resp.into_inner(), output).await,
        Err(status) => error(&status),
    }
}

/// A server-streaming call: one JSON request, a stream of responses.
async fn server_stream<Req, Resp, S, F, Fut>(mut call: Call, service: &str, method: &str, f: F) -> Response
where
    Req: Message + Default,
    Resp: Message + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + Unpin + 'static,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    let (input, output) = match descriptors(service, method) {
        Ok(d) => d,
        Err(resp) => return *resp,
    };
    let req = match read_request::<Req>(&mut call, &input).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match f(request(req, &call.metadata)).await {
        Ok(resp) => stream_response(resp.into_inner(), output).await,
        Err(status) => error(&status),
    }
}

/// Streams `{"result":...}` lines. The status line waits for the first
/// message: a stream that fails before it gets the error's HTTP status, as
/// in grpc-gateway.
async fn stream_response<Resp, S>(mut stream: S, desc: MessageDescriptor) -> Response
where
    Resp: Message + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + Unpin + 'static,
{
    let first = match stream.next().await {
        None => return json_response(StatusCode::OK, Vec::new()),
        Some(Err(status)) => {
            return json_response(http_status(status.code()), stream_error(&status));
        }
        Some(Ok(first)) => first,
    };
    let head = futures::stream::iter([Ok(first)]);
    let chunks = head.chain(stream).scan(false, move |failed, item| {
        let chunk = if *failed {
            None
        } else {
            match item {
                Ok(msg) => Some(match json::encode(&desc, &msg) {
                    Ok(body) => result_line(body),
                    Err(e) => {
                        *failed = true;
                        stream_error(&Status::internal(e))
                    }
                }),
                Err(status) => {
                    *failed = true;
                    Some(stream_error(&status))
                }
            }
        };
        futures::future::ready(chunk.map(|c| Ok::<Bytes, Infallible>(Bytes::from(c))))
    });
    let mut resp = Response::new(Body::from_stream(chunks));
    json_headers(&mut resp);
    resp
}

fn result_line(body: Vec<u8>) -> Vec<u8> {
    let mut line = Vec::with_capacity(body.len() + 12);
    line.extend_from_slice(b"{\"result\":");
    line.extend_from_slice(&body);
    line.extend_from_slice(b"}\n");
    line
}

/// The last chunk of a failed stream (grpc-gateway's `StreamError`).
fn stream_error(status: &Status) -> Vec<u8> {
    let http = http_status(status.code());
    format!(
        "{{\"error\":{{\"grpc_code\":{},\"http_code\":{},\"message\":{},\"http_status\":{}}}}}",
        status.code() as i32,
        http.as_u16(),
        json_string(status.message()),
        json_string(http.canonical_reason().unwrap_or("")),
    )
    .into_bytes()
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A unary error, as grpc-gateway v1 writes it.
fn error(status: &Status) -> Response {
    let msg = json_string(status.message());
    let body = format!("{{\"error\":{msg},\"message\":{msg},\"code\":{}}}", status.code() as i32);
    json_response(http_status(status.code()), body.into_bytes())
}

/// grpc-gateway v1's `HTTPStatusFromCode`.
fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    json_headers(&mut resp);
    resp
}

/// The content type, and on success the gRPC response metadata header
/// grpc-gateway copies through.
fn json_headers(resp: &mut Response) {
    let ok = resp.status() == StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if ok {
        h.insert("grpc-metadata-content-type", HeaderValue::from_static("application/grpc"));
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// etcd answers every client-port HTTP request with these (its default
/// `--cors` is `*`).
fn with_cors(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert("access-control-allow-methods", HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"));
    h.insert("access-control-allow-headers", HeaderValue::from_static("accept, content-type, authorization"));
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn authorization_header_becomes_token_metadata() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("tok.123"));
        let md = metadata(&headers);
        assert_eq!(md.get("authorization").unwrap(), "tok.123");
        assert_eq!(md.get("token").unwrap(), "tok.123");
        assert!(metadata(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn errors_are_grpc_gateway_bodies_with_its_http_status() {
        let resp = error(&Status::not_found("etcdserver: requested lease not found"));
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let chunk = String::from_utf8(stream_error(&Status::out_of_range("x \"y\""))).unwrap();
        assert_eq!(
            chunk,
            r#"{"error":{"grpc_code":11,"http_code":400,"message":"x \"y\"","http_status":"Bad Request"}}"#
        );
        assert_eq!(http_status(tonic::Code::FailedPrecondition), StatusCode::PRECONDITION_FAILED);
    }
}
