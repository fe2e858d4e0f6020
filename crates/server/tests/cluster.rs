//! Three-member clusters on loopback: etcdctl against every member, the
//! leader killed while a client writes, a lease kept alive through a
//! follower across a leader change, and an isolated minority.

#![allow(clippy::unwrap_used)]
// Each test holds the serializing guard for its whole run, on its own runtime.
#![allow(clippy::await_holding_lock)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::lease_client::LeaseClient;
use retcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use retcd_api::etcdserverpb::{
    HashKvRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
    StatusRequest,
};
use retcd_testkit::{etcdctl, require_tool, spawn_logged, Cluster, MemberSpec};
use tonic::transport::Channel;

/// The tests here each run three members doing real work; run one at a time
/// so elections are not starved of CPU on small machines.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn retcd() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_retcd").as_ref()
}

/// A client giving up after 3 s, so a writer stuck on a dead leader moves on.
async fn kv(url: &str) -> KvClient<Channel> {
    kv_with_timeout(url, Duration::from_secs(3)).await
}

async fn kv_with_timeout(url: &str, timeout: Duration) -> KvClient<Channel> {
    let ch = tonic::transport::Endpoint::from_shared(url.to_string()).unwrap().timeout(timeout).connect_lazy();
    KvClient::new(ch)
}

/// The index of the member that currently leads, asked of every running member.
async fn leader(cluster: &Cluster) -> Option<usize> {
    for m in cluster.members.iter().filter(|m| m.is_running()) {
        let Ok(mut c) = MaintenanceClient::connect(m.url()).await else { continue };
        let Ok(status) = c.status(StatusRequest {}).await else { continue };
        let status = status.into_inner();
        if status.leader != 0 {
            let ids = member_ids(cluster).await;
            return ids.iter().position(|id| *id == status.leader);
        }
    }
    None
}

/// Member ids in member order, from each member's own status header.
async fn member_ids(cluster: &Cluster) -> Vec<u64> {
    let mut ids = Vec::new();
    for m in &cluster.members {
        let id = match MaintenanceClient::connect(m.url()).await {
            Ok(mut c) => {
                c.status(StatusRequest {}).await.map(|s| s.into_inner().header.unwrap().member_id).unwrap_or(0)
            }
            Err(_) => 0,
        };
        ids.push(id);
    }
    ids
}

