//! Starting and stopping one member: opens the data dir, restores the store,
//! lessor and raft state, starts the raft, apply, commit and compaction
//! threads, waits until the member can serve, then serves clients.
//!
//! Start-up refuses a data dir it does not understand (an etcd bbolt data
//! dir, a newer format, a corrupt file) with an error naming the file, and
//! never writes to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use retcd_api::etcdserverpb::Member;
use retcd_api::retcdpb::{InternalRequest, MemberAttributes, WalMetadata};
use retcd_storage::backend::Backend;
use retcd_storage::mvcc::{Compaction, KvStore};
use retcd_storage::wal::Wal;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::alarm::AlarmStore;
use crate::apply::Applier;
use crate::config::Config;
use crate::ids;
use crate::lease::Lessor;
use crate::membership::Membership;
use crate::peer::PeerService;
use crate::raft::transport::Transport;
use crate::raft::{self, RaftNode, RaftSettings, RaftStatus};
use crate::server::{EtcdServer, ServerSettings};
use crate::stop::{StopReason, StopSignal};
use crate::wait::Wait;
use crate::watch::WatchHub;

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

/// The member's files, laid out under the data dir as etcd lays out its own
/// (`member/wal`, `member/snap`), with the backend beside them.
pub struct DataDir {
    pub root: PathBuf,
    pub wal: PathBuf,
    pub snap: PathBuf,
    pub backend: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> DataDir {
        let member = root.join("member");
        DataDir {
            root: root.to_path_buf(),
            wal: member.join("wal"),
            snap: member.join("snap"),
            backend: member.join("retcd.db"),
        }
    }

    /// Refuses data dirs written by etcd: their backend is a bbolt file that
    /// retcd cannot read, and must not touch.
    fn check_not_etcd(&self) -> Result<(), StartError> {
        let bbolt = self.snap.join("db");
        if bbolt.exists() {
            return Err(StartError::DataDir {
                path: bbolt,
                reason:
                    "this data dir was written by etcd (bbolt backend); retcd cannot use it and leaves it untouched"
                        .into(),
            });
        }
        Ok(())
    }

    fn create_dirs(&self) -> Result<(), StartError> {
        for d in [&self.root, &self.wal, &self.snap] {
            create_dir_durably(d)
                .map_err(|e| StartError::DataDir { path: d.clone(), reason: format!("cannot create: {e}") })?;
        }
        Ok(())
    }
}

