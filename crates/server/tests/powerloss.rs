//! Power loss: every acknowledged write survives losing power, not just a
//! `kill -9` (whose page cache survives, hiding a missing fsync).
//!
//! Each member runs under the `LD_PRELOAD` shim of `retcd_faults::powerloss`,
//! which journals every mutation of its data dir. Clients put distinct keys
//! and record what was acknowledged; at a random moment (seeded:
//! `RETCD_POWERLOSS_SEED` replays) every member is powered off at once
//! (the shim SIGKILLs it with no mutation half journaled). The model checks
//! that the journal explains the data dir exactly, then rebuilds the data
//! dir a strict POSIX power loss would leave (only what was fsynced), retcd
//! starts on that image without the shim, and every acknowledged put must
//! be there with its value and mod revision. The next round continues from
//! the image (`RETCD_POWERLOSS_ROUNDS`, default 3).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::{PutRequest, RangeRequest};
use retcd_faults::powerloss::{self, Journal, Model};
use retcd_testkit::{free_port, require_tool, spawn_logged, MemberSpec};
use tonic::transport::{Channel, Endpoint};

const RETCD: &str = env!("CARGO_BIN_EXE_retcd");
/// Concurrent writers per run.
const WRITERS: usize = 6;
/// Small, so that snapshot files (and their renames and directory fsyncs)
/// are written during the rounds too.
const SNAPSHOT_COUNT: &str = "1000";
/// Every wait for a member to serve is bounded by this.
const READY_BOUND: Duration = Duration::from_secs(30);
/// Linux's O_NONBLOCK (the same on x86_64 and aarch64): opening a FIFO's
/// write end without a reader then fails instead of blocking.
const O_NONBLOCK: i32 = 0o4000;

/// One member: fixed ports (its peer URL is in the cluster's membership),
/// a data dir that changes every round (the rebuilt image), its process.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and a bounded wait; SIGKILL if it does not exit.
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What was acknowledged: key -> (value, revision of the put).
type Acked = BTreeMap<String, (String, i64)>;

/// The members and everything one test keeps across rounds.
struct Run {
    work: tempfile::TempDir,
    shim: PathBuf,
    members: Vec<Member>,
    token: String,
}

/// One member's power-loss bookkeeping for a round.
struct Powered {
    model: Model,
    journal: PathBuf,
    control: PathBuf,
}

impl Run {
    fn new(size: usize) -> Option<Run> {
        let cc = require_tool("cc")?;
        let work = tempfile::Builder::new().prefix("retcd-powerloss").tempdir().unwrap();
        let shim = powerloss::compile_shim(&cc, work.path()).unwrap();
        let members = (1..=size)
            .map(|i| {
                let data_dir = work.path().join(format!("round0-m{i}"));
                std::fs::create_dir(&data_dir).unwrap();
                Member {
                    name: format!("m{i}"),
                    client_port: free_port(),
                    peer_port: free_port(),
                    data_dir: data_dir.canonicalize().unwrap(),
                    log: work.path().join(format!("m{i}.log")),
                    child: None,
                }
            })
            .collect();
        Some(Run { work, shim, members, token: "retcd-powerloss".into() })
    }

    fn initial_cluster(&self) -> String {
        let peers: Vec<_> =
            self.members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect();
        peers.join(",")
    }

    fn spawn(&mut self, i: usize, env: &[(String, String)]) {
        let initial = self.initial_cluster();
        let m = &mut self.members[i];
        let mut cmd = MemberSpec::new(RETCD.as_ref(), &m.name, m.client_port, m.peer_port, &m.data_dir)
            .initial_cluster(&initial)
            .args(["--initial-cluster-token", &self.token, "--snapshot-count", SNAPSHOT_COUNT])
            .command();
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        writeln!(std::fs::OpenOptions::new().create(true).append(true).open(&m.log).unwrap(), "--- {:?}", env).unwrap();
        m.child = Some(spawn_logged(&mut cmd, &m.log));
    }

