//! Conformance: `retcdctl` prints what `etcdctl` 3.4 prints.
//!
//! Each test drives two fresh servers in lockstep with the same command
//! lines: side A runs real `etcdctl`, side B runs `retcdctl`, and every
//! step's exit code, stdout and stderr must be identical after replacing
//! what legitimately differs between two independent servers (cluster,
//! member and lease ids, ports, and the health check's duration). Both
//! servers start empty, so revisions and raft terms compare exactly.
//!
//! `tool_against_etcd_*` use two real etcd servers (the tools are the only
//! difference); `retcd_vs_etcd` runs retcdctl against retcd and etcdctl
//! against etcd for the KV, lease and watch commands.
//!
//! Without etcd/etcdctl installed the tests are skipped locally (CI installs
//! them). Every wait is bounded; servers and background processes are
//! killed on drop.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use retcd_client::etcdserverpb::{DeleteRangeResponse, PutResponse, RangeResponse, ResponseHeader};
use retcd_testkit::{kill_and_wait, require_tool, wait_output, Kind, Server};

const RETCDCTL: &str = env!("CARGO_BIN_EXE_retcdctl");

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Etcdctl,
    Retcdctl,
}

/// One server, the tool that drives it and its normalization table.
struct Side {
    tool: Tool,
    server: Server,
    subs: Vec<(String, String)>,
}

/// The normalized result of one command.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn command(tool: Tool, endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = match tool {
        Tool::Etcdctl => {
            let mut c = Command::new("etcdctl");
            c.env("ETCDCTL_API", "3");
            c
        }
        Tool::Retcdctl => Command::new(RETCDCTL),
    };
    cmd.arg(format!("--endpoints={endpoint}")).args(args);
    cmd
}

impl Side {
    fn new(tool: Tool, server: Server) -> Side {
        let mut side = Side { tool, server, subs: Vec::new() };
        side.subs.push((format!("127.0.0.1:{}", side.server.client_port), "<CLIENT>".into()));
        side.subs.push((format!("127.0.0.1:{}", side.server.peer_port), "<PEER>".into()));
        side.wait_serving();
        let out = side.raw(&["endpoint", "status", "-w", "json"], None);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let cluster = json_u64(&text, "cluster_id").unwrap_or_else(|| panic!("no cluster_id in {text}"));
        let member = json_u64(&text, "member_id").unwrap();
        side.register(&cluster.to_string(), "<CLUSTER>");
        side.register(&format!("{cluster:x}"), "<CLUSTER>");
        side.register(&member.to_string(), "<MEMBER>");
        side.register(&format!("{member:x}"), "<MEMBER>");
        side
    }

    fn register(&mut self, from: &str, to: &str) {
        self.subs.push((from.to_string(), to.to_string()));
    }

    fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// etcd opens its port before it has a leader: wait for a read.
    fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.raw(&["get", "probe"], None).status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "server never served; log:\n{}", self.server.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn raw(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        self.raw_env(args, stdin, &[])
    }

    fn raw_env(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = command(self.tool, &self.endpoint(), args);
        cmd.envs(env.iter().copied());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tool");
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        wait_output(child, Duration::from_secs(30))
    }

    fn normalize(&self, s: &str) -> String {
        let mut s: String = s.lines().filter(|l| !l.starts_with("{\"level\":")).map(|l| format!("{l}\n")).collect();
        // Longest first, so a hex id is not cut by a shorter one.
        let mut subs = self.subs.clone();
        subs.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        for (from, to) in subs {
            s = s.replace(&from, &to);
        }
        // `Member %16x ... cluster %16x` pads shorter ids with spaces.
        s.lines().map(|l| if l.starts_with("Member ") { squeeze(l) + "\n" } else { format!("{l}\n") }).collect()
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let out = self.raw(args, stdin);
        Run {
            code: out.status.code(),
            stdout: self.normalize(&String::from_utf8_lossy(&out.stdout)),
            stderr: self.normalize(&String::from_utf8_lossy(&out.stderr)),
        }
    }
}

/// Side A (etcdctl) and side B (retcdctl).
struct Pair {
    sides: [Side; 2],
    leases: usize,
    steps: usize,
}

impl Pair {
    /// Two fresh etcd servers, or None when etcd/etcdctl are missing.
    fn etcd_etcd() -> Option<Pair> {
        let etcd = require_tool("etcd")?;
        require_tool("etcdctl")?;
        let a = Server::start(Kind::Etcd, &etcd, &[]);
        let b = Server::start(Kind::Etcd, &etcd, &[]);
        Some(Pair::new(a, b))
    }

    /// etcd for etcdctl, retcd for retcdctl.
    fn etcd_retcd() -> Option<Pair> {
        let etcd = require_tool("etcd")?;
        require_tool("etcdctl")?;
        let retcd = retcd_testkit::retcd_binary_if_built()?;
        let a = Server::start(Kind::Etcd, &etcd, &[]);
        let b = Server::start(Kind::Retcd, &retcd, &[]);
        Some(Pair::new(a, b))
    }

    fn new(a: Server, b: Server) -> Pair {
        Pair { sides: [Side::new(Tool::Etcdctl, a), Side::new(Tool::Retcdctl, b)], leases: 0, steps: 0 }
    }

    fn check(&mut self, args: &[&str], stdin: Option<&str>, post: fn(&str) -> String) -> Run {
        self.steps += 1;
        let runs = [0, 1].map(|i| {
            let r = self.sides[i].run(args, stdin);
            Run { code: r.code, stdout: post(&r.stdout), stderr: post(&r.stderr) }
        });
        assert_eq!(
            runs[0],
            runs[1],
            "`{}`{}: etcdctl (left) and retcdctl (right) differ",
            args.join(" "),
            stdin.map(|s| format!(" <<< {s:?}")).unwrap_or_default()
        );
        let [a, _] = runs;
        a
    }