/// Creates `dir` and its missing parents, and fsyncs the parent of every
/// directory it created. Without that, a power loss can drop the new
/// `member` directory, and with it a WAL that acknowledged writes: a
/// directory's entry is durable only once its parent is fsynced, and the
/// WAL syncs only its own parent (`member`).
fn create_dir_durably(dir: &Path) -> std::io::Result<()> {
    let missing: Vec<PathBuf> =
        dir.ancestors().take_while(|p| !p.as_os_str().is_empty() && !p.exists()).map(Path::to_path_buf).collect();
    std::fs::create_dir_all(dir)?;
    // Outermost first: each fsync makes one new entry durable in a directory
    // whose own entry already is.
    for created in missing.iter().rev() {
        let parent = created.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// A running member.
pub struct Etcd {
    pub server: Arc<EtcdServer>,
    /// The addresses client listeners are bound to.
    pub client_addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    /// Where the raft and apply threads report that the member must stop.
    stop_signal: StopSignal,
    raft_thread: Option<JoinHandle<()>>,
    apply_thread: Option<JoinHandle<()>>,
    committer: Option<retcd_storage::backend::CommitterHandle>,
    shutdown_tx: Vec<oneshot::Sender<()>>,
    serve_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// `--max-concurrent-streams` of every HTTP/2 connection served.
    max_concurrent_streams: u32,
    /// `--election-timeout`: how long a stopping leader waits for a successor.
    election_timeout: Duration,
}

/// A URL to listen on: its address and whether it is `https`.
#[derive(Debug, Clone, Copy)]
pub struct ListenUrl {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// Parses `http(s)://host:port` (etcd's URL lists are comma separated).
pub fn parse_urls(list: &str, flag: &str) -> Result<Vec<ListenUrl>, StartError> {
    let mut out = Vec::new();
    for url in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |reason: &str| StartError::Config(format!("--{flag}: {url:?}: {reason}"));
        let (rest, tls) = if let Some(r) = url.strip_prefix("http://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("https://") {
            (r, true)
        } else {
            return Err(bad("URL scheme must be http or https"));
        };
        let hostport = rest.trim_end_matches('/');
        let (host, port) = hostport.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
        let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        // etcd listens on the IPv4 loopback for "localhost".
        let ip = if host == "localhost" {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            host.parse().map_err(|_| bad("host must be an IP address or localhost"))?
        };
        out.push(ListenUrl { addr: SocketAddr::new(ip, port), tls });
    }
    Ok(out)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect()
}

impl Etcd {
    pub async fn start(cfg: Config) -> Result<Etcd, StartError> {
        cfg.validate().map_err(|e| StartError::Config(e.0))?;
        // At most one of the discovery methods is set (validated above).
        let cfg = discover(cfg).await?;
        let cfg = discovered_cluster(cfg).await?;
        let client_addrs = parse_urls(&cfg.listen_client_urls, "listen-client-urls")?;
        let peer_addrs = parse_urls(&cfg.listen_peer_urls, "listen-peer-urls")?;
        let client_tls = client_tls_config(&cfg, &client_addrs)?;
        let (peer_tls, peer_dialer) = peer_tls_config(&cfg, &peer_addrs)?;
        let auto_compaction =
            crate::leader::compactor::parse(&cfg.auto_compaction_mode, &cfg.auto_compaction_retention)
                .map_err(|e| StartError::Config(e.0))?;
        let metrics_addrs = match &cfg.listen_metrics_urls {
            Some(urls) if !urls.is_empty() => parse_urls(urls, "listen-metrics-urls")?,
            _ => Vec::new(),
        };

        let (initial_members, member_id) = initial_members(&cfg)?;
        let voters: Vec<u64> = initial_members.iter().map(|m| m.id).collect();
        let cluster_id = ids::cluster_id(&voters);

        let dirs = DataDir::new(&cfg.data_dir());
        dirs.check_not_etcd()?;
        dirs.create_dirs()?;

        // An existing member's WAL and snapshots are read (and checked)
        // before the backend is opened for writing, so a data dir refused
        // for a damaged log is left exactly as it was. A new member records
        // its initial members in the backend before its WAL exists, so a
        // member with a WAL always has its member list.
        let existing = Wal::exists(&dirs.wal);
        let joining = !existing && cfg.initial_cluster_state == "existing";
        let (initial_members, member_id, cluster_id) = if joining {
            join_cluster(&cfg, &initial_members, &peer_dialer).await?
        } else {
            (initial_members, member_id, cluster_id)
        };
        let metadata = WalMetadata { format: String::new(), member_id, cluster_id, joined: joining };
        let mut boot = None;
        if existing {
            boot = Some(raft::boot::boot(&dirs.wal, &dirs.snap, metadata.clone(), &voters)?);
        }
        let backend = Backend::open(&dirs.backend)?;
        let kv = Arc::new(KvStore::open(backend.clone())?);
        // etcd's minimum lease TTL: 1.5 election timeouts, counted in whole
        // ticks, rounded up to a second.
        let ticks = cfg.election_ticks() as u64;
        let min_ttl_ms = (3 * ticks / 2) * cfg.heartbeat_interval;
        let min_ttl = min_ttl_ms.div_ceil(1000) as i64;
        let lessor = Arc::new(Lessor::new(min_ttl));
        install_received_snapshot(&dirs, &backend, &kv)?;
        lessor.reload(&backend, &kv)?;
        let membership = Arc::new(Membership::load(&backend)?);
        let alarms = Arc::new(AlarmStore::load(&backend)?);
        backend.set_commit_observer(Box::new(|d| crate::metrics::get().backend_commit.observe(d.as_secs_f64())));
        match cfg.quota_bytes() {
            None => tracing::warn!("disabled backend quota"),
            Some(q) if q > crate::config::MAX_RECOMMENDED_QUOTA_BYTES => tracing::warn!(
                "backend quota {q} exceeds maximum recommended quota {}",
                crate::config::MAX_RECOMMENDED_QUOTA_BYTES
            ),
            Some(_) => {}
        }
        let tokens = crate::auth::Tokens::from_flag(&cfg.auth_token, Duration::from_secs(cfg.auth_token_ttl))
            .map_err(StartError::Config)?;
        let auth = Arc::new(crate::auth::AuthStore::new(tokens, cfg.bcrypt_cost));
        auth.reload(&backend)?;
        let v2 = Arc::new(crate::v2store::V2Store::default());
        v2.reload(&backend)?;
        let boot = match boot {
            Some(boot) => boot,
            None => {
                membership.bootstrap(&mut backend.batch_tx(), initial_members);
                backend.commit()?;
                raft::boot::boot(&dirs.wal, &dirs.snap, metadata, &voters)?
            }
        };
        let (member_id, cluster_id) = (boot.metadata.member_id, boot.metadata.cluster_id);
        let (consistent_index, _) = backend.consistent_index();
        if boot.created && consistent_index > 0 {
            return Err(StartError::DataDir {
                path: dirs.backend.clone(),
                reason: "backend has data but the WAL is missing".into(),
            });
        }
        // The WAL's hard state can lag what was applied: a single member
        // learns an entry is committed only after persisting it, and that
        // commit index reaches the WAL with the next ready, if any. Whatever
        // the backend applied was committed, so raft restarts from there
        // (raft-rs refuses an applied index above the commit index).
        let last_index = ::raft::Storage::last_index(&boot.storage).map_err(raft::BootError::Raft)?;
        if consistent_index > last_index {
            return Err(StartError::DataDir {
                path: dirs.backend.clone(),
                reason: format!("backend applied index {consistent_index} is beyond the end of the WAL ({last_index})"),
            });
        }
        // A snapshot is only taken once the backend is durable at its index,
        // and the WAL is replayed only after it: a backend behind a snapshot
        // (deleted, or replaced by an older copy) would silently lose the
        // writes in between. The bootstrap snapshot (index 1) carries no data.
        if consistent_index < boot.snapshot_index && boot.snapshot_index > 1 {
            return Err(StartError::DataDir {
                path: dirs.backend.clone(),
                reason: format!(
                    "backend applied index {consistent_index} is behind the snapshot at index {}: the backend is \
                     missing or older than the rest of the data dir",
                    boot.snapshot_index
                ),
            });
        }
        {
            let mut core = boot.storage.wl();
            let hs = core.mut_hard_state();
            hs.commit = hs.commit.max(consistent_index);
            // Membership changes applied after the snapshot are not replayed
            // (raft restarts at the applied index): take raft's configuration
            // from the backend, where it was kept with the applied index.
            if consistent_index >= boot.snapshot_index {
                if let Some(bytes) =
                    backend.get(retcd_storage::backend::Table::Meta, retcd_storage::backend::CONF_STATE_KEY)?
                {
                    let cs =
                        <::raft::eraftpb::ConfState as prost011::Message>::decode(bytes.as_slice()).map_err(|e| {
                            StartError::DataDir {
                                path: dirs.backend.clone(),
                                reason: format!("corrupt conf state: {e}"),
                            }
                        })?;
                    core.set_conf_state(cs);
                }
            }
        }
        let applied_index = consistent_index.max(boot.snapshot_index);
        tracing::info!(
            "starting member {member_id:x} in cluster {cluster_id:x} (data dir {}, applied index {applied_index})",
            dirs.root.display()
        );

        let committer = backend.spawn_committer(Duration::from_millis(100), 10_000);
        let (raft_tx, raft_rx) = crossbeam_channel::unbounded();
        let (apply_tx, apply_rx) = crossbeam_channel::unbounded();
        let status = Arc::new(RaftStatus { id: member_id, ..Default::default() });
        let applied = Arc::new(AtomicU64::new(applied_index));
        let (applied_tx, applied_rx) = tokio::sync::watch::channel(applied_index);
        let wait = Arc::new(Wait::default());
        let watch = Arc::new(WatchHub::new(kv.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_signal = StopSignal::default();

        let compactor = spawn_compactor();
        let applier = Applier {
            kv: kv.clone(),
            backend: backend.clone(),
            lessor: lessor.clone(),
            membership: membership.clone(),
            alarms: alarms.clone(),
            auth: auth.clone(),
            v2: v2.clone(),
            watch: watch.clone(),
            wait: wait.clone(),
            applied: applied.clone(),
            applied_tx,
            raft_tx: raft_tx.clone(),
            snapshot_count: cfg.snapshot_count.max(1),
            last_snapshot_index: boot.snapshot_index,
            snap_dir: dirs.snap.clone(),
            member_id,
            removed: false,
            compactor,
            stop: stop_signal.clone(),
        };
        let apply_thread = std::thread::Builder::new()
            .name("apply".into())
            .spawn(move || applier.run(apply_rx))
            .map_err(|e| StartError::NotReady(e.to_string()))?;

        let lease_hook = lessor.clone();
        let drop_wait = wait.clone();
        let rejected = crate::raft::transport::Rejection::default();
        let peer_urls_by_id =
            membership.list().into_iter().filter(|m| m.id != member_id).map(|m| (m.id, m.peer_ur_ls)).collect();
        let transport = Transport::new(
            cluster_id,
            member_id,
            tokio::runtime::Handle::current(),
            raft_tx.clone(),
            peer_urls_by_id,
            rejected.clone(),
            peer_dialer.clone(),
        );
        let node = RaftNode::new(
            boot,
            transport,
            backend.clone(),
            RaftSettings {
                id: member_id,
                snap_dir: dirs.snap.clone(),
                heartbeat: cfg.heartbeat(),
                election_ticks: cfg.election_ticks(),
                max_snapshots: cfg.max_snapshots,
                max_wals: cfg.max_wals,
            },
            applied_index,
            raft_rx,
            apply_tx,
            status.clone(),
            applied.clone(),
            stop.clone(),
            Box::new(move |_leader, is_me| if is_me { lease_hook.promote() } else { lease_hook.demote() }),
            Box::new(move |id| drop_wait.trigger(id, Err(retcd_api::EtcdError::NoLeader))),
        )?;
        let raft_stop = stop_signal.clone();
        let raft_thread = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || {
                if let Err(e) = node.run() {
                    // Continuing without a durable log would lose writes.
                    raft_stop.stop(StopReason::Failed(format!("raft loop failed: {e}")));
                }
            })
            .map_err(|e| StartError::NotReady(e.to_string()))?;

        let request_timeout = Duration::from_secs(5) + 2 * Duration::from_millis(cfg.election_timeout);
        let server = Arc::new(EtcdServer {
            settings: ServerSettings {
                name: cfg.name.clone(),
                member_id,
                cluster_id,
                client_urls: split_list(&cfg.advertise_client_urls),
                max_txn_ops: cfg.max_txn_ops,
                max_request_bytes: cfg.max_request_bytes as usize,
                request_timeout,
                quota_bytes: cfg.quota_bytes(),
            },
            kv,
            backend,
            lessor,
            watch,
            raft: status,
            wait,
            applied,
            applied_rx,
            raft_tx,
            ids: ids::IdGenerator::new(member_id),
            membership: membership.clone(),
            alarms,
            auth,
            v2,
            leader_channel: Default::default(),
            peer_dialer,
        });

        let mut etcd = Etcd {
            server: server.clone(),
            client_addrs: Vec::new(),
            stop,
            stop_signal,
            raft_thread: Some(raft_thread),
            apply_thread: Some(apply_thread),
            committer: Some(committer),
            shutdown_tx: Vec::new(),
            serve_tasks: Vec::new(),
            max_concurrent_streams: cfg.max_concurrent_streams,
            election_timeout: Duration::from_millis(cfg.election_timeout),
        };
        for url in peer_addrs {
            let service = PeerService {
                cluster_id,
                membership: server.membership.clone(),
                raft_tx: server.raft_tx.clone(),
                lessor: server.lessor.clone(),
                raft: server.raft.clone(),
                kv: server.kv.clone(),
                member_id,
            };
            let tls = if url.tls { peer_tls.clone() } else { None };
            etcd.serve(url.addr, tls, crate::peer::routes(service), "peer").await?;
        }
        etcd.wait_ready(&rejected).await?;
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
        if let Some(mode) = auto_compaction {
            crate::leader::compactor::spawn(&server, mode);
        }
        for url in client_addrs {
            let tls = if url.tls { client_tls.clone() } else { None };
            let bound = etcd.serve(url.addr, tls, client_routes(&server, cfg.enable_v2), "client").await?;
            etcd.client_addrs.push(bound);
        }
        for url in metrics_addrs {
            let tls = if url.tls { client_tls.clone() } else { None };
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
            // Long-lived streams (watch) would hold a graceful stop forever.
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        self.stop.store(true, Ordering::Release);
        let raft_thread = self.raft_thread.take();
        let apply_thread = self.apply_thread.take();
        let committer = self.committer.take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(t) = raft_thread {
                let _ = t.join();
            }
            if let Some(t) = apply_thread {
                let _ = t.join();
            }
            if let Some(c) = committer {
                if let Err(e) = c.stop() {
                    tracing::error!("final backend commit failed: {e}");
                }
            }
        })
        .await;
        tracing::info!("stopped");
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

/// The TLS configuration of the https client URLs (None without any). As
/// etcd, an https URL needs a certificate (or `--auto-tls`), and
/// certificates given for http-only URLs are ignored with a warning.
fn client_tls_config(cfg: &Config, urls: &[ListenUrl]) -> Result<Option<Arc<rustls::ServerConfig>>, StartError> {
    let info = cfg.client_tls();
    let Some(https) = urls.iter().find(|u| u.tls) else {
        if info.has_cert() {
            tracing::warn!("scheme is HTTP while key and cert files are present; ignoring key and cert files");
        }
        return Ok(None);
    };
    if !info.has_cert() {
        return Err(StartError::Config(format!(
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://{} with HTTPS scheme",
            https.addr
        )));
    }
    let mut hosts: Vec<String> = urls.iter().map(|u| u.addr.ip().to_string()).collect();
    hosts.push("localhost".into());
    let auto_dir = cfg.data_dir().join("fixtures").join("client");
    crate::tls::server_config(&info, &auto_dir, &hosts).map(Some).map_err(StartError::Config)
}

/// The TLS configuration of the https peer URLs (None without any) and the
/// dialer for other members. As for clients, an https peer URL needs a
/// certificate (or `--peer-auto-tls`); the dialer presents the same
/// certificate to the peers it calls.
fn peer_tls_config(
    cfg: &Config,
    urls: &[ListenUrl],
) -> Result<(Option<Arc<rustls::ServerConfig>>, crate::peer_dial::PeerDialer), StartError> {
    let info = cfg.peer_tls();
    let mut hosts: Vec<String> = urls.iter().map(|u| u.addr.ip().to_string()).collect();
    hosts.push("localhost".into());
    let auto_dir = cfg.data_dir().join("fixtures").join("peer");
    let https = urls.iter().find(|u| u.tls);
    let server = match https {
        Some(_) if info.has_cert() => {
            Some(crate::tls::server_config(&info, &auto_dir, &hosts).map_err(StartError::Config)?)
        }
        Some(u) => {
            // etcd's text for the same refusal.
            return Err(StartError::Config(format!(
                "cannot listen on TLS for {}: KeyFile and CertFile are not presented",
                u.addr
            )));
        }
        None => {
            if info.has_cert() {
                tracing::warn!(
                    "scheme is HTTP while peer key and cert files are present; ignoring peer key and cert files"
                );
            }
            None
        }
    };
    // --peer-auto-tls made (or reuses) its certificate above when serving
    // https; the dialer presents it too.
    let auto = (info.auto_tls && info.cert_file.is_none())
        .then(|| crate::tls::auto_cert(&auto_dir, &hosts))
        .transpose()
        .map_err(StartError::Config)?;
    let dialer = crate::peer_dial::PeerDialer::new(&info, auto).map_err(StartError::Config)?;
    Ok((server, dialer))
}

/// What the client port serves: the gRPC services and the HTTP endpoints
/// beside them.
fn client_routes(server: &Arc<EtcdServer>, enable_v2: bool) -> axum::Router {
    // gRPC, its JSON gateway and the HTTP endpoints share the port, as etcd's.
    let routes = crate::v3rpc::routes(server).merge(crate::gateway::routes(server)).merge(crate::http::routes(server));
    if enable_v2 {
        routes.merge(crate::v2store::http::routes(server))
    } else {
        routes
    }
}

/// The initial members from `--initial-cluster` (URLs grouped by name, ids
/// derived as etcd does) and this member's id. This member's entry must list
/// exactly its `--initial-advertise-peer-urls`.
fn initial_members(cfg: &Config) -> Result<(Vec<Member>, u64), StartError> {
    let mut by_name: Vec<(String, Vec<String>)> = Vec::new();
    for (name, url) in cfg.initial_cluster().map_err(|e| StartError::Config(e.0))? {
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, urls)) => urls.push(url),
            None => by_name.push((name, vec![url])),
        }
    }
    let mut advertised = split_list(&cfg.initial_advertise_peer_urls);
    advertised.sort();
    let Some((_, own_urls)) = by_name.iter().find(|(n, _)| *n == cfg.name) else {
        return Err(StartError::Config(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            cfg.name
        )));
    };
    let mut own = own_urls.clone();
    own.sort();
    if own != advertised && !crate::discovery_srv::urls_equal_resolved(&own, &advertised) {
        return Err(StartError::Config(format!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (resolved urls: \"{}\" != \"{}\")",
            cfg.name,
            own_urls.join(","),
            cfg.initial_advertise_peer_urls,
            advertised.join(","),
            own.join(","),
        )));
    }
    let members: Vec<Member> = by_name
        .into_iter()
        .map(|(name, peer_urls)| Member {
            id: ids::member_id(&peer_urls, &cfg.initial_cluster_token),
            name,
            peer_ur_ls: peer_urls,
            client_ur_ls: Vec::new(),
            is_learner: false,
        })
        .collect();
    let own_id = ids::member_id(&own, &cfg.initial_cluster_token);
    Ok((members, own_id))
}