    /// Starts every member under the shim: a fresh journal and control FIFO
    /// each, and a model of its data dir as it is now (all durable).
    fn start_powered(&mut self, round: usize) -> Vec<Powered> {
        let mut powered = Vec::new();
        for i in 0..self.members.len() {
            let m = &self.members[i];
            let journal = self.work.path().join(format!("round{round}-{}.journal", m.name));
            let control = self.work.path().join(format!("round{round}-{}.control", m.name));
            let ok = Command::new("mkfifo").arg(&control).status().unwrap();
            assert!(ok.success(), "mkfifo {}", control.display());
            let model = Model::scan(&m.data_dir).unwrap();
            let env = powerloss::shim_env(&self.shim, &m.data_dir, &journal, Some(&control));
            self.spawn(i, &env);
            powered.push(Powered { model, journal, control });
        }
        powered
    }

    fn start_plain(&mut self) {
        for i in 0..self.members.len() {
            self.spawn(i, &[]);
        }
    }

    /// Powers every member off as close to at once as the FIFOs allow, and
    /// waits (bounded) for each to die. Returns the members that had to be
    /// killed from outside because their shim did not act.
    fn power_off(&mut self, powered: &[Powered]) -> Vec<String> {
        let mut pipes = Vec::new();
        for p in powered {
            let pipe = std::fs::OpenOptions::new().write(true).custom_flags(O_NONBLOCK).open(&p.control);
            pipes.push(pipe.ok());
        }
        for pipe in pipes.iter_mut().flatten() {
            let _ = pipe.write_all(b"x");
        }
        let mut forced = Vec::new();
        for m in &mut self.members {
            let Some(c) = m.child.as_mut() else { continue };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if matches!(c.try_wait(), Ok(None)) {
                forced.push(m.name.clone());
            }
            m.kill9();
        }
        forced
    }

