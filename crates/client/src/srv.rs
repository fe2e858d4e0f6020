//! DNS SRV discovery, as etcd's `pkg/srv`: the client endpoints a domain
//! publishes (`_etcd-client._tcp` / `_etcd-client-ssl._tcp`, used by
//! `retcdctl --discovery-srv`) and the initial cluster (`_etcd-server._tcp` /
//! `_etcd-server-ssl._tcp`, used by `retcd --discovery-srv`).
//!
//! The resolver is a small blocking DNS client (UDP, falling back to TCP
//! when an answer is truncated) so it can be used from synchronous start-up
//! code and from any async runtime alike. It honours the system
//! configuration: `/etc/hosts` for host names, then the `nameserver` lines
//! of `/etc/resolv.conf`. The environment variable [`NAMESERVER_ENV`]
//! (`host:port` or `ip`) replaces the nameservers, so tests can point
//! discovery at a DNS server they run on loopback. It never caches, never
//! follows search domains, and never panics on a malformed answer.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

/// Names the DNS server (`host:port`, or an IP for port 53) that discovery
/// lookups ask instead of `/etc/resolv.conf`'s nameservers.
pub const NAMESERVER_ENV: &str = "RETCD_DNS_SERVER";

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;

/// A lookup that failed; the text follows Go's resolver errors
/// (`lookup NAME on SERVER: no such host`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

/// One SRV record: a target host (without the trailing dot) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub target: String,
    pub port: u16,
    pub priority: u16,
    pub weight: u16,
}

/// Where lookups go.
#[derive(Debug, Clone)]
pub struct Resolver {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    attempts: usize,
}

