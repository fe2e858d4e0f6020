//! etcd's v2 keys API over HTTP (`/v2/keys/...`, served with `--enable-v2`)
//! and `GET /v2/members`: parses the form as etcd's v2http does (query and
//! url-encoded body, etcd's error codes for bad fields), proposes changes
//! through raft and answers with etcd's JSON bodies and `X-Etcd-*` headers.
//!
//! Reads are served from this member's store (with `quorum=true` after a
//! linearizable read barrier); watches wait in memory and never hold the
//! store lock while waiting.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use retcd_api::retcdpb::{InternalRequest, V2Request};

use crate::server::EtcdServer;
use crate::v2store::{clean_path, now_nanos, Event, V2Error, WatchOutcome};

pub fn routes(server: &Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/v2/keys", axum::routing::any(keys))
        .route("/v2/keys/", axum::routing::any(keys))
        .route("/v2/keys/{*path}", axum::routing::any(keys))
        .route("/v2/members", axum::routing::get(members))
        .with_state(server.clone())
}

/// The form of a request: body values first, then the query's, as Go's
/// `Request.ParseForm` orders them (FormValue takes the first).
struct Form(HashMap<String, Vec<String>>);

impl Form {
    fn parse(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Form, V2Error> {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        let bad = |e: serde_urlencoded::de::Error| V2Error::new(210, e.to_string(), 0);
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form && (method == Method::POST || method == Method::PUT || method == Method::PATCH) {
            let text = std::str::from_utf8(body).map_err(|e| V2Error::new(210, e.to_string(), 0))?;
            for (k, v) in serde_urlencoded::from_str::<Vec<(String, String)>>(text).map_err(bad)? {
                m.entry(k).or_default().push(v);
            }
        }
        if let Some(q) = uri.query() {
            for (k, v) in serde_urlencoded::from_str::<Vec<(String, String)>>(q).map_err(bad)? {
                m.entry(k).or_default().push(v);
            }
        }
        Ok(Form(m))
    }

    fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }

    fn value(&self, k: &str) -> &str {
        self.0.get(k).and_then(|v| v.first()).map(String::as_str).unwrap_or("")
    }

    fn uint(&self, k: &str, code: u32, cause: &str) -> Result<u64, V2Error> {
        match self.0.get(k).and_then(|v| v.first()) {
            None => Ok(0),
            Some(v) => v.parse().map_err(|_| V2Error::new(code, cause, 0)),
        }
    }

    /// Go's strconv.ParseBool.
    fn boolean(&self, k: &str, cause: &str) -> Result<bool, V2Error> {
        match self.0.get(k).and_then(|v| v.first()).map(String::as_str) {
            None => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(_) => Err(V2Error::new(209, cause, 0)),
        }
    }
}

/// Decodes %XX escapes of a URL path (Go's URL.Path is decoded).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn headers(server: &EtcdServer, etcd_index: u64) -> [(header::HeaderName, HeaderValue); 8] {
    let num = |n: u64| HeaderValue::from_str(&n.to_string()).unwrap_or(HeaderValue::from_static("0"));
    [
        // etcd's v2 handlers allow any origin.
        (header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("accept, content-type, authorization")),
        (header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE")),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
        (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (header::HeaderName::from_static("x-etcd-cluster-id"), cluster_id_header(server)),
        (header::HeaderName::from_static("x-etcd-index"), num(etcd_index)),
        (
            header::HeaderName::from_static("x-raft-index"),
            num(server.applied.load(std::sync::atomic::Ordering::Acquire)),
        ),
        (header::HeaderName::from_static("x-raft-term"), num(server.raft.term())),
    ]
}

fn cluster_id_header(server: &EtcdServer) -> HeaderValue {
    HeaderValue::from_str(&format!("{:x}", server.settings.cluster_id)).unwrap_or(HeaderValue::from_static("0"))
}

fn json_line<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string(v).unwrap_or_default();
    s.push('\n');
    s
}

