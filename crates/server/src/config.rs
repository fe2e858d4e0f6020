//! The server's configuration: etcd's flag names, defaults and `ETCD_*`
//! environment variables (a flag on the command line wins over its variable).
//!
//! Only flags whose behaviour retcd implements are accepted; an unknown flag is
//! an error rather than silently ignored.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// etcd's default for `--max-request-bytes` (1.5 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: u32 = 1536 * 1024;

/// etcd's default backend quota (2 GiB).
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Above this quota etcd warns that the backend may perform poorly.
pub const MAX_RECOMMENDED_QUOTA_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// etcd's text when more than one way to bootstrap is given.
/// (etcd 3.6's wording, which names v3 discovery's flag as well).
pub const ERR_CONFLICT_BOOTSTRAP_FLAGS: &str = "multiple discovery or bootstrap flags are set. Choose one of \
     \"initial-cluster\", \"discovery\", \"discovery-endpoints\" or \"discovery-srv\"";

#[derive(Debug, Clone, Parser)]
#[command(name = "retcd", version, about = "retcd: a distributed, reliable key-value store compatible with etcd v3")]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,

    /// Path to the data directory (default: "<name>.etcd").
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// List of URLs to listen on for client traffic.
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub listen_client_urls: String,

    /// List of this member's client URLs to advertise to the public.
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,

    /// List of URLs to listen on for peer traffic.
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS", default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,

    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS", default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration for bootstrapping (default: "<name>=<initial-advertise-peer-urls>").
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Initial cluster token for the etcd cluster during bootstrap.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,

    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,

    /// Reject reconfiguration requests that would cause quorum loss.
    #[arg(long, env = "ETCD_STRICT_RECONFIG_CHECK", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub strict_reconfig_check: bool,

    /// Discovery URL used to bootstrap the cluster (etcd's v2 discovery protocol).
    #[arg(long, env = "ETCD_DISCOVERY")]
    pub discovery: Option<String>,

    /// Expected behavior ('exit' or 'proxy') when discovery services fails.
    /// "proxy" supports v2 API only.
    #[arg(long, env = "ETCD_DISCOVERY_FALLBACK", default_value = "proxy")]
    pub discovery_fallback: String,

    /// HTTP proxy to use for traffic to discovery service.
    #[arg(long, env = "ETCD_DISCOVERY_PROXY")]
    pub discovery_proxy: Option<String>,

    /// Accept etcd V2 client requests (the v2 keys API under /v2/keys).
    #[arg(long, env = "ETCD_ENABLE_V2", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub enable_v2: bool,

    /// DNS domain used to bootstrap the initial cluster (SRV records).
    #[arg(long, env = "ETCD_DISCOVERY_SRV")]
    pub discovery_srv: Option<String>,

    /// Service name to query when using DNS discovery (suffix "-NAME" of the SRV service).
    #[arg(long, env = "ETCD_DISCOVERY_SRV_NAME", default_value = "")]
    pub discovery_srv_name: String,

    /// V3 discovery: list of gRPC endpoints of the discovery service.
    #[arg(long, env = "ETCD_DISCOVERY_ENDPOINTS", default_value = "")]
    pub discovery_endpoints: String,

    /// V3 discovery: discovery token for the etcd cluster to be bootstrapped.
    #[arg(long, env = "ETCD_DISCOVERY_TOKEN", default_value = "")]
    pub discovery_token: String,

    /// V3 discovery: dial timeout for client connections.
    #[arg(long, env = "ETCD_DISCOVERY_DIAL_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub discovery_dial_timeout: Duration,

    /// V3 discovery: timeout for discovery requests (excluding dial timeout).
    #[arg(long, env = "ETCD_DISCOVERY_REQUEST_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub discovery_request_timeout: Duration,

    /// V3 discovery: keepalive time for client connections.
    #[arg(long, env = "ETCD_DISCOVERY_KEEPALIVE_TIME", default_value = "2s", value_parser = parse_duration)]
    pub discovery_keepalive_time: Duration,

    /// V3 discovery: keepalive timeout for client connections.
    #[arg(long, env = "ETCD_DISCOVERY_KEEPALIVE_TIMEOUT", default_value = "6s", value_parser = parse_duration)]
    pub discovery_keepalive_timeout: Duration,

    /// V3 discovery: disable transport security for client connections (only true is supported).
    #[arg(long, env = "ETCD_DISCOVERY_INSECURE_TRANSPORT", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub discovery_insecure_transport: bool,

    /// V3 discovery: username[:password] for authentication (prompt if password is not supplied).
    #[arg(long, env = "ETCD_DISCOVERY_USER", default_value = "")]
    pub discovery_user: String,

    /// V3 discovery: password for authentication (if this option is used, --user option shouldn't include password).
    #[arg(long, env = "ETCD_DISCOVERY_PASSWORD", default_value = "")]
    pub discovery_password: String,

    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,

    /// Maximum number of snapshot files to retain (0 is unlimited).
    #[arg(long, env = "ETCD_MAX_SNAPSHOTS", default_value_t = 5)]
    pub max_snapshots: usize,

    /// Maximum number of wal files to retain (0 is unlimited).
    #[arg(long, env = "ETCD_MAX_WALS", default_value_t = 5)]
    pub max_wals: usize,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,

    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,

    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: u32,

    /// Interpret 'auto-compaction-retention' one of: periodic|revision.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,

    /// Auto compaction retention for mvcc key value store. 0 means disable
    /// auto compaction.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,

    /// Path to the client server TLS cert file.
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,

    /// Path to the client server TLS key file.
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,

    /// Enable client cert authentication.
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub client_cert_auth: bool,

    /// Path to the client certificate revocation list file.
    #[arg(long, env = "ETCD_CLIENT_CRL_FILE")]
    pub client_crl_file: Option<PathBuf>,

    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,

    /// Client TLS using generated certificates.
    #[arg(long, env = "ETCD_AUTO_TLS", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub auto_tls: bool,

    /// Path to the peer server TLS cert file.
    #[arg(long, env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,

    /// Path to the peer server TLS key file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,

    /// Enable peer client cert authentication.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub peer_client_cert_auth: bool,

    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,

    /// Peer TLS using generated certificates
    #[arg(long, env = "ETCD_PEER_AUTO_TLS", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub peer_auto_tls: bool,

    /// Path to the peer certificate revocation list file.
    #[arg(long, env = "ETCD_PEER_CRL_FILE")]
    pub peer_crl_file: Option<PathBuf>,

    /// Allowed CN for inter peer authentication.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_CN", default_value = "")]
    pub peer_cert_allowed_cn: String,

    /// Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go).
    #[arg(long, env = "ETCD_CIPHER_SUITES", default_value = "")]
    pub cipher_suites: String,

    /// Minimum TLS version supported by etcd (TLS1.2 or TLS1.3).
    #[arg(long, env = "ETCD_TLS_MIN_VERSION")]
    pub tls_min_version: Option<String>,

    /// Enable to check data corruption before serving any client/peer traffic.
    #[arg(long, env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub experimental_initial_corrupt_check: bool,

    /// Duration of time between cluster corruption check passes (0 disables).
    #[arg(long, env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", default_value = "0s", value_parser = parse_duration)]
    pub experimental_corrupt_check_time: Duration,

    /// List of additional URLs to listen on that will respond to both the
    /// /metrics and /health endpoints.
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS")]
    pub listen_metrics_urls: Option<String>,

    /// Maximum concurrent streams that each client can open at a time.
    #[arg(long, env = "ETCD_MAX_CONCURRENT_STREAMS", default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,

    /// Raise alarms when backend size exceeds the given quota (0 defaults to
    /// low space quota; a negative value disables the quota).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0, allow_negative_numbers = true)]
    pub quota_backend_bytes: i64,

    /// Duration of periodic watch progress notifications (e.g. "10m", "500ms", "2s").
    #[arg(long, env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub experimental_watch_progress_notify_interval: Duration,

    /// Specify auth token specific options: 'simple', or
    /// 'jwt,pub-key=<path>,priv-key=<path>,sign-method=<alg>,ttl=<duration>'.
    #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,

    /// The lifetime in seconds of the auth token.
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,

    /// Specify bcrypt algorithm cost factor for auth password hashing.
    #[arg(long, env = "ETCD_BCRYPT_COST", default_value_t = crate::auth::DEFAULT_BCRYPT_COST)]
    pub bcrypt_cost: u32,

    /// Configures log level. Only supports debug, info, warn, error, panic, or fatal.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Specify 'zap' for structured (JSON) logging or 'capnslog' for text.
    #[arg(long, env = "ETCD_LOGGER", default_value = "capnslog")]
    pub logger: String,

    /// Comma-separated log targets: 'stderr', 'stdout', 'default' (stderr) or file paths.
    #[arg(long, env = "ETCD_LOG_OUTPUTS", default_value = "default")]
    pub log_outputs: String,
}

