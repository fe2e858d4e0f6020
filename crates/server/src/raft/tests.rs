//! The raft loop without processes or sockets: three [`RaftNode`]s on their
//! own threads in this process, each with its WAL and snapshots in a temp
//! dir and raft-rs's in-memory log, joined by a [`LocalNet`] that delivers
//! messages over channels and can cut links. A stand-in apply thread records
//! every committed entry, so the tests compare what each member applied.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use raft::eraftpb::{ConfChangeType, ConfState, EntryType, Message};
use retcd_api::errors::EtcdError;
use retcd_api::retcdpb::WalMetadata;
use retcd_storage::backend::Backend;

use super::transport::RaftTransport;
use super::*;

const IDS: [u64; 3] = [1, 2, 3];
const HEARTBEAT: Duration = Duration::from_millis(10);
const ELECTION_TICKS: usize = 10;
const WAIT: Duration = Duration::from_secs(10);

/// The members' inboxes, and the links that are cut (from, to).
#[derive(Default)]
struct LocalNet {
    inboxes: Mutex<HashMap<u64, Sender<RaftInput>>>,
    cut: Mutex<HashSet<(u64, u64)>>,
}

impl LocalNet {
    fn connected(&self, from: u64, to: u64) -> bool {
        !self.cut.lock().contains(&(from, to))
    }

    /// Cuts every link between `id` and the others, both ways.
    fn isolate(&self, id: u64) {
        let mut cut = self.cut.lock();
        for other in IDS.iter().filter(|o| **o != id) {
            cut.insert((id, *other));
            cut.insert((*other, id));
        }
    }

    fn heal(&self) {
        self.cut.lock().clear();
    }

    fn deliver(&self, to: u64, input: RaftInput) {
        if let Some(tx) = self.inboxes.lock().get(&to) {
            let _ = tx.send(input);
        }
    }
}

/// One member's view of the [`LocalNet`].
struct LocalTransport {
    from: u64,
    net: Arc<LocalNet>,
}

impl RaftTransport for LocalTransport {
    fn send(&mut self, msgs: Vec<Message>) -> Vec<u64> {
        for m in msgs {
            // A cut link loses messages silently, as a partition does.
            if self.net.connected(self.from, m.to) {
                self.net.deliver(m.to, RaftInput::Step(Box::new(m)));
            }
        }
        Vec::new()
    }

    fn set_peer(&mut self, _id: u64, _urls: Vec<String>, _change: ConfChangeType) {}

    /// These tests keep the whole log (nothing compacts it), so raft never
    /// asks for a snapshot; the peer transport's streaming is tested by the
    /// multi-member snapshot tests.
    fn send_snapshot(&mut self, _msg: Message, _backend: Arc<Backend>, _conf_state: ConfState) -> bool {
        false
    }
}

/// A committed normal entry as the apply thread saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    index: u64,
    term: u64,
    data: Vec<u8>,
}

/// A running member: its raft thread and a stand-in apply thread.
struct TestNode {
    raft_tx: Sender<RaftInput>,
    status: Arc<RaftStatus>,
    applied: Arc<Mutex<Vec<Applied>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl TestNode {
    fn start(id: u64, dir: &std::path::Path, net: &Arc<LocalNet>) -> TestNode {
        let metadata = WalMetadata { member_id: id, cluster_id: 7, ..Default::default() };
        let boot = boot::boot(&dir.join("wal"), &dir.join("snap"), metadata, &IDS).unwrap();
        let backend = Backend::open(&dir.join("db")).unwrap();
        let (raft_tx, inputs) = crossbeam_channel::unbounded();
        let (apply_tx, apply_rx) = crossbeam_channel::unbounded::<ApplyTask>();
        net.inboxes.lock().insert(id, raft_tx.clone());
        let status = Arc::new(RaftStatus { id, ..Default::default() });
        let applied_index = Arc::new(AtomicU64::new(boot.snapshot_index));
        let stop = Arc::new(AtomicBool::new(false));
        let links = RaftLinks {
            inputs,
            apply_tx,
            status: status.clone(),
            applied: applied_index.clone(),
            stop: stop.clone(),
            on_leader_change: Box::new(|_, _| {}),
            on_drop: Box::new(|_| {}),
        };
        let settings =
            RaftSettings { id, heartbeat: HEARTBEAT, election_ticks: ELECTION_TICKS, max_snapshots: 0, max_wals: 0 };
        let transport = Box::new(LocalTransport { from: id, net: net.clone() });
        let snapshot_index = boot.snapshot_index;
        let node = RaftNode::new(boot, transport, backend, settings, snapshot_index, links).unwrap();
        let raft = std::thread::spawn(move || node.run().unwrap());

        let applied = Arc::new(Mutex::new(Vec::new()));
        let log = applied.clone();
        let apply = std::thread::spawn(move || {
            for task in apply_rx {
                let ApplyTask::Entries(entries) = task else { continue };
                for e in entries {
                    if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                        log.lock().push(Applied { index: e.index, term: e.term, data: e.data.to_vec() });
                    }
                    applied_index.store(e.index, Ordering::Release);
                }
            }
        });
        TestNode { raft_tx, status, applied, stop, threads: vec![raft, apply] }
    }

    fn propose(&self, data: &str) {
        self.raft_tx.send(RaftInput::Propose { id: 0, data: data.as_bytes().to_vec() }).unwrap();
    }