impl Resolver {
    /// The system's resolver (`/etc/resolv.conf`), or the server named by
    /// [`NAMESERVER_ENV`] when it is set.
    pub fn system() -> Result<Resolver, LookupError> {
        let servers = match std::env::var(NAMESERVER_ENV) {
            Ok(v) if !v.trim().is_empty() => vec![parse_server(v.trim())
                .ok_or_else(|| LookupError(format!("{NAMESERVER_ENV}={v:?}: not an address of the form host:port")))?],
            _ => {
                let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                let mut s: Vec<SocketAddr> = conf
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("nameserver"))
                    .filter_map(|rest| rest.trim().parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, 53))
                    .collect();
                if s.is_empty() {
                    // Go's resolver falls back to the local host as well.
                    s = vec![
                        SocketAddr::from(([127, 0, 0, 1], 53)),
                        SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1u16], 53)),
                    ];
                }
                s
            }
        };
        Ok(Resolver::with_servers(servers))
    }

    /// A resolver asking exactly `servers`.
    pub fn with_servers(servers: Vec<SocketAddr>) -> Resolver {
        Resolver { servers, timeout: Duration::from_secs(2), attempts: 2 }
    }

    /// The SRV records of `_service._proto.domain`, by priority then weight
    /// (heaviest first).
    pub fn lookup_srv(&self, service: &str, proto: &str, domain: &str) -> Result<Vec<Srv>, LookupError> {
        let name = format!("_{service}._{proto}.{}", domain.trim_end_matches('.'));
        let answers = self.query(&name, TYPE_SRV)?;
        let mut out: Vec<Srv> = answers.into_iter().filter_map(|rr| rr.srv).collect();
        if out.is_empty() {
            return Err(self.no_such_host(&name));
        }
        out.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
        Ok(out)
    }

    /// The address of `host:port` as Go's `net.ResolveTCPAddr` finds it: an
    /// IP literal as is, else `/etc/hosts`, else DNS; IPv4 preferred.
    pub fn resolve_tcp_addr(&self, host: &str, port: u16) -> Result<SocketAddr, LookupError> {
        let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let from_hosts = hosts_file_lookup(host);
        if let Some(ip) = from_hosts.iter().find(|ip| ip.is_ipv4()).or(from_hosts.first()) {
            return Ok(SocketAddr::new(*ip, port));
        }
        for qtype in [TYPE_A, TYPE_AAAA] {
            match self.query(host, qtype) {
                Ok(answers) => {
                    if let Some(ip) = answers.into_iter().find_map(|rr| rr.ip) {
                        return Ok(SocketAddr::new(ip, port));
                    }
                }
                Err(e) if qtype == TYPE_AAAA => return Err(e),
                Err(_) => {}
            }
        }
        Err(self.no_such_host(host))
    }

    fn server_text(&self) -> String {
        self.servers.first().map(|s| s.to_string()).unwrap_or_else(|| "<none>".into())
    }

    fn no_such_host(&self, name: &str) -> LookupError {
        LookupError(format!("lookup {name} on {}: no such host", self.server_text()))
    }

    /// Asks each server in turn (`attempts` rounds) until one answers.
    fn query(&self, name: &str, qtype: u16) -> Result<Vec<Record>, LookupError> {
        let mut last = self.no_such_host(name);
        for _ in 0..self.attempts {
            for server in &self.servers {
                match self.exchange(*server, name, qtype) {
                    Ok(Answer::Records(r)) => return Ok(r),
                    Ok(Answer::NoSuchHost) => return Err(self.no_such_host(name)),
                    Err(e) => last = LookupError(format!("lookup {name} on {server}: {e}")),
                }
            }
        }
        Err(last)
    }

    fn exchange(&self, server: SocketAddr, name: &str, qtype: u16) -> Result<Answer, String> {
        let id: u16 = rand_id();
        let query = encode_query(id, name, qtype).ok_or_else(|| format!("invalid name {name:?}"))?;
        let bind: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let sock = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        sock.connect(server).map_err(|e| e.to_string())?;
        sock.send(&query).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 4096];
        // Skip datagrams that do not answer this query (a late answer to an
        // earlier attempt); the read timeout bounds the loop.
        for _ in 0..8 {
            let n = sock.recv(&mut buf).map_err(|e| timeout_text(&e))?;
            let msg = &buf[..n];
            match parse_response(msg, id) {
                Some(Parsed::Truncated) => return self.exchange_tcp(server, &query, id),
                Some(Parsed::Answer(a)) => return Ok(a),
                None => continue,
            }
        }
        Err("no matching answer".into())
    }

    fn exchange_tcp(&self, server: SocketAddr, query: &[u8], id: u16) -> Result<Answer, String> {
        let mut s = TcpStream::connect_timeout(&server, self.timeout).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        s.write_all(&framed).map_err(|e| e.to_string())?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).map_err(|e| timeout_text(&e))?;
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut msg).map_err(|e| timeout_text(&e))?;
        match parse_response(&msg, id) {
            Some(Parsed::Answer(a)) => Ok(a),
            _ => Err("malformed answer".into()),
        }
    }
}

fn timeout_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

fn parse_server(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    s.to_socket_addrs().ok()?.next()
}

fn rand_id() -> u16 {
    // Not security relevant: only pairs an answer with its query.
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    (nanos ^ (nanos >> 16) ^ std::process::id()) as u16
}

/// Addresses `/etc/hosts` lists for `host` (case-insensitive).
fn hosts_file_lookup(host: &str) -> Vec<IpAddr> {
    let text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(ip) = fields.next().and_then(|f| f.parse::<IpAddr>().ok()) else { continue };
        if fields.any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(host)) {
            out.push(ip);
        }
    }
    out
}

// ------------------------------------------------------------ wire format

/// A query for `name` (class IN) with recursion desired.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00]); // RD
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question
    encode_name(&mut m, name)?;
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(m)
}

/// Appends `name` as DNS labels; None for an empty or oversized label.
pub fn encode_name(m: &mut Vec<u8>, name: &str) -> Option<()> {
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    Some(())
}

