//! v3 discovery (`--discovery-endpoints`, `--discovery-token`, ...), as
//! etcd 3.6 does it: members register on an existing etcd (or retcd)
//! cluster through the v3 API and wait until the expected number has.
//!
//! Key layout under `/_etcd/registry/<token>/`:
//! - `_config/size`: the expected cluster size, a decimal integer, written
//!   by the operator beforehand;
//! - `members/<member id in hex>`: each member's `name=peerURL[,...]`.
//!
//! The first `size` registrations by create revision form the cluster; a
//! member that finds `size` others registered before it is refused
//! ("cluster is full"), which is also what keeps a used token from
//! bootstrapping a second cluster. The cluster token of the new cluster is
//! the discovery token (member ids derive from it). Transient failures of
//! the discovery service are retried with an exponential backoff, a bounded
//! number of times (etcd retries forever); missing or bad size keys fail at
//! once. This module never writes anything but this member's own key.

use std::time::Duration;

use retcd_client::etcdserverpb::WatchCreateRequest;
use retcd_client::{prefix_end, Client};

use crate::config::Config;

/// etcd's discovery error texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery: size key is bad")]
    BadSizeKey,
    #[error("discovery: size key not found")]
    SizeNotFound,
    #[error("discovery: cluster is full")]
    FullCluster,
    #[error("discovery: invalid peer URL")]
    InvalidUrl,
    #[error("discovery: too many retries (last error: {0})")]
    TooManyRetries(String),
    /// A failure retrying cannot cure (credentials, permissions).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Client(String),
}

/// Whether the discovery service refused us for who we are: retrying with
/// the same credentials cannot help, so discovery fails at once.
fn is_refusal(e: &retcd_client::Error) -> bool {
    use retcd_client::EtcdError as E;
    matches!(
        e.etcd_kind(),
        Some(E::AuthFailed | E::PermissionDenied | E::UserEmpty | E::InvalidAuthToken | E::UserNotFound)
    )
}

/// How many times a failed request to the discovery service is retried.
const MAX_RETRIES: u32 = 8;
/// Backoff cap between retries (etcd: 2^8 s; shorter keeps failures prompt).
const MAX_BACKOFF: Duration = Duration::from_secs(16);

/// The v3 discovery settings of a [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoints: Vec<String>,
    pub token: String,
    pub dial_timeout: Duration,
    pub request_timeout: Duration,
    pub keepalive_time: Duration,
    pub keepalive_timeout: Duration,
    pub user: String,
    pub password: String,
}

impl Settings {
    /// None when `--discovery-endpoints` is not set.
    pub fn from_config(cfg: &Config) -> Option<Settings> {
        let endpoints = cfg.discovery_endpoint_list();
        if endpoints.is_empty() {
            return None;
        }
        Some(Settings {
            endpoints,
            token: cfg.discovery_token.clone(),
            dial_timeout: cfg.discovery_dial_timeout,
            request_timeout: cfg.discovery_request_timeout,
            keepalive_time: cfg.discovery_keepalive_time,
            keepalive_timeout: cfg.discovery_keepalive_timeout,
            user: cfg.discovery_user.clone(),
            password: cfg.discovery_password.clone(),
        })
    }
}

fn cluster_prefix(token: &str) -> String {
    format!("/_etcd/registry/{token}")
}

pub fn size_key(token: &str) -> String {
    format!("{}/_config/size", cluster_prefix(token))
}

pub fn members_prefix(token: &str) -> String {
    format!("{}/members", cluster_prefix(token))
}

pub fn member_key(token: &str, member_id: u64) -> String {
    format!("{}/{member_id:x}", members_prefix(token))
}

/// The registrations seen so far, by create revision.
struct Registered {
    members: Vec<(String, String, i64)>,
}

impl Registered {
    fn add(&mut self, prefix: &str, key: &[u8], value: &[u8], create_rev: i64) {
        let key = String::from_utf8_lossy(key).trim().to_string();
        let value = String::from_utf8_lossy(value).trim().to_string();
        if !key.starts_with(prefix) {
            tracing::warn!("invalid peer registry key {key:?}");
            return;
        }
        if !value.contains('=') {
            tracing::warn!("invalid peer info returned from discovery service: {key} = {value:?}");
            return;
        }
        if self.members.iter().any(|(k, _, _)| *k == key) {
            tracing::warn!("found duplicate peer from discovery service: {key}");
            return;
        }
        tracing::info!("found peer from discovery service: {key} = {value}");
        self.members.push((key, value, create_rev));
        // Members registering at once may overshoot the size: the earliest
        // registrations win, as the same order is seen by everyone.
        self.members.sort_by_key(|(_, _, rev)| *rev);
    }

