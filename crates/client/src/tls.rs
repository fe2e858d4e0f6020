//! TLS for client connections, with rustls: trusted CAs, a client
//! certificate for mutual TLS, and insecure-skip-verify; and the connector
//! that dials an endpoint over TCP and, when asked, runs the handshake.
//!
//! The same connector is what the server uses to reach its peers, so one
//! piece of code decides how every outgoing connection is secured.
//!
//! Which endpoints use TLS follows etcd's clientv3: `https://` always (with
//! the configured settings, or the system's CAs), `http://` never, and a
//! bare `host:port` only when TLS settings were given.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::Uri;

/// Where the system keeps its trusted CAs (Debian's bundle), for `https://`
/// endpoints when no CA was given.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// TLS settings of a client, as etcdctl's `--cacert`, `--cert`, `--key` and
/// `--insecure-skip-tls-verify` give them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM bundle of the CAs that may sign server certificates; `None`: the
    /// system's CAs.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (its signature over the handshake is
    /// still checked, so the connection is encrypted, not authenticated).
    pub insecure_skip_verify: bool,
    /// The name the server certificate must carry; `None`: the endpoint's
    /// host (as etcd's client does).
    pub server_name: Option<String>,
}

impl TlsConfig {
    /// Trusts the CAs in `path`.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> TlsConfig {
        self.ca_file = Some(path.into());
        self
    }

    /// Presents the certificate in `cert` with the key in `key`.
    pub fn identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsConfig {
        self.cert_file = Some(cert.into());
        self.key_file = Some(key.into());
        self
    }

    /// Skips server certificate verification.
    pub fn insecure_skip_verify(mut self, on: bool) -> TlsConfig {
        self.insecure_skip_verify = on;
        self
    }

    /// Reads the files and builds the rustls configuration. Errors read as
    /// etcd's client reports them (`open <path>: no such file or directory`,
    /// `KeyFile and CertFile must both be present[...]`).
    pub fn build(&self) -> Result<Arc<ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?;
        let builder = if self.insecure_skip_verify {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(SkipVerify(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            match &self.ca_file {
                Some(ca) => {
                    let certs = certs(ca)?;
                    if certs.is_empty() {
                        return Err(format!("{}: no CA certificate found", ca.display()));
                    }
                    for c in certs {
                        roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
                    }
                }
                None => {
                    // A missing or unreadable system bundle leaves no CA
                    // trusted: every verification then fails, clearly.
                    if let Ok(certs) = certs(Path::new(SYSTEM_CA_BUNDLE)) {
                        roots.add_parsable_certificates(certs);
                    }
                }
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match (&self.cert_file, &self.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = certs(cert)?;
                if chain.is_empty() {
                    return Err(format!("tls: failed to find any PEM data in certificate input ({})", cert.display()));
                }
                let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                    .map_err(|e| format!("tls: failed to find any PEM data in key input ({}): {e}", key.display()))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| format!("{}: {e}", cert.display()))?
            }
            (cert, key) => {
                let show = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
                return Err(format!(
                    "KeyFile and CertFile must both be present[key: {}, cert: {}]",
                    show(key),
                    show(cert)
                ));
            }
        };
        // gRPC runs over HTTP/2 only.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Reads a file, failing as Go's `os.Open` reports it.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        format!("open {}: {why}", path.display())
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Accepts any certificate but still checks the handshake signatures.
#[derive(Debug)]
struct SkipVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A byte stream, plain or encrypted.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Dials `host:port` of the request URI, with TLS when configured. Pass it
/// to [`tonic::transport::Endpoint::connect_with_connector_lazy`].
#[derive(Clone)]
pub struct Connector {
    tls: Option<(TlsConnector, Option<String>)>,
}

impl Connector {
    /// A connector speaking plain TCP.
    pub fn plain() -> Connector {
        Connector { tls: None }
    }

    /// A connector running TLS with `config` over each connection;
    /// `server_name` overrides the name checked in the certificate.
    pub fn tls(config: Arc<ClientConfig>, server_name: Option<String>) -> Connector {
        Connector { tls: Some((TlsConnector::from(config), server_name)) }
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = std::io::Result<TokioIo<Box<dyn Io>>>> + Send>>;

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<Box<dyn Io>>;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{uri}: {what}"));
            // An IPv6 host comes bracketed; the socket and the name check
            // want it bare.
            let host = uri.host().ok_or_else(|| invalid("no host"))?.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
            let tcp = TcpStream::connect((host, port)).await?;
            // Small gRPC frames must not wait for delayed ACKs.
            let _ = tcp.set_nodelay(true);
            let Some((connector, name)) = tls else {
                return Ok(TokioIo::new(Box::new(tcp) as Box<dyn Io>));
            };
            let name = name.as_deref().unwrap_or(host).to_string();
            let server_name = ServerName::try_from(name).map_err(|e| invalid(&e.to_string()))?;
            let stream = connector.connect(server_name, tcp).await?;
            Ok(TokioIo::new(Box::new(stream) as Box<dyn Io>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_reported_as_etcd_does() {
        let err = TlsConfig::default().ca_file("/nonexistent/ca.pem").build().err();
        assert_eq!(err.as_deref(), Some("open /nonexistent/ca.pem: no such file or directory"));
        let cfg = TlsConfig { cert_file: Some("/nonexistent/c.pem".into()), ..TlsConfig::default() };
        assert_eq!(
            cfg.build().err().as_deref(),
            Some("KeyFile and CertFile must both be present[key: , cert: /nonexistent/c.pem]")
        );
    }

    #[test]
    fn skip_verify_needs_no_ca() {
        assert!(TlsConfig::default().insecure_skip_verify(true).build().is_ok());
    }
}