/// Reads a (possibly compressed) name at `*pos`, advancing past it.
pub fn read_name(msg: &[u8], pos: &mut usize) -> Option<String> {
    let mut labels = Vec::new();
    let mut p = *pos;
    let mut jumped = false;
    // Bounds the number of labels and pointers followed (a pointer loop in
    // a hostile answer ends here).
    for _ in 0..128 {
        let len = *msg.get(p)? as usize;
        if len & 0xC0 == 0xC0 {
            let target = ((len & 0x3F) << 8) | *msg.get(p + 1)? as usize;
            if !jumped {
                *pos = p + 2;
            }
            jumped = true;
            p = target;
            continue;
        }
        if len == 0 {
            if !jumped {
                *pos = p + 1;
            }
            return Some(labels.join("."));
        }
        let label = msg.get(p + 1..p + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        p += 1 + len;
    }
    None
}

struct Record {
    srv: Option<Srv>,
    ip: Option<IpAddr>,
}

enum Answer {
    Records(Vec<Record>),
    NoSuchHost,
}

enum Parsed {
    Truncated,
    Answer(Answer),
}

fn u16_at(msg: &[u8], p: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(p)?, *msg.get(p + 1)?]))
}

/// Parses an answer to query `id`; None if it is not one (or is malformed).
fn parse_response(msg: &[u8], id: u16) -> Option<Parsed> {
    if u16_at(msg, 0)? != id {
        return None;
    }
    let flags = u16_at(msg, 2)?;
    if flags & 0x8000 == 0 {
        return None;
    }
    if flags & 0x0200 != 0 {
        return Some(Parsed::Truncated);
    }
    let rcode = flags & 0x000F;
    if rcode == 3 {
        return Some(Parsed::Answer(Answer::NoSuchHost));
    }
    if rcode != 0 {
        return Some(Parsed::Answer(Answer::NoSuchHost));
    }
    let qd = u16_at(msg, 4)?;
    let an = u16_at(msg, 6)?;
    let mut p = 12;
    for _ in 0..qd {
        read_name(msg, &mut p)?;
        p += 4;
    }
    let mut records = Vec::new();
    for _ in 0..an {
        read_name(msg, &mut p)?;
        let rtype = u16_at(msg, p)?;
        let rdlen = u16_at(msg, p + 8)? as usize;
        let rdata_start = p + 10;
        let rdata = msg.get(rdata_start..rdata_start + rdlen)?;
        let mut rec = Record { srv: None, ip: None };
        match rtype {
            TYPE_A if rdlen == 4 => rec.ip = Some(IpAddr::from([rdata[0], rdata[1], rdata[2], rdata[3]])),
            TYPE_AAAA if rdlen == 16 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(rdata);
                rec.ip = Some(IpAddr::from(b));
            }
            TYPE_SRV if rdlen >= 7 => {
                let mut tp = rdata_start + 6;
                let target = read_name(msg, &mut tp)?;
                rec.srv = Some(Srv {
                    priority: u16_at(rdata, 0)?,
                    weight: u16_at(rdata, 2)?,
                    port: u16_at(rdata, 4)?,
                    target,
                });
            }
            _ => {}
        }
        records.push(rec);
        p = rdata_start + rdlen;
    }
    Some(Parsed::Answer(Answer::Records(records)))
}

// ------------------------------------------------------------ etcd's pkg/srv

