//! Endpoints and the round-robin balancer.
//!
//! Each endpoint owns one lazily connected gRPC channel (tonic reconnects it
//! on demand; TLS per [`crate::tls`]). [`Balancer::order`] hands out every endpoint once per call,
//! starting one further each time, so load spreads and a failed endpoint is
//! followed by the next one. The balancer never blocks and holds no lock
//! across an await.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tonic::transport::{Channel, Endpoint as TonicEndpoint};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::tls::{Connector, TlsConfig};

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

/// How an endpoint is dialed: the URL tonic is given (always `http://`:
/// TLS, when wanted, is run by our connector, not by tonic) and whether
/// TLS is wanted. `https://` asks for TLS, `http://` refuses it, and a bare
/// `host:port` uses TLS only when the client has TLS settings (etcd's
/// clientv3 rules).
pub fn endpoint_url(addr: &str, tls_configured: bool) -> Result<(String, bool)> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err(Error::InvalidEndpoint("empty endpoint".into()));
    }
    let (rest, secure) = if let Some(rest) = addr.strip_prefix("https://") {
        (rest, true)
    } else if let Some(rest) = addr.strip_prefix("http://") {
        (rest, false)
    } else if addr.contains("://") {
        return Err(Error::InvalidEndpoint(format!("{addr}: unsupported scheme")));
    } else {
        (addr, tls_configured)
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Err(Error::InvalidEndpoint(format!("{addr}: expected host:port")));
    }
    Ok((format!("http://{rest}"), secure))
}

/// Builds a lazily connecting channel for `addr` with the configured
/// dial timeout and keepalive; `tls` is the client's TLS configuration,
/// if it has one (`https://` endpoints get the system's CAs without it).
pub(crate) fn make_channel(addr: &str, cfg: &Config, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Channel> {
    let (url, secure) = endpoint_url(addr, tls.is_some())?;
    let ep = TonicEndpoint::from_shared(url).map_err(|e| Error::InvalidEndpoint(format!("{addr}: {e}")))?;
    let connector = match (secure, tls) {
        (false, _) => Connector::plain(),
        (true, Some(tls)) => Connector::tls(tls.clone(), server_name(cfg)),
        (true, None) => Connector::tls(TlsConfig::default().build().map_err(Error::Tls)?, server_name(cfg)),
    };
    Ok(ep
        .connect_timeout(cfg.dial_timeout)
        .http2_keep_alive_interval(cfg.keepalive_time)
        .keep_alive_timeout(cfg.keepalive_timeout)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
        .connect_with_connector_lazy(connector))
}

fn server_name(cfg: &Config) -> Option<String> {
    cfg.tls.as_ref().and_then(|t| t.server_name.clone())
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
        let tls = cfg.tls.as_ref().map(|t| t.build().map_err(Error::Tls)).transpose()?;
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|a| Ok(Endpoint { addr: a.clone(), channel: make_channel(a, cfg, tls.as_ref())? }))
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
        let url = |a: &str, tls: bool| endpoint_url(a, tls).ok();
        assert_eq!(url("127.0.0.1:2379", false), Some(("http://127.0.0.1:2379".into(), false)));
        assert_eq!(url("127.0.0.1:2379", true), Some(("http://127.0.0.1:2379".into(), true)));
        assert_eq!(url("http://127.0.0.1:2379", true), Some(("http://127.0.0.1:2379".into(), false)));
        assert_eq!(url("https://127.0.0.1:2379", false), Some(("http://127.0.0.1:2379".into(), true)));
        assert_eq!(url("https://[::1]:2379/", false), Some(("http://[::1]:2379".into(), true)));
        assert!(url("", false).is_none());
        assert!(url("ftp://x", false).is_none());
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
