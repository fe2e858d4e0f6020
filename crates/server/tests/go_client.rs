//! The seed's Go program: the handbook's `TestEtcd` (tests/go/seed) built with
//! the real Go clientv3 from Debian's golang-etcd-server-dev, run against one
//! retcd endpoint, and against real etcd 3.4 to prove the program itself.
//!
//! It builds in GOPATH mode, offline, with Debian's packages only:
//!
//! ```sh
//! GO111MODULE=off GOPATH=<tmp gopath>:/usr/share/gocode GOCACHE=<dir> \
//!   GOFLAGS= GOPROXY=off GOENV=off CGO_ENABLED=0 \
//!   RETCD_ENDPOINT=127.0.0.1:<port> go test -v -count=1 -timeout 120s .
//! ```
//!
//! run in `<tmp gopath>/src/seed`, which holds a copy of `seed_test.go`.
//! Outside CI the test is skipped when Go or etcd's client sources are
//! missing; in CI (`CI=true`) that fails it.

#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use retcd_testkit::{require_tool, wait_output, Cluster, Kind, Server};

/// Where Debian's golang-etcd-server-dev puts etcd 3.4's sources.
const GOCODE: &str = "/usr/share/gocode";

/// Generous: the first build of clientv3 and its dependencies (grpc, zap,
/// gogo protobuf, ...) takes about a minute on a cold cache.
const GO_TEST_TIMEOUT: Duration = Duration::from_secs(240);

fn seed_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/seed/seed_test.go")
}

/// `go` and etcd's Go client sources, or None (skip) outside CI.
fn go_available() -> Option<PathBuf> {
    let go = require_tool("go")?;
    let clientv3 = Path::new(GOCODE).join("src/go.etcd.io/etcd/clientv3");
    if !clientv3.is_dir() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{} is missing; .ci/run should have installed golang-etcd-server-dev", clientv3.display());
        }
        eprintln!("skipping: {} is missing (apt-get install golang-etcd-server-dev)", clientv3.display());
        return None;
    }
    Some(go)
}

/// A GOPATH of our own holding the seed program at src/seed.
fn make_gopath() -> tempfile::TempDir {
    let gopath = tempfile::Builder::new().prefix("retcd-gopath").tempdir().unwrap();
    let pkg = gopath.path().join("src/seed");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::copy(seed_source(), pkg.join("seed_test.go")).unwrap();
    gopath
}

/// Runs the seed program against `endpoint`; panics with Go's output unless
/// it passes.
fn run_seed(go: &Path, gopath: &Path, endpoint: &str, against: &str, server_log: impl Fn() -> String) {
    let gopath_env = std::env::join_paths([gopath.to_path_buf(), PathBuf::from(GOCODE)]).unwrap();
    // Kept across runs (target/tmp), so only the first run pays for the
    // build; HOME may be unset or read-only, so Go's default cache is no option.
    let gocache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-build-cache");
    std::fs::create_dir_all(&gocache).unwrap();
    let out_path = gopath.join(format!("go-test-{against}.out"));
    let out = File::create(&out_path).unwrap();
    let mut cmd = Command::new(go);
    cmd.args(["test", "-v", "-count=1", "-timeout", "120s", "."])
        .current_dir(gopath.join("src/seed"))
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath_env)
        .env("GOCACHE", &gocache)
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOENV", "off")
        .env("CGO_ENABLED", "0")
        .env_remove("GOROOT")
        .env_remove("GOBIN")
        .env("RETCD_ENDPOINT", endpoint)
        .stdin(Stdio::null())
        // A file, not a pipe: nobody drains a pipe while we wait.
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    if std::env::var_os("HOME").is_none() {
        cmd.env("HOME", gopath);
    }
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn go test");
    let status = wait_output(child, GO_TEST_TIMEOUT).status;
    let elapsed = started.elapsed();
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    eprintln!("--- go test against {against} ({endpoint}) took {elapsed:.1?}: {status}\n{output}");
    assert!(
        status.success(),
        "the seed's Go program failed against {against} ({status}, after {elapsed:.1?}; \
         killed at {GO_TEST_TIMEOUT:?}):\n{output}\n--- {against} log:\n{}",
        server_log()
    );
    assert!(output.contains("--- PASS: TestEtcd"), "TestEtcd did not report PASS:\n{output}");
}

#[test]
fn handbook_go_program_runs_against_retcd_and_etcd() {
    let Some(go) = go_available() else { return };
    let gopath = make_gopath();

    // Real etcd first: proves the program is right (and warms the cache).
    if let Some(etcd_bin) = require_tool("etcd") {
        let etcd = Server::start(Kind::Etcd, &etcd_bin, &[]);
        run_seed(&go, gopath.path(), &etcd.endpoint(), "etcd", || etcd.log_text());
    }

    let retcd = Server::start(Kind::Retcd, env!("CARGO_BIN_EXE_retcd").as_ref(), &[]);
    run_seed(&go, gopath.path(), &retcd.endpoint(), "retcd", || retcd.log_text());
    drop(retcd);

    // The handbook's own setup: a three-member cluster, all endpoints given.
    let cluster = Cluster::start(env!("CARGO_BIN_EXE_retcd").as_ref(), 3, &[]);
    let logs = || cluster.members.iter().map(|m| m.log_text()).collect::<Vec<_>>().join("\n---\n");
    run_seed(&go, gopath.path(), &cluster.endpoints(), "a three-member retcd cluster", logs);
}
