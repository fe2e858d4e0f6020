//! A TCP fault proxy for member-to-member (raft peer) traffic.
//!
//! The harness starts one [`FaultProxy`] per ordered pair of members: member
//! A dials the proxy instead of member B's peer listener, and the proxy
//! forwards every connection to B byte for byte. It knows nothing about the
//! protocol on top (HTTP/2 for gRPC, HTTP/1.1, long- or short-lived
//! connections are all just bytes), so the same proxy works whatever the
//! peer transport is.
//!
//! Each direction of a proxy has a [`Mode`] that a test can change at any
//! time from synchronous code; running connections react at once, because
//! every connection task watches the modes through a `tokio::sync::watch`
//! channel. "Forward" is client to target (A to B), "backward" is target to
//! client (B to A).
//!
//! [`ProxyMesh`] holds the proxies of a whole cluster and turns partitions
//! ("{0, 1} | {2}", "isolate 1") into modes on the right proxies.
//!
//! Everything runs on the current tokio runtime. Dropping a proxy (or
//! [`FaultProxy::shutdown`]) closes its listener and every connection.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// The largest chunk one read takes; a chunk is the unit the delay queue
/// timestamps.
const CHUNK: usize = 64 * 1024;

/// Chunks a direction may hold between reading and writing (in a delay, or
/// behind a slow writer). Bounded so that a slow or stalled target pushes
/// back on the sender through TCP, as a real link would, instead of the
/// proxy buffering without limit.
const QUEUE: usize = 256;

/// What one direction of a proxy does with the bytes it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward at once.
    Pass,
    /// Deliver each chunk this long after it was read, in order. A chunk's
    /// delivery time is fixed when it is read; reading goes on meanwhile,
    /// so the delay adds latency without capping throughput.
    Delay(Duration),
    /// Read and discard: the receiver sees silence while TCP stays up (a
    /// black hole). Bytes lost in the middle of a framed stream (HTTP/2)
    /// corrupt it, so resuming with `Pass` after `Drop` usually makes the
    /// receiver fail the connection; use `Drop` for a black hole that lasts,
    /// or follow it with `Cut` so the members reconnect cleanly.
    Drop,
    /// Stop reading: bytes wait in the kernel's buffers and then push back
    /// on the sender, and flow again when the mode changes. Chunks already
    /// read wait too.
    Stall,
    /// Close every connection now and close new ones as soon as they are
    /// accepted, until the mode changes. A TCP connection carries both
    /// directions, so `Cut` in either direction closes the whole
    /// connection; for a one-way fault use `Drop` or `Stall`.
    Cut,
}

/// One direction of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client (the dialing member) to target (the member listening).
    Forward,
    /// Target to client.
    Backward,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::Forward => 0,
            Direction::Backward => 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Modes {
    forward: Mode,
    backward: Mode,
}

impl Modes {
    fn get(&self, dir: Direction) -> Mode {
        match dir {
            Direction::Forward => self.forward,
            Direction::Backward => self.backward,
        }
    }

    fn is_cut(&self) -> bool {
        self.forward == Mode::Cut || self.backward == Mode::Cut
    }
}

/// What the proxy and its connection tasks share.
struct Shared {
    target: SocketAddr,
    /// The sender keeps the current modes; each task holds a receiver so it
    /// wakes when they change.
    modes: watch::Sender<Modes>,
    forwarded: [AtomicU64; 2],
    dropped: [AtomicU64; 2],
    accepted: AtomicU64,
    refused: AtomicU64,
}

