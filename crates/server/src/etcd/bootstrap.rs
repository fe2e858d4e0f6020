//! Start-up, step two: the data dir opened and checked, and every store
//! restored at the index the backend applied. A new member records its
//! initial members (or, joining a running cluster, the members that cluster
//! reports) before its WAL exists; an existing one has its WAL and snapshots
//! read and checked before the backend is opened for writing, so a data dir
//! refused for a damaged log is left exactly as it was.
//!
//! Start-up refuses a data dir it does not understand (an etcd bbolt data
//! dir, a newer format, a backend that does not match the log) with an error
//! naming the file, and never writes to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use retcd_api::etcdserverpb::Member;
use retcd_api::retcdpb::WalMetadata;
use retcd_storage::backend::Backend;
use retcd_storage::mvcc::KvStore;
use retcd_storage::wal::Wal;

use super::plan::StartPlan;
use super::StartError;
use crate::alarm::AlarmStore;
use crate::auth::{AuthStore, Tokens};
use crate::config::Config;
use crate::lease::Lessor;
use crate::membership::Membership;
use crate::peer_dial::PeerDialer;
use crate::raft::{self, boot::Boot};
use crate::v2store::V2Store;

/// The stores and raft state of a member, restored, before any thread runs.
pub struct Restored {
    pub raft: Boot,
    pub backend: Arc<Backend>,
    pub kv: Arc<KvStore>,
    pub lessor: Arc<Lessor>,
    pub membership: Arc<Membership>,
    pub alarms: Arc<AlarmStore>,
    pub auth: Arc<AuthStore>,
    pub v2: Arc<V2Store>,
    pub member_id: u64,
    pub cluster_id: u64,
    /// Where raft and the apply thread start: the backend's consistent index,
    /// or the snapshot's when the backend was just replaced by it.
    pub applied_index: u64,
}

/// Opens (creating for a new member) the data dir of `plan` and restores
/// every store from it.
pub async fn restore(plan: &StartPlan) -> Result<Restored, StartError> {
    let cfg = &plan.cfg;
    let dirs = &plan.dirs;
    dirs.check_not_etcd()?;
    dirs.create_dirs()?;
    let voters = plan.voters();
    let existing = Wal::exists(&dirs.wal);
    let joining = !existing && cfg.initial_cluster_state == "existing";
    let (initial_members, member_id, cluster_id) = if joining {
        join_cluster(cfg, &plan.initial_members, &plan.peer_dialer).await?
    } else {
        (plan.initial_members.clone(), plan.member_id, plan.cluster_id())
    };
    let metadata = WalMetadata { format: String::new(), member_id, cluster_id, joined: joining };
    let mut boot = None;
    if existing {
        boot = Some(raft::boot::boot(&dirs.wal, &dirs.snap, metadata.clone(), &voters)?);
    }
    let backend = Backend::open(&dirs.backend)?;
    let kv = Arc::new(KvStore::open(backend.clone())?);
    let lessor = Arc::new(Lessor::new(min_lease_ttl(cfg)));
    install_received_snapshot(dirs, &backend, &kv)?;
    lessor.reload(&backend, &kv)?;
    let membership = Arc::new(Membership::load(&backend)?);
    let alarms = Arc::new(AlarmStore::load(&backend)?);
    backend.set_commit_observer(Box::new(|d| crate::metrics::get().backend_commit.observe(d.as_secs_f64())));
    let tokens =
        Tokens::from_flag(&cfg.auth_token, Duration::from_secs(cfg.auth_token_ttl)).map_err(StartError::Config)?;
    let auth = Arc::new(AuthStore::new(tokens, cfg.bcrypt_cost));
    auth.reload(&backend)?;
    let v2 = Arc::new(V2Store::default());
    v2.reload(&backend)?;
    let mut boot = match boot {
        Some(boot) => boot,
        None => {
            membership.bootstrap(&mut backend.batch_tx(), initial_members);
            backend.commit()?;
            raft::boot::boot(&dirs.wal, &dirs.snap, metadata, &voters)?
        }
    };
    let (member_id, cluster_id) = (boot.metadata.member_id, boot.metadata.cluster_id);
    let applied_index = reconcile_with_log(dirs, &backend, &mut boot)?;
    tracing::info!(
        "starting member {member_id:x} in cluster {cluster_id:x} (data dir {}, applied index {applied_index})",
        dirs.root.display()
    );
    Ok(Restored { raft: boot, backend, kv, lessor, membership, alarms, auth, v2, member_id, cluster_id, applied_index })
}

/// etcd's minimum lease TTL: 1.5 election timeouts, counted in whole ticks,
/// rounded up to a second.
fn min_lease_ttl(cfg: &Config) -> i64 {
    let ticks = cfg.election_ticks() as u64;
    let min_ttl_ms = (3 * ticks / 2) * cfg.heartbeat_interval;
    min_ttl_ms.div_ceil(1000) as i64
}

/// Checks that the backend and the raft log describe the same member, and
/// returns the applied index raft restarts from. Raft's commit index and
/// configuration are taken from the backend where it is ahead of the log.
fn reconcile_with_log(dirs: &DataDir, backend: &Backend, boot: &mut Boot) -> Result<u64, StartError> {
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
                let cs = <::raft::eraftpb::ConfState as prost011::Message>::decode(bytes.as_slice()).map_err(|e| {
                    StartError::DataDir { path: dirs.backend.clone(), reason: format!("corrupt conf state: {e}") }
                })?;
                core.set_conf_state(cs);
            }
        }
    }
    Ok(consistent_index.max(boot.snapshot_index))
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
    pub(super) fn check_not_etcd(&self) -> Result<(), StartError> {
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

    pub(super) fn create_dirs(&self) -> Result<(), StartError> {
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

/// Asks the running cluster (through the other listed members' peer URLs)
/// for its id and members, and finds this member among them by its
/// advertised peer URLs (it must have been added with `member add`).
async fn join_cluster(
    cfg: &Config,
    listed: &[Member],
    dialer: &PeerDialer,
) -> Result<(Vec<Member>, u64, u64), StartError> {
    let mut own = cfg.advertised_peer_urls();
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

/// Finishes installing a snapshot received from the leader: raft recorded
/// it (its `.snap` file is the newest) but the backend was not replaced yet.
/// Data files raft never accepted, or already installed, are removed.
fn install_received_snapshot(dirs: &DataDir, backend: &Backend, kv: &KvStore) -> Result<(), StartError> {
    let (applied, _) = backend.consistent_index();
    let newest = retcd_storage::snap::Snapshotter::new(&dirs.snap)?.load_newest()?;
    let (newest_index, term) = newest.map(|s| (s.get_metadata().index, s.get_metadata().term)).unwrap_or((0, 0));
    if let Some((index, path)) = crate::snapshot::pending_file(&dirs.snap, applied) {
        if index == newest_index {
            tracing::info!("installing the snapshot received before the last stop ({})", path.display());
            crate::snapshot::install(backend, kv, &crate::snapshot::ReceivedSnapshot { index, term, path })?;
        }
    }
    // Whatever is left was installed or never accepted by raft.
    crate::snapshot::remove_installed(&dirs.snap, u64::MAX);
    Ok(())
}
