//! The one factory of channels to other members. Every peer RPC (raft
//! messages, snapshots, join, lease forwarding, hash checks) dials through
//! [`PeerDialer`], so the peer TLS settings apply to all of them alike:
//! `https://` peer URLs are dialed with TLS (presenting this member's peer
//! certificate, trusting `--peer-trusted-ca-file`), `http://` ones without.

use std::sync::Arc;
use std::time::Duration;

use retcd_client::tls::{Connector, TlsConfig};
use tonic::transport::{Channel, Endpoint};

use crate::tls::TlsInfo;

/// Dials peers. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct PeerDialer {
    /// The TLS client configuration for `https://` peers; None: no peer TLS
    /// settings were given (an `https://` peer is then verified against the
    /// system's CAs, as etcd does).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl PeerDialer {
    /// A dialer from the peer TLS flags; `auto_cert` is the certificate and
    /// key `--peer-auto-tls` made. A self-signed certificate cannot be
    /// verified, so with `--peer-auto-tls` (and no certificate files) peers'
    /// certificates are not checked, as in etcd.
    pub fn new(info: &TlsInfo, auto_cert: Option<(std::path::PathBuf, std::path::PathBuf)>) -> Result<Self, String> {
        let (cert_file, key_file, auto) = match (&info.cert_file, &info.key_file, auto_cert) {
            (Some(c), Some(k), _) => (Some(c.clone()), Some(k.clone()), false),
            (_, _, Some((c, k))) => (Some(c), Some(k), true),
            _ => (None, None, false),
        };
        if cert_file.is_none() && info.trusted_ca_file.is_none() {
            return Ok(PeerDialer { tls: None });
        }
        let config = TlsConfig {
            ca_file: info.trusted_ca_file.clone(),
            cert_file,
            key_file,
            insecure_skip_verify: auto,
            server_name: None,
        };
        Ok(PeerDialer { tls: Some(config.build().map_err(|e| format!("peer TLS: {e}"))?) })
    }

    fn endpoint(&self, url: &str) -> Result<(Endpoint, Connector), String> {
        let routed = test_route(url);
        let url = routed.as_deref().unwrap_or(url);
        let (plain_url, secure) =
            retcd_client::endpoints::endpoint_url(url, false).map_err(|e| format!("invalid peer URL: {e}"))?;
        let endpoint = Endpoint::from_shared(plain_url).map_err(|e| format!("invalid peer URL {url}: {e}"))?;
        let connector = match (secure, &self.tls) {
            (false, _) => Connector::plain(),
            (true, Some(tls)) => Connector::tls(tls.clone(), None),
            (true, None) => Connector::tls(TlsConfig::default().build()?, None),
        };
        Ok((endpoint.tcp_nodelay(true), connector))
    }

    /// A channel to `url` that connects on first use (and again after a
    /// failure).
    pub fn lazy(&self, url: &str, connect_timeout: Duration) -> Result<Channel, String> {
        let (endpoint, connector) = self.endpoint(url)?;
        Ok(endpoint.connect_timeout(connect_timeout).connect_with_connector_lazy(connector))
    }

    /// Connects to `url` now; `timeout` bounds each request on the channel.
    pub async fn connect(
        &self,
        url: &str,
        connect_timeout: Duration,
        timeout: Option<Duration>,
    ) -> Result<Channel, String> {
        self.dial(url, connect_timeout, timeout).await.map_err(|e| e.text)
    }

    /// [`PeerDialer::connect`], telling a refused connection apart.
    pub async fn dial(
        &self,
        url: &str,
        connect_timeout: Duration,
        timeout: Option<Duration>,
    ) -> Result<Channel, DialError> {
        let (mut endpoint, connector) = self.endpoint(url).map_err(|text| DialError { text, refused: false })?;
        endpoint = endpoint.connect_timeout(connect_timeout);
        if let Some(t) = timeout {
            endpoint = endpoint.timeout(t);
        }
        endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| DialError { text: describe(&e), refused: is_refused(&e) })
    }
}

/// Why a dial failed.
pub struct DialError {
    pub text: String,
    /// The address refused the connection: nothing listens there, so the
    /// member's process is gone (a partition or a slow host times out instead).
    pub refused: bool,
}

fn is_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return true;
        }
        source = s.source();
    }
    false
}

/// Debug builds only (the test profile): `RETCD_TEST_PEER_ROUTES` holds
/// `host:port=host:port` pairs, comma-separated; a peer URL with the first
/// address is dialed at the second. The fault harness puts a proxy on every
/// member-to-member connection this way without the members' advertised
/// URLs changing. Release builds ignore it.
fn test_route(url: &str) -> Option<String> {
    #[cfg(debug_assertions)]
    {
        static ROUTES: std::sync::LazyLock<Vec<(String, String)>> = std::sync::LazyLock::new(|| {
            let routes = std::env::var("RETCD_TEST_PEER_ROUTES").unwrap_or_default();
            routes
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .map(|(from, to)| (format!("//{from}"), format!("//{to}")))
                .collect()
        });
        route_through(url, &ROUTES)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = url;
        None
    }
}

/// `url` with its authority replaced by the first route whose `//from`
/// is that whole authority (":1238" must not match ":12380").
#[cfg(debug_assertions)]
fn route_through(url: &str, routes: &[(String, String)]) -> Option<String> {
    routes.iter().find_map(|(from, to)| {
        let (scheme, path) = url.split_once(from.as_str())?;
        (path.is_empty() || path.starts_with('/')).then(|| format!("{scheme}{to}{path}"))
    })
}

/// A transport error with its causes (tonic's own text is just
/// "transport error"; the TLS reason is further down the chain).
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    chain(e.to_string(), e.source())
}

/// A failed peer RPC: its message and the transport's reasons.
pub(crate) fn describe_status(status: &tonic::Status) -> String {
    use std::error::Error as _;
    chain(status.message().to_string(), status.source())
}

fn chain(mut text: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(s) = source {
        // Some layers repeat their cause in their own text.
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_routes_replace_a_whole_authority_only() {
        let routes = vec![("//127.0.0.1:1238".to_string(), "//127.0.0.1:5000".to_string())];
        assert_eq!(route_through("http://127.0.0.1:1238", &routes).as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(route_through("https://127.0.0.1:1238/x", &routes).as_deref(), Some("https://127.0.0.1:5000/x"));
        assert_eq!(route_through("http://127.0.0.1:12380", &routes), None);
    }
}
