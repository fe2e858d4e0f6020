//! The [`Client`] handle and the one place where calls are retried.
//!
//! Retry rules (etcd's clientv3 makes the same distinction):
//! - a request that provably never reached a server (connect failure) or
//!   that a server refused before doing anything (`etcdserver: no leader`,
//!   `etcdserver: rpc not supported for learner`) is retried on the next
//!   endpoint, whatever it is;
//! - any other `Unavailable` failure is retried only for reads and other
//!   idempotent requests: a write might have been applied;
//! - `etcdserver: invalid auth token` re-authenticates once and retries on
//!   the same endpoint.
//!
//! Every pass over the endpoints after the first waits a little longer
//! (bounded backoff); the request timeout bounds the whole call.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use retcd_api::etcdserverpb::auth_client::AuthClient;
use retcd_api::etcdserverpb::AuthenticateRequest;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::config::Config;
use crate::endpoints::{Balancer, Endpoint};
use crate::error::{is_connect_failure, Error, EtcdError, Result};

/// Largest response the client accepts (etcd's client allows up to 2 GiB).
pub(crate) const MAX_DECODE: usize = i32::MAX as usize;

/// May a request be sent again after an ambiguous failure?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads and other requests whose repetition changes nothing.
    Idempotent,
    /// Writes: repeated only when the first attempt surely did nothing.
    NotIdempotent,
}

/// What to do after a failed attempt.
enum Action {
    Reauthenticate,
    NextEndpoint,
    Fail,
}

/// A connection to an etcd (or retcd) cluster. Cheap to clone; all clones
/// share endpoints, channels and the auth token.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) cfg: Config,
    pub(crate) balancer: Balancer,
    token: RwLock<Option<String>>,
}

impl Client {
    /// Builds a client; channels connect lazily, so this does no I/O (but
    /// must run inside a Tokio runtime). With credentials, the first call
    /// authenticates.
    ///
    /// ```
    /// use retcd_client::{Client, Config};
    /// let rt = tokio::runtime::Runtime::new().expect("runtime");
    /// let _guard = rt.enter();
    /// let client = Client::new(Config::new(["127.0.0.1:2379"])).expect("valid endpoints");
    /// assert_eq!(client.endpoints(), vec!["127.0.0.1:2379".to_string()]);
    /// assert!(Client::new(Config::new(["ftp://127.0.0.1:2379"])).is_err());
    /// ```
    pub fn new(cfg: Config) -> Result<Client> {
        let balancer = Balancer::new(&cfg)?;
        Ok(Client { inner: Arc::new(Inner { cfg, balancer, token: RwLock::new(None) }) })
    }

    /// The configured endpoints, in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.balancer.all().into_iter().map(|e| e.addr).collect()
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    /// A client with the same settings talking to `endpoint` only (for
    /// per-member calls such as status or defragment).
    pub fn for_endpoint(&self, endpoint: &str) -> Result<Client> {
        let mut cfg = self.inner.cfg.clone();
        cfg.endpoints = vec![endpoint.to_string()];
        let c = Client::new(cfg)?;
        if let Ok(tok) = self.inner.token.read() {
            if let Ok(mut mine) = c.inner.token.write() {
                mine.clone_from(&tok);
            }
        }
        Ok(c)
    }

    /// Endpoints in the order the next call would try them.
    pub(crate) fn order(&self) -> Vec<Endpoint> {
        self.inner.balancer.order()
    }

