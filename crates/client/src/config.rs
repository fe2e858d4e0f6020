//! Client settings: endpoints, timeouts, keepalive, TLS and credentials.
//!
//! Defaults follow etcdctl's: 2 s dial timeout, 2 s keepalive time, 6 s
//! keepalive timeout. The request timeout bounds one whole call, retries
//! and failover included.

use std::time::Duration;

use crate::tls::TlsConfig;

/// How to reach and talk to a cluster.
#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port` or `http://host:port`, one per member (at least one).
    pub endpoints: Vec<String>,
    /// How long to wait for a TCP connection to one endpoint.
    pub dial_timeout: Duration,
    /// Upper bound for one call including retries; `None`: retries stop after
    /// [`Config::max_retry_rounds`] passes over the endpoints.
    pub request_timeout: Option<Duration>,
    /// HTTP/2 ping interval on idle and busy connections.
    pub keepalive_time: Duration,
    /// How long a ping may stay unanswered before the connection is dropped.
    pub keepalive_timeout: Duration,
    /// Username and password for etcd's Authenticate RPC.
    pub credentials: Option<(String, String)>,
    /// Passes over every endpoint before a call gives up (when no request
    /// timeout ends it first).
    pub max_retry_rounds: u32,
    /// Asks servers to end watch streams when they lose their leader (etcd's
    /// `hasleader` metadata, as etcdctl's watch sends it), so the watch
    /// moves to a member that still has one.
    pub require_leader: bool,
    /// TLS settings; with them, bare `host:port` endpoints use TLS too.
    /// `https://` endpoints use TLS either way, `http://` ones never.
    pub tls: Option<TlsConfig>,
}

impl Config {
    /// Settings for `endpoints` with etcdctl's defaults.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Config {
        Config {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            dial_timeout: Duration::from_secs(2),
            request_timeout: None,
            keepalive_time: Duration::from_secs(2),
            keepalive_timeout: Duration::from_secs(6),
            credentials: None,
            max_retry_rounds: 20,
            require_leader: false,
            tls: None,
        }
    }

    /// Sets the dial timeout.
    pub fn dial_timeout(mut self, d: Duration) -> Config {
        self.dial_timeout = d;
        self
    }

    /// Sets the per-call timeout.
    pub fn request_timeout(mut self, d: Duration) -> Config {
        self.request_timeout = Some(d);
        self
    }

    /// Sets the keepalive ping interval and timeout.
    pub fn keepalive(mut self, time: Duration, timeout: Duration) -> Config {
        self.keepalive_time = time;
        self.keepalive_timeout = timeout;
        self
    }

    /// Sets [`Config::require_leader`].
    pub fn require_leader(mut self, on: bool) -> Config {
        self.require_leader = on;
        self
    }

    /// Uses `tls` for connections (see [`Config::tls`]).
    pub fn tls(mut self, tls: TlsConfig) -> Config {
        self.tls = Some(tls);
        self
    }

    /// Authenticates as `user` with `password`.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Config {
        self.credentials = Some((user.into(), password.into()));
        self
    }
}
