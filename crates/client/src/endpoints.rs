//! Endpoints and the round-robin balancer.
//!
//! Each endpoint owns one lazily connected gRPC channel (tonic reconnects it
//! on demand). [`Balancer::order`] hands out every endpoint once per call,
//! starting one further each time, so load spreads and a failed endpoint is
//! followed by the next one. The balancer never blocks and holds no lock
//! across an await.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tonic::transport::{Channel, Endpoint as TonicEndpoint};

use crate::config::Config;
use crate::error::{Error, Result};

/// One server address and its channel.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// As the user gave it (`127.0.0.1:2379` or with a scheme).
    pub addr: String,
    channel: Channel,
}

impl Endpoint {
    /// The gRPC channel to this endpoint.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }
}

/// The URL tonic needs for an endpoint: `http://` is added when absent;
/// `https://` is refused (TLS is not supported yet).
pub fn endpoint_url(addr: &str) -> Result<String> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err(Error::InvalidEndpoint("empty endpoint".into()));
    }
    if addr.starts_with("https://") || addr.starts_with("unixs://") {
        return Err(Error::InvalidEndpoint(format!("{addr}: TLS endpoints are not supported")));
    }
    if let Some(rest) = addr.strip_prefix("http://") {
        return Ok(format!("http://{rest}"));
    }
    if addr.contains("://") {
        return Err(Error::InvalidEndpoint(format!("{addr}: unsupported scheme")));
    }
    Ok(format!("http://{addr}"))
}

/// Builds a lazily connecting channel for `addr` with the configured
/// dial timeout and keepalive.
pub(crate) fn make_channel(addr: &str, cfg: &Config) -> Result<Channel> {
    let url = endpoint_url(addr)?;
    let ep = TonicEndpoint::from_shared(url).map_err(|e| Error::InvalidEndpoint(format!("{addr}: {e}")))?;
    Ok(ep
        .connect_timeout(cfg.dial_timeout)
        .http2_keep_alive_interval(cfg.keepalive_time)
        .keep_alive_timeout(cfg.keepalive_timeout)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
        .connect_lazy())
}

/// Round-robin over a fixed set of endpoints.
#[derive(Debug)]
pub struct Balancer {
    endpoints: Mutex<Vec<Endpoint>>,
    next: AtomicUsize,
}

impl Balancer {
    /// Parses every endpoint of `cfg` (at least one) into a channel.
    pub fn new(cfg: &Config) -> Result<Balancer> {
        if cfg.endpoints.is_empty() {
            return Err(Error::InvalidEndpoint("no endpoints given".into()));
        }
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|a| Ok(Endpoint { addr: a.clone(), channel: make_channel(a, cfg)? }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Balancer { endpoints: Mutex::new(endpoints), next: AtomicUsize::new(0) })
    }

    /// Every endpoint once, starting at the next one in round-robin order.
    pub fn order(&self) -> Vec<Endpoint> {
        let eps = self.all();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % eps.len().max(1);
        eps.iter().cycle().skip(start).take(eps.len()).cloned().collect()
    }

    /// Every endpoint in configuration order.
    pub fn all(&self) -> Vec<Endpoint> {
        self.endpoints.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(endpoint_url("127.0.0.1:2379").ok().as_deref(), Some("http://127.0.0.1:2379"));
        assert_eq!(endpoint_url("http://127.0.0.1:2379").ok().as_deref(), Some("http://127.0.0.1:2379"));
        assert!(endpoint_url("https://127.0.0.1:2379").is_err());
        assert!(endpoint_url("").is_err());
        assert!(endpoint_url("ftp://x").is_err());
    }

    #[tokio::test]
    async fn round_robin_visits_each_once() {
        let cfg = Config::new(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
        let b = Balancer::new(&cfg).expect("balancer");
        let first: Vec<_> = b.order().into_iter().map(|e| e.addr).collect();
        let second: Vec<_> = b.order().into_iter().map(|e| e.addr).collect();
        assert_eq!(first, ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
        assert_eq!(second, ["127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:1"]);
    }
}
