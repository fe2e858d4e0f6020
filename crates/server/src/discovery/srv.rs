//! `--discovery-srv DOMAIN` (and `--discovery-srv-name`): the initial cluster
//! from DNS SRV records, as etcd does it (`embed.Config.GetDNSClusterNames`).
//!
//! `_etcd-server-ssl[-NAME]._tcp.DOMAIN` gives https peers and
//! `_etcd-server[-NAME]._tcp.DOMAIN` http ones; both are asked and the
//! results combined (etcd 3.5's behaviour: 3.4.23 drops the http records,
//! a bug). The record whose target resolves to this member's advertised peer
//! address gets this member's name; the cluster token is
//! `--initial-cluster-token`, unchanged. Lookups happen only for a member
//! that has no WAL yet: a restarted member reads its members from its data
//! dir and needs no DNS. This module only turns records into an
//! `--initial-cluster` value; everything after that is the static path.

use retcd_client::srv::{self, Resolver};

use crate::config::{Config, ConfigError};

/// Fills `cfg.initial_cluster` from the SRV records of `--discovery-srv`
/// (no-op without the flag). Blocking: run it off the async workers.
pub fn resolve_initial_cluster(cfg: &mut Config) -> Result<(), ConfigError> {
    let Some(domain) = cfg.discovery_srv.clone().filter(|d| !d.is_empty()) else { return Ok(()) };
    let resolver = Resolver::system().map_err(|e| ConfigError(e.0))?;
    let advertised: Vec<String> = cfg.advertised_peer_urls();
    let suffix = if cfg.discovery_srv_name.is_empty() { String::new() } else { format!("-{}", cfg.discovery_srv_name) };
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (scheme, service) in [("https", format!("etcd-server-ssl{suffix}")), ("http", format!("etcd-server{suffix}"))] {
        match srv::get_cluster(&resolver, scheme, &service, &cfg.name, &domain, &advertised) {
            Ok(found) => {
                tracing::info!("get cluster for {service} SRV: found {}", found.join(","));
                entries.extend(found);
            }
            Err(e) => {
                tracing::info!("get cluster for {service} SRV: {e}");
                errors.push(e.0);
            }
        }
    }
    if entries.is_empty() {
        let e = errors.join("; ");
        tracing::warn!("failed to resolve during SRV discovery: {e}");
        return Err(ConfigError(e));
    }
    for e in &entries {
        tracing::info!("got bootstrap from DNS for etcd-server at {e}");
    }
    if !entries.iter().any(|e| e.split_once('=').map(|(n, _)| n) == Some(cfg.name.as_str())) {
        return Err(ConfigError(format!("cannot find local etcd member {:?} in SRV records", cfg.name)));
    }
    cfg.initial_cluster = Some(entries.join(","));
    Ok(())
}

/// Whether two peer URL lists name the same endpoints once host names are
/// resolved (etcd's `netutil.URLStringsEqual`): `http://localhost:2380` and
/// `http://127.0.0.1:2380` are equal. Lists of different length, unknown
/// names or unparsable URLs are unequal.
pub fn urls_equal_resolved(a: &[String], b: &[String]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let Ok(resolver) = Resolver::system() else { return false };
    let resolve = |list: &[String]| -> Option<Vec<(String, std::net::SocketAddr)>> {
        let mut out = Vec::new();
        for u in list {
            let (scheme, host, port) = srv::split_url(u)?;
            out.push((scheme, resolver.resolve_tcp_addr(&host, port).ok()?));
        }
        out.sort();
        Some(out)
    };
    match (resolve(a), resolve(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}