/// The configuration with `--initial-cluster` filled in by a discovery
/// method, for a member that has no WAL yet (DNS lookups block, so they run
/// on the blocking pool).
async fn discovered_cluster(mut cfg: Config) -> Result<Config, StartError> {
    if Wal::exists(&DataDir::new(&cfg.data_dir()).wal) {
        return Ok(cfg);
    }
    let new_cluster = cfg.initial_cluster_state == "new";
    if let Some(settings) = crate::discovery_v3::Settings::from_config(&cfg).filter(|_| new_cluster) {
        let mut own = split_list(&cfg.initial_advertise_peer_urls);
        own.sort();
        let id = ids::member_id(&own, &settings.token);
        let entry = own.iter().map(|u| format!("{}={u}", cfg.name)).collect::<Vec<_>>().join(",");
        let token = settings.token.clone();
        let cluster = crate::discovery_v3::join_cluster(settings, id, entry)
            .await
            .map_err(|e| StartError::Config(format!("failed to join discovery cluster ({e})")))?;
        cfg.initial_cluster = Some(cluster);
        cfg.initial_cluster_token = token;
        return Ok(cfg);
    }
    if cfg.discovery_srv.is_none() {
        return Ok(cfg);
    }
    tokio::task::spawn_blocking(move || {
        let mut cfg = cfg;
        crate::discovery_srv::resolve_initial_cluster(&mut cfg).map(|()| cfg)
    })
    .await
    .map_err(|e| StartError::Config(format!("SRV discovery: {e}")))?
    .map_err(|e| StartError::Config(e.0))
}

