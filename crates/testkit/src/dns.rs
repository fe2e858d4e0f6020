//! A tiny authoritative DNS server for tests: answers SRV, A and AAAA
//! queries over UDP (and TCP, for truncated answers) on 127.0.0.1 from a fixed table, NXDOMAIN for names it
//! does not know. Written independently of retcd's resolver so the two check
//! each other. Stops (its thread ends within 100 ms) when dropped.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// One record of the table.
#[derive(Debug, Clone)]
pub enum Record {
    /// `name SRV 0 weight port target`.
    Srv { name: String, target: String, port: u16 },
    /// `name A/AAAA ip`.
    Addr { name: String, ip: IpAddr },
}

impl Record {
    pub fn srv(name: &str, target: &str, port: u16) -> Record {
        Record::Srv { name: name.into(), target: target.into(), port }
    }
    pub fn addr(name: &str, ip: IpAddr) -> Record {
        Record::Addr { name: name.into(), ip }
    }
}

/// A running server; `addr` is what `RETCD_DNS_SERVER` should name.
pub struct DnsServer {
    pub addr: SocketAddr,
    /// How many queries were answered (lets a test prove it was asked).
    pub queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A UDP socket and a TCP listener on the same free loopback port. The UDP
/// port the kernel picks may already be taken for TCP by another test, so a
/// few ports are tried.
fn bind_udp_and_tcp() -> (UdpSocket, std::net::TcpListener) {
    for _ in 0..50 {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Ok(tcp) = std::net::TcpListener::bind(sock.local_addr().unwrap()) {
            return (sock, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP after 50 tries");
}

impl DnsServer {
    pub fn start(records: Vec<Record>) -> DnsServer {
        DnsServer::start_with(records, false)
    }

    /// `truncate_udp`: every UDP answer is empty with the TC bit set, and
    /// the full answers are served over TCP on the same port (as a server
    /// does when an answer does not fit a datagram).
    pub fn start_with(records: Vec<Record>, truncate_udp: bool) -> DnsServer {
        let (sock, tcp) = bind_udp_and_tcp();
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let addr = sock.local_addr().unwrap();
        tcp.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (stop2, queries2) = (stop.clone(), queries.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((mut conn, _)) = tcp.accept() {
                    serve_tcp(&mut conn, &records);
                    queries2.fetch_add(1, Ordering::Relaxed);
                }
                let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
                if let Some(mut reply) = answer(&buf[..n], &records) {
                    if truncate_udp {
                        reply = truncated(&buf[..n]);
                    }
                    queries2.fetch_add(1, Ordering::Relaxed);
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        DnsServer { addr, queries, stop, thread: Some(thread) }
    }
}

/// One length-prefixed query and answer on an accepted TCP connection.
fn serve_tcp(conn: &mut std::net::TcpStream, records: &[Record]) {
    use std::io::{Read, Write};
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut len = [0u8; 2];
    if conn.read_exact(&mut len).is_err() {
        return;
    }
    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
    if conn.read_exact(&mut q).is_err() {
        return;
    }
    if let Some(reply) = answer(&q, records) {
        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        let _ = conn.write_all(&framed);
    }
}

/// The header of `q` turned into an empty, truncated answer.
fn truncated(q: &[u8]) -> Vec<u8> {
    let mut out = q[..2].to_vec();
    out.extend_from_slice(&[0x86, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]);
    out
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    for label in norm(name).split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// The reply to one query (uncompressed names), None if it is not a query.
fn answer(q: &[u8], records: &[Record]) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    // The question: labels up to the zero byte, then type and class.
    let mut p = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(p)? as usize;
        if len == 0 {
            p += 1;
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(p + 1..p + 1 + len)?).into_owned());
        p += 1 + len;
    }
    let qtype = u16::from_be_bytes([*q.get(p)?, *q.get(p + 1)?]);
    let question = q.get(12..p + 4)?;
    let name = norm(&labels.join("."));
    let known = records.iter().any(|r| match r {
        Record::Srv { name: n, .. } | Record::Addr { name: n, .. } => norm(n) == name,
    });
    let mut answers: Vec<Vec<u8>> = Vec::new();
    for r in records {
        let mut rr = Vec::new();
        match r {
            Record::Srv { name: n, target, port } if norm(n) == name && qtype == 33 => {
                put_name(&mut rr, n);
                rr.extend_from_slice(&[0, 33, 0, 1, 0, 0, 0, 5]);
                let mut data = vec![0, 0, 0, 10];
                data.extend_from_slice(&port.to_be_bytes());
                put_name(&mut data, target);
                rr.extend_from_slice(&(data.len() as u16).to_be_bytes());
                rr.extend_from_slice(&data);
            }
            Record::Addr { name: n, ip: IpAddr::V4(ip) } if norm(n) == name && qtype == 1 => {
                put_name(&mut rr, n);
                rr.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
                rr.extend_from_slice(&ip.octets());
            }
            Record::Addr { name: n, ip: IpAddr::V6(ip) } if norm(n) == name && qtype == 28 => {
                put_name(&mut rr, n);
                rr.extend_from_slice(&[0, 28, 0, 1, 0, 0, 0, 5, 0, 16]);
                rr.extend_from_slice(&ip.octets());
            }
            _ => continue,
        }
        answers.push(rr);
    }
    let rcode = if known { 0 } else { 3 };
    let mut out = Vec::new();
    out.extend_from_slice(&q[0..2]);
    out.push(0x84 | (q[2] & 0x01)); // response, authoritative, RD copied
    out.push(0x80 | rcode); // RA
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for a in answers {
        out.extend_from_slice(&a);
    }
    Some(out)
}