/// A configuration error, reported before anything is started.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Parses the process arguments. Go's flag package, which etcd uses, also
    /// accepts long flags with a single dash (`-name x`); scripts written for
    /// etcd use that form, so it is rewritten to `--name x` first.
    pub fn from_args() -> Config {
        Config::parse_from(normalize_single_dash(std::env::args()))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)))
    }

    /// The backend quota in effect: etcd's 2 GiB default for 0, none when
    /// negative.
    pub fn quota_bytes(&self) -> Option<u64> {
        match self.quota_backend_bytes {
            0 => Some(DEFAULT_QUOTA_BYTES),
            n if n < 0 => None,
            n => Some(n as u64),
        }
    }

    /// The client side's TLS settings.
    pub fn client_tls(&self) -> crate::tls::TlsInfo {
        crate::tls::TlsInfo {
            allowed_cn: None,
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            trusted_ca_file: self.trusted_ca_file.clone(),
            client_cert_auth: self.client_cert_auth,
            crl_file: self.client_crl_file.clone(),
            auto_tls: self.auto_tls,
            cipher_suites: self
                .cipher_suites
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            min_version: self.tls_min_version.clone(),
        }
    }

    /// The peer side's TLS settings (the cipher suites and minimum version
    /// are shared with the client side, as in etcd).
    pub fn peer_tls(&self) -> crate::tls::TlsInfo {
        let client = self.client_tls();
        crate::tls::TlsInfo {
            cert_file: self.peer_cert_file.clone(),
            key_file: self.peer_key_file.clone(),
            trusted_ca_file: self.peer_trusted_ca_file.clone(),
            client_cert_auth: self.peer_client_cert_auth,
            crl_file: self.peer_crl_file.clone(),
            auto_tls: self.peer_auto_tls,
            allowed_cn: Some(self.peer_cert_allowed_cn.clone()).filter(|cn| !cn.is_empty()),
            ..client
        }
    }

    /// `--discovery-endpoints` as a list (empty when unset).
    pub fn discovery_endpoint_list(&self) -> Vec<String> {
        if self.discovery_endpoints.is_empty() {
            return Vec::new();
        }
        self.discovery_endpoints.split(',').map(|e| e.trim().to_string()).collect()
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval)
    }

    /// Election timeout in heartbeat ticks, as raft counts it.
    pub fn election_ticks(&self) -> usize {
        (self.election_timeout / self.heartbeat_interval.max(1)) as usize
    }

    /// The initial cluster as (name, peer URL) pairs.
    pub fn initial_cluster(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let spec = match &self.initial_cluster {
            Some(s) => s.clone(),
            None => self
                .initial_advertise_peer_urls
                .split(',')
                .map(|u| format!("{}={}", self.name, u.trim()))
                .collect::<Vec<_>>()
                .join(","),
        };
        let mut out = Vec::new();
        for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, url) = part
                .split_once('=')
                .ok_or_else(|| ConfigError(format!("--initial-cluster: {part:?} is not of the form name=url")))?;
            out.push((name.trim().to_string(), url.trim().to_string()));
        }
        Ok(out)
    }

    /// Checks values etcd also checks, with etcd's wording where it has one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_interval == 0 {
            return Err(ConfigError("--heartbeat-interval must be > 0".into()));
        }
        if 5 * self.heartbeat_interval > self.election_timeout {
            return Err(ConfigError(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout, self.heartbeat_interval
            )));
        }
        if self.election_timeout > 50_000 {
            return Err(ConfigError(format!(
                "--election-timeout[{}ms] is too long, and should be set less than 50000ms",
                self.election_timeout
            )));
        }
        if self.initial_cluster_state != "new" && self.initial_cluster_state != "existing" {
            return Err(ConfigError(format!(
                "invalid value {:?} for flag -initial-cluster-state: valid values are \"new\" or \"existing\"",
                self.initial_cluster_state
            )));
        }
        if self.discovery_fallback != "exit" && self.discovery_fallback != "proxy" {
            return Err(ConfigError(format!(
                "invalid value {:?} for flag -discovery-fallback: valid values are \"exit\" or \"proxy\"",
                self.discovery_fallback
            )));
        }
        let bootstrap_flags = [
            self.initial_cluster.as_deref().is_some_and(|s| !s.is_empty()),
            self.discovery.as_deref().is_some_and(|s| !s.is_empty()),
            self.discovery_srv.as_deref().is_some_and(|s| !s.is_empty()),
            !self.discovery_endpoints.is_empty(),
        ];
        if bootstrap_flags.iter().filter(|set| **set).count() > 1 {
            return Err(ConfigError(ERR_CONFLICT_BOOTSTRAP_FLAGS.into()));
        }
        if self.discovery_token.is_empty() != self.discovery_endpoints.is_empty() {
            return Err(ConfigError("both --discovery-token and --discovery-endpoints must be set".into()));
        }
        if !self.discovery_endpoints.is_empty() && self.discovery_endpoints.split(',').any(|e| e.trim().is_empty()) {
            return Err(ConfigError("--discovery-endpoints must not contain empty endpoints".into()));
        }
        if !self.discovery_insecure_transport {
            return Err(ConfigError(
                "--discovery-insecure-transport=false: TLS to the discovery service is not supported yet".into(),
            ));
        }
        if self.max_txn_ops == 0 {
            return Err(ConfigError("--max-txn-ops must be > 0".into()));
        }
        match self.logger.as_str() {
            "zap" | "capnslog" => {}
            other => return Err(ConfigError(format!("unknown logger option {other:?}"))),
        }
        match self.auth_token.split(',').next().unwrap_or("") {
            "simple" | "jwt" => {}
            _ => return Err(ConfigError("auth: invalid auth options".into())),
        }
        self.initial_cluster()?;
        Ok(())
    }

    /// `--initial-advertise-peer-urls`, in the order given.
    pub fn advertised_peer_urls(&self) -> Vec<String> {
        split_list(&self.initial_advertise_peer_urls)
    }
}