/// A TCP proxy from one member's dialer to another member's peer listener,
/// with a fault [`Mode`] per direction.
pub struct FaultProxy {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropping (or sending on) this tells the accept task to stop; it then
    /// aborts every connection task, which closes their sockets.
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (an ephemeral port) and forwards every
    /// connection to `target`, both directions in `Pass`.
    pub async fn start(target: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let local_addr = listener.local_addr()?;
        let (modes, _) = watch::channel(Modes { forward: Mode::Pass, backward: Mode::Pass });
        let shared = Arc::new(Shared {
            target,
            modes,
            forwarded: [AtomicU64::new(0), AtomicU64::new(0)],
            dropped: [AtomicU64::new(0), AtomicU64::new(0)],
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        Ok(FaultProxy { local_addr, shared, stop: Some(stop), task: Some(task) })
    }

    /// The address to dial instead of the target.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Sets one direction's mode; running connections react at once.
    pub fn set(&self, dir: Direction, mode: Mode) {
        self.shared.modes.send_if_modified(|m| {
            let slot = match dir {
                Direction::Forward => &mut m.forward,
                Direction::Backward => &mut m.backward,
            };
            // Waking every connection task for a no-op would be harmless
            // but noisy; only a real change notifies.
            let changed = *slot != mode;
            *slot = mode;
            changed
        });
    }

    pub fn set_forward(&self, mode: Mode) {
        self.set(Direction::Forward, mode);
    }

    pub fn set_backward(&self, mode: Mode) {
        self.set(Direction::Backward, mode);
    }

    /// Sets both directions in one change, so no connection sees one
    /// direction changed without the other.
    pub fn set_both(&self, mode: Mode) {
        self.shared.modes.send_if_modified(|m| {
            let new = Modes { forward: mode, backward: mode };
            let changed = *m != new;
            *m = new;
            changed
        });
    }

    /// Both directions back to `Pass`.
    pub fn heal(&self) {
        self.set_both(Mode::Pass);
    }

    pub fn mode(&self, dir: Direction) -> Mode {
        self.shared.modes.borrow().get(dir)
    }

    pub fn forward_mode(&self) -> Mode {
        self.mode(Direction::Forward)
    }

    pub fn backward_mode(&self) -> Mode {
        self.mode(Direction::Backward)
    }

    /// Bytes written to the receiving side in `dir`, over all connections.
    pub fn bytes_forwarded(&self, dir: Direction) -> u64 {
        self.shared.forwarded[dir.index()].load(Ordering::Relaxed)
    }

    /// Bytes discarded in `dir` by [`Mode::Drop`].
    pub fn bytes_dropped(&self, dir: Direction) -> u64 {
        self.shared.dropped[dir.index()].load(Ordering::Relaxed)
    }

    /// Connections accepted by the listener, including refused ones.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed right after accept because a direction was `Cut`.
    pub fn connections_refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Closes the listener and every connection, and waits until they are
    /// closed (dropping the proxy does the same without waiting).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            // The accept task may already be gone (runtime shutting down);
            // then there is nothing left to stop.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let modes = *self.shared.modes.borrow();
        f.debug_struct("FaultProxy")
            .field("local_addr", &self.local_addr)
            .field("target", &self.shared.target)
            .field("forward", &modes.forward)
            .field("backward", &modes.backward)
            .finish()
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stopped: oneshot::Receiver<()>) {
    // The JoinSet owns every connection task, so shutting it down closes
    // every proxied connection along with the listener.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            // Ok (stop sent) and Err (proxy dropped) both mean stop.
            _ = &mut stopped => break,
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                    if shared.modes.borrow().is_cut() {
                        shared.refused.fetch_add(1, Ordering::Relaxed);
                        // Accept then close: the dialer sees its connection
                        // end at once, like a peer that is unreachable.
                        drop(client);
                        continue;
                    }
                    conns.spawn(serve(client, Arc::clone(&shared)));
                }
                Err(_) => {
                    // Usually out of file descriptors; retrying at once
                    // would spin, and giving up would silently partition
                    // the pair for the rest of the run.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// One proxied connection, until either side closes it, an error, or `Cut`.
async fn serve(client: TcpStream, shared: Arc<Shared>) {
    let mut cut = shared.modes.subscribe();
    let run = async {
        let target = TcpStream::connect(shared.target).await?;
        // Raft messages are small and latency-bound; the proxy must not
        // add Nagle delays the direct connection would not have.
        client.set_nodelay(true)?;
        target.set_nodelay(true)?;
        let (client_r, client_w) = client.into_split();
        let (target_r, target_w) = target.into_split();
        tokio::try_join!(
            pump(client_r, target_w, Direction::Forward, &shared),
            pump(target_r, client_w, Direction::Backward, &shared),
        )
        .map(|_| ())
    };
    tokio::select! {
        biased;
        // Returning drops both sockets, which closes the connection on both
        // sides; the run future may be anywhere, even still connecting.
        _ = cut.wait_for(Modes::is_cut) => {}
        _ = run => {}
    }
}

struct Chunk {
    data: Vec<u8>,
    /// When the chunk may be written (in `Delay`; earlier modes say now).
    due: Instant,
}

/// The mode of `dir` now, marked as seen so `changed()` waits for the next
/// change. (A function so the watch guard is released before any await.)
fn current(modes: &mut watch::Receiver<Modes>, dir: Direction) -> Mode {
    modes.borrow_and_update().get(dir)
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "fault proxy: cut")
}

/// Copies one direction: a reader that applies the mode when it reads and
/// a writer that applies it again when it writes, joined by a bounded
/// queue. Ends when the source reaches EOF (after passing the EOF on as a
/// write shutdown, so half-closes survive) or on the first error.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, dir: Direction, shared: &Shared) -> io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Chunk>(QUEUE);

    let reader = async move {
        let mut modes = shared.modes.subscribe();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match current(&mut modes, dir) {
                Mode::Cut => return Err(cut_error()),
                Mode::Stall => {
                    if modes.changed().await.is_err() {
                        return Ok(());
                    }
                    continue;
                }
                Mode::Pass | Mode::Delay(_) | Mode::Drop => {}
            }
            let n = tokio::select! {
                read = from.read(&mut buf) => read?,
                // A mode change while waiting for bytes (to Stall, say)
                // must take effect before the next read.
                changed = modes.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    continue;
                }
            };
            if n == 0 {
                // Dropping `tx` lets the writer drain and then shut down.
                return Ok(());
            }
            // The mode may have changed while the read was pending; the
            // bytes in hand obey the mode now, and wait out a Stall.
            loop {
                let due = match current(&mut modes, dir) {
                    Mode::Cut => return Err(cut_error()),
                    Mode::Stall => {
                        if modes.changed().await.is_err() {
                            return Ok(());
                        }
                        continue;
                    }
                    Mode::Drop => {
                        shared.dropped[dir.index()].fetch_add(n as u64, Ordering::Relaxed);
                        break;
                    }
                    Mode::Pass => Instant::now(),
                    Mode::Delay(d) => Instant::now() + d,
                };
                if tx.send(Chunk { data: buf[..n].to_vec(), due }).await.is_err() {
                    // The writer failed; its error ends the connection.
                    return Ok(());
                }
                break;
            }
        }
    };

    let writer = async move {
        let mut modes = shared.modes.subscribe();
        while let Some(chunk) = rx.recv().await {
            loop {
                match current(&mut modes, dir) {
                    Mode::Cut => return Err(cut_error()),
                    Mode::Stall => {
                        if modes.changed().await.is_err() {
                            return Ok(());
                        }
                    }
                    Mode::Drop => {
                        shared.dropped[dir.index()].fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
                        break;
                    }
                    Mode::Delay(_) => {
                        tokio::select! {
                            () = tokio::time::sleep_until(chunk.due) => {
                                to.write_all(&chunk.data).await?;
                                shared.forwarded[dir.index()].fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
                                break;
                            }
                            // Healed (or stalled, dropped) mid-delay: the
                            // new mode decides about this chunk.
                            changed = modes.changed() => {
                                if changed.is_err() {
                                    return Ok(());
                                }
                            }
                        }
                    }
                    // Pass after a Delay delivers what was waiting at once.
                    Mode::Pass => {
                        to.write_all(&chunk.data).await?;
                        shared.forwarded[dir.index()].fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
        to.shutdown().await
    };

    tokio::try_join!(reader, writer).map(|_| ())
}

/// The proxies of a whole cluster: one per ordered pair of members.
pub struct ProxyMesh {
    members: usize,
    proxies: HashMap<(usize, usize), FaultProxy>,
}

impl ProxyMesh {
    /// Starts a proxy for every ordered pair `(from, to)` with `from != to`,
    /// forwarding to `targets[to]` (member `to`'s peer listen address).
    pub async fn start(targets: &[SocketAddr]) -> io::Result<ProxyMesh> {
        let mut proxies = HashMap::new();
        for from in 0..targets.len() {
            for (to, target) in targets.iter().enumerate() {
                if from != to {
                    proxies.insert((from, to), FaultProxy::start(*target).await?);
                }
            }
        }
        Ok(ProxyMesh { members: targets.len(), proxies })
    }

    /// The number of members.
    pub fn members(&self) -> usize {
        self.members
    }

    /// The proxy carrying member `from`'s connections to member `to`.
    ///
    /// # Panics
    /// If `from == to` or either is not a member.
    pub fn get(&self, from: usize, to: usize) -> &FaultProxy {
        match self.proxies.get(&(from, to)) {
            Some(proxy) => proxy,
            None => panic!("no proxy from member {from} to member {to} ({} members)", self.members),
        }
    }

    /// The address member `from` should dial to reach member `to`.
    ///
    /// # Panics
    /// As [`ProxyMesh::get`].
    pub fn route(&self, from: usize, to: usize) -> SocketAddr {
        self.get(from, to).local_addr()
    }

    /// Every proxy with its `(from, to)` pair, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = ((usize, usize), &FaultProxy)> {
        self.proxies.iter().map(|(pair, proxy)| (*pair, proxy))
    }

    /// Cuts both directions of every pair involving `member`; other pairs
    /// keep their modes.
    pub fn isolate(&self, member: usize) {
        for ((from, to), proxy) in &self.proxies {
            if *from == member || *to == member {
                proxy.set_both(Mode::Cut);
            }
        }
    }

    /// Cuts every pair whose members are in different groups and passes
    /// every pair within a group. A member in no group is alone (cut from
    /// everyone), so a partition always sets every proxy.
    pub fn partition(&self, groups: &[&[usize]]) {
        let group_of = |member: usize| groups.iter().position(|g| g.contains(&member));
        for ((from, to), proxy) in &self.proxies {
            match (group_of(*from), group_of(*to)) {
                (Some(a), Some(b)) if a == b => proxy.heal(),
                _ => proxy.set_both(Mode::Cut),
            }
        }
    }

    /// Every proxy back to `Pass` in both directions.
    pub fn heal_all(&self) {
        for proxy in self.proxies.values() {
            proxy.heal();
        }
    }

    /// Delays both directions of every proxy by `d`, so a request and its
    /// answer between two members take `2 * d` longer.
    pub fn delay_all(&self, d: Duration) {
        for proxy in self.proxies.values() {
            proxy.set_both(Mode::Delay(d));
        }
    }

    /// Shuts every proxy down and waits until all are closed.
    pub async fn shutdown(self) {
        for (_, proxy) in self.proxies {
            proxy.shutdown().await;
        }
    }
}

impl std::fmt::Debug for ProxyMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyMesh").field("members", &self.members).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Every wait in these tests is bounded by this.
    const LIMIT: Duration = Duration::from_secs(5);
    /// How long "nothing arrives" is watched for.
    const QUIET: Duration = Duration::from_millis(300);

    /// A loopback server that first writes `greeting` (if any) and then
    /// echoes; aborting it on drop ends its connections too.
    struct Echo {
        addr: SocketAddr,
        task: JoinHandle<()>,
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn echo_server(greeting: Option<u8>) -> Echo {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                conns.spawn(async move {
                    if let Some(g) = greeting {
                        sock.write_all(&[g]).await?;
                    }
                    let (mut r, mut w) = sock.split();
                    tokio::io::copy(&mut r, &mut w).await?;
                    w.shutdown().await
                });
            }
        });
        Echo { addr, task }
    }

    async fn connect(addr: SocketAddr) -> TcpStream {
        tokio::time::timeout(LIMIT, TcpStream::connect(addr)).await.unwrap().unwrap()
    }

    async fn read_n(sock: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        tokio::time::timeout(LIMIT, sock.read_exact(&mut buf)).await.unwrap().unwrap();
        buf
    }

    /// True if nothing (no byte, no EOF) arrives within [`QUIET`].
    async fn stays_quiet(sock: &mut TcpStream) -> bool {
        let mut buf = [0u8; 64];
        tokio::time::timeout(QUIET, sock.read(&mut buf)).await.is_err()
    }

    /// True if the connection ends (EOF or an error) within [`LIMIT`].
    async fn closes(sock: &mut TcpStream) -> bool {
        let mut buf = [0u8; 64];
        let deadline = Instant::now() + LIMIT;
        loop {
            match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                // Bytes sent before the cut may still arrive first.
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Waits (bounded) until `cond` holds, for counters that are updated
    /// just after the bytes they count were written.
    async fn eventually(cond: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + LIMIT;
        while !cond() {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    #[tokio::test]
    async fn pass_forwards_both_ways_byte_for_byte() {
        let echo = echo_server(None).await;
        let proxy = FaultProxy::start(echo.addr).await.unwrap();
        assert_eq!(proxy.target(), echo.addr);
        assert_eq!((proxy.forward_mode(), proxy.backward_mode()), (Mode::Pass, Mode::Pass));

        let mut sock = connect(proxy.local_addr()).await;
        sock.write_all(b"hello").await.unwrap();
        assert_eq!(read_n(&mut sock, 5).await, b"hello");

        // A bigger transfer (many chunks, both directions at once) arrives
        // intact; write and read concurrently so neither side blocks.
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut r, mut w) = sock.into_split();
        let sent = data.clone();
        let writer = tokio::spawn(async move { w.write_all(&sent).await.map(|()| w) });
        let mut back = vec![0u8; data.len()];
        tokio::time::timeout(LIMIT, r.read_exact(&mut back)).await.unwrap().unwrap();
        assert!(back == data, "echo differs from what was sent");
        let mut w = tokio::time::timeout(LIMIT, writer).await.unwrap().unwrap().unwrap();

        // A half-close is passed on: the echo server sees EOF and closes.
        w.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(LIMIT, r.read_to_end(&mut rest)).await.unwrap().unwrap();
        assert!(rest.is_empty());

        let total = 5 + data.len() as u64;
        assert!(eventually(|| proxy.bytes_forwarded(Direction::Forward) == total).await);
        assert!(eventually(|| proxy.bytes_forwarded(Direction::Backward) == total).await);

        // Short-lived connections, one after the other.
        for i in 0..20u8 {
            let mut sock = connect(proxy.local_addr()).await;
            sock.write_all(&[i]).await.unwrap();
            assert_eq!(read_n(&mut sock, 1).await, [i]);
        }
        assert_eq!(proxy.connections_accepted(), 21);
        assert_eq!(proxy.connections_refused(), 0);
        proxy.shutdown().await;
    }

    #[tokio::test]
    async fn delay_adds_latency_keeps_order_and_does_not_cap_throughput() {
        let echo = echo_server(None).await;
        let proxy = FaultProxy::start(echo.addr).await.unwrap();
        let delay = Duration::from_millis(200);
        proxy.set_forward(Mode::Delay(delay));
        assert_eq!(proxy.mode(Direction::Forward), Mode::Delay(delay));
        assert_eq!(proxy.mode(Direction::Backward), Mode::Pass);

        let mut sock = connect(proxy.local_addr()).await;
        let start = Instant::now();
        // Twenty separate writes 5 ms apart: separate chunks. If the reader
        // slept per chunk this would take 20 delays (4 s).
        let mut sent = Vec::new();
        for i in 0..20u8 {
            sock.write_all(&[b'a' + i]).await.unwrap();
            sent.push(b'a' + i);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let first = read_n(&mut sock, 1).await;
        assert!(start.elapsed() >= delay, "first byte after {:?}", start.elapsed());
        let rest = read_n(&mut sock, 19).await;
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_secs(2), "all bytes took {elapsed:?}");
        assert_eq!([first, rest].concat(), sent);

        // Healing delivers at once from then on.
        proxy.heal();
        let start = Instant::now();
        sock.write_all(b"now").await.unwrap();
        assert_eq!(read_n(&mut sock, 3).await, b"now");
        assert!(start.elapsed() < delay);
        proxy.shutdown().await;
    }

    #[tokio::test]
    async fn stall_holds_bytes_until_healed() {
        let echo = echo_server(None).await;
        let proxy = FaultProxy::start(echo.addr).await.unwrap();
        let mut sock = connect(proxy.local_addr()).await;
        // A first round trip so the connection is up before the stall.
        sock.write_all(b"up").await.unwrap();
        assert_eq!(read_n(&mut sock, 2).await, b"up");

        proxy.set_forward(Mode::Stall);
        sock.write_all(b"held").await.unwrap();
        assert!(stays_quiet(&mut sock).await);
        assert_eq!(proxy.bytes_forwarded(Direction::Forward), 2);

        proxy.heal();
        assert_eq!(read_n(&mut sock, 4).await, b"held");
        assert_eq!(proxy.bytes_dropped(Direction::Forward), 0);

        // Stalling the way back holds the echo instead.
        proxy.set_backward(Mode::Stall);
        sock.write_all(b"back").await.unwrap();
        assert!(stays_quiet(&mut sock).await);
        assert!(eventually(|| proxy.bytes_forwarded(Direction::Forward) == 10).await);
        proxy.heal();
        assert_eq!(read_n(&mut sock, 4).await, b"back");
        proxy.shutdown().await;
    }

    #[tokio::test]
    async fn drop_discards_and_keeps_the_connection_open() {
        let echo = echo_server(None).await;
        let proxy = FaultProxy::start(echo.addr).await.unwrap();
        let mut sock = connect(proxy.local_addr()).await;
        sock.write_all(b"up").await.unwrap();
        assert_eq!(read_n(&mut sock, 2).await, b"up");

        proxy.set_forward(Mode::Drop);
        sock.write_all(b"lost").await.unwrap();
        assert!(stays_quiet(&mut sock).await);
        assert!(eventually(|| proxy.bytes_dropped(Direction::Forward) == 4).await);

        proxy.heal();
        sock.write_all(b"kept").await.unwrap();
        assert_eq!(read_n(&mut sock, 4).await, b"kept");
        assert!(eventually(|| proxy.bytes_forwarded(Direction::Forward) == 6).await);
        proxy.shutdown().await;
    }

    #[tokio::test]
    async fn cut_closes_connections_and_refuses_new_ones_until_healed() {
        let echo = echo_server(None).await;
        let proxy = FaultProxy::start(echo.addr).await.unwrap();
        let mut sock = connect(proxy.local_addr()).await;
        sock.write_all(b"up").await.unwrap();
        assert_eq!(read_n(&mut sock, 2).await, b"up");

        // One direction cut closes the whole connection, with no traffic
        // needed to notice.
        proxy.set_forward(Mode::Cut);
        assert!(closes(&mut sock).await);

        // New connections are accepted and closed at once.
        for _ in 0..3 {
            // The listener stays up (the port must not change), so the
            // connect itself succeeds.
            let mut sock = connect(proxy.local_addr()).await;
            // The write may fail if the close already arrived.
            let _ = sock.write_all(b"x").await;
            assert!(closes(&mut sock).await);
        }
        assert!(eventually(|| proxy.connections_refused() == 3).await);

        proxy.heal();
        let mut sock = connect(proxy.local_addr()).await;
        sock.write_all(b"again").await.unwrap();
        assert_eq!(read_n(&mut sock, 5).await, b"again");
        assert_eq!(proxy.connections_accepted(), 5);
        proxy.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_and_drop_close_listener_and_connections() {
        let echo = echo_server(None).await;

        let proxy = FaultProxy::start(echo.addr).await.unwrap();
        let addr = proxy.local_addr();
        let mut sock = connect(addr).await;
        sock.write_all(b"up").await.unwrap();
        assert_eq!(read_n(&mut sock, 2).await, b"up");
        proxy.shutdown().await;
        assert!(closes(&mut sock).await);
        assert!(TcpStream::connect(addr).await.is_err());

        let proxy = FaultProxy::start(echo.addr).await.unwrap();
        let mut sock = connect(proxy.local_addr()).await;
        sock.write_all(b"up").await.unwrap();
        assert_eq!(read_n(&mut sock, 2).await, b"up");
        drop(proxy);
        assert!(closes(&mut sock).await);
    }

    /// Member `to` is reachable through `route(from, to)`: the server
    /// greets with its own index, then echoes.
    async fn reaches(mesh: &ProxyMesh, from: usize, to: usize) -> bool {
        let mut sock = connect(mesh.route(from, to)).await;
        let mut buf = [0u8; 1];
        match tokio::time::timeout(LIMIT, sock.read_exact(&mut buf)).await.unwrap() {
            Ok(_) => buf[0] as usize == to,
            Err(_) => false,
        }
    }

    #[tokio::test]
    async fn mesh_routes_partitions_isolates_and_heals() {
        let mut servers = Vec::new();
        for i in 0..3u8 {
            servers.push(echo_server(Some(i)).await);
        }
        let targets: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let mesh = ProxyMesh::start(&targets).await.unwrap();
        assert_eq!(mesh.members(), 3);
        assert_eq!(mesh.iter().count(), 6);
        for from in 0..3 {
            for (to, target) in targets.iter().enumerate() {
                if from != to {
                    assert_eq!(mesh.get(from, to).target(), *target);
                    assert!(reaches(&mesh, from, to).await, "{from} -> {to}");
                }
            }
        }

        mesh.partition(&[&[0, 1], &[2]]);
        assert!(reaches(&mesh, 0, 1).await);
        assert!(reaches(&mesh, 1, 0).await);
        for (from, to) in [(0, 2), (2, 0), (1, 2), (2, 1)] {
            assert_eq!(mesh.get(from, to).forward_mode(), Mode::Cut);
            assert!(!reaches(&mesh, from, to).await, "{from} -> {to} should be cut");
        }

        mesh.heal_all();
        mesh.isolate(1);
        assert!(reaches(&mesh, 0, 2).await);
        assert!(reaches(&mesh, 2, 0).await);
        for (from, to) in [(0, 1), (1, 0), (1, 2), (2, 1)] {
            assert_eq!(mesh.get(from, to).backward_mode(), Mode::Cut);
            assert!(!reaches(&mesh, from, to).await, "{from} -> {to} should be cut");
        }

        // A partition sets every pair, so it also undoes the isolation.
        mesh.partition(&[&[0, 1, 2]]);
        assert!(mesh.iter().all(|(_, p)| p.forward_mode() == Mode::Pass && p.backward_mode() == Mode::Pass));

        let d = Duration::from_millis(50);
        mesh.delay_all(d);
        assert!(mesh.iter().all(|(_, p)| p.forward_mode() == Mode::Delay(d) && p.backward_mode() == Mode::Delay(d)));
        let start = Instant::now();
        assert!(reaches(&mesh, 2, 1).await);
        // The greeting only crosses the backward direction.
        assert!(start.elapsed() >= d);

        mesh.heal_all();
        assert!(reaches(&mesh, 1, 2).await);
        mesh.shutdown().await;
    }
}