    /// Whether `self_key` is (or could still be) among the first `size`.
    fn has_room_for(&self, self_key: &str, size: usize) -> bool {
        match self.members.iter().position(|(k, _, _)| k == self_key) {
            Some(i) => i < size,
            None => self.members.len() < size,
        }
    }

    fn initial_cluster(&self, size: usize) -> Result<String, DiscoveryError> {
        let s: Vec<&str> = self.members.iter().take(size).map(|(_, v, _)| v.as_str()).collect();
        let joined = s.join(",");
        for part in joined.split(',') {
            let Some((name, url)) = part.split_once('=') else { return Err(DiscoveryError::InvalidUrl) };
            if name.is_empty() || retcd_client::srv::split_url(url).is_none() {
                return Err(DiscoveryError::InvalidUrl);
            }
        }
        Ok(joined)
    }
}

struct Discovery {
    client: Client,
    s: Settings,
    self_key: String,
    retries: u32,
}

/// Registers this member (`member_id`, its `name=peerURL,...` entry) and
/// waits for the others; returns the `--initial-cluster` value.
pub async fn join_cluster(s: Settings, member_id: u64, entry: String) -> Result<String, DiscoveryError> {
    let mut cfg = retcd_client::Config::new(s.endpoints.clone())
        .dial_timeout(s.dial_timeout)
        .keepalive(s.keepalive_time, s.keepalive_timeout);
    if !s.user.is_empty() {
        cfg = cfg.credentials(s.user.clone(), s.password.clone());
    }
    let client = Client::new(cfg).map_err(|e| DiscoveryError::Client(e.to_string()))?;
    let self_key = member_key(&s.token, member_id);
    let mut d = Discovery { client, s, self_key, retries: 0 };
    d.check().await?;
    d.register(&entry).await?;
    let (mut registered, size, rev) = d.check().await?;
    if registered.members.len() < size {
        d.wait_peers(&mut registered, size, rev).await?;
    }
    let cluster = registered.initial_cluster(size)?;
    tracing::info!("discovery joined cluster successfully: {cluster}");
    Ok(cluster)
}

