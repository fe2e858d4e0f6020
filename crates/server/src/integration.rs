//! An in-process test cluster, as etcd's `integration.NewCluster`: every
//! member is an [`Etcd`] started in the caller's tokio runtime, with its own
//! data dir and loopback ports, so a test can stop and restart members, look
//! inside one (its [`EtcdServer`]) and see a member stop itself (removed, or
//! failed) without any process ending. Members talk over their real peer
//! and client ports, as separate processes would.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::config::Config;
use crate::etcd::{Etcd, StartError};
use crate::server::EtcdServer;

/// Heartbeat and election timeout of test members, in ms: shorter than
/// etcd's defaults so elections after a stop take a fraction of a second,
/// and still far above a loopback round trip.
const HEARTBEAT_MS: u64 = 50;
const ELECTION_MS: u64 = 500;

/// How often a cluster whose ports were taken between choosing and binding
/// them is started again on new ones.
const START_ATTEMPTS: usize = 3;

/// One member's fixed identity: its name, URLs and data dir stay the same
/// across restarts.
struct MemberSpec {
    name: String,
    peer_url: String,
    client_url: String,
    data_dir: PathBuf,
}

/// N members of one cluster, started together.
pub struct Cluster {
    /// Removed (with every data dir) when the cluster is dropped.
    _dir: tempfile::TempDir,
    specs: Vec<MemberSpec>,
    initial_cluster: String,
    /// The running members; `None` while stopped.
    members: Vec<Option<Etcd>>,
}

impl Cluster {
    /// Starts `size` members and waits until all of them serve clients.
    pub async fn start(size: usize) -> Result<Cluster, StartError> {
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Cluster::start_once(size).await {
                Ok(c) => return Ok(c),
                // Another process took a port we had chosen: new ports.
                Err(e @ StartError::Listen { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| StartError::Config("no attempt to start the cluster".into())))
    }

    async fn start_once(size: usize) -> Result<Cluster, StartError> {
        let dir = tempfile::tempdir().map_err(|e| StartError::Config(format!("temp dir: {e}")))?;
        let specs: Vec<MemberSpec> = (0..size)
            .map(|i| MemberSpec {
                name: format!("m{i}"),
                peer_url: format!("http://127.0.0.1:{}", free_port()),
                client_url: format!("http://127.0.0.1:{}", free_port()),
                data_dir: dir.path().join(format!("m{i}.etcd")),
            })
            .collect();
        let initial_cluster = specs.iter().map(|s| format!("{}={}", s.name, s.peer_url)).collect::<Vec<_>>().join(",");
        let configs = specs.iter().map(|s| member_config(s, &initial_cluster)).collect::<Vec<_>>();
        // Together: each member waits for a quorum before it serves.
        let started = futures::future::join_all(configs.into_iter().map(Etcd::start)).await;
        let mut members = Vec::with_capacity(size);
        let mut failure = None;
        for result in started {
            match result {
                Ok(etcd) => members.push(Some(etcd)),
                Err(e) => {
                    failure.get_or_insert(e);
                    members.push(None);
                }
            }
        }
        let cluster = Cluster { _dir: dir, specs, initial_cluster, members };
        match failure {
            None => Ok(cluster),
            Some(e) => {
                cluster.stop_all().await;
                Err(e)
            }
        }
    }

    pub fn size(&self) -> usize {
        self.specs.len()
    }

    /// Member `i`, while it runs.
    pub fn member(&self, i: usize) -> Option<&Etcd> {
        self.members.get(i)?.as_ref()
    }

    /// Member `i`'s server (its stores, raft status, settings), while it runs.
    pub fn server(&self, i: usize) -> Option<&Arc<EtcdServer>> {
        self.member(i).map(|m| &m.server)
    }

    /// Member `i`'s client URL (`http://127.0.0.1:PORT`).
    pub fn client_url(&self, i: usize) -> &str {
        &self.specs[i].client_url
    }

    pub fn data_dir(&self, i: usize) -> &Path {
        &self.specs[i].data_dir
    }

    /// The running member that leads, if the running members agree on one.
    pub fn leader(&self) -> Option<usize> {
        let running = self.members.iter().enumerate().filter_map(|(i, m)| Some((i, m.as_ref()?)));
        let mut leader = None;
        for (i, m) in running {
            if m.server.raft.is_leader() {
                if leader.is_some() {
                    return None;
                }
                leader = Some(i);
            }
        }
        let id = self.server(leader?)?.settings.member_id;
        let agreed = self.members.iter().flatten().all(|m| m.server.raft.leader() == id);
        if agreed {
            leader
        } else {
            None
        }
    }

    /// Waits (at most `timeout`) until the running members agree on a leader.
    pub async fn wait_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader() {
                return Some(i);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops member `i` gracefully (a leader hands leadership over first).
    pub async fn stop(&mut self, i: usize) {
        if let Some(etcd) = self.members.get_mut(i).and_then(Option::take) {
            etcd.stop().await;
        }
    }

    /// Takes member `i` out without stopping it, for a test that waits for
    /// it to stop itself and then calls [`Etcd::stop`].
    pub fn take(&mut self, i: usize) -> Option<Etcd> {
        self.members.get_mut(i)?.take()
    }

    /// Starts a stopped member `i` again on its data dir and ports. It
    /// rejoins from its WAL, so this returns once it serves clients, which
    /// needs a quorum of the cluster running.
    pub async fn restart(&mut self, i: usize) -> Result<(), StartError> {
        self.stop(i).await;
        let cfg = member_config(&self.specs[i], &self.initial_cluster);
        self.members[i] = Some(Etcd::start(cfg).await?);
        Ok(())
    }

    /// Stops every running member.
    pub async fn stop_all(mut self) {
        let running: Vec<Etcd> = self.members.iter_mut().filter_map(Option::take).collect();
        futures::future::join_all(running.into_iter().map(Etcd::stop)).await;
    }
}

impl Drop for Cluster {
    /// A test that failed half-way leaves no member running behind it.
    fn drop(&mut self) {
        for etcd in self.members.iter_mut().filter_map(Option::as_mut) {
            etcd.abandon();
        }
    }
}

/// The flags member `spec` starts with, as a test would pass them to the
/// binary (so the in-process member parses and plans exactly as `retcd` does).
fn member_config(spec: &MemberSpec, initial_cluster: &str) -> Config {
    let data_dir = spec.data_dir.display().to_string();
    let heartbeat = HEARTBEAT_MS.to_string();
    let election = ELECTION_MS.to_string();
    let args = [
        "retcd",
        "--name",
        &spec.name,
        "--data-dir",
        &data_dir,
        "--listen-peer-urls",
        &spec.peer_url,
        "--initial-advertise-peer-urls",
        &spec.peer_url,
        "--listen-client-urls",
        &spec.client_url,
        "--advertise-client-urls",
        &spec.client_url,
        "--initial-cluster",
        initial_cluster,
        "--initial-cluster-token",
        "in-process",
        "--initial-cluster-state",
        "new",
        "--heartbeat-interval",
        &heartbeat,
        "--election-timeout",
        &election,
    ];
    Config::parse_from(args)
}

/// A loopback port free at the time of asking, never one this process
/// handed out before (the OS reuses a closed port, and two members of one
/// cluster must not share one). Another process may take it before the
/// member binds it; [`Cluster::start`] then starts again.
fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0);
        if port != 0 && handed_out.insert(port) {
            return port;
        }
    }
    0
}
