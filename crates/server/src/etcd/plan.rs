//! Start-up, step one: the flags turned into what the member will do, before
//! anything touches the data dir. URLs are parsed once, the TLS settings
//! built, the initial members derived from `--initial-cluster` (after
//! discovery, when a discovery method is set), and auto compaction parsed.
//! Every refusal here is a configuration error.

use std::sync::Arc;

use retcd_api::etcdserverpb::Member;
use retcd_storage::wal::Wal;

use super::bootstrap::DataDir;
use super::StartError;
use crate::config::{parse_listen_urls, Config, ListenUrl};
use crate::ids;
use crate::leader::compactor::AutoCompaction;
use crate::peer_dial::PeerDialer;

pub struct StartPlan {
    /// The configuration, with `--initial-cluster` filled in by discovery.
    pub cfg: Config,
    pub dirs: DataDir,
    pub client_urls: Vec<ListenUrl>,
    pub peer_urls: Vec<ListenUrl>,
    pub metrics_urls: Vec<ListenUrl>,
    /// For the https client (and metrics) URLs; None without any.
    pub client_tls: Option<Arc<rustls::ServerConfig>>,
    /// For the https peer URLs; None without any.
    pub peer_tls: Option<Arc<rustls::ServerConfig>>,
    /// How this member calls the others (peer TLS applies to it too).
    pub peer_dialer: PeerDialer,
    pub auto_compaction: Option<AutoCompaction>,
    /// `--initial-cluster`, ids derived as etcd derives them.
    pub initial_members: Vec<Member>,
    /// This member's id among `initial_members`.
    pub member_id: u64,
}

impl StartPlan {
    pub async fn new(cfg: Config) -> Result<StartPlan, StartError> {
        cfg.validate().map_err(|e| StartError::Config(e.0))?;
        let dirs = DataDir::new(&cfg.data_dir());
        let cfg =
            crate::discovery::resolve_initial_cluster(cfg, Wal::exists(&dirs.wal)).await.map_err(StartError::Config)?;
        let urls = |list: &str, flag: &str| parse_listen_urls(list, flag).map_err(StartError::Config);
        let client_urls = urls(&cfg.listen_client_urls, "listen-client-urls")?;
        let peer_urls = urls(&cfg.listen_peer_urls, "listen-peer-urls")?;
        let client_tls = client_tls_config(&cfg, &client_urls)?;
        let (peer_tls, peer_dialer) = peer_tls_config(&cfg, &peer_urls)?;
        let auto_compaction =
            crate::leader::compactor::parse(&cfg.auto_compaction_mode, &cfg.auto_compaction_retention)
                .map_err(|e| StartError::Config(e.0))?;
        let metrics_urls = match &cfg.listen_metrics_urls {
            Some(list) => urls(list, "listen-metrics-urls")?,
            None => Vec::new(),
        };
        let (initial_members, member_id) = initial_members(&cfg)?;
        warn_about_quota(&cfg);
        Ok(StartPlan {
            cfg,
            dirs,
            client_urls,
            peer_urls,
            metrics_urls,
            client_tls,
            peer_tls,
            peer_dialer,
            auto_compaction,
            initial_members,
            member_id,
        })
    }

    /// The cluster id of a new cluster: derived from its initial members.
    pub fn cluster_id(&self) -> u64 {
        ids::cluster_id(&self.voters())
    }

    /// The ids of the initial members, raft's voters when it bootstraps.
    pub fn voters(&self) -> Vec<u64> {
        self.initial_members.iter().map(|m| m.id).collect()
    }
}

fn warn_about_quota(cfg: &Config) {
    match cfg.quota_bytes() {
        None => tracing::warn!("disabled backend quota"),
        Some(q) if q > crate::config::MAX_RECOMMENDED_QUOTA_BYTES => tracing::warn!(
            "backend quota {q} exceeds maximum recommended quota {}",
            crate::config::MAX_RECOMMENDED_QUOTA_BYTES
        ),
        Some(_) => {}
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
) -> Result<(Option<Arc<rustls::ServerConfig>>, PeerDialer), StartError> {
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
    let dialer = PeerDialer::new(&info, auto).map_err(StartError::Config)?;
    Ok((server, dialer))
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
    let mut advertised = cfg.advertised_peer_urls();
    advertised.sort();
    let Some((_, own_urls)) = by_name.iter().find(|(n, _)| *n == cfg.name) else {
        return Err(StartError::Config(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            cfg.name
        )));
    };
    let mut own = own_urls.clone();
    own.sort();
    if own != advertised && !crate::discovery::srv::urls_equal_resolved(&own, &advertised) {
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
