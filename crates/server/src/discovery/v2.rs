//! `--discovery URL`: bootstrapping through etcd's v2 discovery protocol.
//!
//! The URL names a directory (the token) on a v2 keys service. A member
//! reads `<token>/_config/size`, registers itself as `<token>/<id hex>` =
//! `name=peerURL,...` (create-only), then waits with `wait=true` until `size`
//! members registered; the first `size` by creation index are the cluster.
//! Errors carry etcd's texts ("discovery: cluster is full", ...). Transport
//! failures and 5xx answers are retried with exponential backoff, a bounded
//! number of times. This module only talks HTTP/1.1 over plain TCP (through
//! `--discovery-proxy` when given); it never touches the data dir.

use std::time::Duration;

use axum::body::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::config::Config;

/// etcd's discovery errors (their `Display` is etcd's text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery: invalid URL")]
    InvalidUrl,
    #[error("discovery: size key is bad")]
    BadSizeKey,
    #[error("discovery: size key not found")]
    SizeNotFound,
    #[error("discovery: found duplicate id")]
    DuplicateId,
    #[error("discovery: found duplicate name")]
    DuplicateName,
    #[error("discovery: cluster is full")]
    FullCluster,
    #[error("discovery: too many retries")]
    TooManyRetries,
    #[error("discovery: bad discovery endpoint")]
    BadDiscoveryEndpoint,
    #[error("{0}")]
    Other(String),
}

/// A failure to reach the service: worth retrying.
struct Unreachable(String);

/// Retries before giving up, and the backoff cap (etcd doubles from 2s up
/// to 256s and never gives up; a member that cannot find its cluster for
/// minutes should rather fail visibly).
const MAX_RETRIES: u32 = 10;
const MAX_BACKOFF: Duration = Duration::from_secs(16);
/// Timeout of one non-waiting request (etcd's client default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One v2 response: status, X-Etcd-Index and the JSON body.
struct V2Response {
    status: StatusCode,
    index: u64,
    body: Value,
}

impl V2Response {
    fn error_code(&self) -> Option<u64> {
        self.body.get("errorCode").and_then(Value::as_u64)
    }
    fn node(&self) -> Option<&Value> {
        self.body.get("node")
    }
}

/// A registered member as read from the service.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    value: String,
    created: u64,
}

fn entry(n: &Value) -> Entry {
    Entry {
        key: n.get("key").and_then(Value::as_str).unwrap_or("").to_string(),
        value: n.get("value").and_then(Value::as_str).unwrap_or("").to_string(),
        created: n.get("createdIndex").and_then(Value::as_u64).unwrap_or(0),
    }
}

