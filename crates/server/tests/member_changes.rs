//! Membership changes under etcd's strict reconfiguration check, run with
//! real `etcdctl` against a real etcd cluster and a retcd cluster of the
//! same shape: the same adds and removes are accepted or refused at the
//! same points, with the same messages.
//!
//! Added members are never started, so each add changes how many voters are
//! started (etcd's "started" is a member that published its name) and which
//! links are up (an add also needs every voter connected for 5 s).

#![allow(clippy::unwrap_used)]

use retcd_testkit::{etcdctl, etcdctl_reconfigure, require_tool, Cluster};

/// What an etcdctl run against the first member comes to: "ok" or its
/// `Error:` line.
fn outcome(cluster: &Cluster, args: &[&str]) -> String {
    summary(&etcdctl(&cluster.members[0].endpoint(), args, None))
}

fn summary(out: &std::process::Output) -> String {
    if out.status.success() {
        return "ok".into();
    }
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    stderr.lines().find(|l| l.starts_with("Error:")).unwrap_or(&stderr).to_string()
}

/// A member add, retried while the links are too new to count (etcd's
/// 5 s health interval after start), at most 30 s.
fn add_when_links_count(cluster: &Cluster, args: &[&str]) -> String {
    summary(&etcdctl_reconfigure(&cluster.members[0].endpoint(), args))
}

/// The id (hex) of the member with peer URL `url`.
fn member_id(cluster: &Cluster, url: &str) -> String {
    let out = etcdctl(&cluster.members[0].endpoint(), &["member", "list"], None);
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = list.lines().find(|l| l.contains(url)).unwrap_or_else(|| panic!("no {url} in {list}"));
    line.split(',').next().unwrap().to_string()
}

fn voters_listed(cluster: &Cluster) -> usize {
    let out = etcdctl(&cluster.members[0].endpoint(), &["member", "list"], None);
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.ends_with(", false")).count()
}

/// The one-member sequence; returns each step's outcome.
fn grow_one(binary: &std::path::Path) -> Vec<String> {
    let cluster = Cluster::start(binary, 1, &[]);
    let mut steps = vec![add_when_links_count(&cluster, &["member", "add", "m2", "--peer-urls=http://127.0.0.1:1"])];
    steps.push(outcome(&cluster, &["member", "add", "m3", "--peer-urls=http://127.0.0.1:2"]));
    steps.push(outcome(&cluster, &["member", "add", "m4", "--learner", "--peer-urls=http://127.0.0.1:3"]));
    steps
}

/// The three-member sequence; returns each step's outcome.
fn grow_three(binary: &std::path::Path) -> Vec<String> {
    let cluster = Cluster::start(binary, 3, &[]);
    let mut steps = vec![add_when_links_count(&cluster, &["member", "add", "m4", "--peer-urls=http://127.0.0.1:1"])];
    // m4 never connects, so no further change may be made while it is a
    // voter, except removing it.
    steps.push(outcome(&cluster, &["member", "add", "m5", "--peer-urls=http://127.0.0.1:2"]));
    steps.push(outcome(&cluster, &["member", "add", "m5", "--learner", "--peer-urls=http://127.0.0.1:2"]));
    let id = member_id(&cluster, "http://127.0.0.1:1");
    steps.push(outcome(&cluster, &["member", "remove", &id]));
    steps.push(format!("{} voters", voters_listed(&cluster)));
    // A started member can go too: two started voters remain of two.
    let id = member_id(&cluster, &format!("127.0.0.1:{}", cluster.members[2].peer_port));
    steps.push(outcome(&cluster, &["member", "remove", &id]));
    steps.push(format!("{} voters", voters_listed(&cluster)));
    steps
}

fn servers() -> Option<[std::path::PathBuf; 2]> {
    let etcd = require_tool("etcd")?;
    require_tool("etcdctl")?;
    Some([etcd, env!("CARGO_BIN_EXE_retcd").into()])
}

#[test]
fn a_one_member_cluster_grows_to_two_and_no_further_as_etcd() {
    let Some([etcd, retcd]) = servers() else { return };
    let expected = [
        "ok",
        "Error: etcdserver: re-configuration failed due to not enough started members",
        "Error: etcdserver: unhealthy cluster",
    ];
    assert_eq!(grow_one(&etcd), expected, "etcd");
    assert_eq!(grow_one(&retcd), expected, "retcd");
    // Without the check the second add is not refused; it cannot commit
    // either, since the first one cost the quorum (etcd times out on the
    // proposal, retcd's read before it finds no leader).
    for binary in [etcd, retcd] {
        let cluster = Cluster::start(&binary, 1, &["--strict-reconfig-check=false"]);
        assert_eq!(outcome(&cluster, &["member", "add", "m2", "--peer-urls=http://127.0.0.1:1"]), "ok");
        let second = outcome(&cluster, &["member", "add", "m3", "--peer-urls=http://127.0.0.1:2"]);
        assert!(second.starts_with("Error: ") && !second.contains("started members"), "{binary:?}: {second}");
    }
}

#[test]
fn a_three_member_cluster_adds_and_removes_as_etcd() {
    let Some([etcd, retcd]) = servers() else { return };
    let expected = [
        "ok",
        "Error: etcdserver: unhealthy cluster",
        "Error: etcdserver: unhealthy cluster",
        "ok",
        "3 voters",
        "ok",
        "2 voters",
    ];
    assert_eq!(grow_three(&etcd), expected, "etcd");
    assert_eq!(grow_three(&retcd), expected, "retcd");
}
