//! Test helpers that start real server processes on loopback.
//!
//! Every process gets free ports on 127.0.0.1 and its own temp data dir, and
//! is killed (and its dir removed) when its handle drops, so a failing test
//! leaves nothing behind. Every wait is bounded in time.
//!
//! For async gRPC tests, [`Server::connect`] gives a channel once the server
//! serves requests, and [`on_both`] runs one scenario against retcd and
//! (when installed) etcd and compares the transcripts.

#![allow(clippy::unwrap_used)]

pub mod dns;

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::RangeRequest;
use tonic::transport::Channel;

pub mod pki;

/// A free TCP port on 127.0.0.1 (the OS picks; the listener is closed at
/// once). The OS may hand the same port out again once it is closed, so a
/// port this process already returned is never returned twice: two members
/// of one test cluster once got the same peer port.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("no fresh free port after 1000 tries");
}

/// Finds a program on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// Path of a tool the tests need. In CI (`CI=true`) a missing tool fails
/// the test, because `.ci/run` installs it; locally the test is skipped
/// (None) with a note.
pub fn require_tool(program: &str) -> Option<PathBuf> {
    match which(program) {
        Some(p) => Some(p),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{program} is not installed; .ci/run should have installed it")
        }
        None => {
            eprintln!("skipping: {program} is not installed");
            None
        }
    }
}

/// Which server implementation a [`Server`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Retcd,
    Etcd,
}

/// A server process on loopback with its own data dir.
pub struct Server {
    pub kind: Kind,
    pub client_port: u16,
    pub peer_port: u16,
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub binary: PathBuf,
    pub extra_args: Vec<String>,
    pub log: PathBuf,
}