    /// Asks for a read index; the answer, or None when none came in time.
    fn read_index(&self, timeout: Duration) -> Option<Result<u64, EtcdError>> {
        let (tx, rx) = oneshot::channel();
        self.raft_tx.send(RaftInput::ReadIndex(tx)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(async { tokio::time::timeout(timeout, rx).await.ok()?.ok() })
    }

    fn data(&self) -> Vec<Vec<u8>> {
        self.applied.lock().iter().map(|a| a.data.clone()).collect()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

struct TestCluster {
    dir: tempfile::TempDir,
    net: Arc<LocalNet>,
    nodes: HashMap<u64, TestNode>,
}

impl TestCluster {
    fn start() -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let net = Arc::new(LocalNet::default());
        let nodes = IDS.iter().map(|id| (*id, TestNode::start(*id, &dir.path().join(id.to_string()), &net))).collect();
        TestCluster { dir, net, nodes }
    }

    fn node(&self, id: u64) -> &TestNode {
        &self.nodes[&id]
    }

    /// The leader every member in `among` agrees on, waiting for one.
    fn leader_of(&self, among: &[u64]) -> u64 {
        wait_until("a leader", || {
            let leaders: HashSet<u64> = among.iter().map(|id| self.node(*id).status.leader()).collect();
            let leader = *leaders.iter().next()?;
            (leaders.len() == 1 && among.contains(&leader) && self.node(leader).status.is_leader()).then_some(leader)
        })
    }

    fn restart(&mut self, id: u64) {
        if let Some(node) = self.nodes.remove(&id) {
            node.stop();
        }
        let node = TestNode::start(id, &self.dir.path().join(id.to_string()), &self.net);
        self.nodes.insert(id, node);
    }

    fn stop(self) {
        for (_, node) in self.nodes {
            node.stop();
        }
    }
}

/// Polls `f` every few milliseconds until it gives a value (at most [`WAIT`]).
fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn proposals_through_any_member_are_applied_in_one_order_everywhere() {
    let cluster = TestCluster::start();
    cluster.leader_of(&IDS);
    let mut expected = Vec::new();
    for n in 0..30 {
        // Followers forward their proposals to the leader.
        let data = format!("p{n}");
        cluster.node(IDS[n % 3]).propose(&data);
        expected.push(data.into_bytes());
    }
    for id in IDS {
        wait_until("every proposal applied", || (cluster.node(id).applied.lock().len() == 30).then_some(()));
    }
    let logs: Vec<Vec<Applied>> = IDS.iter().map(|id| cluster.node(*id).applied.lock().clone()).collect();
    assert_eq!(logs[0], logs[1], "members 1 and 2 applied different logs");
    assert_eq!(logs[0], logs[2], "members 1 and 3 applied different logs");
    let mut applied = cluster.node(1).data();
    applied.sort();
    expected.sort();
    assert_eq!(applied, expected, "a proposal was lost or applied twice");
    cluster.stop();
}

#[test]
fn an_isolated_leader_commits_nothing_and_its_entries_give_way_to_the_majoritys() {
    let cluster = TestCluster::start();
    let old = cluster.leader_of(&IDS);
    let old_term = cluster.node(old).status.term();
    let rest: Vec<u64> = IDS.iter().copied().filter(|id| *id != old).collect();

    cluster.net.isolate(old);
    cluster.node(old).propose("lost");
    // A read on the cut-off leader must not be answered with its index: it
    // cannot know whether a newer leader has committed more.
    let read = cluster.node(old).read_index(Duration::from_millis(ELECTION_TICKS as u64 * 10 * 3));
    assert!(!matches!(read, Some(Ok(_))), "an isolated leader answered a read index: {read:?}");

    let new = cluster.leader_of(&rest);
    assert!(cluster.node(new).status.term() > old_term);
    cluster.node(new).propose("kept");
    for id in &rest {
        wait_until("the majority's entry", || (cluster.node(*id).data() == [b"kept".to_vec()]).then_some(()));
    }
    assert!(cluster.node(old).data().is_empty(), "the isolated leader applied {:?}", cluster.node(old).data());

    cluster.net.heal();
    wait_until("the old leader to catch up", || (cluster.node(old).data() == [b"kept".to_vec()]).then_some(()));
    cluster.node(new).propose("after");
    for id in IDS {
        wait_until("the entry after healing", || (cluster.node(id).data().len() == 2).then_some(()));
        assert_eq!(cluster.node(id).data(), [b"kept".to_vec(), b"after".to_vec()], "member {id}");
    }
    cluster.stop();
}

#[test]
fn a_read_index_covers_every_entry_committed_before_it() {
    let cluster = TestCluster::start();
    let leader = cluster.leader_of(&IDS);
    for n in 0..10 {
        cluster.node(leader).propose(&format!("w{n}"));
    }
    wait_until("the writes applied", || (cluster.node(leader).applied.lock().len() == 10).then_some(()));
    let last = cluster.node(leader).applied.lock().last().unwrap().index;
    for id in IDS {
        let index = cluster.node(id).read_index(WAIT).expect("an answer").unwrap();
        assert!(index >= last, "member {id}: read index {index} is behind the committed {last}");
    }
    cluster.stop();
}

#[test]
fn a_restarted_member_replays_its_wal_and_rejoins() {
    let mut cluster = TestCluster::start();
    let leader = cluster.leader_of(&IDS);
    for n in 0..5 {
        cluster.node(leader).propose(&format!("w{n}"));
    }
    let follower = IDS.iter().copied().find(|id| *id != leader).unwrap();
    wait_until("the writes applied", || (cluster.node(follower).applied.lock().len() == 5).then_some(()));
    let before = cluster.node(follower).applied.lock().clone();

    cluster.restart(follower);
    // Applied from index 1 again: the WAL alone gives back every entry.
    wait_until("the replay", || (cluster.node(follower).applied.lock().len() >= 5).then_some(()));
    assert_eq!(cluster.node(follower).applied.lock()[..5], before[..]);
    cluster.node(leader).propose("w5");
    wait_until("a new write", || (cluster.node(follower).applied.lock().len() == 6).then_some(()));
    cluster.stop();
}