    /// Runs on both and compares.
    fn same(&mut self, args: &[&str]) -> Run {
        self.check(args, None, |s| s.to_string())
    }

    /// Command lines cobra refuses: exit code and stderr must match (stdout
    /// carries cobra's usage text, which retcdctl does not reproduce).
    fn refused(&mut self, args: &[&str]) {
        self.steps += 1;
        let runs = [0, 1].map(|i| {
            let r = self.sides[i].run(args, None);
            (r.code, r.stderr)
        });
        assert_eq!(runs[0], runs[1], "`{}`: etcdctl (left) and retcdctl (right) differ", args.join(" "));
        assert_eq!(runs[0].0, Some(1), "`{}`: {:?}", args.join(" "), runs[0]);
    }

    /// Runs with `ETCDCTL_*` variables set (log timestamps masked).
    fn with_env(&mut self, env: &[(&str, &str)], args: &[&str]) -> Run {
        self.steps += 1;
        let runs = [0, 1].map(|i| {
            let out = self.sides[i].raw_env(args, None, env);
            let mask = |b: &[u8]| {
                let text = self.sides[i].normalize(&String::from_utf8_lossy(b));
                text.lines()
                    .map(|l| match l.find(" W | ").or_else(|| l.find(" C | ")) {
                        Some(at) => format!("<TIME>{}\n", &l[at..]),
                        None => format!("{l}\n"),
                    })
                    .collect::<String>()
            };
            Run { code: out.status.code(), stdout: mask(&out.stdout), stderr: mask(&out.stderr) }
        });
        assert_eq!(runs[0], runs[1], "{env:?} `{}`: etcdctl (left) and retcdctl (right) differ", args.join(" "));
        let [a, _] = runs;
        a
    }

    /// [`Pair::same`] that must exit with `code`.
    fn code(&mut self, args: &[&str], code: i32) -> Run {
        let r = self.same(args);
        assert_eq!(r.code, Some(code), "`{}`: {r:?}", args.join(" "));
        r
    }

    fn ok(&mut self, args: &[&str]) -> Run {
        self.code(args, 0)
    }

    /// `args` in every output format.
    fn all_formats(&mut self, args: &[&str]) {
        for w in ["simple", "json", "fields", "table"] {
            let mut full = args.to_vec();
            full.extend(["-w", w]);
            // Table columns are as wide as the ids, which differ in length.
            self.check(&full, None, if w == "table" { squeeze } else { |s: &str| s.to_string() });
        }
    }

    /// The revision the next write will get (both sides are in lockstep).
    fn next_revision(&self) -> i64 {
        let out = self.sides[0].raw(&["get", "x", "-w", "json"], None);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        json_u64(&text, "revision").unwrap_or_else(|| panic!("no revision in {text}")) as i64 + 1
    }

    /// `-w protobuf`: both outputs must decode as `M` and be equal once the
    /// header's cluster and member ids (binary, so not replaceable) are cleared.
    fn protobuf<M: prost::Message + Default + PartialEq + std::fmt::Debug>(
        &mut self,
        args: &[&str],
        header: fn(&mut M) -> &mut Option<ResponseHeader>,
    ) {
        self.steps += 1;
        let msgs = [0, 1].map(|i| {
            let out = self.sides[i].raw(args, None);
            assert!(out.status.success(), "`{}` failed: {out:?}", args.join(" "));
            let mut m = M::decode(out.stdout.as_slice()).unwrap();
            if let Some(h) = header(&mut m) {
                h.cluster_id = 0;
                h.member_id = 0;
            }
            m
        });
        assert_eq!(msgs[0], msgs[1], "`{}`: etcdctl (left) and retcdctl (right) differ", args.join(" "));
    }

    /// `lease grant <ttl>` on both; the ids become `<LEASE_n>`. Returns them (hex).
    fn grant(&mut self, ttl: &str) -> [String; 2] {
        self.leases += 1;
        let name = format!("<LEASE_{}>", self.leases);
        let ids = [0, 1].map(|i| {
            let out = self.sides[i].raw(&["lease", "grant", ttl], None);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let hex = text.split_whitespace().nth(1).unwrap_or_else(|| panic!("lease grant: {text:?}")).to_string();
            let id = i64::from_str_radix(&hex, 16).unwrap();
            self.sides[i].register(&hex, &name);
            self.sides[i].register(&id.to_string(), &name);
            self.sides[i].register(&format!("{id:x}"), &name);
            hex
        });
        ids
    }

    /// Runs `args` with a side-specific lease id substituted for `{}`.
    fn with_lease(&mut self, ids: &[String; 2], args: &[&str]) -> Run {
        self.steps += 1;
        let runs = [0, 1].map(|i| {
            let args: Vec<String> = args.iter().map(|a| a.replace("{}", &ids[i])).collect();
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            self.sides[i].run(&refs, None)
        });
        assert_eq!(runs[0], runs[1], "`{}`: etcdctl (left) and retcdctl (right) differ", args.join(" "));
        let [a, _] = runs;
        a
    }
}