/// Asks the running cluster (through the other listed members' peer URLs)
/// for its id and members, and finds this member among them by its
/// advertised peer URLs (it must have been added with `member add`).
async fn join_cluster(
    cfg: &Config,
    listed: &[Member],
    dialer: &crate::peer_dial::PeerDialer,
) -> Result<(Vec<Member>, u64, u64), StartError> {
    let mut own = split_list(&cfg.initial_advertise_peer_urls);
    own.sort();
    let mut last_error = String::from("no other member listed in --initial-cluster");
    for m in listed.iter().filter(|m| m.name != cfg.name) {
        for url in &m.peer_ur_ls {
            let connecting = dialer.connect(url, Duration::from_secs(2), Some(Duration::from_secs(5)));
            let mut client = match connecting.await {
                Ok(ch) => retcd_api::retcdpb::peer_client::PeerClient::new(ch),
                Err(e) => {
                    last_error = format!("{url}: {e}");
                    continue;
                }
            };
            let resp = match client.members(retcd_api::retcdpb::MembersRequest {}).await {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    last_error = format!("{url}: {}", crate::peer_dial::describe_status(&e));
                    continue;
                }
            };
            let me = resp.members.iter().find(|m| {
                let mut urls = m.peer_ur_ls.clone();
                urls.sort();
                urls == own
            });
            let Some(me) = me else {
                return Err(StartError::Config(format!(
                    "the cluster has no member with peer URLs {own:?}; add it with `member add` before starting it"
                )));
            };
            let id = me.id;
            return Ok((resp.members, id, resp.cluster_id));
        }
    }
    Err(StartError::Config(format!("could not retrieve cluster information from the given URLs ({last_error})")))
}