/// Waits (bounded) until member `url` has applied at least `rev`.
async fn wait_rev(url: &str, rev: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut c = kv(url).await;
    loop {
        let r = c
            .range(RangeRequest { key: b"\0".to_vec(), serializable: true, count_only: true, ..Default::default() })
            .await;
        if let Ok(r) = r {
            if r.into_inner().header.unwrap().revision >= rev {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} did not reach revision {rev}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn three_members_serve_etcdctl() {
    let _serial = serial();
    if require_tool("etcdctl").is_none() {
        return;
    }
    let cluster = Cluster::start(retcd(), 3, &[]);
    let all = cluster.endpoints();

    let status = etcdctl(&all, &["endpoint", "status", "-w", "json"], None);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(text.matches("\"Endpoint\"").count(), 3, "{text}");
    let leaders: std::collections::HashSet<&str> =
        text.split("\"leader\":").skip(1).map(|s| s.split([',', '}']).next().unwrap()).collect();
    assert_eq!(leaders.len(), 1, "every member must name the same leader: {text}");

    let members = etcdctl(&all, &["member", "list"], None);
    let text = String::from_utf8_lossy(&members.stdout);
    for m in &cluster.members {
        let line = text.lines().find(|l| l.contains(&format!(", {}, ", m.name))).unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains(", started, "), "{line}");
        assert!(line.contains(&format!("http://127.0.0.1:{}", m.peer_port)), "{line}");
        assert!(line.contains(&format!("http://127.0.0.1:{}", m.client_port)), "{line}");
    }

    for (i, m) in cluster.members.iter().enumerate() {
        let out = etcdctl(&m.endpoint(), &["put", &format!("key{i}"), &format!("from-{}", m.name)], None);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n", "{}", String::from_utf8_lossy(&out.stderr));
    }
    for m in &cluster.members {
        let out = etcdctl(&m.endpoint(), &["get", "key", "--prefix"], None);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "key0\nfrom-m1\nkey1\nfrom-m2\nkey2\nfrom-m3\n");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_killed_while_writing_loses_nothing() {
    let _serial = serial();
    let mut cluster = Cluster::start(retcd(), 3, &[]);
    let urls: Vec<String> = cluster.members.iter().map(|m| m.url()).collect();
    let old_leader = leader(&cluster).await.expect("a leader");

    // A writer that moves to the next member on any error; it records every
    // acknowledged write with the revision it was given.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer_urls = urls.clone();
    let writer_stop = stop.clone();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer_count = count.clone();
    let writer = tokio::spawn(async move {
        let mut acked: BTreeMap<String, (String, i64)> = BTreeMap::new();
        let mut errors = 0;
        let mut target = 0;
        let mut client = kv(&writer_urls[0]).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut n = 0;
        while !writer_stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            let key = format!("k{n:06}");
            let value = format!("v{n}");
            let req =
                PutRequest { key: key.clone().into_bytes(), value: value.clone().into_bytes(), ..Default::default() };
            match client.put(req).await {
                Ok(r) => {
                    acked.insert(key, (value, r.into_inner().header.unwrap().revision));
                    writer_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    n += 1;
                }
                Err(_) => {
                    errors += 1;
                    target = (target + 1) % writer_urls.len();
                    client = kv(&writer_urls[target]).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        (acked, errors)
    });

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_kill = Instant::now();
    let acked_at_kill = count.load(std::sync::atomic::Ordering::Relaxed);
    cluster.members[old_leader].kill9();
    // A new leader among the survivors.
    let deadline = Instant::now() + Duration::from_secs(20);
    let new_leader = loop {
        if let Some(l) = leader(&cluster).await {
            if l != old_leader {
                break l;
            }
        }
        assert!(Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(new_leader, old_leader);
    // Writes continue for a while after the failover.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, errors) = writer.await.unwrap();
    let after_kill = acked.len() - acked_at_kill;
    eprintln!("acked {} writes ({errors} errors), failover took < {:?}", acked.len(), before_kill.elapsed());
    assert!(after_kill > 50, "too few writes acknowledged: {after_kill}");

    // The old leader comes back and catches up from the log.
    cluster.spawn(old_leader);
    cluster.wait_ready(old_leader, Duration::from_secs(60));
    let max_rev = acked.values().map(|(_, r)| *r).max().unwrap();
    for url in &urls {
        wait_rev(url, max_rev).await;
    }
    // Every acknowledged write is on every member, at its revision.
    for url in &urls {
        let mut c = kv(url).await;
        let all = c
            .range(RangeRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                serializable: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let found: BTreeMap<String, (String, i64)> = all
            .kvs
            .into_iter()
            .map(|kv| (String::from_utf8(kv.key).unwrap(), (String::from_utf8(kv.value).unwrap(), kv.mod_revision)))
            .collect();
        for (k, v) in &acked {
            assert_eq!(found.get(k), Some(v), "{url}: acknowledged write {k} missing or wrong");
        }
    }
    // Same history everywhere: equal HashKV at the same revision.
    let mut hashes = Vec::new();
    for url in &urls {
        let mut m = MaintenanceClient::connect(url.clone()).await.unwrap();
        let h = m.hash_kv(HashKvRequest { revision: max_rev }).await.unwrap().into_inner();
        hashes.push(h.hash);
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "HashKV differs: {hashes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_kept_alive_through_follower_survives_leader_change() {
    let _serial = serial();
    let mut cluster = Cluster::start(retcd(), 3, &[]);
    let lead = leader(&cluster).await.expect("leader");
    let follower = (lead + 1) % 3;
    let url = cluster.members[follower].url();
    let mut lease = LeaseClient::connect(url.clone()).await.unwrap();
    let id = lease.lease_grant(LeaseGrantRequest { ttl: 4, id: 0 }).await.unwrap().into_inner().id;
    kv(&url)
        .await
        .put(PutRequest { key: b"leased".to_vec(), value: b"v".to_vec(), lease: id, ..Default::default() })
        .await
        .unwrap();

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut responses =
        lease.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let keep_alive = async {
        let start = Instant::now();
        let mut renewed = 0;
        while start.elapsed() < Duration::from_secs(12) {
            tx.send(LeaseKeepAliveRequest { id }).await.unwrap();
            if let Ok(Some(r)) = responses.message().await {
                if r.ttl > 0 {
                    renewed += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        renewed
    };
    let kill = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.members[lead].kill9();
    };
    let (renewed, ()) = tokio::join!(keep_alive, kill);
    assert!(renewed >= 8, "only {renewed} renewals succeeded");
    // 12 s after a 4 s grant, the lease and its key are still alive.
    let ttl = lease.lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true }).await.unwrap().into_inner();
    assert!(ttl.ttl > 0, "lease expired: {ttl:?}");
    assert_eq!(ttl.keys, vec![b"leased".to_vec()]);
}

/// The state letter in /proc/<pid>/stat ('T' when stopped).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(ok.success());
}

/// Two of three members frozen (SIGSTOP): the remaining minority refuses
/// writes and linearizable reads with etcd errors within the request timeout,
/// still answers serializable reads, and once the others thaw it rejoins
/// without forcing a new election (pre-vote kept its term).
#[tokio::test(flavor = "multi_thread")]
async fn isolated_minority_refuses_and_rejoins_quietly() {
    let _serial = serial();
    let cluster = Cluster::start(retcd(), 3, &[]);
    let lead = leader(&cluster).await.expect("leader");
    let minority = (lead + 1) % 3;
    let url = cluster.members[minority].url();
    // Longer than the server's request timeout: the error must come from the server.
    let mut c = kv_with_timeout(&url, Duration::from_secs(30)).await;
    c.put(PutRequest { key: b"before".to_vec(), value: b"1".to_vec(), ..Default::default() }).await.unwrap();
    let term_before = MaintenanceClient::connect(cluster.members[lead].url())
        .await
        .unwrap()
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .raft_term;

    let frozen: Vec<u32> = (0..3).filter(|i| *i != minority).map(|i| cluster.members[i].pid().unwrap()).collect();
    for pid in &frozen {
        signal(*pid, "STOP");
    }
    // The signal is asynchronous: wait until both are really stopped.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !frozen.iter().all(|pid| process_state(*pid) == Some('T')) {
        assert!(Instant::now() < deadline, "members did not stop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let outcome = async {
        let start = Instant::now();
        let put = c.put(PutRequest { key: b"during".to_vec(), value: b"x".to_vec(), ..Default::default() }).await;
        let put_took = start.elapsed();
        let start = Instant::now();
        let read = c.range(RangeRequest { key: b"before".to_vec(), ..Default::default() }).await;
        let read_took = start.elapsed();
        let serializable =
            c.range(RangeRequest { key: b"before".to_vec(), serializable: true, ..Default::default() }).await;
        (put, put_took, read, read_took, serializable)
    }
    .await;
    for pid in &frozen {
        signal(*pid, "CONT");
    }
    let (put, put_took, read, read_took, serializable) = outcome;
    // etcd's request timeout with default flags: 5 s + 2 x election timeout.
    let timeout = Duration::from_secs(8);
    let put_err = put.expect_err("a write must fail without a quorum");
    assert!(put_err.message().starts_with("etcdserver: "), "{put_err:?}");
    assert!(put_took < timeout, "write took {put_took:?}");
    let read_err = read.expect_err("a linearizable read must fail without a quorum");
    assert!(read_err.message().starts_with("etcdserver: "), "{read_err:?}");
    assert!(read_took < timeout, "read took {read_took:?}");
    let kvs = serializable.expect("serializable reads are served locally").into_inner().kvs;
    assert_eq!(kvs[0].value, b"1");

    // Thawed: the cluster serves writes again, under the same leader term.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.put(PutRequest { key: b"after".to_vec(), value: b"2".to_vec(), ..Default::default() }).await;
        if r.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "cluster did not recover: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = MaintenanceClient::connect(cluster.members[lead].url())
        .await
        .unwrap()
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.raft_term, term_before, "the isolated member disrupted the leader's term");
}

/// A member that was down while the leader compacted its log past the
/// member's last entry catches up through a snapshot of the leader's data.
#[tokio::test(flavor = "multi_thread")]
async fn member_behind_compacted_log_catches_up_by_snapshot() {
    let _serial = serial();
    let mut cluster = Cluster::start(retcd(), 3, &["--snapshot-count", "300"]);
    let lead = leader(&cluster).await.expect("leader");
    let behind = (lead + 1) % 3;
    let lead_url = cluster.members[lead].url();
    let mut lease = LeaseClient::connect(lead_url.clone()).await.unwrap();
    let lease_id = lease.lease_grant(LeaseGrantRequest { ttl: 600, id: 0 }).await.unwrap().into_inner().id;
    kv(&lead_url)
        .await
        .put(PutRequest { key: b"leased".to_vec(), value: b"x".to_vec(), lease: lease_id, ..Default::default() })
        .await
        .unwrap();
    cluster.members[behind].kill9();

    // More entries than the leader keeps after a snapshot (5000), in parallel.
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let url = lead_url.clone();
            tokio::spawn(async move {
                let mut c = kv(&url).await;
                let mut last = 0;
                for i in 0..400 {
                    let key = format!("snap/{w:02}/{i:04}").into_bytes();
                    let r = c.put(PutRequest { key, value: vec![b'v'; 64], ..Default::default() }).await.unwrap();
                    last = r.into_inner().header.unwrap().revision;
                }
                last
            })
        })
        .collect();
    let mut max_rev = 0;
    for w in writers {
        max_rev = max_rev.max(w.await.unwrap());
    }

    cluster.spawn(behind);
    cluster.wait_ready(behind, Duration::from_secs(60));
    let url = cluster.members[behind].url();
    wait_rev(&url, max_rev).await;
    let log = cluster.members[behind].log_text();
    assert!(log.contains("installed the snapshot"), "the member did not catch up by snapshot:\n{log}");

    let count = kv(&url)
        .await
        .range(RangeRequest {
            key: b"snap/".to_vec(),
            range_end: b"snap0".to_vec(),
            serializable: true,
            count_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(count, 16 * 400);
    let mut hashes = Vec::new();
    for m in &cluster.members {
        let mut c = MaintenanceClient::connect(m.url()).await.unwrap();
        hashes.push(c.hash_kv(HashKvRequest { revision: max_rev }).await.unwrap().into_inner().hash);
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "HashKV differs: {hashes:?}");
    // The lease came along with the data.
    let mut lease = LeaseClient::connect(url).await.unwrap();
    let ttl = lease.lease_time_to_live(LeaseTimeToLiveRequest { id: lease_id, keys: true }).await.unwrap().into_inner();
    assert_eq!(ttl.keys, vec![b"leased".to_vec()]);
}

/// Starts a member that joins the running `cluster` (`--initial-cluster-state
/// existing`) after `member add`; returns its process and client URL.
/// A member process started by a test itself, killed when the test ends
/// (passed or failed).
struct KillOnDrop(std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_joining_member(cluster: &Cluster, name: &str, peer_port: u16) -> (KillOnDrop, String) {
    let client_port = retcd_testkit::free_port();
    let initial = format!("{},{name}=http://127.0.0.1:{peer_port}", cluster.initial_cluster());
    let dir = cluster.dir.path().join(format!("{name}.etcd"));
    let mut cmd = MemberSpec::new(retcd(), name, client_port, peer_port, &dir)
        .initial_cluster(&initial)
        .args(["--initial-cluster-state", "existing"])
        .command();
    let child = spawn_logged(&mut cmd, &cluster.dir.path().join(format!("{name}.log")));
    (KillOnDrop(child), format!("http://127.0.0.1:{client_port}"))
}

/// MemberAdd, retried through etcd's 5 s health interval (see
/// [`retcd_testkit::reconfigure`]).
async fn member_add(
    admin: &retcd_api::etcdserverpb::cluster_client::ClusterClient<tonic::transport::Channel>,
    peer_port: u16,
    is_learner: bool,
) -> Result<retcd_api::etcdserverpb::MemberAddResponse, tonic::Status> {
    let req = retcd_api::etcdserverpb::MemberAddRequest {
        peer_ur_ls: vec![format!("http://127.0.0.1:{peer_port}")],
        is_learner,
    };
    retcd_testkit::reconfigure(|| {
        let (mut admin, req) = (admin.clone(), req.clone());
        async move { admin.member_add(req).await.map(tonic::Response::into_inner) }
    })
    .await
}

/// Membership changes while the cluster serves: a member added with
/// MemberAdd joins with `--initial-cluster-state existing` and gets the
/// data; a learner is added and promoted; a member is removed and stops.
#[tokio::test(flavor = "multi_thread")]
async fn members_are_added_promoted_and_removed() {
    use retcd_api::etcdserverpb::cluster_client::ClusterClient;
    use retcd_api::etcdserverpb::{MemberListRequest, MemberPromoteRequest, MemberRemoveRequest};

    let _serial = serial();
    let cluster = Cluster::start(retcd(), 3, &[]);
    let url = cluster.members[0].url();
    kv(&url)
        .await
        .put(PutRequest { key: b"before".to_vec(), value: b"1".to_vec(), ..Default::default() })
        .await
        .unwrap();
    let mut admin = ClusterClient::connect(url.clone()).await.unwrap();

    // A voter joins.
    let peer4 = retcd_testkit::free_port();
    let added = member_add(&admin, peer4, false).await.unwrap();
    let id4 = added.member.unwrap().id;
    assert_eq!(added.members.len(), 4);
    let (mut p4, url4) = start_joining_member(&cluster, "m4", peer4);
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let r = kv(&url4).await.range(RangeRequest { key: b"before".to_vec(), ..Default::default() }).await;
        if let Ok(r) = r {
            break r.into_inner();
        }
        assert!(Instant::now() < deadline, "the added member never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(got.kvs[0].value, b"1");
    // Adding the same peer URL again is refused with etcd's error.
    let dup = member_add(&admin, peer4, false).await.unwrap_err();
    assert_eq!(dup.message(), "etcdserver: Peer URLs already exists");

    // A learner joins and is promoted.
    let peer5 = retcd_testkit::free_port();
    let learner = member_add(&admin, peer5, true).await.unwrap().member.unwrap();
    assert!(learner.is_learner);
    // Not started, so not in sync: refused, also when asked of a follower
    // (the leader alone tracks progress and is asked).
    let lead = leader(&cluster).await.expect("leader");
    for i in [lead, (lead + 1) % 3] {
        let mut c = ClusterClient::connect(cluster.members[i].url()).await.unwrap();
        let early = c.member_promote(MemberPromoteRequest { id: learner.id }).await.unwrap_err();
        assert_eq!(early.message(), "etcdserver: can only promote a learner member which is in sync with leader");
    }
    let (mut p5, url5) = start_joining_member(&cluster, "m5", peer5);
    let deadline = Instant::now() + Duration::from_secs(30);
    while kv(&url5)
        .await
        .range(RangeRequest { key: b"before".to_vec(), serializable: true, ..Default::default() })
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the learner never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let promoted = loop {
        match admin.member_promote(MemberPromoteRequest { id: learner.id }).await {
            Ok(r) => break r.into_inner(),
            Err(e) if e.message() == "etcdserver: can only promote a learner member which is in sync with leader" => {
                assert!(Instant::now() < deadline, "the learner never caught up");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("promote failed: {e:?}"),
        }
    };
    assert!(promoted.members.iter().all(|m| !m.is_learner));
    let again = admin.member_promote(MemberPromoteRequest { id: learner.id }).await.unwrap_err();
    assert_eq!(again.message(), "etcdserver: can only promote a learner member");

    // The fourth member is removed: it stops, the others keep serving.
    let left = retcd_testkit::reconfigure(|| {
        let mut admin = admin.clone();
        async move { admin.member_remove(MemberRemoveRequest { id: id4 }).await }
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(left.members.len(), 4);
    let deadline = Instant::now() + Duration::from_secs(20);
    while p4.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the removed member did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kv(&url)
        .await
        .put(PutRequest { key: b"after".to_vec(), value: b"2".to_vec(), ..Default::default() })
        .await
        .unwrap();
    let list = admin.member_list(MemberListRequest {}).await.unwrap().into_inner();
    assert!(list.members.iter().all(|m| m.id != id4));
    let unknown = admin.member_remove(MemberRemoveRequest { id: id4 }).await.unwrap_err();
    assert_eq!(unknown.message(), "etcdserver: member not found");
    let _ = p5.kill();
    let _ = p5.wait();
}

/// MoveLeader hands leadership to the chosen member; only the leader may,
/// and only to a voting member.
#[tokio::test(flavor = "multi_thread")]
async fn move_leader_transfers_leadership() {
    use retcd_api::etcdserverpb::MoveLeaderRequest;

    let _serial = serial();
    let cluster = Cluster::start(retcd(), 3, &[]);
    let ids = member_ids(&cluster).await;
    let lead = leader(&cluster).await.expect("leader");
    let target = (lead + 1) % 3;
    let mut on_follower = MaintenanceClient::connect(cluster.members[target].url()).await.unwrap();
    let err = on_follower.move_leader(MoveLeaderRequest { target_id: ids[lead] }).await.unwrap_err();
    assert_eq!(err.message(), "etcdserver: not leader");
    let mut on_leader = MaintenanceClient::connect(cluster.members[lead].url()).await.unwrap();
    let err = on_leader.move_leader(MoveLeaderRequest { target_id: 12345 }).await.unwrap_err();
    assert_eq!(err.message(), "etcdserver: bad leader transferee");
    on_leader.move_leader(MoveLeaderRequest { target_id: ids[target] }).await.unwrap();
    assert_eq!(leader(&cluster).await, Some(target));
    kv(&cluster.members[lead].url())
        .await
        .put(PutRequest { key: b"after-move".to_vec(), value: b"1".to_vec(), ..Default::default() })
        .await
        .unwrap();
}

/// A member started with another cluster's token (so another cluster id) is
/// refused by the running members and stops with their reason.
#[tokio::test(flavor = "multi_thread")]
async fn member_of_another_cluster_is_refused() {
    let _serial = serial();
    let mut cluster = Cluster::start(retcd(), 3, &[]);
    cluster.members[2].kill9();
    let m = &cluster.members[2];
    let stranger_dir = cluster.dir.path().join("stranger.etcd");
    let out = retcd_testkit::wait_output(
        MemberSpec::new(retcd(), &m.name, m.client_port, m.peer_port, &stranger_dir)
            .initial_cluster(&cluster.initial_cluster())
            .args(["--initial-cluster-token", "another-token"])
            .command()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a member of another cluster started: {stderr}");
    assert!(stderr.contains("cluster ID mismatch"), "{stderr}");
}

/// MemberUpdate changes a member's peer URLs: after a restart on the new
/// URL the member still receives the log (the others send to the new URL).
#[tokio::test(flavor = "multi_thread")]
async fn member_update_moves_a_member_to_new_peer_urls() {
    use retcd_api::etcdserverpb::cluster_client::ClusterClient;
    use retcd_api::etcdserverpb::{MemberListRequest, MemberUpdateRequest};

    let _serial = serial();
    let mut cluster = Cluster::start(retcd(), 3, &[]);
    let ids = member_ids(&cluster).await;
    let lead = leader(&cluster).await.expect("leader");
    let moved = (lead + 1) % 3;
    let mut admin = ClusterClient::connect(cluster.members[lead].url()).await.unwrap();

    let taken = format!("http://127.0.0.1:{}", cluster.members[lead].peer_port);
    let err = admin.member_update(MemberUpdateRequest { id: ids[moved], peer_ur_ls: vec![taken] }).await.unwrap_err();
    assert_eq!(err.message(), "etcdserver: Peer URLs already exists");
    let err = admin
        .member_update(MemberUpdateRequest { id: 12345, peer_ur_ls: vec!["http://127.0.0.1:1".into()] })
        .await
        .unwrap_err();
    assert_eq!(err.message(), "etcdserver: member not found");

    let new_port = retcd_testkit::free_port();
    let new_url = format!("http://127.0.0.1:{new_port}");
    let updated =
        admin.member_update(MemberUpdateRequest { id: ids[moved], peer_ur_ls: vec![new_url.clone()] }).await.unwrap();
    let listed = updated.into_inner().members;
    assert_eq!(listed.iter().find(|m| m.id == ids[moved]).unwrap().peer_ur_ls, vec![new_url.clone()]);

    cluster.members[moved].kill9();
    cluster.members[moved].peer_port = new_port;
    cluster.spawn(moved);
    cluster.wait_ready(moved, Duration::from_secs(60));
    let rev = kv(&cluster.members[lead].url())
        .await
        .put(PutRequest { key: b"after-update".to_vec(), value: b"1".to_vec(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;
    wait_rev(&cluster.members[moved].url(), rev).await;
    let list = ClusterClient::connect(cluster.members[moved].url())
        .await
        .unwrap()
        .member_list(MemberListRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.members.iter().find(|m| m.id == ids[moved]).unwrap().peer_ur_ls, vec![new_url]);
}

/// A client that requires a leader (metadata `hasleader: true`, as
/// clientv3's WithRequireLeader) gets etcd's "no leader" error at once on a
/// member that lost quorum; serializable reads without it still answer.
#[tokio::test(flavor = "multi_thread")]
async fn require_leader_fails_fast_without_quorum() {
    let _serial = serial();
    let mut cluster = Cluster::start(retcd(), 3, &[]);
    cluster.members[1].kill9();
    cluster.members[2].kill9();
    let url = cluster.members[0].url();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = MaintenanceClient::connect(url.clone()).await.unwrap().status(StatusRequest {}).await.unwrap();
        if status.into_inner().leader == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the minority member still has a leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut req = tonic::Request::new(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() });
    req.metadata_mut().insert("hasleader", "true".parse().unwrap());
    // (Without the requirement the put would wait and time out instead.)
    let err = kv_with_timeout(&url, Duration::from_secs(30)).await.put(req).await.unwrap_err();
    assert_eq!(err.message(), "etcdserver: no leader");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    let mut read = tonic::Request::new(RangeRequest { key: b"k".to_vec(), serializable: true, ..Default::default() });
    read.metadata_mut().insert("hasleader", "false".parse().unwrap());
    kv(&url).await.range(read).await.unwrap();
}

/// A linearizable read waiting on a leader that stops answering fails as
/// soon as the follower sees the leadership change, with etcd's retryable
/// "leader changed", not at the request timeout.
#[tokio::test(flavor = "multi_thread")]
async fn read_waiting_on_a_lost_leader_fails_with_leader_changed() {
    let _serial = serial();
    let cluster = Cluster::start(retcd(), 3, &[]);
    let lead = leader(&cluster).await.expect("leader");
    let follower = (lead + 1) % 3;
    // Longer than the server's request timeout: the error must come from the server.
    let mut c = kv_with_timeout(&cluster.members[follower].url(), Duration::from_secs(30)).await;
    c.put(PutRequest { key: b"k".to_vec(), value: b"1".to_vec(), ..Default::default() }).await.unwrap();
    let pid = cluster.members[lead].pid().unwrap();
    signal(pid, "STOP");
    let read = c.range(RangeRequest { key: b"k".to_vec(), ..Default::default() }).await;
    signal(pid, "CONT");
    let err = read.expect_err("the leader was frozen");
    // "no leader" if the follower had already noticed before the read came.
    assert!(["etcdserver: leader changed", "etcdserver: no leader"].contains(&err.message()), "{err:?}");
}
