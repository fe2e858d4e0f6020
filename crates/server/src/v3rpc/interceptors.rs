//! What every gRPC call passes through before its service, as etcd's
//! interceptors: the `hasleader` requirement (a client that sets the
//! metadata `hasleader: true` gets `etcdserver: no leader` at once rather
//! than waiting for an election), the call counters of `/metrics`, request
//! logging at debug level, and a warning naming the method, the duration and
//! the client address for calls slower than [`SLOW_REQUEST`].

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use retcd_api::errors::EtcdError;

use crate::listener::ClientAddr;
use crate::raft::RaftStatus;

/// etcd's default `--experimental-warning-apply-duration`.
pub const SLOW_REQUEST: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct InterceptLayer {
    pub raft: Arc<RaftStatus>,
}

impl<S> tower::Layer<S> for InterceptLayer {
    type Service = Intercept<S>;
    fn layer(&self, inner: S) -> Intercept<S> {
        Intercept { inner, raft: self.raft.clone() }
    }
}

#[derive(Clone)]
pub struct Intercept<S> {
    inner: S,
    raft: Arc<RaftStatus>,
}

/// Streams (watch, keep-alive) live as long as the client wants: only the
/// unary calls are timed.
fn is_stream(path: &str) -> bool {
    matches!(
        path,
        "/etcdserverpb.Watch/Watch"
            | "/etcdserverpb.Lease/LeaseKeepAlive"
            | "/etcdserverpb.Maintenance/Snapshot"
            | "/v3electionpb.Election/Observe"
    )
}

impl<S> tower::Service<axum::extract::Request> for Intercept<S>
where
    S: tower::Service<axum::extract::Request, Response = axum::response::Response> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = axum::response::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        let is_grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if !is_grpc {
            return Box::pin(self.inner.call(req));
        }
        let require_leader = req.headers().get("hasleader").is_some_and(|v| v.as_bytes() == b"true");
        if require_leader && self.raft.leader() == 0 {
            let status: tonic::Status = EtcdError::NoLeader.into();
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let path = req.uri().path().to_string();
        let call = crate::metrics::GrpcCall::start(&path);
        let peer = req.extensions().get::<ConnectInfo<ClientAddr>>().map(|c| c.0 .0);
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await.map(|r| match call {
                Some(call) => call.finish(r),
                None => r,
            });
            let took = started.elapsed();
            let peer = peer.map(|p| p.to_string()).unwrap_or_else(|| "unknown".into());
            if took > SLOW_REQUEST && !is_stream(&path) {
                tracing::warn!(method = %path, took = ?took, remote = %peer, "request took too long");
            } else {
                tracing::debug!(method = %path, took = ?took, remote = %peer, "request");
            }
            resp
        })
    }
}