fn error_response(server: &EtcdServer, mut e: V2Error) -> Response {
    if e.index == 0 && e.error_code < 200 {
        e.index = server.v2.index();
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let index = e.index;
    let mut r = (status, headers(server, index), json_line(&e)).into_response();
    // Errors carry no raft headers in etcd.
    r.headers_mut().remove("x-raft-index");
    r.headers_mut().remove("x-raft-term");
    r
}

fn event_response(server: &EtcdServer, e: &Event, no_value: bool) -> Response {
    let status = if e.is_created() { StatusCode::CREATED } else { StatusCode::OK };
    let body = if no_value && matches!(e.action, "set" | "compareAndSwap" | "create" | "update") {
        json_line(&serde_json::json!({ "action": e.action }))
    } else {
        json_line(e)
    };
    (status, headers(server, e.etcd_index), body).into_response()
}

async fn keys(
    State(server): State<Arc<EtcdServer>>,
    method: Method,
    uri: Uri,
    hdrs: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&server, &method, &uri, &hdrs, &body).await {
        Ok(r) => r,
        Err(e) => error_response(&server, e),
    }
}

async fn handle(
    server: &Arc<EtcdServer>,
    method: &Method,
    uri: &Uri,
    hdrs: &HeaderMap,
    body: &[u8],
) -> Result<Response, V2Error> {
    if *method == Method::OPTIONS {
        // A CORS preflight: etcd answers it with the CORS headers alone.
        let mut r = StatusCode::OK.into_response();
        for (k, v) in headers(server, 0).into_iter().take(3) {
            r.headers_mut().insert(k, v);
        }
        return Ok(r);
    }
    let allowed = [Method::GET, Method::HEAD, Method::PUT, Method::POST, Method::DELETE];
    if !allowed.contains(method) {
        let mut r = (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n").into_response();
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("HEAD,GET,PUT,POST,DELETE"));
        return Ok(r);
    }
    let form = Form::parse(method, uri, hdrs, body)?;
    let raw = uri.path().strip_prefix("/v2/keys").unwrap_or("");
    let path = clean_path(&percent_decode(raw));
    let prev_index = form.uint("prevIndex", 203, r#"invalid value for "prevIndex""#)?;
    let wait_index = form.uint("waitIndex", 203, r#"invalid value for "waitIndex""#)?;
    let recursive = form.boolean("recursive", r#"invalid value for "recursive""#)?;
    let sorted = form.boolean("sorted", r#"invalid value for "sorted""#)?;
    let wait = form.boolean("wait", r#"invalid value for "wait""#)?;
    let dir = form.boolean("dir", r#"invalid value for "dir""#)?;
    let quorum = form.boolean("quorum", r#"invalid value for "quorum""#)?;
    let stream = form.boolean("stream", r#"invalid value for "stream""#)?;
    if wait && method != Method::GET {
        return Err(V2Error::new(209, r#""wait" can only be used with GET requests"#, 0));
    }
    let prev_value = form.value("prevValue").to_string();
    if form.has("prevValue") && prev_value.is_empty() {
        return Err(V2Error::new(201, r#""prevValue" cannot be empty"#, 0));
    }
    let no_value = form.boolean("noValueOnSuccess", r#"invalid value for "noValueOnSuccess""#)?;
    let ttl =
        if form.value("ttl").is_empty() { None } else { Some(form.uint("ttl", 202, r#"invalid value for "ttl""#)?) };
    let prev_exist =
        if form.has("prevExist") { Some(form.boolean("prevExist", "invalid value for prevExist")?) } else { None };
    let refresh = if form.has("refresh") { form.boolean("refresh", "invalid value for refresh")? } else { false };
    if refresh {
        if form.has("value") && !form.value("value").is_empty() {
            return Err(V2Error::new(211, "A value was provided on a refresh", 0));
        }
        if ttl.is_none() {
            return Err(V2Error::new(212, "No TTL value set", 0));
        }
    }
    // A TTL too large for nanoseconds is as good as none running out.
    let expiration = ttl
        .map(|t| now_nanos().saturating_add(i64::try_from(t).unwrap_or(i64::MAX).saturating_mul(1_000_000_000)))
        .unwrap_or(0);

    if *method == Method::GET || *method == Method::HEAD {
        if wait {
            return watch(server, &path, recursive, wait_index, stream).await;
        }
        if quorum {
            server.linearizable_read().await.map_err(|e| V2Error::new(300, e.to_string(), 0))?;
        }
        let e = server.v2.get(&path, recursive, sorted)?;
        return Ok(event_response(server, &e, false));
    }
    let req = V2Request {
        method: method.as_str().to_string(),
        path,
        val: form.value("value").to_string(),
        dir,
        prev_value,
        prev_index,
        prev_exist,
        expiration,
        recursive,
        time: 0,
        refresh,
    };
    let applied: Result<_, V2Error> = server
        .propose(InternalRequest { v2: Some(req), ..Default::default() })
        .await
        .map_err(|e| V2Error::new(300, e.to_string(), 0))?;
    Ok(event_response(server, &applied?, no_value))
}

/// `wait=true`: the headers go out at once (as etcd flushes them), the
/// event when it happens. `stream=true` keeps sending events.
async fn watch(
    server: &Arc<EtcdServer>,
    path: &str,
    recursive: bool,
    since: u64,
    stream: bool,
) -> Result<Response, V2Error> {
    let (start, first) = match server.v2.watch(path, recursive, since)? {
        WatchOutcome::Ready(e) => (server.v2.index(), Ok(*e)),
        WatchOutcome::Pending { start_index, rx } => (start_index, Err(rx)),
    };
    let server2 = server.clone();
    let path = path.to_string();
    let body = async_stream(move |tx| async move {
        let mut pending = first;
        loop {
            let e = match pending {
                Ok(e) => e,
                // A client that goes away ends the wait (and drops the
                // watcher's receiver, which the store then prunes).
                Err(rx) => tokio::select! {
                    r = rx => match r {
                        Ok(e) => e,
                        Err(_) => return,
                    },
                    _ = tx.closed() => return,
                },
            };
            if tx.send(Ok(Bytes::from(json_line(&e)))).await.is_err() || !stream {
                return;
            }
            pending = match server2.v2.watch(&path, recursive, e.node.modified_index + 1) {
                Ok(WatchOutcome::Ready(e)) => Ok(*e),
                Ok(WatchOutcome::Pending { rx, .. }) => Err(rx),
                Err(_) => return,
            };
        }
    });
    Ok((StatusCode::OK, headers(server, start), body).into_response())
}

/// A response body fed by a task through a channel (ends when the task
/// drops its sender).
fn async_stream<F, Fut>(f: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// One member in etcd's v2 JSON (field order as etcd writes it).
#[derive(serde::Serialize)]
struct V2Member {
    id: String,
    name: String,
    #[serde(rename = "peerURLs")]
    peer_urls: Vec<String>,
    #[serde(rename = "clientURLs")]
    client_urls: Vec<String>,
}

#[derive(serde::Serialize)]
struct V2Members {
    members: Vec<V2Member>,
}

/// `GET /v2/members`: etcd's v2 member list.
async fn members(State(server): State<Arc<EtcdServer>>) -> Response {
    let members = server
        .members()
        .into_iter()
        .map(|m| V2Member {
            id: format!("{:x}", m.id),
            name: m.name,
            peer_urls: m.peer_ur_ls,
            client_urls: m.client_ur_ls,
        })
        .collect();
    let body = json_line(&V2Members { members });
    let mut r = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    r.headers_mut().insert("x-etcd-cluster-id", cluster_id_header(&server));
    r
}