/// The SRV service name for `scheme`: `-ssl` for https, then `-NAME` when a
/// service name is given (etcd's `GetSRVService`).
pub fn srv_service(service: &str, service_name: &str, scheme: &str) -> String {
    let mut s = service.to_string();
    if scheme == "https" {
        s.push_str("-ssl");
    }
    if !service_name.is_empty() {
        s.push('-');
        s.push_str(service_name);
    }
    s
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The client URLs `domain` publishes for `service` (`etcd-client`): the
/// https records first, then the http ones. Fails only when both lookups
/// fail, with etcd's text (`dns lookup errors: ... and ...`). Targets lose
/// their trailing dot (etcdctl keeps it; the system resolver our
/// connections go through does not accept `host.`).
pub fn get_client(
    resolver: &Resolver,
    service: &str,
    domain: &str,
    service_name: &str,
) -> Result<Vec<String>, LookupError> {
    let mut urls = Vec::new();
    let mut errors = Vec::new();
    for scheme in ["https", "http"] {
        match resolver.lookup_srv(&srv_service(service, service_name, scheme), "tcp", domain) {
            Ok(records) => {
                urls.extend(records.iter().map(|r| format!("{scheme}://{}", join_host_port(&r.target, r.port))));
            }
            Err(e) => errors.push(e.0),
        }
    }
    if errors.len() == 2 {
        return Err(LookupError(format!("dns lookup errors: {} and {}", errors[0], errors[1])));
    }
    Ok(urls)
}

/// One `name=url` entry per SRV record of `service` (etcd's `GetCluster`):
/// the record whose target resolves to the same address as one of
/// `advertised_peer_urls` is named `name`, the others `0`, `1`, ... in
/// order. A matching record whose scheme differs from the advertised URL's
/// is an error.
pub fn get_cluster(
    resolver: &Resolver,
    scheme: &str,
    service: &str,
    name: &str,
    domain: &str,
    advertised_peer_urls: &[String],
) -> Result<Vec<String>, LookupError> {
    let mut own: Vec<(SocketAddr, String, String)> = Vec::new();
    for url in advertised_peer_urls {
        let (url_scheme, host, port) =
            split_url(url).ok_or_else(|| LookupError(format!("parse {url:?}: invalid URL")))?;
        let addr = resolver.resolve_tcp_addr(&host, port)?;
        own.push((addr, url_scheme, url.clone()));
    }
    let wrap = |e: String| LookupError(format!("error querying DNS SRV records for _{service} {e}"));
    let records = resolver.lookup_srv(service, "tcp", domain).map_err(|e| wrap(e.0))?;
    let mut parts = Vec::new();
    let mut last_err = None;
    let mut temp_name = 0;
    for r in &records {
        let addr = match resolver.resolve_tcp_addr(&r.target, r.port) {
            Ok(a) => a,
            Err(e) => {
                last_err = Some(e.0);
                continue;
            }
        };
        let url_host = join_host_port(r.target.trim_end_matches('.'), r.port);
        let matched = own.iter().find(|(a, _, _)| *a == addr);
        let entry_name = if matched.is_some() {
            name.to_string()
        } else {
            temp_name += 1;
            (temp_name - 1).to_string()
        };
        match matched {
            Some((_, own_scheme, own_url)) if own_scheme != scheme => {
                last_err = Some(format!(
                    "bootstrap at {scheme}://{url_host} from DNS for {service} has scheme mismatch with expected peer {own_url}"
                ));
            }
            _ => parts.push(format!("{entry_name}={scheme}://{url_host}")),
        }
    }
    if parts.is_empty() {
        return Err(wrap(last_err.unwrap_or_default()));
    }
    Ok(parts)
}

/// (scheme, host, port) of `scheme://host:port[/...]`.
pub fn split_url(url: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let hostport = rest.split('/').next()?;
    let (host, port) = hostport.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((scheme.to_string(), host.to_string(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert_eq!(srv_service("etcd-client", "", "http"), "etcd-client");
        assert_eq!(srv_service("etcd-client", "", "https"), "etcd-client-ssl");
        assert_eq!(srv_service("etcd-server", "prod", "https"), "etcd-server-ssl-prod");
    }

    #[test]
    fn names_round_trip_and_bad_pointers_end() {
        let mut m = vec![0u8; 12];
        encode_name(&mut m, "_etcd-server._tcp.example.com.").unwrap();
        let mut p = 12;
        assert_eq!(read_name(&m, &mut p).unwrap(), "_etcd-server._tcp.example.com");
        assert_eq!(p, m.len());
        // A pointer to itself must not loop forever.
        let looped = [0xC0u8, 0x00];
        assert!(read_name(&looped, &mut 0).is_none());
        assert!(read_name(&[5, b'a'], &mut 0).is_none());
    }

    #[test]
    fn garbage_answers_are_ignored() {
        assert!(parse_response(&[], 1).is_none());
        assert!(parse_response(&[0, 1, 0x80, 0, 0, 0, 0, 5], 1).is_none());
        let mut bad = vec![0, 1, 0x80, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        bad.extend_from_slice(&[3, b'a', b'b']);
        assert!(parse_response(&bad, 1).is_none());
    }

    #[test]
    fn urls() {
        assert_eq!(split_url("http://127.0.0.1:2380"), Some(("http".into(), "127.0.0.1".into(), 2380)));
        assert_eq!(split_url("https://[::1]:2380/"), Some(("https".into(), "::1".into(), 2380)));
        assert_eq!(split_url("localhost"), None);
    }
}