    /// Wraps `msg` in a request carrying the auth token, if any.
    pub(crate) fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        let token = self.inner.token.read().ok().and_then(|t| t.clone());
        if let Some(tok) = token {
            if let Ok(v) = MetadataValue::try_from(tok.as_str()) {
                req.metadata_mut().insert("token", v);
            }
        }
        req
    }

    fn has_credentials(&self) -> bool {
        self.inner.cfg.credentials.is_some()
    }

    fn has_token(&self) -> bool {
        self.inner.token.read().map(|t| t.is_some()).unwrap_or(false)
    }

    /// Runs etcd's Authenticate on `channel` and stores the token. A cluster
    /// with auth disabled leaves the client without a token, as etcd's
    /// client does.
    pub(crate) async fn authenticate(&self, channel: Channel) -> Result<()> {
        let Some((name, password)) = self.inner.cfg.credentials.clone() else {
            return Ok(());
        };
        let req = AuthenticateRequest { name, password };
        match AuthClient::new(channel).authenticate(req).await {
            Ok(resp) => {
                if let Ok(mut t) = self.inner.token.write() {
                    *t = Some(resp.into_inner().token);
                }
                Ok(())
            }
            Err(status) if EtcdError::from_status(&status) == Some(EtcdError::AuthNotEnabled) => Ok(()),
            Err(status) => Err(status.into()),
        }
    }

    /// Runs `fut` under the request timeout, if one is set.
    pub(crate) async fn with_timeout<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        match self.inner.cfg.request_timeout {
            Some(d) => tokio::time::timeout(d, fut).await.map_err(|_| Error::Timeout(d))?,
            None => fut.await,
        }
    }

    /// Sends `msg` with `call`, failing over across endpoints per the
    /// module's retry rules.
    pub(crate) async fn unary<Req, Resp, F, Fut>(&self, retry: Retry, msg: Req, call: F) -> Result<Resp>
    where
        Req: Clone,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, Status>>,
    {
        self.with_timeout(self.unary_inner(retry, msg, call)).await
    }

    async fn unary_inner<Req, Resp, F, Fut>(&self, retry: Retry, msg: Req, call: F) -> Result<Resp>
    where
        Req: Clone,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, Status>>,
    {
        let mut last: Option<Error> = None;
        for round in 0..self.inner.cfg.max_retry_rounds.max(1) {
            if round > 0 {
                tokio::time::sleep(backoff(round)).await;
            }
            for ep in self.order() {
                let mut reauthenticated = false;
                loop {
                    if self.has_credentials() && !self.has_token() {
                        if let Err(e) = self.authenticate(ep.channel()).await {
                            match classify(&e, Retry::Idempotent) {
                                Action::NextEndpoint => {
                                    last = Some(e);
                                    break;
                                }
                                _ => return Err(e),
                            }
                        }
                    }
                    let err: Error = match call(ep.channel(), self.request(msg.clone())).await {
                        Ok(resp) => return Ok(resp.into_inner()),
                        Err(status) => status.into(),
                    };
                    match classify(&err, retry) {
                        Action::Reauthenticate if self.has_credentials() && !reauthenticated => {
                            reauthenticated = true;
                            if let Ok(mut t) = self.inner.token.write() {
                                *t = None;
                            }
                        }
                        Action::NextEndpoint => {
                            last = Some(err);
                            break;
                        }
                        _ => return Err(err),
                    }
                }
            }
        }
        Err(last.unwrap_or(Error::StreamClosed))
    }
}

/// Wait before pass `round` (1-based) over the endpoints: 50 ms doubling, at
/// most 500 ms.
pub(crate) fn backoff(round: u32) -> Duration {
    Duration::from_millis((50u64 << round.min(4)).min(500))
}

/// True when a stream or call error may be retried on another endpoint for
/// an idempotent operation.
pub(crate) fn retriable(err: &Error) -> bool {
    matches!(classify(err, Retry::Idempotent), Action::NextEndpoint)
}

fn classify(err: &Error, retry: Retry) -> Action {
    match err {
        Error::Etcd { kind: EtcdError::InvalidAuthToken, .. } => Action::Reauthenticate,
        Error::Etcd { kind: EtcdError::NoLeader | EtcdError::NotSupportedForLearner, .. } => Action::NextEndpoint,
        Error::Etcd { status, .. } if retry == Retry::Idempotent && status.code() == Code::Unavailable => {
            Action::NextEndpoint
        }
        Error::Rpc(status) if is_connect_failure(status) => Action::NextEndpoint,
        Error::Rpc(status)
            if retry == Retry::Idempotent
                && matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled) =>
        {
            Action::NextEndpoint
        }
        _ => Action::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_retry_only_when_nothing_happened() {
        let no_leader: Error = EtcdError::NoLeader.to_status().into();
        let timed_out: Error = EtcdError::Timeout.to_status().into();
        let reset: Error = Status::unavailable("connection reset").into();
        assert!(matches!(classify(&no_leader, Retry::NotIdempotent), Action::NextEndpoint));
        assert!(matches!(classify(&timed_out, Retry::NotIdempotent), Action::Fail));
        assert!(matches!(classify(&timed_out, Retry::Idempotent), Action::NextEndpoint));
        assert!(matches!(classify(&reset, Retry::NotIdempotent), Action::Fail));
        assert!(matches!(classify(&reset, Retry::Idempotent), Action::NextEndpoint));
        let compacted: Error = EtcdError::Compacted.to_status().into();
        assert!(matches!(classify(&compacted, Retry::Idempotent), Action::Fail));
    }

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(30), Duration::from_millis(500));
    }
}