/// With `--discovery`, a new member learns its initial cluster from the
/// discovery service (a member with a WAL already has one, as etcd).
async fn discover(cfg: Config) -> Result<Config, StartError> {
    let Some(durl) = cfg.discovery.clone().filter(|d| !d.is_empty()) else { return Ok(cfg) };
    let wal = DataDir::new(&cfg.data_dir()).wal;
    if Wal::exists(&wal) {
        tracing::warn!(
            "discovery token ignored since a cluster has already been initialized; valid log found at {}",
            wal.display()
        );
        return Ok(cfg);
    }
    crate::discovery_v2::resolve(&cfg, &durl).await.map_err(StartError::Config)
}

/// Finishes installing a snapshot received from the leader: raft recorded
/// it (its `.snap` file is the newest) but the backend was not replaced yet.
/// Data files raft never accepted, or already installed, are removed.
fn install_received_snapshot(dirs: &DataDir, backend: &Backend, kv: &KvStore) -> Result<(), StartError> {
    let (applied, _) = backend.consistent_index();
    let newest = retcd_storage::snap::Snapshotter::new(&dirs.snap)?.load_newest()?;
    let newest_index = newest.map(|s| s.get_metadata().index).unwrap_or(0);
    if let Some((index, path)) = crate::snapshot::pending_file(&dirs.snap, applied) {
        if index == newest_index {
            tracing::info!("installing the snapshot received before the last stop ({})", path.display());
            let data = crate::snapshot::load_file(&path)?;
            crate::snapshot::install(backend, kv, &data)?;
        }
    }
    // Whatever is left was installed or never accepted by raft.
    crate::snapshot::remove_installed(&dirs.snap, u64::MAX);
    Ok(())
}

/// Physical compaction runs on its own thread, off the apply path.
fn spawn_compactor() -> crossbeam_channel::Sender<(Compaction, oneshot::Sender<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded::<(Compaction, oneshot::Sender<()>)>();
    let _ = std::thread::Builder::new().name("compactor".into()).spawn(move || {
        while let Ok((job, done)) = rx.recv() {
            let rev = job.revision();
            match job.run() {
                Ok(()) => tracing::info!("finished scheduled compaction at {rev}"),
                Err(e) => tracing::error!("compaction at {rev} failed: {e}"),
            }
            let _ = done.send(());
        }
    });
    tx
}
