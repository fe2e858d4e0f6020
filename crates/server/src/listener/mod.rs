//! Serving HTTP/1.1 and HTTP/2 (gRPC) on a listener ([`serve`]), and the
//! plain TCP listener: Nagle's algorithm off (small gRPC frames must not
//! wait for delayed ACKs: ~40 ms a request). The TLS listener is
//! [`crate::tls::TlsListener`]. Requests carry the client's address as
//! [`ClientAddr`] for the request log and, on TLS connections verified with
//! a client certificate, its common name as [`VerifiedCn`] (for etcd's
//! certificate-based auth). Extensions, unlike headers, cannot be sent by a
//! client, so neither can be forged. Every connection goes through
//! [`authority::AuthorityRepair`], so that grpc-go's passthrough dials are
//! served.

mod authority;

use std::net::SocketAddr;

use std::future::Future;

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// The client's address of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The common name of the client certificate a connection was verified
/// with.
#[derive(Debug, Clone)]
pub struct VerifiedCn(pub String);

/// What a listener knows about a connection's other end.
pub trait Remote: Send {
    fn socket_addr(&self) -> SocketAddr;
    /// The verified client certificate's common name, if any.
    fn verified_cn(&self) -> Option<&str> {
        None
    }
}

impl Remote for SocketAddr {
    fn socket_addr(&self) -> SocketAddr {
        *self
    }
}

/// The other end of a TLS connection.
#[derive(Debug, Clone)]
pub struct TlsRemote {
    pub addr: SocketAddr,
    pub cn: Option<String>,
}

impl Remote for TlsRemote {
    fn socket_addr(&self) -> SocketAddr {
        self.addr
    }

    fn verified_cn(&self) -> Option<&str> {
        self.cn.as_deref()
    }
}

/// A TCP listener whose connections have TCP_NODELAY set.
pub struct PlainListener(pub TcpListener);

impl Listener for PlainListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (stream, addr);
                }
                Err(e) => {
                    // Out of file descriptors and the like: retry later.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// How long open connections may take to finish after the listener stops;
/// long-lived streams (watches, other members' raft streams) never do.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves `router` on the connections of `listener` until `shutdown`
/// resolves, then lets open connections finish (GOAWAY) for at most
/// [`SHUTDOWN_GRACE`] and closes the rest, so that nothing the router
/// holds (the member's stores) outlives the member. HTTP/1.1 and HTTP/2 are both served; an HTTP/2
/// connection carries at most `max_streams` concurrent streams
/// (`--max-concurrent-streams`). Each request carries its client's address
/// as `ConnectInfo<ClientAddr>`, and its verified certificate's common name
/// as [`VerifiedCn`].
pub async fn serve<L>(mut listener: L, router: Router, max_streams: u32, shutdown: impl Future<Output = ()>)
where
    L: Listener,
    L::Addr: Remote,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(max_streams);
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Forget the connections that ended.
        while connections.try_join_next().is_some() {}
        let (io, remote) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut shutdown => break,
        };
        let addr = remote.socket_addr();
        let cn = remote.verified_cn().map(|cn| VerifiedCn(cn.to_string()));
        let service = router.clone().map_request(move |mut req: axum::extract::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(ClientAddr(addr)));
            if let Some(cn) = &cn {
                req.extensions_mut().insert(cn.clone());
            }
            req
        });
        let io = TokioIo::new(authority::AuthorityRepair::new(io));
        let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
        let conn = graceful.watch(conn.into_owned());
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection from {addr} ended: {e}");
            }
        });
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    // Dropping the set aborts the connections still open.
}
