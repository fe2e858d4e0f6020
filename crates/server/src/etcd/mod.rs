//! Starting and stopping one member. Start-up is three steps, one module
//! each: [`plan`] turns the flags into what the member will do (URLs, TLS,
//! initial members, after discovery) without touching the data dir;
//! [`bootstrap`] opens and checks the data dir and restores every store at
//! the applied index; [`member`] starts the raft, apply and commit threads
//! and builds the [`EtcdServer`]. This module then serves peers, waits until
//! the member can serve (a leader, the replayed log applied), publishes the
//! member's name and client URLs through raft, starts the leader-only tasks
//! and serves clients.

pub mod bootstrap;
pub mod member;
pub mod plan;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use retcd_api::retcdpb::{InternalRequest, MemberAttributes};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::peer::PeerService;
use crate::raft;
use crate::server::EtcdServer;
use crate::stop::{StopReason, StopSignal};
pub use bootstrap::DataDir;
use plan::StartPlan;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Membership(#[from] crate::membership::MembershipError),
    #[error(transparent)]
    Lease(#[from] crate::lease::LeaseLoadError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error(transparent)]
    SnapFile(#[from] retcd_storage::snap::SnapError),
    #[error("{0}")]
    Config(String),
    #[error("{path}: {reason}")]
    DataDir { path: PathBuf, reason: String },
    #[error(transparent)]
    Backend(#[from] retcd_storage::backend::BackendError),
    #[error(transparent)]
    Mvcc(#[from] retcd_storage::mvcc::MvccError),
    #[error(transparent)]
    Boot(#[from] raft::BootError),
    #[error(transparent)]
    Raft(#[from] raft::RaftError),
    #[error("listen on {url}: {reason}")]
    Listen { url: String, reason: String },
    #[error("member did not become ready in time: {0}")]
    NotReady(String),
    /// The member stopped itself while starting (see [`StopReason`]).
    #[error("{0}")]
    Stopped(StopReason),
}

/// A running member.
pub struct Etcd {
    pub server: Arc<EtcdServer>,
    /// The addresses client listeners are bound to.
    pub client_addrs: Vec<SocketAddr>,
    threads: Option<member::Threads>,
    /// Where the raft and apply threads report that the member must stop.
    stop_signal: StopSignal,
    shutdown_tx: Vec<oneshot::Sender<()>>,
    serve_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// `--max-concurrent-streams` of every HTTP/2 connection served.
    max_concurrent_streams: u32,
    /// `--election-timeout`: how long a stopping leader waits for a successor.
    election_timeout: Duration,
}

impl Etcd {
    pub async fn start(cfg: crate::config::Config) -> Result<Etcd, StartError> {
        let plan = StartPlan::new(cfg).await?;
        let restored = bootstrap::restore(&plan).await?;
        let member = member::start(&plan, restored)?;
        let server = member.server.clone();
        let cfg = &plan.cfg;
        let mut etcd = Etcd {
            server: server.clone(),
            client_addrs: Vec::new(),
            threads: Some(member.threads),
            stop_signal: member.stop_signal,
            shutdown_tx: Vec::new(),
            serve_tasks: Vec::new(),
            max_concurrent_streams: cfg.max_concurrent_streams,
            election_timeout: Duration::from_millis(cfg.election_timeout),
        };
        for url in &plan.peer_urls {
            let tls = if url.tls { plan.peer_tls.clone() } else { None };
            etcd.serve(url.addr, tls, crate::peer::routes(peer_service(&server, &plan.dirs.snap)), "peer").await?;
        }
        etcd.wait_ready(&member.rejected).await?;
        if cfg.experimental_initial_corrupt_check {
            crate::leader::corrupt::initial_check(&server).await.map_err(StartError::Config)?;
        }
        etcd.publish().await?;
        server.watch.spawn_background(cfg.experimental_watch_progress_notify_interval);
        crate::leader::lease_expiry::spawn(&server);
        crate::leader::v2_expiry::spawn(&server);
        if !cfg.experimental_corrupt_check_time.is_zero() {
            crate::leader::corrupt::spawn_periodic(&server, cfg.experimental_corrupt_check_time);
        }
        if let Some(mode) = plan.auto_compaction {
            crate::leader::compactor::spawn(&server, mode);
        }
        for url in &plan.client_urls {
            let tls = if url.tls { plan.client_tls.clone() } else { None };
            let bound = etcd
                .serve(url.addr, tls, client_routes(&server, cfg.enable_v2, cfg.max_concurrent_streams), "client")
                .await?;
            etcd.client_addrs.push(bound);
        }
        for url in &plan.metrics_urls {
            let tls = if url.tls { plan.client_tls.clone() } else { None };
            etcd.serve(url.addr, tls, crate::http::metrics_routes(&server), "metrics").await?;
        }
        tracing::info!("ready to serve client requests on {:?}", etcd.client_addrs);
        Ok(etcd)
    }

    /// Waits for a leader and for the replayed log to be applied, so the
    /// first client request sees every acknowledged write. Like etcd, a
    /// member whose cluster has no quorum waits for one however long.
    /// A member the others refuse as not of their cluster (a different
    /// cluster token or data dir) stops with their reason.
    async fn wait_ready(&self, rejected: &crate::raft::transport::Rejection) -> Result<(), StartError> {
        let s = &self.server;
        let mut next_log = Instant::now() + Duration::from_secs(5);
        loop {
            if s.raft.leader() != 0 && s.linearizable_read().await.is_ok() {
                return Ok(());
            }
            if let Some(reason) = rejected.lock().clone() {
                return Err(StartError::Config(reason));
            }
            if let Some(reason) = self.stop_signal.reason() {
                return Err(StartError::Stopped(reason));
            }
            if Instant::now() >= next_log {
                tracing::warn!("waiting for a leader (member {:x})", s.settings.member_id);
                next_log = Instant::now() + Duration::from_secs(5);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Publishes this member's name and client URLs through raft, as etcd
    /// does before serving clients.
    async fn publish(&self) -> Result<(), StartError> {
        let s = &self.server;
        let attrs = MemberAttributes {
            id: s.settings.member_id,
            name: s.settings.name.clone(),
            client_urls: s.settings.client_urls.clone(),
        };
        let current = s.membership.get(attrs.id);
        if current.is_some_and(|m| m.name == attrs.name && m.client_ur_ls == attrs.client_urls) {
            return Ok(());
        }
        loop {
            let req = InternalRequest { member_attributes: Some(attrs.clone()), ..Default::default() };
            match s.propose::<()>(req).await {
                Ok(()) => return Ok(()),
                Err(_) if self.stop_signal.reason().is_some() => {
                    return Err(StartError::Stopped(self.stop_signal.reason().unwrap_or(StopReason::Removed)));
                }
                Err(e) => {
                    tracing::warn!("failed to publish member attributes: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Serves `router` on `addr` (over TLS with `tls`) until stopped;
    /// returns the bound address.
    async fn serve(
        &mut self,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        router: axum::Router,
        what: &str,
    ) -> Result<SocketAddr, StartError> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listen_err =
            |e: std::io::Error| StartError::Listen { url: format!("{scheme}://{addr}"), reason: e.to_string() };
        let listener = TcpListener::bind(addr).await.map_err(listen_err)?;
        let bound = listener.local_addr().map_err(listen_err)?;
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = rx.await;
        };
        let max_streams = self.max_concurrent_streams;
        let task = match tls {
            Some(config) => {
                let listener = crate::tls::TlsListener::new(listener, config).map_err(listen_err)?;
                tokio::spawn(crate::listener::serve(listener, router, max_streams, shutdown))
            }
            None => {
                let listener = crate::listener::PlainListener(listener);
                tokio::spawn(crate::listener::serve(listener, router, max_streams, shutdown))
            }
        };
        tracing::debug!("serving {what} on {scheme}://{bound}");
        self.shutdown_tx.push(tx);
        self.serve_tasks.push(task);
        Ok(bound)
    }

    /// Waits until the member stops itself: it was removed from the
    /// cluster, or cannot go on without losing or diverging data. The owner
    /// then calls [`Etcd::stop`].
    pub async fn stopped(&self) -> StopReason {
        self.stop_signal.stopped().await
    }

    /// Stop: stop serving, stop raft, let the apply thread finish, then
    /// commit the backend (which refuses if applying failed, keeping its
    /// last commit). A healthy leader hands leadership over first.
    pub async fn stop(mut self) {
        if self.stop_signal.reason().is_none() {
            self.hand_off_leadership().await;
        }
        for tx in self.shutdown_tx.drain(..) {
            let _ = tx.send(());
        }
        for t in self.serve_tasks.drain(..) {
            // Each bounds its own wait for open connections.
            let _ = t.await;
        }
        if let Some(threads) = self.threads.take() {
            let _ = tokio::task::spawn_blocking(move || threads.join()).await;
        }
        tracing::info!("stopped");
    }

    /// Stops at once, without a hand-off or waiting for connections to
    /// close (a dropped test cluster). Blocks until the threads end.
    pub(crate) fn abandon(&mut self) {
        for tx in self.shutdown_tx.drain(..) {
            let _ = tx.send(());
        }
        for t in self.serve_tasks.drain(..) {
            t.abort();
        }
        if let Some(threads) = self.threads.take() {
            threads.join();
        }
    }

    /// A leader that stops hands leadership over first and waits (at most an
    /// election timeout, as the transfer itself) until another member leads,
    /// as etcd's graceful stop: the cluster then has a leader at once rather
    /// than after its followers' election timeouts.
    async fn hand_off_leadership(&self) {
        let s = &self.server;
        let (started, reply) = oneshot::channel();
        if !s.raft.is_leader() || s.raft_tx.send(raft::RaftInput::HandOffLeadership(started)).is_err() {
            return;
        }
        if !reply.await.unwrap_or(false) {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.election_timeout;
        while s.raft.leader() == s.settings.member_id && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if s.raft.leader() == s.settings.member_id {
            tracing::warn!("stopping as leader: no member took over within the election timeout");
        }
    }
}

/// What the client port serves: the gRPC services and the HTTP endpoints
/// beside them.
fn client_routes(server: &Arc<EtcdServer>, enable_v2: bool, max_streams: u32) -> axum::Router {
    // gRPC, its JSON gateway and the HTTP endpoints share the port, as etcd's.
    let gateway = crate::gateway::routes(server, max_streams);
    let routes = crate::v3rpc::routes(server).merge(gateway).merge(crate::http::routes(server));
    if enable_v2 {
        routes.merge(crate::http::v2keys::routes(server))
    } else {
        routes
    }
}

/// What the peer port serves, from this member's stores.
fn peer_service(server: &EtcdServer, snap_dir: &std::path::Path) -> PeerService {
    PeerService {
        cluster_id: server.settings.cluster_id,
        membership: server.membership.clone(),
        raft_tx: server.raft_tx.clone(),
        lessor: server.lessor.clone(),
        raft: server.raft.clone(),
        kv: server.kv.clone(),
        member_id: server.settings.member_id,
        snap_dir: snap_dir.to_path_buf(),
    }
}
