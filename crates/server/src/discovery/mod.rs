//! How a new member learns its initial cluster when `--initial-cluster` is
//! not given: etcd's v2 discovery protocol ([`v2`], `--discovery`), v3
//! discovery ([`v3`], `--discovery-endpoints`) or DNS SRV records ([`srv`],
//! `--discovery-srv`). Each only fills in `--initial-cluster`; the member then
//! starts as a statically configured one would.

pub mod srv;
pub mod v2;
pub mod v3;

use crate::config::Config;

/// The configuration with `--initial-cluster` filled in by the discovery
/// method configured (at most one is: `Config::validate`). Only a member
/// without a WAL discovers; one with a WAL already has its members, as etcd.
/// DNS lookups block, so they run on the blocking pool.
pub async fn resolve_initial_cluster(mut cfg: Config, has_wal: bool) -> Result<Config, String> {
    if let Some(durl) = cfg.discovery.clone().filter(|d| !d.is_empty()) {
        if has_wal {
            tracing::warn!(
                "discovery token ignored since a cluster has already been initialized; valid log found at {}",
                cfg.data_dir().join("member").join("wal").display()
            );
            return Ok(cfg);
        }
        cfg = v2::resolve(&cfg, &durl).await?;
    }
    if has_wal {
        return Ok(cfg);
    }
    let new_cluster = cfg.initial_cluster_state == "new";
    if let Some(settings) = v3::Settings::from_config(&cfg).filter(|_| new_cluster) {
        let mut own = cfg.advertised_peer_urls();
        own.sort();
        let id = crate::ids::member_id(&own, &settings.token);
        let entry = own.iter().map(|u| format!("{}={u}", cfg.name)).collect::<Vec<_>>().join(",");
        let token = settings.token.clone();
        let cluster = v3::join_cluster(settings, id, entry)
            .await
            .map_err(|e| format!("failed to join discovery cluster ({e})"))?;
        cfg.initial_cluster = Some(cluster);
        cfg.initial_cluster_token = token;
        return Ok(cfg);
    }
    if cfg.discovery_srv.is_none() {
        return Ok(cfg);
    }
    tokio::task::spawn_blocking(move || srv::resolve_initial_cluster(&mut cfg).map(|()| cfg))
        .await
        .map_err(|e| format!("SRV discovery: {e}"))?
        .map_err(|e| e.0)
}
