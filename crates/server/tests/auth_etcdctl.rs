//! Conformance of auth: real `etcdctl` 3.4 gives the same output (exit code,
//! stdout, stderr) against retcd as against real etcd for user, role and
//! auth commands, and for requests made with `--user` once auth is enabled.
//!
//! Only ports, client log timestamps and client UUIDs are normalized: auth
//! output carries no cluster-specific IDs. Skipped without etcd/etcdctl.

#![allow(clippy::unwrap_used)]

use std::process::Output;
use std::time::{Duration, Instant};

use retcd_testkit::{etcdctl, require_tool, Kind, Server};

struct Pair {
    servers: [Server; 2],
}

fn normalize(server: &Server, s: &str) -> String {
    let mut s = s.replace(&server.endpoint(), "<ENDPOINT>");
    for marker in ["\"ts\":\"", "\"ts\":", "client-", "\"cluster_id\":", "\"member_id\":"] {
        let mut out = String::new();
        let mut rest = s.as_str();
        while let Some(at) = rest.find(marker) {
            out.push_str(&rest[..at + marker.len()]);
            out.push_str("<X>");
            rest = &rest[at + marker.len()..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || "-:.+".contains(c))).unwrap_or(rest.len());
            rest = &rest[end..];
        }
        out.push_str(rest);
        s = out;
    }
    s
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_on(server: &Server, args: &[&str], stdin: Option<&str>) -> Run {
    let raw: Output = etcdctl(&server.endpoint(), args, stdin);
    Run {
        code: raw.status.code(),
        stdout: normalize(server, &String::from_utf8_lossy(&raw.stdout)),
        stderr: normalize(server, &String::from_utf8_lossy(&raw.stderr)),
    }
}

impl Pair {
    fn start() -> Option<Pair> {
        let etcd = require_tool("etcd")?;
        require_tool("etcdctl")?;
        // The lowest bcrypt cost keeps the test quick on both servers.
        let args = ["--bcrypt-cost", "4"];
        let retcd = Server::start(Kind::Retcd, env!("CARGO_BIN_EXE_retcd").as_ref(), &args);
        let etcd = Server::start(Kind::Etcd, &etcd, &args);
        let pair = Pair { servers: [retcd, etcd] };
        for s in &pair.servers {
            wait_serving(s);
        }
        Some(pair)
    }

    /// Runs on both; asserts equal output and returns retcd's run.
    fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let [ours, theirs] = [0, 1].map(|i| run_on(&self.servers[i], args, stdin));
        let what = format!("etcdctl {}", args.join(" "));
        assert_eq!(
            ours.code, theirs.code,
            "{what}: exit codes differ\nretcd: {}\netcd: {}",
            ours.stderr, theirs.stderr
        );
        assert_eq!(ours.stdout, theirs.stdout, "{what}: stdout differs");
        assert_eq!(ours.stderr, theirs.stderr, "{what}: stderr differs");
        ours
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, None)
    }

    fn ok(&self, args: &[&str], stdout: &str) {
        let r = self.run(args);
        assert_eq!(r.code, Some(0), "etcdctl {}: {}", args.join(" "), r.stderr);
        assert_eq!(r.stdout, stdout, "etcdctl {}", args.join(" "));
    }

    fn fails(&self, args: &[&str], stderr_has: &str) {
        let r = self.run(args);
        assert_ne!(r.code, Some(0), "etcdctl {} should fail: {}", args.join(" "), r.stdout);
        assert!(r.stderr.contains(stderr_has), "etcdctl {}: {:?} lacks {stderr_has:?}", args.join(" "), r.stderr);
    }
}