impl Server {
    /// Starts a single-member server of `kind` (`binary`: retcd's path for
    /// Retcd, or `etcd`) and waits until it answers.
    pub fn start(kind: Kind, binary: &Path, extra_args: &[&str]) -> Server {
        let dir = tempfile::Builder::new().prefix("retcd-test").tempdir().unwrap();
        let mut s = Server {
            kind,
            client_port: free_port(),
            peer_port: free_port(),
            log: dir.path().join("server.log"),
            dir,
            child: None,
            binary: binary.to_path_buf(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        s.wait_ready(Duration::from_secs(30));
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// Starts the process (again) on the same ports and data dir.
    pub fn spawn(&mut self) {
        let initial = format!("default=http://127.0.0.1:{}", self.peer_port);
        let mut cmd = MemberSpec::new(&self.binary, "default", self.client_port, self.peer_port, &self.data_dir())
            .initial_cluster(&initial)
            .args(&self.extra_args)
            .command();
        self.child = Some(spawn_logged(&mut cmd, &self.log));
    }

    /// Waits until the client port accepts `etcdctl endpoint health`-like
    /// traffic: a TCP connect followed by a successful `get` when etcdctl is
    /// available.
    pub fn wait_ready(&mut self, timeout: Duration) {
        wait_client_port(&format!("{:?}", self.kind), self.client_port, self.child.as_mut(), &self.log, timeout);
    }

    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }

    /// SIGKILL, no cleanup: what a crash looks like to the data dir.
    pub fn kill9(&mut self) {
        kill_and_wait(&mut self.child);
    }

    /// SIGTERM and wait (bounded) for a graceful exit; returns its status code.
    pub fn terminate(&mut self) -> Option<i32> {
        terminate_and_wait(&mut self.child)
    }

    /// Runs `etcdctl` (v3 API) against this server.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        etcdctl(&self.endpoint(), args, None)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `etcdctl --endpoints=<endpoint> args...`, optionally with `stdin`,
/// killed after 30 s.
pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = etcdctl_command(endpoint, args);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("etcdctl");
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    wait_output(child, Duration::from_secs(30))
}

/// `etcdctl --endpoints=<endpoint> args...` (v3 API), stdio left to the caller.
pub fn etcdctl_command(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoint}")).args(args);
    cmd
}

/// What etcd's strict reconfiguration check answers while a member's links
/// to the others are younger than its 5 s health interval (just after
/// start, or after the cluster grew).
pub const UNHEALTHY: &str = "etcdserver: unhealthy cluster";

/// How long a membership change is retried while it is refused as
/// [`UNHEALTHY`].
const LINKS_SETTLE: Duration = Duration::from_secs(30);

/// Runs the membership change `change` again while it is refused as
/// [`UNHEALTHY`], for at most 30 s; returns its last answer.
pub async fn reconfigure<T, F, Fut>(mut change: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + LINKS_SETTLE;
    loop {
        match change().await {
            Err(e) if e.message() == UNHEALTHY && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

/// [`etcdctl`] for a membership change, run again while it fails as
/// [`UNHEALTHY`], for at most 30 s; returns its last output.
pub fn etcdctl_reconfigure(endpoint: &str, args: &[&str]) -> Output {
    let deadline = Instant::now() + LINKS_SETTLE;
    loop {
        let out = etcdctl(endpoint, args, None);
        if out.status.success()
            || !String::from_utf8_lossy(&out.stderr).contains(UNHEALTHY)
            || Instant::now() > deadline
        {
            return out;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits for a child (bounded), killing it at the deadline, and collects its output.
pub fn wait_output(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().unwrap(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                return child.wait_with_output().unwrap();
            }
        }
    }
}

/// The `retcd` binary for tests of crates that do not build it (the client
/// and retcdctl): `None`, with a note, when it has not been built yet (a
/// plain `cargo test -p retcd-ctl`); under CI=true a missing binary fails.
pub fn retcd_binary_if_built() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("retcd");
    if bin.exists() {
        Some(bin)
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("retcd binary not built at {}", bin.display());
    } else {
        eprintln!("skipping: build retcd first (cargo build -p retcd-server --bin retcd)");
        None
    }
}

/// Path of the `retcd` binary built for the tests: next to the test binary
/// in `target/<profile>/`.
pub fn retcd_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|p| p.parent()).unwrap();
    let bin = profile_dir.join("retcd");
    assert!(bin.exists(), "retcd binary not built at {}", bin.display());
    bin
}

/// How a test starts one member: the command line every member needs on
/// loopback (`--name`, `--data-dir`, client and peer URLs on 127.0.0.1,
/// listened on and advertised), then how it finds its cluster and whatever
/// else the test adds. Every way the tests start a member (static cluster,
/// joining, discovery, SRV, peer TLS) goes through it.
///
/// ```no_run
/// # use retcd_testkit::MemberSpec;
/// # let (binary, dir) = (std::path::Path::new("retcd"), std::path::Path::new("/tmp/d"));
/// let cmd = MemberSpec::new(binary, "m4", 2379, 2380, dir)
///     .initial_cluster("m1=http://127.0.0.1:2480,m4=http://127.0.0.1:2380")
///     .arg("--initial-cluster-state")
///     .arg("existing")
///     .command();
/// ```
pub struct MemberSpec {
    binary: PathBuf,
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    peer_scheme: String,
    args: Vec<String>,
}

impl MemberSpec {
    pub fn new(binary: &Path, name: &str, client_port: u16, peer_port: u16, data_dir: &Path) -> MemberSpec {
        MemberSpec {
            binary: binary.to_path_buf(),
            name: name.to_string(),
            client_port,
            peer_port,
            data_dir: data_dir.to_path_buf(),
            peer_scheme: "http".into(),
            args: Vec::new(),
        }
    }

    /// `https` for peer TLS (the caller adds the certificate flags).
    pub fn peer_scheme(mut self, scheme: &str) -> MemberSpec {
        self.peer_scheme = scheme.to_string();
        self
    }

    /// A static cluster: `--initial-cluster list`.
    pub fn initial_cluster(self, list: &str) -> MemberSpec {
        self.arg("--initial-cluster").arg(list)
    }

    pub fn arg(mut self, arg: impl AsRef<str>) -> MemberSpec {
        self.args.push(arg.as_ref().to_string());
        self
    }

    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> MemberSpec {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn command(&self) -> Command {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("{}://127.0.0.1:{}", self.peer_scheme, self.peer_port);
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(&self.args);
        cmd
    }
}

/// Spawns `cmd` with no stdin and its stdout and stderr appended to `log`.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap()
}

/// Waits (bounded) until `client_port` accepts TCP connections; panics with
/// the log of the process (`what`) if it exits first or never gets there.
fn wait_client_port(what: &str, client_port: u16, child: Option<&mut Child>, log: &Path, timeout: Duration) {
    if let Err(e) = try_wait_client_port(what, client_port, child, log, timeout) {
        panic!("{e}");
    }
}

/// [`wait_client_port`], returning the failure instead of panicking.
fn try_wait_client_port(
    what: &str,
    client_port: u16,
    mut child: Option<&mut Child>,
    log: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(child) = child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{what} exited early ({status}); log:\n{}", read_log(log)));
            }
        }
        if std::net::TcpStream::connect(("127.0.0.1", client_port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{what} not ready after {timeout:?}; log:\n{}", read_log(log)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a process wrote to its log file so far ("" if none).
fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// SIGKILL and reap the child, if any; leaves None behind.
pub fn kill_and_wait(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A test's random seed: the value of the environment variable `var` if
/// set (a replay), else one from the clock; printed with how to replay it.
pub fn seed_from_env(var: &str) -> u64 {
    let seed = match std::env::var(var) {
        Ok(s) => s.parse().unwrap(),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    eprintln!("seed {seed} (rerun with {var}={seed})");
    seed
}

/// SIGTERM the child, if any, and wait (at most 20 s, then SIGKILL) for it
/// to exit; returns its status code (None if it had to be killed). Leaves
/// None behind.
pub fn terminate_and_wait(child: &mut Option<Child>) -> Option<i32> {
    let mut c = child.take()?;
    let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = c.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
    None
}

/// One member of a [`Cluster`]: a retcd process with its own ports and data dir.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

impl Member {
    /// This member's ports, name and data dir, to start `binary` with.
    pub fn spec(&self, binary: &Path) -> MemberSpec {
        MemberSpec::new(binary, &self.name, self.client_port, self.peer_port, &self.data_dir)
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }

    pub fn kill9(&mut self) {
        kill_and_wait(&mut self.child);
    }

    /// SIGTERM and wait (bounded) for a graceful exit; returns its status code.
    pub fn terminate(&mut self) -> Option<i32> {
        terminate_and_wait(&mut self.child)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A single member (retcd or etcd, same flags) whose client URL is https on
/// a free port; the caller passes the TLS flags. Killed on drop.
pub struct TlsServer {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    pub fn start(binary: &Path, tls_args: &[String]) -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let (port, peer) = (free_port(), free_port());
        let client = format!("https://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new(binary);
        cmd.args(["--data-dir", dir.path().join("data").to_str().unwrap()])
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .args(tls_args);
        let log = dir.path().join("server.log");
        let child = spawn_logged(&mut cmd, &log);
        TlsServer { child, port, log, _dir: dir }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A multi-member retcd cluster on loopback (static bootstrap), every member
/// killed on drop.
pub struct Cluster {
    pub members: Vec<Member>,
    pub binary: PathBuf,
    pub token: String,
    pub extra_args: Vec<String>,
    pub dir: tempfile::TempDir,
    /// `http` (default) or `https` (peer TLS; the caller adds the flags).
    pub peer_scheme: String,
    /// Flags for one member only (by index), after `extra_args`.
    pub member_args: Vec<Vec<String>>,
    /// Environment variables for one member only (by index).
    pub member_env: Vec<Vec<(String, String)>>,
}

impl Cluster {
    /// Starts `size` members and waits until each accepts client connections.
    pub fn start(binary: &Path, size: usize, extra_args: &[&str]) -> Cluster {
        let mut c = Cluster::new(binary, size, extra_args);
        c.start_all();
        c
    }

    /// A cluster of `size` members with ports and data dir paths chosen but
    /// nothing started (a test may prepare the data dirs first).
    pub fn new(binary: &Path, size: usize, extra_args: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new().prefix("retcd-cluster").tempdir().unwrap();
        let members = (1..=size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        Cluster {
            members,
            binary: binary.to_path_buf(),
            token: "retcd-test-cluster".into(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            dir,
            peer_scheme: "http".into(),
            member_args: vec![Vec::new(); size],
            member_env: vec![Vec::new(); size],
        }
    }

    /// Starts every member and waits until each accepts client connections.
    ///
    /// A free port can be taken by another process between [`free_port`]
    /// and the member's bind. For a cluster whose data dirs did not exist
    /// yet, a member that lost such a race makes the whole cluster start
    /// again on new ports (at most 3 times).
    pub fn start_all(&mut self) {
        let fresh = self.members.iter().all(|m| !m.data_dir.exists());
        for attempt in 1..=3 {
            for i in 0..self.members.len() {
                self.spawn(i);
            }
            let mut failure = None;
            for i in 0..self.members.len() {
                let m = &mut self.members[i];
                let what = format!("member {}", m.name);
                if let Err(e) =
                    try_wait_client_port(&what, m.client_port, m.child.as_mut(), &m.log, Duration::from_secs(60))
                {
                    failure = Some(e);
                    break;
                }
            }
            let Some(e) = failure else { return };
            if !(fresh && attempt < 3 && e.contains("Address already in use")) {
                panic!("{e}");
            }
            for m in &mut self.members {
                m.kill9();
                let _ = std::fs::remove_dir_all(&m.data_dir);
                let _ = std::fs::remove_file(&m.log);
                m.client_port = free_port();
                m.peer_port = free_port();
            }
        }
    }

    pub fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}://127.0.0.1:{}", m.name, self.peer_scheme, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Comma-separated client endpoints of every member.
    pub fn endpoints(&self) -> String {
        self.members.iter().map(Member::endpoint).collect::<Vec<_>>().join(",")
    }

    /// Starts member `i` (again) on its ports and data dir.
    pub fn spawn(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let m = &mut self.members[i];
        let mut cmd = m
            .spec(&self.binary)
            .peer_scheme(&self.peer_scheme)
            .initial_cluster(&initial)
            .args(["--initial-cluster-token", &self.token])
            .args(&self.extra_args)
            .args(self.member_args.get(i).into_iter().flatten())
            .command();
        if let Some(env) = self.member_env.get(i) {
            cmd.envs(env.iter().map(|(k, v)| (k, v)));
        }
        m.child = Some(spawn_logged(&mut cmd, &m.log));
    }

    /// Waits until member `i` accepts client connections (it binds its client
    /// port only once it has a leader and has caught up).
    pub fn wait_ready(&mut self, i: usize, timeout: Duration) {
        let m = &mut self.members[i];
        wait_client_port(&format!("member {}", m.name), m.client_port, m.child.as_mut(), &m.log, timeout);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill9();
        }
    }
}

// ---------------------------------------------------------------- gRPC

impl Server {
    /// Starts a single-member `kind` server from async test code (on a
    /// multi-thread tokio runtime): `retcd` is the retcd binary to run,
    /// etcd is the one on PATH.
    pub fn start_in_runtime(kind: Kind, retcd: impl AsRef<Path>, args: &[&str]) -> Server {
        let binary = match kind {
            Kind::Retcd => retcd.as_ref().to_path_buf(),
            Kind::Etcd => require_tool("etcd").expect("etcd"),
        };
        tokio::task::block_in_place(|| Server::start(kind, &binary, args))
    }

    /// A gRPC channel to this server once it serves requests (etcd opens
    /// its port before it has elected itself).
    pub async fn connect(&self) -> Channel {
        let url = format!("http://{}", self.endpoint());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(ch) = Channel::from_shared(url.clone()).unwrap().connect().await {
                let probe = RangeRequest { key: b"__probe".to_vec(), ..Default::default() };
                let r = tokio::time::timeout(Duration::from_secs(5), KvClient::new(ch.clone()).range(probe)).await;
                if matches!(r, Ok(Ok(_))) {
                    return ch;
                }
            }
            assert!(Instant::now() < deadline, "{:?} does not serve requests; log:\n{}", self.kind, self.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs `scenario` against a fresh retcd (`retcd`, with `args`) and, when
/// etcd is installed, against a fresh etcd with the same flags; the
/// transcripts must be equal. Returns retcd's.
pub async fn on_both<T, F, Fut>(name: &str, retcd: impl AsRef<Path>, args: &[&str], scenario: F) -> T
where
    T: PartialEq + std::fmt::Debug,
    F: Fn(Channel) -> Fut,
    Fut: Future<Output = T>,
{
    eprintln!("{name}: retcd");
    let server = Server::start_in_runtime(Kind::Retcd, &retcd, args);
    let got = scenario(server.connect().await).await;
    drop(server);
    if require_tool("etcd").is_some() {
        eprintln!("{name}: etcd");
        let etcd = Server::start_in_runtime(Kind::Etcd, &retcd, args);
        let want = scenario(etcd.connect().await).await;
        drop(etcd);
        assert_eq!(got, want, "{name}: retcd (left) differs from etcd (right)");
    }
    got
}

// ---------------------------------------------------------------- DNS SRV

/// The environment variable naming the DNS server retcd's discovery asks
/// (see `retcd_client::srv::NAMESERVER_ENV`).
pub const DNS_SERVER_ENV: &str = "RETCD_DNS_SERVER";

/// A cluster of `size` members bootstrapped by `--discovery-srv domain`, and
/// the DNS server (on loopback) that serves its records: for member i,
/// `_etcd-server._tcp.<domain>` has `localhost:<peer port>` and
/// `_etcd-client._tcp.<domain>` has `localhost:<client port>`. Members
/// advertise `http://127.0.0.1:<port>`, so each must resolve `localhost` to
/// find itself. Nothing is started; call [`Cluster::wait_ready`] per member
/// after [`spawn_srv_member`].
pub fn srv_cluster(binary: &Path, size: usize, domain: &str) -> (Cluster, dns::DnsServer) {
    let cluster = Cluster::new(binary, size, &[]);
    let mut records = Vec::new();
    for m in &cluster.members {
        records.push(dns::Record::srv(&format!("_etcd-server._tcp.{domain}"), "localhost.", m.peer_port));
        records.push(dns::Record::srv(&format!("_etcd-client._tcp.{domain}"), "localhost.", m.client_port));
    }
    (cluster, dns::DnsServer::start(records))
}

/// Starts member `i` of `cluster` with `--discovery-srv domain` (and no
/// `--initial-cluster`), resolving through `dns`.
pub fn spawn_srv_member(cluster: &mut Cluster, i: usize, domain: &str, dns: &dns::DnsServer, extra: &[&str]) {
    let m = &mut cluster.members[i];
    let mut cmd = m
        .spec(&cluster.binary)
        .args(["--discovery-srv", domain, "--initial-cluster-token", &cluster.token])
        .args(extra)
        .command();
    cmd.env(DNS_SERVER_ENV, dns.addr.to_string());
    m.child = Some(spawn_logged(&mut cmd, &m.log));
}