fn base(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

pub struct Discovery {
    /// `host:port` of the service.
    authority: String,
    /// The token's path on the service, e.g. `/v2/keys/discovery/<token>`.
    cluster: String,
    /// `host:port` of the HTTP proxy, if any.
    proxy: Option<String>,
    id: u64,
    retries: u32,
}

impl Discovery {
    pub fn new(durl: &str, proxy: Option<&str>, id: u64) -> Result<Discovery, DiscoveryError> {
        let (authority, path) = split_url(durl)?;
        let proxy = match proxy.filter(|p| !p.is_empty()) {
            None => None,
            // As etcd: a proxy without a scheme is taken as http://.
            Some(p) => {
                let with_scheme = if p.contains("://") { p.to_string() } else { format!("http://{p}") };
                Some(
                    split_url(&with_scheme)
                        .map_err(|_| DiscoveryError::Other(format!("invalid proxy address {p:?}")))?
                        .0,
                )
            }
        };
        Ok(Discovery { authority, cluster: clean(&path), proxy, id, retries: 0 })
    }

    fn self_key(&self) -> String {
        format!("{}/{:x}", self.cluster, self.id)
    }

    /// Registers this member with `config` (`name=url,...`) and waits for
    /// the cluster to fill; returns the initial cluster string.
    pub async fn join_cluster(&mut self, config: &str) -> Result<String, DiscoveryError> {
        self.check_cluster().await?;
        self.create_self(config).await?;
        let (nodes, size, index) = self.check_cluster().await?;
        let all = self.wait_nodes(nodes, size, index).await?;
        nodes_to_cluster(&all, size)
    }

    async fn create_self(&mut self, config: &str) -> Result<(), DiscoveryError> {
        let key = self.self_key();
        let body =
            serde_urlencoded::to_string([("value", config)]).map_err(|e| DiscoveryError::Other(e.to_string()))?;
        let resp = loop {
            match self.request(Method::PUT, &format!("{key}?prevExist=false"), Some(body.clone()), true).await {
                Ok(r) => break r,
                Err(Unreachable(e)) => self.backoff("register", &e).await?,
            }
        };
        if resp.error_code() == Some(105) {
            return Err(DiscoveryError::DuplicateId);
        }
        if !resp.status.is_success() {
            return Err(DiscoveryError::Other(format!("discovery: registering {key}: {}", resp.body)));
        }
        Ok(())
    }

    /// Reads the size and the registered members (sorted by creation).
    /// Fails with FullCluster when `size` others registered before us.
    async fn check_cluster(&mut self) -> Result<(Vec<Entry>, u64, u64), DiscoveryError> {
        loop {
            match self.check_cluster_once().await {
                Ok(r) => return r,
                Err(Unreachable(e)) => self.backoff("cluster status check", &e).await?,
            }
        }
    }

    async fn check_cluster_once(&mut self) -> Result<Result<(Vec<Entry>, u64, u64), DiscoveryError>, Unreachable> {
        let config_key = format!("{}/_config", self.cluster);
        let resp = self.request(Method::GET, &format!("{config_key}/size"), None, true).await?;
        if resp.error_code() == Some(100) {
            return Ok(Err(DiscoveryError::SizeNotFound));
        }
        if resp.body.is_null() {
            return Ok(Err(DiscoveryError::BadDiscoveryEndpoint));
        }
        let size_text = resp.node().and_then(|n| n.get("value")).and_then(Value::as_str).unwrap_or("");
        let Ok(size) = size_text.parse::<u64>() else {
            if !resp.status.is_success() {
                return Ok(Err(DiscoveryError::Other(format!("discovery: reading {config_key}/size: {}", resp.body))));
            }
            return Ok(Err(DiscoveryError::BadSizeKey));
        };
        let resp = self.request(Method::GET, &self.cluster.clone(), None, true).await?;
        if !resp.status.is_success() {
            return Ok(Err(DiscoveryError::Other(format!("discovery: reading {}: {}", self.cluster, resp.body))));
        }
        let mut nodes: Vec<Entry> = resp
            .node()
            .and_then(|n| n.get("nodes"))
            .and_then(Value::as_array)
            .map(|a| a.iter().map(entry).filter(|e| base(&e.key) != "_config").collect())
            .unwrap_or_default();
        nodes.sort_by_key(|e| e.created);
        let me = format!("{:x}", self.id);
        for (i, n) in nodes.iter().enumerate() {
            if base(&n.key) == me {
                break;
            }
            if i as u64 >= size.saturating_sub(1) {
                return Ok(Err(DiscoveryError::FullCluster));
            }
        }
        Ok(Ok((nodes, size, resp.index)))
    }

    async fn wait_nodes(&mut self, mut nodes: Vec<Entry>, size: u64, index: u64) -> Result<Vec<Entry>, DiscoveryError> {
        nodes.truncate(size as usize);
        let me = format!("{:x}", self.id);
        for n in &nodes {
            if base(&n.key) == me {
                tracing::info!("found self {} in the cluster", base(&n.key));
            } else {
                tracing::info!("found peer {} in the cluster", base(&n.key));
            }
        }
        let mut wait_index = index + 1;
        while (nodes.len() as u64) < size {
            tracing::info!("found {} peer(s), waiting for {} more", nodes.len(), size - nodes.len() as u64);
            let path = format!("{}?wait=true&recursive=true&waitIndex={wait_index}", self.cluster);
            let resp = match self.request(Method::GET, &path, None, false).await {
                Ok(r) => r,
                Err(Unreachable(e)) => {
                    // Start over from the service's current state, as etcd.
                    self.backoff("waiting for other nodes", &e).await?;
                    let (n, s, i) = Box::pin(self.check_cluster()).await?;
                    return Box::pin(self.wait_nodes(n, s, i)).await;
                }
            };
            if resp.error_code() == Some(401) {
                // The service lost the history we wait from (it restarted):
                // read the registrations again and wait from its index.
                tracing::info!("discovery service history was cleared; checking the cluster again");
                let (n, s, i) = Box::pin(self.check_cluster()).await?;
                return Box::pin(self.wait_nodes(n, s, i)).await;
            }
            if !resp.status.is_success() {
                return Err(DiscoveryError::Other(format!("discovery: waiting on {}: {}", self.cluster, resp.body)));
            }
            let Some(node) = resp.node() else { return Err(DiscoveryError::BadDiscoveryEndpoint) };
            let modified = node.get("modifiedIndex").and_then(Value::as_u64).unwrap_or(wait_index);
            wait_index = modified + 1;
            let action = resp.body.get("action").and_then(Value::as_str).unwrap_or("");
            let e = entry(node);
            // Only registrations count (as etcd, which appends whatever the
            // watch returns; deletions under a token do not happen in the
            // protocol, but must not count as members either).
            if matches!(action, "create" | "set") && base(&e.key) != "_config" {
                tracing::info!("found peer {} in the cluster", base(&e.key));
                nodes.push(e);
            }
        }
        tracing::info!("found {} needed peer(s)", nodes.len());
        Ok(nodes)
    }

    async fn backoff(&mut self, step: &str, error: &str) -> Result<(), DiscoveryError> {
        self.retries += 1;
        if self.retries > MAX_RETRIES {
            tracing::error!("{step}: {error}; giving up after {MAX_RETRIES} retries");
            return Err(DiscoveryError::TooManyRetries);
        }
        let wait = Duration::from_secs(1u64 << (self.retries - 1).min(8)).min(MAX_BACKOFF);
        tracing::warn!("{step}: error connecting to http://{}: {error}; retrying in {wait:?}", self.authority);
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// One request; `Err` for what is worth retrying (no connection, a
    /// timeout, a 5xx answer).
    async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        form: Option<String>,
        bounded: bool,
    ) -> Result<V2Response, Unreachable> {
        let fut = send(&self.authority, self.proxy.as_deref(), method, path_and_query, form);
        let (status, index, body) = if bounded {
            tokio::time::timeout(REQUEST_TIMEOUT, fut).await.map_err(|_| Unreachable("request timed out".into()))??
        } else {
            fut.await?
        };
        if status.is_server_error() {
            return Err(Unreachable(format!("{status}: {}", String::from_utf8_lossy(&body).trim())));
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(body) => Ok(V2Response { status, index, body }),
            // Not a v2 keys service: etcd's ErrBadDiscoveryEndpoint, not retried.
            Err(_) => Ok(V2Response { status, index, body: Value::Null }),
        }
    }
}

/// Sends one HTTP/1.1 request and reads the whole answer.
async fn send(
    authority: &str,
    proxy: Option<&str>,
    method: Method,
    path_and_query: &str,
    form: Option<String>,
) -> Result<(StatusCode, u64, Bytes), Unreachable> {
    let err = |e: &dyn std::fmt::Display| Unreachable(e.to_string());
    let connect_to = proxy.unwrap_or(authority);
    let stream = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(connect_to))
        .await
        .map_err(|_| Unreachable(format!("dial {connect_to}: timeout")))?
        .map_err(|e| Unreachable(format!("dial {connect_to}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| err(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // Through a proxy the request line carries the absolute URL.
    let uri = if proxy.is_some() { format!("http://{authority}{path_and_query}") } else { path_and_query.to_string() };
    let mut req = Request::builder().method(method).uri(uri).header(http::header::HOST, authority);
    if form.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let req = req.body(Full::new(Bytes::from(form.unwrap_or_default()))).map_err(|e| err(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| err(&e))?;
    let status = resp.status();
    let index =
        resp.headers().get("x-etcd-index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    let body = resp.into_body().collect().await.map_err(|e| err(&e))?.to_bytes();
    Ok((status, index, body))
}

/// `http://host:port/path` -> (`host:port`, `/path`). Only plain http is
/// supported.
fn split_url(url: &str) -> Result<(String, String), DiscoveryError> {
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.starts_with("https://") {
        return Err(DiscoveryError::Other(format!("discovery: {url}: https discovery URLs are not supported")));
    } else {
        return Err(DiscoveryError::InvalidUrl);
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err(DiscoveryError::InvalidUrl);
    }
    let authority = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !host.ends_with(']') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    Ok((authority, path.to_string()))
}

/// Go's path.Clean of an absolute path.
fn clean(path: &str) -> String {
    crate::v2store::clean_path(path)
}

/// The registered values joined as an initial cluster; etcd's checks.
fn nodes_to_cluster(nodes: &[Entry], size: u64) -> Result<String, DiscoveryError> {
    let joined = nodes.iter().map(|n| n.value.as_str()).collect::<Vec<_>>().join(",");
    let mut names: Vec<&str> = Vec::new();
    for pair in joined.split(',') {
        let Some((name, url)) = pair.split_once('=') else { return Err(DiscoveryError::InvalidUrl) };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(DiscoveryError::InvalidUrl);
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.len() as u64 != size {
        return Err(DiscoveryError::DuplicateName);
    }
    Ok(joined)
}

/// This member's registration value: its `name=peerURL` pairs, sorted (as
/// etcd's URLsMap.String()).
pub fn self_config(name: &str, peer_urls: &[String]) -> String {
    let mut pairs: Vec<String> = peer_urls.iter().map(|u| format!("{name}={u}")).collect();
    pairs.sort();
    pairs.join(",")
}

/// Runs the protocol for a new member and returns the configuration to
/// bootstrap with: `cfg` with `--initial-cluster` set to what discovery
/// found and the discovery URL as the cluster token (as etcd does, so the
/// member ids match etcd's for the same URLs and token).
pub async fn resolve(cfg: &Config, durl: &str) -> Result<Config, String> {
    let mut own: Vec<String> = cfg.advertised_peer_urls();
    own.sort();
    let id = crate::ids::member_id(&own, durl);
    let mut d = Discovery::new(durl, cfg.discovery_proxy.as_deref(), id).map_err(|e| join_error(cfg, durl, &e))?;
    if let Some(p) = &d.proxy {
        tracing::info!("using proxy {p:?}");
    }
    let cluster = d.join_cluster(&self_config(&cfg.name, &own)).await.map_err(|e| join_error(cfg, durl, &e))?;
    tracing::info!("discovery found the initial cluster {cluster}");
    let mut out = cfg.clone();
    out.initial_cluster = Some(cluster);
    out.initial_cluster_token = durl.to_string();
    Ok(out)
}

/// etcd's `failed to join discovery cluster (...)`, with its advice.
fn join_error(cfg: &Config, durl: &str, e: &DiscoveryError) -> String {
    let head = format!("failed to join discovery cluster ({e})");
    match e {
        DiscoveryError::FullCluster if cfg.discovery_fallback == "proxy" => format!(
            "{head}; --discovery-fallback=proxy (etcd's default) would start a v2 proxy, which retcd does not \
             implement: exiting (set --discovery-fallback=exit to silence this)"
        ),
        DiscoveryError::DuplicateId => format!(
            "{head}: member {:?} has previously registered with discovery service token ({durl}), but no valid \
             cluster configuration was found in the data dir ({}); check the data dir if the previous bootstrap \
             succeeded, or use a new discovery token if it failed",
            cfg.name,
            cfg.data_dir().display()
        ),
        DiscoveryError::DuplicateName => format!(
            "{head}: a member with a duplicated name has registered with discovery service token ({durl}); do not \
             reuse the discovery token, generate a new one to bootstrap the cluster"
        ),
        _ => head,
    }
}

/// `retcd discovery new`: creates a token on a v2 keys service by writing
/// its `_config/size`; returns the discovery URL.
pub async fn new_token(endpoint: &str, size: u64) -> Result<String, String> {
    let token: String = {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        (0..16).map(|_| format!("{:02x}", rng.gen::<u8>())).collect()
    };
    let endpoint = endpoint.trim_end_matches('/');
    let durl = format!("{endpoint}/v2/keys/discovery/{token}");
    let (authority, path) = split_url(&durl).map_err(|e| e.to_string())?;
    let form = serde_urlencoded::to_string([("value", size.to_string())]).map_err(|e| e.to_string())?;
    let size_path = format!("{path}/_config/size");
    let fut = send(&authority, None, Method::PUT, &size_path, Some(form));
    let (status, _, body) = tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| format!("{endpoint}: request timed out"))?
        .map_err(|Unreachable(e)| format!("{endpoint}: {e}"))?;
    if !status.is_success() {
        let hint = if status == StatusCode::NOT_FOUND { " (is the service started with --enable-v2?)" } else { "" };
        return Err(format!("{endpoint}: {status}: {}{hint}", String::from_utf8_lossy(&body).trim()));
    }
    Ok(durl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let (a, p) = split_url("http://127.0.0.1:2379/v2/keys/discovery/abc").unwrap_or_default();
        assert_eq!((a.as_str(), p.as_str()), ("127.0.0.1:2379", "/v2/keys/discovery/abc"));
        assert_eq!(split_url("http://example.com/x").map(|r| r.0).ok(), Some("example.com:80".into()));
        assert_eq!(split_url("ftp://x"), Err(DiscoveryError::InvalidUrl));
        assert_eq!(self_config("m1", &["http://b".into(), "http://a".into()]), "m1=http://a,m1=http://b");
    }

    #[test]
    fn cluster_from_nodes() {
        let e = |v: &str| Entry { key: "/k".into(), value: v.into(), created: 1 };
        assert_eq!(nodes_to_cluster(&[e("a=http://x"), e("b=http://y")], 2), Ok("a=http://x,b=http://y".into()));
        assert_eq!(nodes_to_cluster(&[e("a=http://x"), e("a=http://y")], 2), Err(DiscoveryError::DuplicateName));
        assert_eq!(nodes_to_cluster(&[e("junk")], 1), Err(DiscoveryError::InvalidUrl));
        assert_eq!(DiscoveryError::FullCluster.to_string(), "discovery: cluster is full");
    }
}