fn wait_serving(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.etcdctl(&["endpoint", "health"]).status.success() {
        assert!(Instant::now() < deadline, "{:?} never became healthy:\n{}", s.kind, s.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn users_roles_and_permissions_match_etcd() {
    let Some(p) = Pair::start() else { return };
    // Users.
    p.ok(&["user", "add", "alice:apw"], "User alice created\n");
    p.fails(&["user", "add", "alice:other"], "etcdserver: user name already exists");
    p.ok_stdin(&["user", "add", "bob", "--interactive=false"], "bpw\n", "User bob created\n");
    p.ok(&["user", "add", "carol", "--new-user-password", "cpw"], "User carol created\n");
    p.ok(&["user", "add", "nopass", "--no-password"], "User nopass created\n");
    p.run(&["user", "add", "empty:"]);
    p.run(&["user", "delete", "empty"]);
    p.ok(&["user", "list"], "alice\nbob\ncarol\nnopass\n");
    p.ok(&["user", "get", "alice"], "User: alice\nRoles:\n");
    p.fails(&["user", "get", "nosuch"], "etcdserver: user name not found");
    p.fails(&["user", "delete", "nosuch"], "etcdserver: user name not found");
    p.ok(&["user", "delete", "carol"], "User carol deleted\n");
    p.ok_stdin(&["user", "passwd", "bob", "--interactive=false"], "bpw2\n", "Password updated\n");
    p.fails(&["user", "passwd", "nosuch", "--interactive=false"], "etcdserver: user name not found");

    // Roles and permissions of every shape.
    p.ok(&["role", "add", "r1"], "Role r1 created\n");
    p.fails(&["role", "add", "r1"], "etcdserver: role name already exists");
    p.ok(&["role", "add", "r2"], "Role r2 created\n");
    p.ok(&["role", "list"], "r1\nr2\n");
    p.ok(&["role", "grant-permission", "r1", "read", "foo"], "Role r1 updated\n");
    p.ok(&["role", "grant-permission", "r1", "readwrite", "pre/", "--prefix"], "Role r1 updated\n");
    p.ok(&["role", "grant-permission", "r1", "write", "a", "c"], "Role r1 updated\n");
    p.ok(&["role", "grant-permission", "r1", "read", "z", "--from-key"], "Role r1 updated\n");
    // Granting the same key again changes its type.
    p.ok(&["role", "grant-permission", "r1", "readwrite", "foo"], "Role r1 updated\n");
    p.run(&["role", "get", "r1"]);
    p.fails(&["role", "grant-permission", "nosuch", "read", "x"], "etcdserver: role name not found");
    p.ok(&["role", "revoke-permission", "r1", "a", "c"], "Permission of range [a, c) is revoked from role r1\n");
    p.run(&["role", "revoke-permission", "r1", "nokey"]);
    p.run(&["role", "revoke-permission", "r1", "z", "--from-key"]);
    p.run(&["role", "get", "r1"]);
    p.run(&["role", "get", "nosuch"]);

    // Roles of users.
    p.ok(&["user", "grant-role", "alice", "r1"], "Role r1 is granted to user alice\n");
    p.ok(&["user", "grant-role", "alice", "r2"], "Role r2 is granted to user alice\n");
    p.fails(&["user", "grant-role", "alice", "nosuch"], "etcdserver: role name not found");
    p.fails(&["user", "grant-role", "nosuch", "r1"], "etcdserver: user name not found");
    p.run(&["user", "get", "alice"]);
    p.run(&["user", "get", "alice", "--detail"]);
    p.ok(&["user", "revoke-role", "alice", "r2"], "Role r2 is revoked from user alice\n");
    p.fails(&["user", "revoke-role", "alice", "r2"], "etcdserver: role is not granted to the user");
    p.ok(&["role", "delete", "r2"], "Role r2 deleted\n");
    p.fails(&["role", "delete", "r2"], "etcdserver: role name not found");
    p.run(&["user", "get", "alice"]);
    p.run(&["-w", "json", "role", "list"]);
}

#[test]
fn enabled_auth_matches_etcd() {
    let Some(p) = Pair::start() else { return };
    p.fails(&["auth", "enable"], "etcdserver: root user does not exist");
    p.ok(&["user", "add", "root:rpw"], "User root created\n");
    p.ok(&["user", "add", "alice:apw"], "User alice created\n");
    p.ok(&["role", "add", "r"], "Role r created\n");
    p.ok(&["role", "grant-permission", "r", "readwrite", "pre/", "--prefix"], "Role r updated\n");
    p.ok(&["role", "grant-permission", "r", "read", "ro"], "Role r updated\n");
    p.ok(&["user", "grant-role", "alice", "r"], "Role r is granted to user alice\n");
    p.ok(&["put", "ro", "v0"], "OK\n");
    // etcdctl creates the root role and grants it when it is missing.
    p.ok(&["auth", "enable"], "Authentication Enabled\n");
    p.fails(&["auth", "enable"], "etcdserver: user name is empty");
    p.ok(&["--user", "root:rpw", "auth", "enable"], "Authentication Enabled\n");

    // Without credentials.
    p.fails(&["get", "ro"], "etcdserver: user name is empty");
    p.fails(&["put", "pre/a", "1"], "etcdserver: user name is empty");
    p.fails(&["user", "list"], "etcdserver: user name is empty");
    // Wrong credentials.
    p.fails(&["--user", "alice:wrong", "get", "ro"], "etcdserver: authentication failed, invalid user ID or password");
    p.fails(&["--user", "nobody:x", "get", "ro"], "etcdserver: authentication failed, invalid user ID or password");
    // Allowed and denied.
    p.ok(&["--user", "alice:apw", "put", "pre/a", "1"], "OK\n");
    p.ok(&["--user", "alice:apw", "get", "pre/", "--prefix"], "pre/a\n1\n");
    p.ok(&["--user", "alice:apw", "get", "ro"], "ro\nv0\n");
    p.fails(&["--user", "alice:apw", "put", "ro", "x"], "etcdserver: permission denied");
    p.fails(&["--user", "alice:apw", "get", "", "--prefix"], "etcdserver: permission denied");
    p.fails(&["--user", "alice:apw", "del", "ro"], "etcdserver: permission denied");
    p.fails(&["--user", "alice:apw", "user", "list"], "etcdserver: permission denied");
    p.fails(&["--user", "alice:apw", "role", "add", "x"], "etcdserver: permission denied");
    p.ok(&["--user", "alice:apw", "user", "get", "alice"], "User: alice\nRoles: r\n");
    p.fails(&["--user", "alice:apw", "user", "get", "root"], "etcdserver: permission denied");
    p.run(&["--user", "alice:apw", "role", "get", "r"]);
    p.fails(&["--user", "alice:apw", "role", "get", "root"], "etcdserver: permission denied");
    p.fails(&["--user", "alice:apw", "auth", "disable"], "etcdserver: permission denied");
    // Root-only maintenance and membership.
    p.fails(&["--user", "alice:apw", "defrag"], "auth: permission denied");
    p.fails(&["defrag"], "auth: user name is empty");
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("s.db");
    p.fails(&["--user", "alice:apw", "snapshot", "save", snap.to_str().unwrap()], "auth: permission denied");
    p.fails(&["--user", "alice:apw", "member", "add", "x", "--peer-urls=http://127.0.0.1:1"], "permission denied");
    p.fails(&["--user", "alice:apw", "member", "remove", "1234"], "permission denied");
    // Root.
    p.ok(&["--user", "root:rpw", "user", "list"], "alice\nroot\n");
    p.ok(&["--user", "root:rpw", "put", "ro", "v1"], "OK\n");
    p.ok(&["--user", "root:rpw", "get", "", "--prefix", "--keys-only"], "pre/a\n\nro\n\n");
    p.fails(&["--user", "root:rpw", "user", "delete", "root"], "etcdserver: invalid auth management");
    p.fails(&["--user", "root:rpw", "role", "delete", "root"], "etcdserver: invalid auth management");
    p.fails(&["--user", "root:rpw", "user", "revoke-role", "root", "root"], "etcdserver: invalid auth management");
    // A password change takes effect at once.
    p.ok_stdin(
        &["--user", "root:rpw", "user", "passwd", "alice", "--interactive=false"],
        "apw2\n",
        "Password updated\n",
    );
    p.fails(&["--user", "alice:apw", "get", "ro"], "etcdserver: authentication failed, invalid user ID or password");
    p.ok(&["--user", "alice:apw2", "get", "ro"], "ro\nv1\n");
    // A user without password cannot authenticate with one.
    p.ok(&["--user", "root:rpw", "user", "add", "np", "--no-password"], "User np created\n");
    p.run(&["--user", "np:x", "get", "ro"]);
    // Revoking the permission takes effect at once.
    p.ok(
        &["--user", "root:rpw", "role", "revoke-permission", "r", "ro"],
        "Permission of key ro is revoked from role r\n",
    );
    p.fails(&["--user", "alice:apw2", "get", "ro"], "etcdserver: permission denied");

    p.ok(&["--user", "root:rpw", "auth", "disable"], "Authentication Disabled\n");
    p.ok(&["get", "ro"], "ro\nv1\n");
    p.ok(&["user", "delete", "root"], "User root deleted\n");
    p.run(&["--user", "alice:apw2", "get", "ro"]);
}

impl Pair {
    fn ok_stdin(&self, args: &[&str], stdin: &str, stdout: &str) {
        let r = self.run_stdin(args, Some(stdin));
        assert_eq!(r.code, Some(0), "etcdctl {}: {}", args.join(" "), r.stderr);
        assert_eq!(r.stdout, stdout, "etcdctl {}", args.join(" "));
    }
}