impl Discovery {
    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = retcd_client::Result<T>>,
    ) -> Result<T, DiscoveryError> {
        match tokio::time::timeout(self.s.request_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if is_refusal(&e) => Err(DiscoveryError::Refused(e.to_string())),
            Ok(Err(e)) => Err(DiscoveryError::Client(e.to_string())),
            Err(_) => Err(DiscoveryError::Client("context deadline exceeded".into())),
        }
    }

    /// Sleeps before the next retry, or gives up after [`MAX_RETRIES`].
    async fn backoff(&mut self, step: &str, err: DiscoveryError) -> Result<(), DiscoveryError> {
        if matches!(err, DiscoveryError::Refused(_)) {
            return Err(err);
        }
        self.retries += 1;
        if self.retries > MAX_RETRIES {
            return Err(DiscoveryError::TooManyRetries(err.to_string()));
        }
        let wait = Duration::from_secs(1u64 << self.retries.min(8)).min(MAX_BACKOFF);
        tracing::warn!("retry connecting to discovery service ({step}: {err}); backoff {wait:?}");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    async fn size(&self) -> Result<usize, DiscoveryError> {
        let resp = self.timed(self.client.get(size_key(&self.s.token))).await?;
        let Some(kv) = resp.kvs.first() else { return Err(DiscoveryError::SizeNotFound) };
        match std::str::from_utf8(&kv.value).ok().and_then(|v| v.parse::<i64>().ok()) {
            Some(n) if n > 0 => usize::try_from(n).map_err(|_| DiscoveryError::BadSizeKey),
            _ => Err(DiscoveryError::BadSizeKey),
        }
    }

    async fn members(&self) -> Result<(Registered, i64), DiscoveryError> {
        let prefix = members_prefix(&self.s.token);
        let resp = self.timed(self.client.get_prefix(prefix.clone())).await?;
        let mut reg = Registered { members: Vec::new() };
        for kv in &resp.kvs {
            reg.add(&prefix, &kv.key, &kv.value, kv.create_revision);
        }
        Ok((reg, resp.header.map(|h| h.revision).unwrap_or(0)))
    }

    /// The size, the registrations and the revision they were read at;
    /// `FullCluster` if this member cannot be among the first `size`.
    async fn check(&mut self) -> Result<(Registered, usize, i64), DiscoveryError> {
        loop {
            let size = match self.size().await {
                Ok(n) => n,
                Err(e @ (DiscoveryError::SizeNotFound | DiscoveryError::BadSizeKey)) => return Err(e),
                Err(e) => {
                    self.backoff("cluster status check", e).await?;
                    continue;
                }
            };
            let (reg, rev) = match self.members().await {
                Ok(r) => r,
                Err(e) => {
                    self.backoff("cluster status check", e).await?;
                    continue;
                }
            };
            self.retries = 0;
            if !reg.has_room_for(&self.self_key, size) {
                return Err(DiscoveryError::FullCluster);
            }
            return Ok((reg, size, rev));
        }
    }

    async fn register(&mut self, entry: &str) -> Result<(), DiscoveryError> {
        loop {
            match self.timed(self.client.put(self.self_key.clone(), entry.to_string())).await {
                Ok(_) => {
                    self.retries = 0;
                    tracing::info!("register member itself successfully: {} = {entry}", self.self_key);
                    return Ok(());
                }
                Err(e) => self.backoff("register member itself", e).await?,
            }
        }
    }

    /// Watches the member prefix from `rev + 1` until `size` members have
    /// registered. A broken watch is reopened after re-reading the list.
    async fn wait_peers(&mut self, reg: &mut Registered, size: usize, mut rev: i64) -> Result<(), DiscoveryError> {
        let prefix = members_prefix(&self.s.token);
        tracing::info!("waiting for peers from discovery service: size {size}, found {}", reg.members.len());
        while reg.members.len() < size {
            let req = WatchCreateRequest {
                key: prefix.clone().into_bytes(),
                range_end: prefix_end(prefix.as_bytes()),
                start_revision: rev + 1,
                ..Default::default()
            };
            let mut watch = match self.timed(self.client.watch(req)).await {
                Ok(w) => w,
                Err(e) => {
                    self.backoff("watch for peers", e).await?;
                    let (fresh, r) = self.members().await.unwrap_or((Registered { members: Vec::new() }, rev));
                    for (k, v, c) in fresh.members {
                        reg.add(&prefix, k.as_bytes(), v.as_bytes(), c);
                    }
                    rev = r;
                    continue;
                }
            };
            while reg.members.len() < size {
                match watch.next().await {
                    Some(Ok(resp)) => {
                        for ev in resp.events {
                            // Deletions do not unregister: etcd counts every
                            // registration it has seen.
                            if ev.r#type != 0 {
                                continue;
                            }
                            if let Some(kv) = ev.kv {
                                reg.add(&prefix, &kv.key, &kv.value, kv.create_revision);
                                rev = rev.max(kv.mod_revision);
                            }
                        }
                    }
                    Some(Err(e)) => {
                        self.backoff("watch for peers", DiscoveryError::Client(e.to_string())).await?;
                        break;
                    }
                    None => {
                        self.backoff("watch for peers", DiscoveryError::Client("watch closed".into())).await?;
                        break;
                    }
                }
            }
        }
        tracing::info!("found all needed peers from discovery service: size {size}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_is_etcds() {
        assert_eq!(size_key("tok"), "/_etcd/registry/tok/_config/size");
        assert_eq!(member_key("tok", 0x8e9e05c52164694d), "/_etcd/registry/tok/members/8e9e05c52164694d");
        assert_eq!(member_key("tok", 0xabc), "/_etcd/registry/tok/members/abc");
    }

    #[test]
    fn earliest_registrations_win_and_latecomers_are_refused() {
        let p = members_prefix("t");
        let mut r = Registered { members: Vec::new() };
        r.add(&p, format!("{p}/c").as_bytes(), b"m3=http://127.0.0.1:3", 12);
        r.add(&p, format!("{p}/a").as_bytes(), b"m1=http://127.0.0.1:1", 10);
        r.add(&p, format!("{p}/b").as_bytes(), b"m2=http://127.0.0.1:2", 11);
        r.add(&p, format!("{p}/b").as_bytes(), b"m2=http://127.0.0.1:2", 11);
        r.add(&p, format!("{p}/x").as_bytes(), b"no-equals-sign", 13);
        r.add(&p, b"/elsewhere/y", b"m9=http://127.0.0.1:9", 14);
        assert_eq!(r.members.len(), 3);
        assert_eq!(r.initial_cluster(2).unwrap(), "m1=http://127.0.0.1:1,m2=http://127.0.0.1:2");
        assert!(r.has_room_for(&format!("{p}/b"), 2));
        assert!(!r.has_room_for(&format!("{p}/c"), 2));
        assert!(!r.has_room_for(&format!("{p}/new"), 3));
        assert!(r.has_room_for(&format!("{p}/new"), 4));
        let mut bad = Registered { members: Vec::new() };
        bad.add(&p, format!("{p}/a").as_bytes(), b"m1=not a url", 1);
        assert_eq!(bad.initial_cluster(1), Err(DiscoveryError::InvalidUrl));
    }
}
