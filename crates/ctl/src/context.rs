//! What every command needs: the printer chosen by the global flags, clients
//! built from them, the command timeout and stdout/stderr writers.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use retcd_client::srv::{self, Resolver};
use retcd_client::{Client, Config, TlsConfig};

use crate::cli::Global;
use crate::exit::{CtlError, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::printer::{Format, Printer};

/// The parsed global flags and what derives from them.
pub struct Ctx {
    pub global: Global,
    /// The endpoints `--discovery-srv` found, looked up once, on first use.
    discovered: OnceLock<Result<Vec<String>, CtlError>>,
}

impl Ctx {
    pub fn new(global: Global) -> Ctx {
        Ctx { global, discovered: OnceLock::new() }
    }

    /// The endpoints commands talk to: what `--discovery-srv` finds, if it
    /// is given and finds any, else `--endpoints` (etcdctl's order).
    pub fn endpoints(&self) -> Result<Vec<String>, CtlError> {
        if self.global.discovery_srv.is_empty() {
            return Ok(self.global.endpoints.clone());
        }
        self.discovered
            .get_or_init(|| {
                let found = self.discovered_endpoints()?;
                Ok(if found.is_empty() { self.global.endpoints.clone() } else { found })
            })
            .clone()
    }

    /// The printer for `-w` and `--hex` (etcdctl checks the format when it
    /// builds its client, after the command's own argument checks).
    pub fn printer(&self) -> Result<Printer, CtlError> {
        Ok(Printer { format: Format::parse(&self.global.write_out)?, hex: self.global.hex, value_only: false })
    }

    /// A client for the `--endpoints`, bounded by `--command-timeout`.
    pub fn client(&self) -> Result<Client, CtlError> {
        self.client_for(self.global.endpoints.clone(), true)
    }

    /// A client for `endpoints`; `timed`: calls end at the command timeout
    /// (etcdctl runs some lease commands without one).
    pub fn client_for(&self, endpoints: Vec<String>, timed: bool) -> Result<Client, CtlError> {
        self.client_with(endpoints, timed, false)
    }

    /// [`Ctx::client_for`]; `require_leader`: watches end on members that
    /// lose their leader (etcdctl's watch asks for that).
    pub fn client_with(&self, endpoints: Vec<String>, timed: bool, require_leader: bool) -> Result<Client, CtlError> {
        let g = &self.global;
        if g.debug && !DEBUG_PRINTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            err(debug_flags(g));
        }
        self.printer()?;
        let tls = self.tls()?;
        // Commands pass `--endpoints` unless they chose endpoints themselves
        // (`--cluster`); only the former is replaced by DNS discovery.
        let endpoints = if endpoints == g.endpoints { self.endpoints()? } else { endpoints };
        let mut cfg = Config::new(endpoints)
            .dial_timeout(g.dial_timeout)
            .keepalive(g.keepalive_time, g.keepalive_timeout)
            .require_leader(require_leader);
        if timed {
            cfg = cfg.request_timeout(g.command_timeout);
        }
        if let Some(tls) = tls {
            cfg = cfg.tls(tls);
        }
        if let Some((user, password)) = self.credentials()? {
            cfg = cfg.credentials(user, password);
        }
        Client::new(cfg).map_err(|e| CtlError::new(EXIT_BAD_ARGS, e.to_string()))
    }

    /// The TLS settings of `--cacert`, `--cert`, `--key`,
    /// `--insecure-transport` and `--insecure-skip-tls-verify`.
    fn tls(&self) -> Result<Option<TlsConfig>, CtlError> {
        let g = &self.global;
        tls_config(&g.cert, &g.key, &g.cacert, g.insecure_transport, g.insecure_skip_tls_verify)
    }

    /// The client URLs of `--discovery-srv` (`_etcd-client-ssl._tcp` and
    /// `_etcd-client._tcp`, with `--discovery-srv-name`'s suffix); http ones
    /// are dropped, with etcdctl's notice, unless `--insecure-discovery`.
    fn discovered_endpoints(&self) -> Result<Vec<String>, CtlError> {
        let g = &self.global;
        let resolver = Resolver::system().map_err(|e| CtlError::new(EXIT_ERROR, e.0))?;
        let found = srv::get_client(&resolver, "etcd-client", &g.discovery_srv, &g.discovery_srv_name)
            .map_err(|e| CtlError::new(EXIT_ERROR, e.0))?;
        if g.insecure_discovery {
            return Ok(found);
        }
        Ok(found
            .into_iter()
            .filter(|ep| {
                let insecure = ep.starts_with("http://");
                if insecure {
                    err(format!("ignoring discovered insecure endpoint {ep:?}\n"));
                }
                !insecure
            })
            .collect())
    }

    /// `--user name[:password]` and `--password`; prompts (reading one line
    /// of stdin) when no password is given.
    fn credentials(&self) -> Result<Option<(String, String)>, CtlError> {
        let g = &self.global;
        if g.user.is_empty() {
            return Ok(None);
        }
        if !g.password.is_empty() {
            return Ok(Some((g.user.clone(), g.password.clone())));
        }
        if let Some((u, p)) = g.user.split_once(':') {
            return Ok(Some((u.to_string(), p.to_string())));
        }
        eprint!("Password: ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| CtlError::new(EXIT_ERROR, e.to_string()))?;
        Ok(Some((g.user.clone(), line.trim_end_matches(['\n', '\r']).to_string())))
    }

    /// Runs `fut` under `--command-timeout`.
    pub async fn timed<T>(&self, fut: impl Future<Output = Result<T, CtlError>>) -> Result<T, CtlError> {
        tokio::time::timeout(self.global.command_timeout, fut)
            .await
            .unwrap_or_else(|_| Err(CtlError::new(EXIT_ERROR, "context deadline exceeded")))
    }
}

/// TLS settings as etcdctl derives them from its flags: any file flag
/// turns TLS on; `insecure_transport == false` alone turns it on with the
/// system's CAs; skipping verification only applies when TLS is on.
/// (`https://` endpoints use TLS regardless.)
pub fn tls_config(
    cert: &Option<String>,
    key: &Option<String>,
    cacert: &Option<String>,
    insecure_transport: bool,
    insecure_skip_verify: bool,
) -> Result<Option<TlsConfig>, CtlError> {
    let file = |value: &Option<String>, flag: &str| match value.as_deref() {
        Some("") => Err(CtlError::bad_args(format!("empty string is passed to --{flag} option"))),
        other => Ok(other.map(PathBuf::from)),
    };
    let (cert_file, key_file, ca_file) = (file(cert, "cert")?, file(key, "key")?, file(cacert, "cacert")?);
    let any_file = cert_file.is_some() || key_file.is_some() || ca_file.is_some();
    if !any_file && insecure_transport {
        return Ok(None);
    }
    let tls = TlsConfig { cert_file, key_file, ca_file, insecure_skip_verify, server_name: None };
    // etcdctl reads the files before it dials: report them here, as it
    // does, with its exit code for bad arguments.
    tls.build().map_err(CtlError::bad_args)?;
    Ok(Some(tls))
}

/// `--debug` prints the global flags once, before the first client.
static DEBUG_PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What `--debug` prints first: every global flag as the `ETCDCTL_*`
/// variable that would set it, in flag-name order, with pflag's rendering
/// of its value (as etcdctl 3.4 does, password included).
pub fn debug_flags(g: &Global) -> String {
    use crate::printer::gofmt::duration;
    let flags: [(&str, String); 18] = [
        ("CACERT", g.cacert.clone().unwrap_or_default()),
        ("CERT", g.cert.clone().unwrap_or_default()),
        ("COMMAND_TIMEOUT", duration(g.command_timeout)),
        ("DEBUG", g.debug.to_string()),
        ("DIAL_TIMEOUT", duration(g.dial_timeout)),
        ("DISCOVERY_SRV", g.discovery_srv.clone()),
        ("DISCOVERY_SRV_NAME", g.discovery_srv_name.clone()),
        ("ENDPOINTS", format!("[{}]", g.endpoints.join(","))),
        ("HEX", g.hex.to_string()),
        ("INSECURE_DISCOVERY", g.insecure_discovery.to_string()),
        ("INSECURE_SKIP_TLS_VERIFY", g.insecure_skip_tls_verify.to_string()),
        ("INSECURE_TRANSPORT", g.insecure_transport.to_string()),
        ("KEEPALIVE_TIME", duration(g.keepalive_time)),
        ("KEEPALIVE_TIMEOUT", duration(g.keepalive_timeout)),
        ("KEY", g.key.clone().unwrap_or_default()),
        ("PASSWORD", g.password.clone()),
        ("USER", g.user.clone()),
        ("WRITE_OUT", g.write_out.clone()),
    ];
    flags.iter().map(|(name, value)| format!("ETCDCTL_{name}={value}\n")).collect()
}

/// Writes to stdout and flushes (output must reach pipes per event).
pub fn out(bytes: impl AsRef<[u8]>) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(bytes.as_ref());
    let _ = o.flush();
}

/// Writes to stderr.
pub fn err(text: impl AsRef<str>) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(text.as_ref().as_bytes());
    let _ = e.flush();
}