fn json_u64(text: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let start = text.find(&pat)? + pat.len();
    let digits: String = text[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Replaces Go durations (`1.2ms`, `850µs`) with `<DUR>` and squeezes table
/// padding, since the health check's time differs run to run.
fn no_durations(s: &str) -> String {
    let mut out = String::new();
    for word in s.split_inclusive([' ', '"', '\n']) {
        let core = word.trim_end_matches([' ', '"', '\n']);
        let is_dur = !core.is_empty()
            && core.starts_with(|c: char| c.is_ascii_digit())
            && ["ns", "µs", "ms", "s"].iter().any(|u| core.ends_with(u))
            && core
                .trim_end_matches(|c: char| c.is_alphabetic() || c == 'µ')
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.');
        if is_dur {
            out.push_str("<DUR>");
            out.push_str(&word[core.len()..]);
        } else {
            out.push_str(word);
        }
    }
    squeeze(&out)
}

/// Collapses runs of spaces and dashes (table padding and borders).
fn squeeze(s: &str) -> String {
    let mut squeezed = String::new();
    let mut prev = '\0';
    for c in s.chars() {
        if (c == ' ' || c == '-') && c == prev {
            continue;
        }
        squeezed.push(c);
        prev = c;
    }
    squeezed
}

/// Masks db sizes in `endpoint status` output (every format) and squeezes
/// table padding.
fn no_sizes(s: &str) -> String {
    let mut out = String::new();
    for line in s.split_inclusive('\n') {
        let mut line = line.to_string();
        for key in ["\"dbSize\":", "\"dbSizeInUse\":", "\"DBSize\" : "] {
            let mut from = 0;
            while let Some(at) = line[from..].find(key).map(|a| a + from) {
                let start = at + key.len();
                let digits = line[start..].chars().take_while(char::is_ascii_digit).count();
                line.replace_range(start..start + digits, "<N>");
                from = start;
            }
        }
        for unit in [" B", " kB", " MB"] {
            let mut from = 0;
            while let Some(pos) = line[from..].find(unit).map(|p| p + from) {
                let after = line[pos + unit.len()..].chars().next();
                let num_start = line[..pos].rfind(|c: char| !(c.is_ascii_digit() || c == '.')).map_or(0, |p| p + 1);
                if num_start < pos && matches!(after, Some(',' | ' ' | '|')) {
                    line.replace_range(num_start..pos + unit.len(), "<SIZE>");
                    from = num_start + 6;
                } else {
                    from = pos + unit.len();
                }
            }
        }
        out.push_str(&line);
    }
    squeeze(&out)
}

/// The lines, sorted, table padding squeezed.
fn sorted_lines(s: &str) -> String {
    let s = squeeze(s);
    let mut lines: Vec<&str> = s.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// Masks lease ids the test did not register (`lease grant` in every format).
fn no_lease_ids(s: &str) -> String {
    let mut out = String::new();
    for line in s.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("lease ") {
            let end = rest.find(' ').unwrap_or(0);
            out.push_str(&format!("lease <ID>{}", &rest[end..]));
        } else if line.starts_with("\"ID\" : ") {
            out.push_str("\"ID\" : <ID>\n");
        } else if let Some(at) = line.find("\"ID\":") {
            let digits = line[at + 5..].chars().take_while(char::is_ascii_digit).count();
            out.push_str(&format!("{}<ID>{}", &line[..at + 5], &line[at + 5 + digits..]));
        } else {
            out.push_str(line);
        }
    }
    out
}

#[test]
fn tool_against_etcd_kv() {
    let Some(mut p) = Pair::etcd_etcd() else { return };
    p.ok(&["put", "foo", "bar"]);
    p.all_formats(&["put", "foo", "baz", "--prev-kv"]);
    p.all_formats(&["get", "foo"]);
    p.all_formats(&["get", "missing"]);
    for i in 0..5 {
        p.ok(&["put", &format!("key{i}"), &format!("value {i} <&>")]);
    }
    p.ok(&["put", "bin", "caf\u{e9} \"quoted\"\ttab"]);
    p.all_formats(&["get", "key", "--prefix"]);
    p.all_formats(&["get", "bin"]);
    p.ok(&["get", "key", "--prefix", "--limit=2", "-w", "json"]);
    p.ok(&["get", "key", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"]);
    p.ok(&["get", "key", "--prefix", "--sort-by=value", "--order=ascend", "-w", "fields"]);
    p.ok(&["get", "key1", "key4"]);
    p.ok(&["get", "key2", "--from-key", "--keys-only"]);
    p.ok(&["get", "", "--prefix", "--keys-only"]);
    p.ok(&["get", "key", "--prefix", "--print-value-only"]);
    p.ok(&["get", "foo", "--hex"]);
    p.protobuf::<RangeResponse>(&["get", "key", "--prefix", "-w", "protobuf"], |m| &mut m.header);
    p.protobuf::<PutResponse>(&["put", "pb", "v", "--prev-kv", "-w", "protobuf"], |m| &mut m.header);
    p.protobuf::<DeleteRangeResponse>(&["del", "pb", "--prev-kv", "-w", "protobuf"], |m| &mut m.header);
    p.ok(&["get", "foo", "--rev=2", "-w", "json"]);
    p.ok(&["get", "foo", "--consistency=s"]);
    p.ok(&["--hex", "get", "key", "--prefix", "-w", "json"]);
    p.all_formats(&["del", "key0", "--prev-kv"]);
    p.ok(&["del", "key", "--prefix", "--prev-kv"]);
    p.ok(&["del", "nothing"]);
    p.ok(&["put", "a", "1"]);
    p.ok(&["put", "b", "2"]);
    p.ok(&["del", "a", "--from-key", "-w", "json"]);
    p.check(&["put", "fromstdin"], Some("value from stdin\n"), |s| s.to_string());
    p.ok(&["get", "fromstdin"]);
    p.ok(&["put", "fromstdin", "--ignore-value", "--prev-kv"]);
    p.ok(&["put", "dash", "--", "-v"]);
    p.ok(&["put", "--", "dash2", "-w"]);
    p.ok(&["get", "dash", "--prefix", "-w", "json"]);
    p.ok(&["compaction", "3"]);
    p.ok(&["compaction", "--physical", "4"]);
    p.code(&["get", "foo", "--rev=2"], 1);
    p.code(&["compaction", "2"], 1);
    p.ok(&["version"]);
    // Argument errors: etcdctl's messages and exit codes.
    p.code(&["get"], 128);
    p.code(&["get", "a", "b", "--prefix"], 128);
    p.code(&["get", "a", "--prefix", "--from-key"], 128);
    p.code(&["get", "a", "--consistency=x"], 4);
    p.code(&["get", "a", "--order=sideways"], 4);
    p.code(&["get", "a", "--sort-by=size"], 4);
    p.code(&["get", "foo", "--print-value-only", "-w", "json"], 128);
    p.code(&["get", "foo", "-w", "table"], 4);
    p.code(&["get", "foo", "-w", "yaml"], 4);
    p.code(&["put"], 128);
    p.code(&["put", "k", "v", "--lease=xyz"], 128);
    p.code(&["put", "k", "v", "--ignore-value"], 128);
    p.code(&["put", "k", "v", "--lease=123abc"], 1);
    p.code(&["del"], 128);
    p.code(&["del", "a", "b", "c"], 128);
    p.code(&["compaction"], 128);
    p.code(&["compaction", "x"], 1);
    p.code(&["put", "", "v"], 1);
    p.with_env(&[("ETCDCTL_WRITE_OUT", "json")], &["get", "foo"]);
    p.with_env(&[("ETCDCTL_WRITE_OUT", "json")], &["get", "foo", "-w", "fields"]);
    p.with_env(&[("ETCDCTL_HEX", "true"), ("ETCDCTL_COMMAND_TIMEOUT", "10s")], &["get", "foo"]);
    p.with_env(&[("ETCDCTL_DIAL_TIMEOUT", "soon"), ("ETCDCTL_FROB", "1")], &["get", "foo"]);
    for args in [
        &["frobnicate"][..],
        &["get", "k", "--nope"],
        &["get", "k", "-x"],
        &["get", "k", "--rev"],
        &["get", "k", "--rev=abc"],
        &["get", "k", "--limit=ten"],
        &["get", "k", "--prefix=maybe"],
        &["--hex=2", "get", "k"],
        &["--dial-timeout=soon", "get", "k"],
    ] {
        p.refused(args);
    }
    eprintln!("{} steps compared", p.steps);
}

#[test]
fn tool_against_etcd_txn() {
    let Some(mut p) = Pair::etcd_etcd() else { return };
    p.ok(&["put", "k1", "v1"]);
    let txns = [
        "mod(\"k1\") > \"0\"\n\nput k2 v2\nget k1\ndel k9\n\nput k3 v3\n\n",
        "value(\"k1\") = \"nope\"\n\nput k2 v2\n\nget k --prefix\nput k4 \"a b\"\n\n",
        "ver(\"k1\") = \"1\"\nc(\"k2\") != \"0\"\n\nput k1 --prev-kv v5\n\n\n",
        "\n\n\n",
    ];
    for input in txns {
        for w in ["simple", "json", "fields"] {
            p.check(&["txn", "-w", w], Some(input), |s| s.to_string());
        }
        p.check(&["txn", "-i"], Some(input), |s| s.to_string());
    }
    for bad in ["bad\n\n\n\n", "mod(\"k1\") > \"0\"\n\nfrob k\n\n\n", "mod(\"k1\") > \"0\"\n"] {
        p.check(&["txn"], Some(bad), |s| s.to_string());
    }
    p.code(&["txn", "extra"], 128);
    p.code(&["txn", "-w", "table"], 3);
    eprintln!("{} steps compared", p.steps);
}

#[test]
fn tool_against_etcd_lease_cluster_maintenance() {
    let Some(mut p) = Pair::etcd_etcd() else { return };
    // Before any lease: lease ids (random) are part of the hash.
    p.ok(&["put", "k", "v"]);
    p.all_formats(&["member", "list"]);
    // The db size moves with etcd's background commits: masked.
    for w in ["simple", "json", "fields", "table"] {
        p.check(&["endpoint", "status", "-w", w], None, no_sizes);
        p.check(&["endpoint", "status", "--cluster", "-w", w], None, no_sizes);
    }
    p.all_formats(&["endpoint", "hashkv"]);
    let ids = p.grant("300");
    p.with_lease(&ids, &["put", "leased", "v", "--lease={}"]);
    for w in ["simple", "json", "fields", "table"] {
        p.with_lease(&ids, &["lease", "timetolive", "{}", "--keys", "-w", w]);
        p.with_lease(&ids, &["lease", "keep-alive", "--once", "{}", "-w", w]);
        p.same(&["lease", "list", "-w", w]);
    }
    for w in ["simple", "json", "fields", "table"] {
        p.check(&["lease", "grant", "100", "-w", w], None, no_lease_ids);
    }
    p.with_lease(&ids, &["lease", "revoke", "{}", "-w", "json"]);
    p.with_lease(&ids, &["lease", "timetolive", "{}"]);
    p.with_lease(&ids, &["lease", "timetolive", "{}", "-w", "json"]);
    p.with_lease(&ids, &["lease", "keep-alive", "--once", "{}"]);
    p.with_lease(&ids, &["lease", "revoke", "{}"]);
    p.code(&["lease", "grant"], 128);
    p.code(&["lease", "grant", "ten"], 128);
    p.code(&["lease", "revoke", "zz"], 128);
    p.code(&["lease", "timetolive"], 128);
    p.code(&["lease", "keep-alive"], 128);
    for w in ["simple", "json", "fields", "table"] {
        p.check(&["endpoint", "health", "-w", w], None, no_durations);
    }
    p.check(&["endpoint", "health", "--cluster"], None, no_durations);
    p.same(&["alarm", "list"]);
    p.same(&["alarm", "list", "-w", "json"]);
    // An endpoint nobody listens on, next to the live one (the harness's own
    // --endpoints comes first: repeated, the flag appends, in both tools).
    let dead = format!("127.0.0.1:{}", retcd_testkit::free_port());
    let both: Vec<String> = p.sides.iter().map(|s| format!("--endpoints={},{dead}", s.endpoint())).collect();
    for args in [&["endpoint", "status"][..], &["endpoint", "health"], &["endpoint", "status", "-w", "json"]] {
        p.steps += 1;
        let runs: Vec<Run> = (0..2)
            .map(|i| {
                let mut full = vec![both[i].as_str(), "--command-timeout=1s"];
                full.extend_from_slice(args);
                let r = p.sides[i].run(&full, None);
                Run { code: r.code, stdout: no_sizes(&no_durations(&r.stdout)), stderr: no_durations(&r.stderr) }
            })
            .collect();
        assert_eq!(runs[0], runs[1], "`{}` with a dead endpoint differs", args.join(" "));
        assert_eq!(runs[0].code, Some(1));
    }
    p.steps += 1;
    let runs: Vec<Run> = (0..2)
        .map(|i| p.sides[i].run(&[&format!("--endpoints={dead}"), "--command-timeout=1s", "get", "k"], None))
        .collect();
    assert_eq!(runs[0], runs[1], "get on a dead endpoint differs");
    // snapshot save: each side into its own dir, named alike.
    let runs: Vec<(Option<i32>, String, u64)> = (0..2)
        .map(|i| {
            let dir = p.sides[i].server.dir.path().to_path_buf();
            let file = dir.join("backup.db");
            let out = p.sides[i].raw(&["snapshot", "save", file.to_str().unwrap()], None);
            let text = p.sides[i].normalize(&String::from_utf8_lossy(&out.stdout));
            let text = text.replace(dir.to_str().unwrap(), "<DIR>");
            (out.status.code(), text, std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0))
        })
        .collect();
    assert_eq!((runs[0].0, &runs[0].1), (runs[1].0, &runs[1].1), "snapshot save differs");
    assert_eq!(runs[0].0, Some(0));
    assert!(runs[1].2 % 512 == 32, "snapshot file size {}", runs[1].2);
    p.code(&["snapshot", "save"], 128);
    p.same(&["alarm", "disarm"]);
    p.code(&["alarm", "list", "x"], 128);
    p.code(&["member", "remove"], 128);
    p.code(&["member", "remove", "xyz"], 128);
    p.code(&["member", "remove", "1234"], 1);
    p.code(&["member", "add"], 128);
    p.code(&["member", "add", "x", "http://127.0.0.1:1"], 128);
    p.code(&["member", "add", "x"], 128);
    p.code(&["member", "update", "1234"], 128);
    p.code(&["member", "promote", "1234"], 1);
    p.code(&["move-leader"], 128);
    p.code(&["move-leader", "1234"], 1);
    eprintln!("{} steps compared", p.steps);
}

/// A watch run in the background by one tool; output to files.
struct Bg {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Bg {
    fn spawn(tool: Tool, endpoint: &str, args: &[&str]) -> Bg {
        let dir = tempfile::Builder::new().prefix("retcdctl-bg").tempdir().unwrap();
        let out = std::fs::File::create(dir.path().join("out")).unwrap();
        let err = std::fs::File::create(dir.path().join("err")).unwrap();
        let child = command(tool, endpoint, args).stdin(Stdio::null()).stdout(out).stderr(err).spawn().unwrap();
        Bg { child: Some(child), dir }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Waits (bounded) until stdout has `n` lines or the process exits.
    fn wait_lines(&mut self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.read("out").lines().count() < n && Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for the exit code.
    fn wait_exit(&mut self) -> Option<i32> {
        let child = self.child.take()?;
        wait_output(child, Duration::from_secs(20)).status.code()
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        kill_and_wait(&mut self.child);
    }
}

/// Starts `args` as a background watch on both sides, runs `writes` on both,
/// waits for `lines` lines of output and compares.
fn watch_case(p: &mut Pair, args: &[&str], writes: &[&[&str]], lines: usize) {
    // Neither tool says when its watch is registered: unless the case sets
    // --rev, start at the next revision so no write can be missed.
    let rev_flag = format!("--rev={}", p.next_revision());
    let mut args = args.to_vec();
    if !args.iter().any(|a| a.starts_with("--rev")) {
        args.insert(1, &rev_flag);
    }
    let args = args.as_slice();
    let mut bgs: Vec<Bg> = p.sides.iter().map(|s| Bg::spawn(s.tool, &s.endpoint(), args)).collect();
    // One write at a time, each seen by both watches before the next: a
    // watch that registers late then replays exactly one event, so the
    // grouping of events into responses is the same on both sides.
    for w in writes {
        let before: Vec<usize> = bgs.iter().map(|b| b.read("out").len()).collect();
        p.ok(w);
        let deadline = Instant::now() + Duration::from_secs(20);
        while bgs.iter().zip(&before).any(|(b, n)| b.read("out").len() <= *n) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for b in &mut bgs {
        b.wait_lines(lines);
    }
    let outs: Vec<(String, String)> =
        bgs.iter().zip(&p.sides).map(|(b, s)| (s.normalize(&b.read("out")), s.normalize(&b.read("err")))).collect();
    assert_eq!(outs[0], outs[1], "watch {}: etcdctl (left) and retcdctl (right) differ", args.join(" "));
    assert!(outs[0].0.lines().count() >= lines, "watch {}: too little output: {:?}", args.join(" "), outs[0]);
}

/// `compacted`: also compare a watch canceled by compaction (see
/// `retcd_vs_etcd` for why retcd skips it).
fn watch_scenarios(p: &mut Pair, compacted: bool) {
    watch_case(p, &["watch", "w", "--prefix"], &[&["put", "w1", "a"], &["put", "w2", "b"], &["del", "w1"]], 9);
    watch_case(p, &["watch", "w1", "--prev-kv", "-w", "json"], &[&["put", "w1", "c<d>"], &["del", "w1"]], 2);
    watch_case(p, &["watch", "w", "w3", "-w", "fields"], &[&["put", "w2", "x"]], 11);
    watch_case(p, &["watch", "w", "--prefix", "--rev=1", "--prev-kv"], &[], 18);
    watch_case(
        p,
        &[
            "watch",
            "w2",
            "--",
            "sh",
            "-c",
            "echo $ETCD_WATCH_REVISION $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE",
        ],
        &[&["put", "w2", "say \"hi\""]],
        4,
    );
    p.code(&["watch"], 128);
    p.code(&["watch", "a", "b", "--prefix"], 128);
    p.code(&["watch", "a", "--"], 128);
    if !compacted {
        return;
    }
    // A watch on a compacted revision: canceled, exit code 5.
    p.ok(&["compaction", "5"]);
    let mut bgs: Vec<Bg> =
        p.sides.iter().map(|s| Bg::spawn(s.tool, &s.endpoint(), &["watch", "w", "--rev=2", "-w", "json"])).collect();
    let codes: Vec<Option<i32>> = bgs.iter_mut().map(Bg::wait_exit).collect();
    assert_eq!(codes, [Some(5), Some(5)]);
    let outs: Vec<(String, String)> =
        bgs.iter().zip(&p.sides).map(|(b, s)| (s.normalize(&b.read("out")), s.normalize(&b.read("err")))).collect();
    assert_eq!(outs[0], outs[1], "compacted watch differs");
}

#[test]
fn tool_against_etcd_watch() {
    let Some(mut p) = Pair::etcd_etcd() else { return };
    watch_scenarios(&mut p, true);
}

/// retcdctl against retcd gives what etcdctl gives against etcd.
#[test]
fn retcd_vs_etcd() {
    let Some(mut p) = Pair::etcd_retcd() else { return };
    p.ok(&["put", "foo", "bar"]);
    p.all_formats(&["put", "foo", "baz", "--prev-kv"]);
    p.all_formats(&["get", "foo"]);
    p.all_formats(&["get", "missing"]);
    p.all_formats(&["del", "foo", "--prev-kv"]);
    p.check(&["txn", "-w", "json"], Some("mod(\"foo\") = \"0\"\n\nput foo v\nget foo\n\n\n"), |s| s.to_string());
    let ids = p.grant("300");
    p.with_lease(&ids, &["put", "leased", "v", "--lease={}"]);
    p.with_lease(&ids, &["lease", "timetolive", "{}", "--keys"]);
    p.with_lease(&ids, &["lease", "keep-alive", "--once", "{}", "-w", "json"]);
    p.same(&["lease", "list"]);
    p.with_lease(&ids, &["lease", "revoke", "{}"]);
    p.all_formats(&["member", "list"]);
    p.same(&["alarm", "list", "-w", "json"]);
    p.check(&["endpoint", "health"], None, no_durations);
    p.ok(&["lock", "job", "--", "echo", "locked"]);
    p.ok(&["get", "job", "--prefix"]);
    // Not the compacted-watch case: retcd's cancel response carries the
    // current revision in its header where etcd sends 0 (a server
    // difference, reported; retcdctl prints what it receives).
    watch_scenarios(&mut p, false);
    eprintln!("{} steps compared", p.steps);
}

#[test]
fn tool_against_etcd_auth() {
    let Some(mut p) = Pair::etcd_etcd() else { return };
    p.code(&["auth", "enable"], 1);
    p.ok(&["user", "add", "root", "--new-user-password=rootpw"]);
    p.ok(&["user", "add", "alice:pw", "-w", "json"]);
    p.check(&["user", "add", "bob", "--interactive=false"], Some("bobpw\n"), |s| s.to_string());
    p.ok(&["role", "add", "reader"]);
    p.ok(&["role", "grant-permission", "reader", "read", "foo"]);
    p.ok(&["role", "grant-permission", "reader", "readwrite", "k", "--prefix", "-w", "json"]);
    p.ok(&["role", "grant-permission", "reader", "write", "a", "z", "-w", "fields"]);
    p.ok(&["role", "grant-permission", "reader", "read", "", "--from-key"]);
    for w in ["simple", "json", "fields", "table"] {
        p.same(&["role", "get", "reader", "-w", w]);
        p.same(&["role", "list", "-w", w]);
        p.same(&["user", "list", "-w", w]);
    }
    p.ok(&["user", "grant-role", "alice", "reader"]);
    p.same(&["user", "get", "alice"]);
    p.same(&["user", "get", "alice", "-w", "json"]);
    p.same(&["user", "get", "alice", "--detail"]);
    p.ok(&["role", "revoke-permission", "reader", "foo"]);
    p.ok(&["role", "revoke-permission", "reader", "k", "--prefix"]);
    p.ok(&["role", "revoke-permission", "reader", "a", "z"]);
    p.ok(&["role", "revoke-permission", "reader", "", "--from-key"]);
    p.ok(&["user", "revoke-role", "alice", "reader"]);
    p.code(&["user", "revoke-role", "alice", "reader"], 1);
    p.ok(&["user", "grant-role", "root", "root"]);
    p.ok(&["auth", "enable"]);
    p.code(&["get", "foo"], 1);
    p.ok(&["--user", "root:rootpw", "put", "foo", "bar"]);
    p.ok(&["--user=root", "--password=rootpw", "get", "foo"]);
    p.code(&["--user", "root:wrong", "get", "foo"], 2);
    p.code(&["--user", "alice:pw", "put", "foo", "x"], 1);
    p.ok(&["--user", "root:rootpw", "auth", "disable"]);
    p.ok(&["user", "delete", "alice"]);
    p.ok(&["role", "delete", "reader"]);
    p.code(&["user", "delete", "alice"], 1);
    p.code(&["user", "add"], 128);
    p.code(&["user", "add", ":pw"], 128);
    p.code(&["user", "get"], 128);
    p.code(&["user", "list", "x"], 128);
    p.code(&["user", "grant-role", "a"], 128);
    p.code(&["role", "add"], 128);
    p.code(&["role", "grant-permission", "r", "read"], 128);
    p.code(&["role", "grant-permission", "r", "fly", "k"], 128);
    p.code(&["role", "grant-permission", "r", "read", "k", "z", "--prefix"], 128);
    p.code(&["role", "revoke-permission", "r"], 128);
    p.code(&["auth", "enable", "x"], 128);
    eprintln!("{} steps compared", p.steps);
}

#[test]
fn tool_against_etcd_member_changes() {
    let Some(mut p) = Pair::etcd_etcd() else { return };
    // A learner that never starts: quorum is unaffected.
    let ids: Vec<String> = (0..2)
        .map(|i| {
            let out = p.sides[i].raw(&["member", "add", "newbie", "--learner", "--peer-urls=http://127.0.0.1:1"], None);
            assert!(out.status.success(), "member add: {out:?}");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let hex = text.split_whitespace().nth(1).unwrap().to_string();
            let id = u64::from_str_radix(&hex, 16).unwrap();
            p.sides[i].register(&hex, "<NEW>");
            p.sides[i].register(&id.to_string(), "<NEW>");
            hex
        })
        .collect();
    let ids = [ids[0].clone(), ids[1].clone()];
    // Members are listed in id order and the new ids are random: compare
    // the lines as sets (json is one line: left out).
    let member_list = |p: &mut Pair| {
        for w in ["simple", "fields", "table"] {
            p.check(&["member", "list", "-w", w], None, sorted_lines);
        }
    };
    member_list(&mut p);
    p.with_lease(&ids, &["member", "promote", "{}"]);
    p.with_lease(&ids, &["member", "update", "{}", "--peer-urls=http://127.0.0.1:2"]);
    member_list(&mut p);
    p.with_lease(&ids, &["member", "remove", "{}", "-w", "json"]);
    p.with_lease(&ids, &["member", "remove", "{}"]);
    p.same(&["member", "list"]);
    // And one more in the simple format, removed in the fields format.
    let out: Vec<Run> = (0..2)
        .map(|i| {
            let out = p.sides[i].raw(&["member", "add", "two", "--learner", "--peer-urls=http://127.0.0.1:3"], None);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let hex = text.split_whitespace().nth(1).unwrap().to_string();
            let id = u64::from_str_radix(&hex, 16).unwrap();
            p.sides[i].register(&format!("{id:x}"), "<TWO>");
            // Members come in id order, and the new id is random.
            let stdout: String = p.sides[i]
                .normalize(&text)
                .lines()
                .map(|l| match l.strip_prefix("ETCD_INITIAL_CLUSTER=") {
                    Some(list) => {
                        let mut parts: Vec<&str> = list.trim_matches('"').split(',').collect();
                        parts.sort_unstable();
                        format!("ETCD_INITIAL_CLUSTER=\"{}\"\n", parts.join(","))
                    }
                    None => format!("{l}\n"),
                })
                .collect();
            Run { code: out.status.code(), stdout, stderr: String::new() }
        })
        .collect();
    assert_eq!(out[0], out[1], "member add differs");
    assert!(out[0].stdout.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "{:?}", out[0]);
    eprintln!("{} steps compared", p.steps);
}

#[test]
fn tool_against_etcd_streaming_keep_alive_and_interactive_watch() {
    let Some(mut p) = Pair::etcd_etcd() else { return };
    // keep-alive until the lease is revoked: renewals every second, then
    // "expired or revoked" and exit 0.
    let ids = p.grant("3");
    let mut bgs: Vec<Bg> =
        (0..2).map(|i| Bg::spawn(p.sides[i].tool, &p.sides[i].endpoint(), &["lease", "keep-alive", &ids[i]])).collect();
    for b in &mut bgs {
        b.wait_lines(2);
    }
    p.with_lease(&ids, &["lease", "revoke", "{}"]);
    let codes: Vec<Option<i32>> = bgs.iter_mut().map(Bg::wait_exit).collect();
    assert_eq!(codes, [Some(0), Some(0)]);
    let outs: Vec<String> = bgs.iter().zip(&p.sides).map(|(b, s)| s.normalize(&b.read("out"))).collect();
    for out in &outs {
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() >= 3, "{out}");
        assert_eq!(lines[0], "lease <LEASE_1> keepalived with TTL(3)");
        assert_eq!(*lines.last().unwrap(), "lease <LEASE_1> expired or revoked.");
        assert!(lines[..lines.len() - 1].iter().all(|l| *l == lines[0]), "{out}");
    }

    // watch -i: watches opened by lines on stdin.
    let rev = p.next_revision();
    let lines = format!("watch --rev={rev} ia\nwatch ib --prefix --rev={rev}\n");
    let mut children: Vec<(Child, tempfile::TempDir)> = (0..2)
        .map(|i| {
            let dir = tempfile::Builder::new().prefix("retcdctl-watch-i").tempdir().unwrap();
            let out = std::fs::File::create(dir.path().join("out")).unwrap();
            let mut child = command(p.sides[i].tool, &p.sides[i].endpoint(), &["watch", "-i"])
                .stdin(Stdio::piped())
                .stdout(out)
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write;
            let stdin = child.stdin.as_mut().unwrap();
            stdin.write_all(lines.as_bytes()).unwrap();
            stdin.flush().unwrap();
            (child, dir)
        })
        .collect();
    // Two watches replay independently: wait for the first event before
    // the second write so the order is the same on both sides.
    let read = |dir: &tempfile::TempDir| std::fs::read_to_string(dir.path().join("out")).unwrap_or_default();
    let wait = |children: &Vec<(Child, tempfile::TempDir)>, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while children.iter().any(|(_, d)| read(d).lines().count() < n) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    p.ok(&["put", "ia", "1"]);
    wait(&children, 3);
    p.ok(&["put", "ib2", "2"]);
    wait(&children, 6);
    let outs: Vec<String> = children.iter().map(|(_, d)| read(d)).collect();
    for (c, _) in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert_eq!(outs[0], outs[1], "watch -i differs");
    assert_eq!(outs[0], "PUT\nia\n1\nPUT\nib2\n2\n");
}

fn sigterm(child: &Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
}

#[test]
fn tool_against_etcd_lock() {
    let Some(mut p) = Pair::etcd_etcd() else { return };
    p.ok(&["lock", "job", "--", "echo", "locked"]);
    p.ok(&["get", "job", "--prefix"]);
    p.code(&["lock"], 128);
    p.code(&["lock", "job", "--", "sh", "-c", "exit 3"], 1);

    // The same lock through both tools on one server: they exclude each other.
    for (holder, waiter) in [(Tool::Etcdctl, Tool::Retcdctl), (Tool::Retcdctl, Tool::Etcdctl)] {
        let ep = p.sides[0].endpoint();
        let mut held = Bg::spawn(holder, &ep, &["lock", "shared"]);
        held.wait_lines(2);
        let key = held.read("out");
        assert!(key.starts_with("shared/"), "{holder:?} lock output: {key:?}");
        let mut waiting = Bg::spawn(waiter, &ep, &["lock", "shared", "--", "sh", "-c", "echo got $ETCD_LOCK_KEY"]);
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(waiting.read("out"), "", "{waiter:?} took a lock {holder:?} holds");
        sigterm(held.child.as_ref().unwrap());
        assert_eq!(held.wait_exit(), Some(0), "{holder:?} lock after SIGTERM");
        assert_eq!(waiting.wait_exit(), Some(0), "{waiter:?} lock: {}", waiting.read("err"));
        let got = waiting.read("out");
        assert!(got.starts_with("got shared/"), "{waiter:?}: {got:?}");
        assert_ne!(got.trim_start_matches("got ").trim(), key.lines().next().unwrap_or(""));
    }
    let left = p.sides[0].raw(&["get", "shared", "--prefix", "--keys-only"], None);
    assert_eq!(String::from_utf8_lossy(&left.stdout), "", "locks left behind");
}

#[test]
fn tool_against_etcd_elect() {
    let Some(mut p) = Pair::etcd_etcd() else { return };
    p.code(&["elect"], 128);
    p.code(&["elect", "e"], 128);
    p.code(&["elect", "-l", "e", "p"], 128);
    // One server, both tools: observers of each kind see the same leaders.
    let ep = p.sides[0].endpoint();
    let mut observers =
        [Bg::spawn(Tool::Etcdctl, &ep, &["elect", "-l", "e"]), Bg::spawn(Tool::Retcdctl, &ep, &["elect", "-l", "e"])];
    let mut first = Bg::spawn(Tool::Retcdctl, &ep, &["elect", "e", "p1"]);
    first.wait_lines(2);
    assert!(first.read("out").starts_with("e/"), "retcdctl campaign: {:?}", first.read("out"));
    let mut second = Bg::spawn(Tool::Etcdctl, &ep, &["elect", "e", "p2"]);
    for o in &mut observers {
        o.wait_lines(2);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(second.read("out"), "", "etcdctl won an election retcdctl holds");
    sigterm(first.child.as_ref().unwrap());
    assert_eq!(first.wait_exit(), Some(0));
    second.wait_lines(2);
    assert!(second.read("out").ends_with("\np2\n"), "etcdctl campaign: {:?}", second.read("out"));
    for o in &mut observers {
        o.wait_lines(4);
    }
    let outs: Vec<String> = observers.iter().map(|o| o.read("out")).collect();
    assert_eq!(outs[0], outs[1], "observers differ: etcdctl (left), retcdctl (right)");
    assert_eq!(outs[0].lines().count(), 4, "{}", outs[0]);
    assert_eq!(outs[0].lines().nth(1), Some("p1"));
    assert_eq!(outs[0].lines().nth(3), Some("p2"));
    sigterm(second.child.as_ref().unwrap());
    assert_eq!(second.wait_exit(), Some(0));
}

/// `--debug` first prints every global flag as its `ETCDCTL_*` variable
/// (flags and environment both count); the grpc-go log lines etcdctl
/// prints after that are its own.
#[test]
fn debug_prints_the_global_flags_as_etcdctl() {
    if retcd_testkit::require_tool("etcdctl").is_none() {
        return;
    }
    let ep = format!("127.0.0.1:{},127.0.0.1:{}", retcd_testkit::free_port(), retcd_testkit::free_port());
    let flags = |tool: Tool| {
        let out = command(tool, &ep, &["--debug", "--dial-timeout", "300ms", "--user", "u:p", "get", "x"])
            .env("ETCDCTL_HEX", "true")
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .take_while(|l| l.starts_with("ETCDCTL_"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let theirs = flags(Tool::Etcdctl);
    assert_eq!(theirs.lines().count(), 18, "{theirs}");
    assert_eq!(flags(Tool::Retcdctl), theirs);
}