/// A URL to listen on: its address and whether it is `https`.
#[derive(Debug, Clone, Copy)]
pub struct ListenUrl {
    pub addr: std::net::SocketAddr,
    pub tls: bool,
}

/// Parses a `--listen-*-urls` list (`flag` names it in errors). Hosts are IP
/// addresses, or `localhost`, which etcd binds to the IPv4 loopback.
pub fn parse_listen_urls(list: &str, flag: &str) -> Result<Vec<ListenUrl>, String> {
    let mut out = Vec::new();
    for url in split_list(list) {
        let bad = |reason: &str| format!("--{flag}: {url:?}: {reason}");
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
        let ip = if host == "localhost" {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            host.parse().map_err(|_| bad("host must be an IP address or localhost"))?
        };
        out.push(ListenUrl { addr: std::net::SocketAddr::new(ip, port), tls });
    }
    Ok(out)
}

/// The non-empty, trimmed items of a comma-separated flag value.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect()
}

/// A duration flag, in Go's syntax (see [`retcd_api::duration`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    retcd_api::duration::parse_go_duration(s)
}

/// Rewrites `-long-flag` to `--long-flag` (Go flag syntax) for every argument
/// that starts with one dash followed by more than one character.
fn normalize_single_dash(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let bytes = a.as_bytes();
            if i > 0 && bytes.len() > 2 && bytes[0] == b'-' && bytes[1] != b'-' && bytes[1].is_ascii_alphabetic() {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut v = vec!["retcd".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        Config::parse_from(normalize_single_dash(v))
    }

    #[test]
    fn defaults_match_etcd() {
        let c = parse(&[]);
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir(), PathBuf::from("default.etcd"));
        assert_eq!(c.listen_client_urls, "http://localhost:2379");
        assert_eq!(c.snapshot_count, 100_000);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.election_ticks(), 10);
        assert_eq!(c.initial_cluster().unwrap(), vec![("default".into(), "http://localhost:2380".into())]);
        c.validate().unwrap();
    }

    #[test]
    fn single_dash_and_data_dir_follow_name() {
        let c = parse(&["-name", "infra1", "--snapshot-count=5"]);
        assert_eq!(c.name, "infra1");
        assert_eq!(c.data_dir(), PathBuf::from("infra1.etcd"));
        assert_eq!(c.snapshot_count, 5);
    }

    #[test]
    fn discovery_flags() {
        let c = parse(&["--discovery", "http://127.0.0.1:2379/v2/keys/discovery/t", "--enable-v2"]);
        assert_eq!(c.discovery_fallback, "proxy");
        assert!(c.enable_v2);
        c.validate().unwrap();
        let both = parse(&["--discovery", "http://x/t", "--initial-cluster", "default=http://localhost:2380"]);
        assert!(both.validate().unwrap_err().0.contains("multiple discovery or bootstrap flags"));
        let bad = parse(&["--discovery-fallback", "retry"]);
        assert!(bad.validate().unwrap_err().0.contains("valid values are \"exit\" or \"proxy\""));
    }

    #[test]
    fn election_must_be_five_heartbeats() {
        let c = parse(&["--heartbeat-interval", "300", "--election-timeout", "1000"]);
        let e = c.validate().unwrap_err().0;
        assert!(e.contains("should be at least as 5 times"), "{e}");
    }
}