    fn channel(&self, i: usize) -> Channel {
        Endpoint::from_shared(self.members[i].url())
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5))
            .connect_lazy()
    }

    /// Waits (bounded) until every member answers a linearizable read.
    async fn wait_serving(&mut self) {
        for i in 0..self.members.len() {
            let mut kv = KvClient::new(self.channel(i));
            let deadline = Instant::now() + READY_BOUND;
            loop {
                let probe = RangeRequest { key: b"probe".to_vec(), ..Default::default() };
                if kv.range(probe).await.is_ok() {
                    break;
                }
                let m = &mut self.members[i];
                if let Some(Ok(Some(status))) = m.child.as_mut().map(Child::try_wait) {
                    panic!(
                        "{} exited ({status}); log:\n{}",
                        m.name,
                        std::fs::read_to_string(&m.log).unwrap_or_default()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "{} does not serve after {READY_BOUND:?}; log:\n{}",
                    m.name,
                    std::fs::read_to_string(&m.log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// `dir`'s files and directories with their sizes, for the log.
fn listing(dir: &Path, rel: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirents: Vec<_> = std::fs::read_dir(dir.join(rel)).unwrap().map(|d| d.unwrap()).collect();
    dirents.sort_by_key(|d| d.file_name());
    for d in dirents {
        let path = rel.join(d.file_name());
        let meta = d.metadata().unwrap();
        if meta.is_dir() {
            out.push(format!("{}/", path.display()));
            out.extend(listing(dir, &path));
        } else {
            out.push(format!("{} ({} bytes)", path.display(), meta.len()));
        }
    }
    out
}

fn rounds() -> usize {
    std::env::var("RETCD_POWERLOSS_ROUNDS").map_or(3, |s| s.parse().unwrap())
}

/// One writer: puts `r<round>/w<w>/<n>` = a value unique to the put until
/// `stop`, recording each acknowledgement.
async fn writer(round: usize, w: usize, mut kv: KvClient<Channel>, acked: Arc<Mutex<Acked>>, stop: Arc<AtomicBool>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0.. {
        if stop.load(Ordering::Acquire) || Instant::now() > deadline {
            return;
        }
        let key = format!("r{round}/w{w}/{n:06}");
        let value = format!("value of {key} at round {round}");
        let req = PutRequest { key: key.clone().into_bytes(), value: value.clone().into_bytes(), ..Default::default() };
        match kv.put(req).await {
            Ok(resp) => {
                let rev = resp.into_inner().header.unwrap().revision;
                acked.lock().insert(key, (value, rev));
            }
            // Not acknowledged: it may or may not have been applied.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Reads everything through member 0 and checks every acknowledged put;
/// returns the store's revision.
async fn verify(run: &Run, acked: &Acked, round: usize) -> i64 {
    let mut kv = KvClient::new(run.channel(0)).max_decoding_message_size(256 << 20);
    let all = RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
    let resp = kv.range(all).await.unwrap().into_inner();
    let revision = resp.header.unwrap().revision;
    let found: BTreeMap<String, (String, i64)> = resp
        .kvs
        .into_iter()
        .map(|kv| (String::from_utf8(kv.key).unwrap(), (String::from_utf8(kv.value).unwrap(), kv.mod_revision)))
        .collect();
    let mut lost = Vec::new();
    for (key, (value, rev)) in acked {
        match found.get(key) {
            Some((v, r)) if v == value && r == rev => {}
            Some((v, r)) => lost.push(format!("{key}: acknowledged {value:?} at {rev}, found {v:?} at {r}")),
            None => lost.push(format!("{key}: acknowledged at {rev}, missing")),
        }
    }
    let highest = acked.values().map(|(_, r)| *r).max().unwrap_or(0);
    assert!(
        lost.is_empty(),
        "round {round}: {} of {} acknowledged puts lost after power loss (highest acknowledged revision {highest}, \
         revision now {revision}); first ones:\n{}",
        lost.len(),
        acked.len(),
        lost.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(revision >= highest, "round {round}: revision {revision} is below the acknowledged {highest}");
    revision
}

async fn power_loss_rounds(size: usize) {
    let Some(mut run) = Run::new(size) else { return };
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(retcd_testkit::seed_from_env("RETCD_POWERLOSS_SEED"));
    let acked = Arc::new(Mutex::new(Acked::new()));
    let rounds = rounds();
    for round in 0..rounds {
        let powered = tokio::task::block_in_place(|| run.start_powered(round));
        run.wait_serving().await;

        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let kv = KvClient::new(run.channel(w % size));
                tokio::spawn(writer(round, w, kv, Arc::clone(&acked), Arc::clone(&stop)))
            })
            .collect();
        let before = acked.lock().len();
        let run_for = Duration::from_millis(rng.gen_range(300..2500));
        tokio::time::sleep(run_for).await;
        let forced = tokio::task::block_in_place(|| run.power_off(&powered));
        stop.store(true, Ordering::Release);
        // Killed from outside, a member may die between a mutation and its
        // journal record: the journal would not explain its data dir.
        assert!(forced.is_empty(), "round {round}: the shim did not power off {forced:?}");
        for w in writers {
            tokio::time::timeout(Duration::from_secs(10), w).await.expect("a writer did not stop").unwrap();
        }
        let acked_now = acked.lock().clone();

        for (i, p) in powered.into_iter().enumerate() {
            let m = &mut run.members[i];
            let journal = Journal::read(&p.journal).unwrap();
            let mut model = p.model;
            let stats = model.replay(&journal).unwrap_or_else(|e| panic!("{}: {e}", m.name));
            assert!(stats.clean_off, "{}: the journal has no power-off record", m.name);
            model.check_live(&m.data_dir).unwrap_or_else(|e| panic!("{}: {e}", m.name));
            let image = run.work.path().join(format!("round{}-{}", round + 1, m.name));
            model.write_durable(&image).unwrap();
            let files = listing(&image, Path::new(""));
            eprintln!("round {round} {}: durable image: [{}]", m.name, files.join(", "));
            eprintln!(
                "round {round} {}: powered off after {run_for:?}; journal {} records, {} writes ({} bytes), \
                 {} file fsyncs, {} dir fsyncs, {} namespace ops",
                m.name,
                stats.records,
                stats.writes,
                stats.bytes_written,
                stats.fsyncs,
                stats.dir_fsyncs,
                stats.namespace_ops
            );
            m.data_dir = image.canonicalize().unwrap();
        }

        tokio::task::block_in_place(|| run.start_plain());
        run.wait_serving().await;
        let revision = verify(&run, &acked_now, round).await;
        eprintln!(
            "round {round}: {} puts acknowledged this round, {} checked in all, revision {revision} after power loss",
            acked_now.len() - before,
            acked_now.len()
        );
        tokio::task::block_in_place(|| {
            for m in &mut run.members {
                m.stop();
            }
        });
    }
    let total = acked.lock().len();
    eprintln!("{rounds} rounds, {total} acknowledged puts, {:?}", started.elapsed());
    assert!(total > 0, "no put was acknowledged in {rounds} rounds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_puts_survive_power_loss_of_a_single_member() {
    power_loss_rounds(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_puts_survive_power_loss_of_a_whole_cluster() {
    power_loss_rounds(3).await;
}
