//! Leader failover (issue 11, part 5): how long writes stop when the leader
//! of a three-member cluster dies (kill -9) or stops (SIGTERM), from the
//! signal to the first successful put through a surviving member.
//!
//! The CI run does one round of each and checks what does not depend on
//! timing: writes resume, a stopping leader hands leadership to a follower
//! (its log names the member that then leads), and after kill -9 a
//! survivor notices the refused connection and campaigns early.
//! `RETCD_FAILOVER_ROUNDS=N` runs N rounds of each and prints the
//! distributions; `RETCD_FAILOVER_BIN=/usr/bin/etcd` measures real etcd the
//! same way (the hand-off check is retcd's log line, so it is skipped there).
//! Times are printed, never asserted: the machines are shared and noisy.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use retcd_api::etcdserverpb::{PutRequest, StatusRequest};
use retcd_testkit::Cluster;
use tonic::transport::{Channel, Endpoint};

const MEMBERS: usize = 3;
/// How long one write attempt may take before the next one starts.
const ATTEMPT: Duration = Duration::from_millis(100);
/// Write loops per surviving member, started this far apart, so the first
/// write the new leader can take is seen within a few tens of milliseconds.
const LOOPS: usize = 4;
const LOOP_OFFSET: Duration = Duration::from_millis(25);
/// The bound on one failover: far above any election, so a hang fails.
const GIVE_UP: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    Kill9,
    Term,
}

fn channel(cluster: &Cluster, member: usize) -> Channel {
    Endpoint::from_shared(cluster.members[member].url())
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .connect_lazy()
}

/// (member index, member id) of the member that says it leads (not
/// `not`), bounded.
async fn leader(cluster: &Cluster, not: Option<usize>) -> (usize, u64) {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        for m in (0..MEMBERS).filter(|&m| Some(m) != not && cluster.members[m].is_running()) {
            if let Ok(st) = MaintenanceClient::new(channel(cluster, m)).status(StatusRequest {}).await {
                let st = st.into_inner();
                let id = st.header.unwrap().member_id;
                if st.leader == id {
                    return (m, id);
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader after {GIVE_UP:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Time from `since` to the first put acknowledged through any of `members`.
async fn first_write(cluster: &Cluster, members: &[usize], since: Instant) -> Duration {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for &m in members {
        for l in 0..LOOPS {
            let mut kv = KvClient::new(channel(cluster, m));
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(LOOP_OFFSET * l as u32).await;
                while since.elapsed() < GIVE_UP {
                    let put = PutRequest { key: b"failover".to_vec(), value: vec![m as u8], ..Default::default() };
                    let started = Instant::now();
                    if let Ok(Ok(_)) = tokio::time::timeout(ATTEMPT, kv.put(put)).await {
                        let _ = tx.send(since.elapsed());
                        return;
                    }
                    // A quick refusal (no leader yet) must not spin.
                    tokio::time::sleep(ATTEMPT.saturating_sub(started.elapsed()).min(Duration::from_millis(10))).await;
                }
            }));
        }
    }
    drop(tx);
    let first = rx.recv().await;
    for t in tasks {
        t.abort();
    }
    first.unwrap_or_else(|| panic!("no write succeeded within {GIVE_UP:?} of the leader stopping"))
}

/// One failover: stop the leader, time the first write, check the hand-off
/// after SIGTERM, start the member again.
async fn round(cluster: &mut Cluster, stop: Stop, retcd: bool) -> Duration {
    let (old, old_id) = leader(cluster, None).await;
    let survivors: Vec<usize> = (0..MEMBERS).filter(|&m| m != old).collect();
    // Warm connections to the survivors, so the measurement is the failover.
    first_write(cluster, &survivors, Instant::now()).await;
    let pid = cluster.members[old].pid().unwrap();
    let since = Instant::now();
    let sig = if stop == Stop::Kill9 { "KILL" } else { "TERM" };
    let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
    let took = first_write(cluster, &survivors, since).await;
    let code = tokio::task::block_in_place(|| {
        if stop == Stop::Kill9 {
            cluster.members[old].kill9();
            None
        } else {
            cluster.members[old].terminate()
        }
    });
    let (_, new_id) = leader(cluster, Some(old)).await;
    // etcd dies of the SIGTERM it re-raises (no exit code); retcd exits 0.
    if stop == Stop::Term && retcd {
        assert_eq!(code, Some(0), "a leader stopped with SIGTERM exits cleanly");
        {
            let log = cluster.members[old].log_text();
            let line = format!("handing leadership to {new_id:x}");
            assert!(log.contains(&line), "the stopping leader {old_id:x} did not log {line:?}; log:\n{log}");
        }
    }
    // A follower whose dead leader's address refuses connections campaigns
    // at once rather than after its election timeout.
    if stop == Stop::Kill9 && retcd {
        let line = format!("leader {old_id:x} refuses connections");
        let logs: Vec<String> = survivors.iter().map(|&m| cluster.members[m].log_text()).collect();
        assert!(logs.iter().any(|l| l.contains(&line)), "no survivor logged {line:?}; logs:\n{}", logs.join("\n"));
    }
    tokio::task::block_in_place(|| {
        cluster.spawn(old);
        cluster.wait_ready(old, GIVE_UP);
    });
    took
}

fn summary(stop: Stop, mut times: Vec<Duration>) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    format!(
        "{stop:?}: {} rounds, ms min {:.0} median {:.0} p90 {:.0} max {:.0}; all {:?}",
        times.len(),
        at(0.0),
        at(0.5),
        at(0.9),
        at(1.0),
        times.iter().map(|t| t.as_millis()).collect::<Vec<_>>()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_resume_after_the_leader_dies_or_stops_and_a_stopping_leader_hands_over() {
    let bin = std::env::var("RETCD_FAILOVER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_retcd").into());
    let retcd = std::env::var("RETCD_FAILOVER_BIN").is_err();
    let rounds: usize = std::env::var("RETCD_FAILOVER_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(bin.as_ref(), MEMBERS, &[]));
    for stop in [Stop::Term, Stop::Kill9] {
        let mut times = Vec::new();
        for _ in 0..rounds {
            times.push(round(&mut cluster, stop, retcd).await);
        }
        println!("{bin}: {}", summary(stop, times));
    }
}
