//! TLS on the client and peer listeners (`https://` URLs), with rustls:
//! `--cert-file`/`--key-file`, `--trusted-ca-file` with `--client-cert-auth`
//! (mutual TLS), `--client-crl-file`, `--auto-tls` (a self-signed
//! certificate made at start), `--cipher-suites` and `--tls-min-version`.
//!
//! Handshakes run in their own tasks, so a client that stalls its handshake
//! never holds up the accept loop; finished connections are handed to the
//! HTTP server through [`TlsListener`], with the common name of the
//! client certificate they were verified with (certificate-based auth and
//! `--peer-cert-allowed-cn` read it with [`common_name`]). The same
//! settings with the `--peer-*` flags secure the peer listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme, SupportedCipherSuite,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::listener::TlsRemote;

/// A handshake that takes longer is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS settings of one side (client or peer), as given by the flags.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub crl_file: Option<PathBuf>,
    pub auto_tls: bool,
    pub cipher_suites: Vec<String>,
    pub min_version: Option<String>,
    /// Only client certificates with this common name are accepted
    /// (`--peer-cert-allowed-cn`).
    pub allowed_cn: Option<String>,
}

impl TlsInfo {
    pub fn has_cert(&self) -> bool {
        (self.cert_file.is_some() && self.key_file.is_some()) || self.auto_tls
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

/// etcd's (Go's) names of the suites rustls implements.
fn cipher_suite(name: &str) -> Option<SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    Some(match name {
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_AES_128_GCM_SHA256" => cs::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => cs::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => cs::TLS13_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

/// A self-signed certificate for `hosts`, written (as etcd does) to
/// `dir/cert.pem` and `dir/key.pem`; reused if already there.
pub(crate) fn auto_cert(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), String> {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cert =
        rcgen::generate_simple_self_signed(hosts.to_vec()).map_err(|e| format!("generating a certificate: {e}"))?;
    std::fs::write(&cert_path, cert.cert.pem()).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).map_err(|e| format!("{}: {e}", key_path.display()))?;
    Ok((cert_path, key_path))
}

/// Builds the server configuration; `auto_dir` is where `--auto-tls` keeps
/// its certificate, `hosts` the names it is for.
pub fn server_config(info: &TlsInfo, auto_dir: &Path, hosts: &[String]) -> Result<Arc<ServerConfig>, String> {
    let (cert_file, key_file) = match (&info.cert_file, &info.key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ if info.auto_tls => auto_cert(auto_dir, hosts)?,
        _ => return Err("TLS key/cert (--cert-file, --key-file) must be provided".into()),
    };
    let provider = {
        let mut p = rustls::crypto::ring::default_provider();
        if !info.cipher_suites.is_empty() {
            let mut suites = Vec::new();
            for name in &info.cipher_suites {
                suites.push(cipher_suite(name).ok_or_else(|| format!("unexpected TLS cipher suite {name:?}"))?);
            }
            p.cipher_suites = suites;
        }
        Arc::new(p)
    };
    let versions: &[&rustls::SupportedProtocolVersion] = match info.min_version.as_deref() {
        None | Some("") | Some("TLS1.2") => rustls::ALL_VERSIONS,
        Some("TLS1.3") => &[&rustls::version::TLS13],
        Some(v @ ("TLS1.0" | "TLS1.1")) => return Err(format!("TLS version {v} is not supported (minimum TLS1.2)")),
        Some(v) => return Err(format!("unknown TLS version {v:?}")),
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS configuration: {e}"))?;
    let builder = if info.client_cert_auth {
        let ca = info.trusted_ca_file.as_ref().ok_or("--client-cert-auth needs --trusted-ca-file")?;
        let mut roots = RootCertStore::empty();
        for c in certs(ca)? {
            roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        if let Some(crl) = &info.crl_file {
            let crls = CertificateRevocationListDer::pem_slice_iter(&read(crl)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", crl.display()))?;
            verifier = verifier.with_crls(crls);
        }
        let verifier = verifier.build().map_err(|e| format!("client certificate verifier: {e}"))?;
        match &info.allowed_cn {
            Some(cn) => builder.with_client_cert_verifier(Arc::new(AllowedCn { inner: verifier, cn: cn.clone() })),
            None => builder.with_client_cert_verifier(verifier),
        }
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(certs(&cert_file)?, key(&key_file)?)
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    // gRPC needs HTTP/2; HTTP/1.1 stays for /health, /metrics and the gateway.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client certificate verifier that also requires one common name.
#[derive(Debug)]
struct AllowedCn {
    inner: Arc<dyn ClientCertVerifier>,
    cn: String,
}

impl ClientCertVerifier for AllowedCn {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        match common_name(end_entity) {
            Some(cn) if cn == self.cn => Ok(verified),
            cn => Err(rustls::Error::General(format!(
                "client certificate common name {:?} is not the allowed {:?}",
                cn.unwrap_or_default(),
                self.cn
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One DER element at the start of `buf`: its tag, its content and what
/// follows it. None when `buf` is not well-formed DER.
fn der_element(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |l, &b| (l << 8) | b as usize);
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject common name of a DER certificate (the last one if there are
/// several, as Go reads it); None if it has none or does not parse.
pub fn common_name(cert: &[u8]) -> Option<String> {
    const CN_OID: [u8; 3] = [0x55, 0x04, 0x03];
    let (_, certificate, _) = der_element(cert)?;
    let (_, tbs, _) = der_element(certificate)?;
    let mut rest = tbs;
    // The version is an optional explicit [0] before the serial number.
    let (tag, _, after) = der_element(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    // serial, signature algorithm, issuer, validity: skipped.
    for _ in 0..4 {
        rest = der_element(rest)?.2;
    }
    let (_, mut rdns, _) = der_element(rest)?;
    let mut cn = None;
    while !rdns.is_empty() {
        let (_, mut set, next) = der_element(rdns)?;
        rdns = next;
        while !set.is_empty() {
            let (_, attribute, next) = der_element(set)?;
            set = next;
            let (_, oid, value) = der_element(attribute)?;
            let (_, value, _) = der_element(value)?;
            if oid == CN_OID {
                cn = Some(String::from_utf8_lossy(value).into_owned());
            }
        }
    }
    cn
}

/// Connections that finished their TLS handshake, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, TlsRemote)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` and runs each handshake in its own task until the
    /// listener is dropped.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    r = tcp.accept() => r,
                    _ = tx.closed() => return,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            // A client certificate is only there if it was
                            // verified (rustls asks for one only with
                            // --client-cert-auth and fails the handshake
                            // otherwise).
                            let cn = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|c| common_name(c));
                            let _ = tx.send((tls, TlsRemote { addr: peer, cn })).await;
                        }
                        Ok(Err(e)) => tracing::warn!("rejected connection from {peer}: TLS handshake: {e}"),
                        Err(_) => tracing::warn!("rejected connection from {peer}: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = TlsRemote;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(TlsRemote { addr: self.local, cn: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_name() {
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "retcd");
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(common_name(cert.der()).as_deref(), Some("alice"));
        let without = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut without = without;
        without.distinguished_name = rcgen::DistinguishedName::new();
        let cert = without.self_signed(&key).expect("cert");
        assert_eq!(common_name(cert.der()), None);
        assert_eq!(common_name(b"\x30\x82\xff"), None);
        assert_eq!(common_name(&[]), None);
    }
}
