//! Conformance: real `etcdctl` 3.4 gives the same output against retcd as
//! against real etcd.
//!
//! Every test starts its own retcd and its own etcd (free ports, temp data
//! dirs), runs the identical sequence of etcdctl commands against both and
//! compares exit code, stdout and stderr after normalizing only what
//! legitimately differs between two independent clusters: cluster and member
//! IDs, lease IDs, ports, client log timestamps and UUIDs, table column
//! widths (they follow the width of the IDs) and, where a command reports
//! them, sizes, raft indexes, versions and durations. Revisions and raft
//! terms are compared exactly: both servers start from an empty store. A
//! lease's remaining TTL may differ by one second.
//!
//! Background etcdctl processes (`watch`, streaming `lease keep-alive`) write
//! to files, every wait is bounded, and they are killed when dropped.
//!
//! Without `etcd`/`etcdctl` installed the tests are skipped locally (CI
//! installs them and fails if they are missing).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use retcd_testkit::{etcdctl, etcdctl_command, kill_and_wait, require_tool, wait_output, Kind, Server};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// One server plus what its output needs replaced to compare with the other.
struct Side {
    label: &'static str,
    server: Server,
    /// Literal substrings (ports) replaced everywhere.
    literals: Vec<(String, String)>,
    /// Whole alphanumeric tokens (IDs, in decimal and hex) replaced.
    tokens: Vec<(String, String)>,
}

/// What one etcdctl run produced, raw and normalized.
struct Run {
    raw: Output,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn raw_stdout(&self) -> String {
        String::from_utf8_lossy(&self.raw.stdout).into_owned()
    }
}

/// Identity normalization, for [`Pair::run_with`].
fn same(s: &str) -> String {
    s.to_string()
}

/// A retcd and an etcd driven in lockstep.
struct Pair {
    sides: [Side; 2],
    leases: usize,
}

impl Pair {
    /// Starts both servers, or None when etcd/etcdctl are not installed.
    fn start() -> Option<Pair> {
        let etcd_path = require_tool("etcd")?;
        require_tool("etcdctl")?;
        let retcd = Server::start(Kind::Retcd, env!("CARGO_BIN_EXE_retcd").as_ref(), &[]);
        let etcd = Server::start(Kind::Etcd, &etcd_path, &[]);
        let mut pair = Pair { sides: [Side::new("retcd", retcd), Side::new("etcd", etcd)], leases: 0 };
        for side in &mut pair.sides {
            side.wait_healthy();
            side.learn_ids();
        }
        Some(pair)
    }

    /// Runs etcdctl with `args` against both and asserts identical normalized output.
    fn run(&mut self, args: &[&str]) -> [Run; 2] {
        self.run_with(args, None, same)
    }

    /// Like [`Pair::run`], feeding `stdin`.
    fn run_stdin(&mut self, args: &[&str], stdin: &str) -> [Run; 2] {
        self.run_with(args, Some(stdin), same)
    }

    /// Runs on both, normalizes (common rules, then `extra`) and compares.
    fn run_with(&mut self, args: &[&str], stdin: Option<&str>, extra: fn(&str) -> String) -> [Run; 2] {
        let runs = [0, 1].map(|i| {
            let side = &self.sides[i];
            let raw = etcdctl(&side.server.endpoint(), args, stdin);
            let stdout = extra(&side.normalize(&String::from_utf8_lossy(&raw.stdout)));
            let stderr = extra(&side.normalize(&String::from_utf8_lossy(&raw.stderr)));
            Run { code: raw.status.code(), raw, stdout, stderr }
        });
        let what = format!("etcdctl {}{}", args.join(" "), stdin.map(|s| format!(" <<< {s:?}")).unwrap_or_default());
        assert_same(&what, &runs[0], &runs[1]);
        runs
    }

    /// [`Pair::run`] that must succeed (so two identical failures do not pass).
    fn ok(&mut self, args: &[&str]) -> [Run; 2] {
        let runs = self.run(args);
        assert_eq!(runs[0].code, Some(0), "etcdctl {} failed:\n{}", args.join(" "), show(&runs[0]));
        runs
    }

    /// [`Pair::ok`], also checking retcd's normalized stdout literally.
    fn ok_expect(&mut self, args: &[&str], stdout: &str) {
        let runs = self.ok(args);
        assert_eq!(runs[0].stdout, stdout, "etcdctl {}: unexpected output", args.join(" "));
    }

    /// [`Pair::run`] that must fail with exit code `code`.
    fn fails(&mut self, args: &[&str], code: i32) -> [Run; 2] {
        let runs = self.run(args);
        assert_eq!(runs[0].code, Some(code), "etcdctl {}: expected exit {code}:\n{}", args.join(" "), show(&runs[0]));
        runs
    }

    /// `lease grant` (any output format) on both; registers the new lease IDs
    /// as `<LEASE_n>` and returns them (hex) for retcd and etcd.
    fn grant(&mut self, args: &[&str]) -> [String; 2] {
        let mut full = vec!["lease", "grant"];
        full.extend_from_slice(args);
        // Compare only after registering the IDs: run raw first.
        let raws = [0, 1].map(|i| etcdctl(&self.sides[i].server.endpoint(), &full, None));
        self.leases += 1;
        let name = format!("<LEASE_{}>", self.leases);
        let ids = [0, 1].map(|i| {
            let out = String::from_utf8_lossy(&raws[i].stdout).into_owned();
            let id = parse_lease_id(&out)
                .unwrap_or_else(|| panic!("{}: no lease id in `{}`: {out:?}", self.sides[i].label, full.join(" ")));
            self.sides[i].register_lease(id, &name);
            format!("{id:x}")
        });
        let runs = [0, 1].map(|i| {
            let side = &self.sides[i];
            let raw = raws[i].clone();
            Run {
                code: raw.status.code(),
                stdout: side.normalize(&String::from_utf8_lossy(&raw.stdout)),
                stderr: side.normalize(&String::from_utf8_lossy(&raw.stderr)),
                raw,
            }
        });
        assert_same(&format!("etcdctl {}", full.join(" ")), &runs[0], &runs[1]);
        assert_eq!(runs[0].code, Some(0));
        ids
    }

    /// Runs a per-side command built from that side's own values (e.g. its lease ID).
    fn run_each(&mut self, build: impl Fn(usize) -> Vec<String>) -> [Run; 2] {
        self.run_each_with(build, same)
    }

    fn run_each_with(&mut self, build: impl Fn(usize) -> Vec<String>, extra: fn(&str) -> String) -> [Run; 2] {
        let args: [Vec<String>; 2] = [build(0), build(1)];
        let runs = [0, 1].map(|i| {
            let side = &self.sides[i];
            let a: Vec<&str> = args[i].iter().map(String::as_str).collect();
            let raw = etcdctl(&side.server.endpoint(), &a, None);
            let stdout = extra(&side.normalize(&String::from_utf8_lossy(&raw.stdout)));
            let stderr = extra(&side.normalize(&String::from_utf8_lossy(&raw.stderr)));
            Run { code: raw.status.code(), raw, stdout, stderr }
        });
        let what = format!("etcdctl {}", self.sides[1].normalize(&args[1].join(" ")));
        assert_same(&what, &runs[0], &runs[1]);
        runs
    }

    /// Starts `etcdctl args...` in the background on both.
    fn spawn(&self, args: &[&str]) -> [Bg; 2] {
        [0, 1].map(|i| Bg::spawn(&self.sides[i].server.endpoint(), args))
    }

    fn spawn_each(&self, build: impl Fn(usize) -> Vec<String>) -> [Bg; 2] {
        [0, 1].map(|i| {
            let a = build(i);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            Bg::spawn(&self.sides[i].server.endpoint(), &a)
        })
    }

    /// Makes sure background watchers are established: puts `key` = `ready-N`
    /// on both (in lockstep, so revisions stay equal) until every watcher on
    /// both sides has printed the latest marker. Returns, per watcher and
    /// side, the stdout offset just after that marker: what comes later is
    /// independent of how fast each watcher connected.
    fn sync_watchers(&mut self, watchers: &[&[Bg; 2]], key: &str) -> Vec<[usize; 2]> {
        for n in 1..=20 {
            let marker = format!("ready-{n}");
            self.ok(&["put", key, &marker]);
            let deadline = Instant::now() + Duration::from_millis(1500);
            loop {
                let found: Vec<[Option<usize>; 2]> =
                    watchers.iter().map(|w| [0, 1].map(|i| event_end(&w[i].stdout(), &marker))).collect();
                if found.iter().all(|f| f.iter().all(Option::is_some)) {
                    return found.into_iter().map(|f| f.map(Option::unwrap)).collect();
                }
                if Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("background watchers were not established after 20 attempts");
    }

    fn endpoint(&self, i: usize) -> String {
        self.sides[i].server.endpoint()
    }
}

impl Side {
    fn new(label: &'static str, server: Server) -> Side {
        let literals = vec![
            (format!("127.0.0.1:{}", server.client_port), "<CLIENT_ADDR>".to_string()),
            (format!("127.0.0.1:{}", server.peer_port), "<PEER_ADDR>".to_string()),
        ];
        Side { label, server, literals, tokens: vec![] }
    }

    /// TCP accepting is not serving yet: retry `endpoint health` (bounded).
    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.server.etcdctl(&["endpoint", "health"]);
            if out.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} never became healthy: {}{}\nlog:\n{}",
                    self.label,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    self.server.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Learns cluster and member ID from `endpoint status` to normalize them.
    fn learn_ids(&mut self) {
        let out = self.server.etcdctl(&["endpoint", "status", "-w", "json"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let cluster =
            json_u64(&text, "cluster_id").unwrap_or_else(|| panic!("{}: no cluster_id in {text}", self.label));
        let member = json_u64(&text, "member_id").unwrap_or_else(|| panic!("{}: no member_id in {text}", self.label));
        self.tokens.push((cluster.to_string(), "<CLUSTER_ID>".into()));
        self.tokens.push((format!("{cluster:x}"), "<CLUSTER_ID>".into()));
        self.tokens.push((member.to_string(), "<MEMBER_ID>".into()));
        self.tokens.push((format!("{member:x}"), "<MEMBER_ID>".into()));
        self.tokens.push((format!("{member:016x}"), "<MEMBER_ID>".into()));
    }

    fn register_lease(&mut self, id: i64, name: &str) {
        self.tokens.push((id.to_string(), name.to_string()));
        self.tokens.push((format!("{id:x}"), name.to_string()));
        self.tokens.push((format!("{id:016x}"), name.to_string()));
    }

    fn normalize(&self, s: &str) -> String {
        let mut s = s.to_string();
        for (from, to) in &self.literals {
            s = s.replace(from, to);
        }
        // etcdctl's client log lines: `"ts":"2026-...Z"` and `client-<uuid>`.
        s = replace_after(&s, "\"ts\":\"", |c| c != '"', "<TS>");
        s = replace_after(&s, "client-", |c| c.is_ascii_hexdigit() || c == '-', "<UUID>");
        s = replace_tokens(&s, &self.tokens);
        normalize_tables(&s)
    }
}

/// A background etcdctl whose stdout/stderr go to files; killed on drop.
struct Bg {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Bg {
    fn spawn(endpoint: &str, args: &[&str]) -> Bg {
        let dir = tempfile::Builder::new().prefix("retcd-etcdctl-bg").tempdir().unwrap();
        let out = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let err = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let child =
            etcdctl_command(endpoint, args).stdin(Stdio::null()).stdout(out).stderr(err).spawn().expect("etcdctl");
        Bg { child: Some(child), dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.path("stdout")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    /// Waits (bounded) until stdout satisfies `pred`.
    fn wait_stdout(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        while !pred(&self.stdout()) {
            if Instant::now() > deadline {
                panic!("background etcdctl: timed out waiting for {what}; stdout:\n{}", self.stdout());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for the process to exit on its own; its exit code.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.take()?;
        let out = wait_output(child, timeout);
        out.status.code()
    }

    fn kill(&mut self) {
        kill_and_wait(&mut self.child);
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Compares two normalized runs; on mismatch prints both, raw and normalized.
fn assert_same(what: &str, retcd: &Run, etcd: &Run) {
    let same =
        retcd.code == etcd.code && fuzzy_eq(&retcd.stdout, &etcd.stdout) && fuzzy_eq(&retcd.stderr, &etcd.stderr);
    if !same {
        panic!(
            "`{what}` differs between retcd and etcd\n--- retcd (normalized)\n{}\n--- etcd (normalized)\n{}\n\
             --- retcd (raw)\n{}\n--- etcd (raw)\n{}",
            show(retcd),
            show(etcd),
            show_raw(retcd),
            show_raw(etcd)
        );
    }
}

fn show(r: &Run) -> String {
    format!("exit: {:?}\nstdout:\n{}stderr:\n{}", r.code, r.stdout, r.stderr)
}

fn show_raw(r: &Run) -> String {
    format!(
        "exit: {:?}\nstdout:\n{}stderr:\n{}",
        r.code,
        String::from_utf8_lossy(&r.raw.stdout),
        String::from_utf8_lossy(&r.raw.stderr)
    )
}

/// Compares background outputs (stdout from the given offsets, and stderr).
fn assert_same_bg(what: &str, bg: &[Bg; 2], from: [usize; 2], sides: &[Side; 2]) {
    let outs = [0, 1].map(|i| {
        let stdout = bg[i].stdout();
        let stdout = sides[i].normalize(stdout.get(from[i]..).unwrap_or(""));
        let stderr = sides[i].normalize(&bg[i].stderr());
        (stdout, stderr)
    });
    if !(fuzzy_eq(&outs[0].0, &outs[1].0) && fuzzy_eq(&outs[0].1, &outs[1].1)) {
        panic!(
            "`{what}` differs between retcd and etcd\n--- retcd stdout\n{}--- retcd stderr\n{}\
             --- etcd stdout\n{}--- etcd stderr\n{}",
            outs[0].0, outs[0].1, outs[1].0, outs[1].1
        );
    }
}

// ---------------------------------------------------------------------------
// Normalization helpers (no regex crate in the workspace)
// ---------------------------------------------------------------------------

/// Replaces every maximal ASCII-alphanumeric run equal to a `tokens` key.
fn replace_tokens(s: &str, tokens: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        let start = rest.find(|c: char| c.is_ascii_alphanumeric()).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
        let tok = &rest[..end];
        match tokens.iter().find(|(from, _)| from == tok) {
            Some((_, to)) => out.push_str(to),
            None => out.push_str(tok),
        }
        rest = &rest[end..];
    }
    out
}

/// After every occurrence of `prefix`, replaces the run of chars matching
/// `keep` with `with`.
fn replace_after(s: &str, prefix: &str, keep: impl Fn(char) -> bool, with: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(prefix) {
        out.push_str(&rest[..at + prefix.len()]);
        rest = &rest[at + prefix.len()..];
        let end = rest.find(|c: char| !keep(c)).unwrap_or(rest.len());
        if end > 0 {
            out.push_str(with);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Blanks JSON number/string values of the given keys: `"key":<X>`.
fn blank_json(s: &str, keys: &[&str]) -> String {
    let mut s = s.to_string();
    for k in keys {
        s = replace_after(&s, &format!("\"{k}\":"), |c| c != ',' && c != '}', "<X>");
    }
    s
}

/// Blanks values of `"Key" : value` lines (etcdctl's fields format).
fn blank_fields(s: &str, keys: &[&str]) -> String {
    let mut s = s.to_string();
    for k in keys {
        s = replace_after(&s, &format!("\"{k}\" : "), |c| c != '\n', "<X>");
    }
    s
}

/// Table output pads cells to the widest value (which follows ID widths):
/// compare cells, not padding.
fn normalize_tables(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if body.starts_with('+') && body.chars().all(|c| c == '+' || c == '-') {
            out.push_str("+---+");
        } else if body.starts_with('|') {
            let cells: Vec<&str> = body.split('|').map(str::trim).collect();
            out.push_str(&cells.join("|"));
        } else {
            out.push_str(body);
        }
        out.push_str(nl);
    }
    out
}

/// Blanks the named columns of a (normalized) table.
fn blank_table_columns(s: &str, columns: &[&str]) -> String {
    let mut idx: Vec<usize> = vec![];
    let mut out = String::new();
    for line in s.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        if body.starts_with('|') {
            let mut cells: Vec<String> = body.split('|').map(str::to_string).collect();
            if idx.is_empty() {
                idx = cells.iter().enumerate().filter(|(_, c)| columns.contains(&c.as_str())).map(|(i, _)| i).collect();
            } else {
                for &i in &idx {
                    if i < cells.len() {
                        cells[i] = "<X>".into();
                    }
                }
            }
            out.push_str(&cells.join("|"));
            out.push_str(&line[body.len()..]);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Equality, except that the number after a remaining-TTL marker may differ by one.
fn fuzzy_eq(a: &str, b: &str) -> bool {
    const TTL_MARKERS: [&str; 3] = ["remaining(", "\"ttl\":", "\"TTL\" : "];
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if let Some(m) =
            TTL_MARKERS.iter().find(|m| a[i..].starts_with(m.as_bytes()) && b[j..].starts_with(m.as_bytes()))
        {
            i += m.len();
            j += m.len();
            let (x, ni) = parse_int(a, i);
            let (y, nj) = parse_int(b, j);
            match (x, y) {
                (Some(x), Some(y)) if (x - y).abs() <= 1 => {
                    i = ni;
                    j = nj;
                }
                _ => return false,
            }
            continue;
        }
        if a[i] != b[j] {
            return false;
        }
        i += 1;
        j += 1;
    }
    i == a.len() && j == b.len()
}

fn parse_int(s: &[u8], from: usize) -> (Option<i64>, usize) {
    let mut end = from;
    if end < s.len() && s[end] == b'-' {
        end += 1;
    }
    while end < s.len() && s[end].is_ascii_digit() {
        end += 1;
    }
    let n = std::str::from_utf8(&s[from..end]).ok().and_then(|t| t.parse().ok());
    (n, end)
}

/// The first unsigned number after `"key":` in JSON text.
fn json_u64(text: &str, key: &str) -> Option<u64> {
    let at = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A lease ID from `lease grant` output: `lease <hex> granted ...` or JSON `"ID":<dec>`.
fn parse_lease_id(out: &str) -> Option<i64> {
    if let Some(rest) = out.strip_prefix("lease ") {
        let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
        return i64::from_str_radix(&hex, 16).ok();
    }
    json_u64(out, "ID").map(|v| v as i64)
}

/// Offset just after the line (or, for JSON output, the response line)
/// holding the event whose value is `marker`.
fn event_end(stdout: &str, marker: &str) -> Option<usize> {
    let simple = format!("\n{marker}\n");
    let json = format!("\"{}\"", base64(marker.as_bytes()));
    let at = stdout.find(&simple).map(|p| p + 1).or_else(|| stdout.find(&json))?;
    let nl = stdout[at..].find('\n')?;
    Some(at + nl + 1)
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(T[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `lease list` prints leases in map order on etcd: sort them.
fn sort_lease_list(s: &str) -> String {
    if let Some(rest) = s.strip_prefix("found ") {
        let mut lines = rest.lines();
        let head = lines.next().unwrap_or("");
        let mut ids: Vec<&str> = lines.collect();
        ids.sort_unstable();
        let mut out = format!("found {head}\n");
        for id in ids {
            out.push_str(id);
            out.push('\n');
        }
        return out;
    }
    if let Some(at) = s.find("\"leases\":[") {
        let start = at + "\"leases\":[".len();
        if let Some(len) = s[start..].find(']') {
            let inner = &s[start..start + len];
            let mut items: Vec<&str> = inner.split("},{").map(|i| i.trim_matches(|c| c == '{' || c == '}')).collect();
            items.sort_unstable();
            let inner = items.iter().map(|i| format!("{{{i}}}")).collect::<Vec<_>>().join(",");
            return format!("{}{inner}{}", &s[..start], &s[start + len..]);
        }
    }
    s.to_string()
}

/// A lease's attached keys come from a Go map on etcd (random order; retcd
/// sorts them): sort `attached keys([a b])` and `"keys":["..",".."]`.
fn sort_lease_keys(s: &str) -> String {
    let mut s = s.to_string();
    for (open, close, sep) in [("attached keys([", "])", " "), ("\"keys\":[", "]", ",")] {
        if let Some(at) = s.find(open) {
            let start = at + open.len();
            if let Some(len) = s[start..].find(close) {
                let mut items: Vec<&str> = s[start..start + len].split(sep).collect();
                items.sort_unstable();
                s = format!("{}{}{}", &s[..start], items.join(sep), &s[start + len..]);
            }
        }
    }
    s
}

/// `endpoint status`: sizes, raft indexes and the version are per-implementation.
fn status_shape(s: &str) -> String {
    let s = blank_json(s, &["dbSize", "dbSizeInUse", "raftIndex", "raftAppliedIndex", "version"]);
    let s = blank_fields(&s, &["DBSize", "DBSizeInUse", "RaftIndex", "RaftAppliedIndex", "Version"]);
    let s = blank_table_columns(&s, &["VERSION", "DB SIZE", "RAFT INDEX", "RAFT APPLIED INDEX"]);
    // simple: endpoint, id, version, db size, leader, learner, term, index, applied, errors
    s.lines()
        .map(|l| {
            let cells: Vec<&str> = l.split(", ").collect();
            if cells.len() == 10 && cells[0] == "<CLIENT_ADDR>" {
                let mut c: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
                for i in [2, 3, 7, 8] {
                    c[i] = "<X>".into();
                }
                c.join(", ")
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect()
}

/// `endpoint health`: how long the check took.
fn health_shape(s: &str) -> String {
    let s = replace_after(s, "took = ", |c| c != '\n', "<T>");
    let s = replace_after(&s, "\"took\":\"", |c| c != '"', "<T>");
    let s = blank_fields(&s, &["Took"]);
    blank_table_columns(&s, &["TOOK"])
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn normalizer_self_check() {
    let tokens = vec![("1234".to_string(), "<A>".to_string()), ("abcd".to_string(), "<B>".to_string())];
    assert_eq!(replace_tokens("x 1234, 12345 abcd abcde:1234}", &tokens), "x <A>, 12345 <B> abcde:<A>}");
    assert_eq!(
        replace_after(
            r#"{"ts":"2026-11-24T15:49:04.581Z","target":"endpoint://client-9f95c8fe-41fe/x"}"#,
            "\"ts\":\"",
            |c| c != '"',
            "<TS>"
        ),
        r#"{"ts":"<TS>","target":"endpoint://client-9f95c8fe-41fe/x"}"#
    );
    assert!(fuzzy_eq("remaining(59s) x", "remaining(58s) x"));
    assert!(!fuzzy_eq("remaining(59s) x", "remaining(57s) x"));
    assert!(!fuzzy_eq("\"TTL\":60", "\"TTL\":59"));
    assert!(fuzzy_eq("\"ttl\":59,", "\"ttl\":60,"));
    assert!(!fuzzy_eq("abc", "abd"));
    assert!(!fuzzy_eq("abc", "abcd"));
    assert_eq!(base64(b"ready-1"), "cmVhZHktMQ==");
    assert_eq!(base64(b"end"), "ZW5k");
    assert_eq!(normalize_tables("+--+-+\n|  a | bb |\n"), "+---+\n|a|bb|\n");
    assert_eq!(sort_lease_list("found 2 leases\n<L2>\n<L1>\n"), "found 2 leases\n<L1>\n<L2>\n");
    assert_eq!(sort_lease_list(r#"{"leases":[{"id":<L2>},{"id":<L1>}]}"#), r#"{"leases":[{"id":<L1>},{"id":<L2>}]}"#);
    assert_eq!(sort_lease_keys("x, attached keys([k2 k1])\n"), "x, attached keys([k1 k2])\n");
    assert_eq!(sort_lease_keys(r#"{"ttl":5,"keys":["azI=","azE="]}"#), r#"{"ttl":5,"keys":["azE=","azI="]}"#);
    assert_eq!(event_end("PUT\nk\nready-1\nPUT\nk\nready-10\n", "ready-10"), Some(29));
    assert_eq!(event_end("PUT\nk\nready-10\n", "ready-1"), None);
}

/// put; get; get -w json / fields / --print-value-only / --keys-only / --hex.
#[test]
fn put_and_get() {
    let Some(mut p) = Pair::start() else { return };
    p.ok_expect(&["put", "foo", "bar"], "OK\n");
    p.ok_expect(&["get", "foo"], "foo\nbar\n");
    p.ok(&["get", "foo", "-w", "json"]);
    p.ok(&["put", "foo", "bar2", "--prev-kv"]);
    p.ok(&["put", "foo", "bar3", "--prev-kv", "-w", "json"]);
    p.ok(&["put", "fresh", "v", "--prev-kv", "-w", "json"]);
    p.ok(&["get", "foo", "-w", "fields"]);
    p.ok_expect(&["get", "foo", "--print-value-only"], "bar3\n");
    p.ok(&["put", "fop", "x y z"]);
    p.ok(&["get", "fo", "--prefix", "--keys-only"]);
    p.ok(&["get", "fo", "--prefix", "--keys-only", "-w", "json"]);
    p.ok(&["get", "foo", "--hex"]);
    p.ok(&["get", "foo", "--consistency=s", "-w", "json"]);
    p.ok_expect(&["get", "missing"], "");
    p.ok(&["get", "missing", "-w", "json"]);
    p.ok(&["get", "missing", "-w", "fields"]);
    // A value starting with '-' after `--`; a value from stdin.
    p.ok(&["put", "--", "neg", "-value"]);
    p.ok_expect(&["get", "neg", "--print-value-only"], "-value\n");
    let r = p.run_stdin(&["put", "fromstdin"], "piped value\n");
    assert_eq!(r[0].code, Some(0), "{}", show(&r[0]));
    p.ok(&["get", "fromstdin", "-w", "json"]);
    // --ignore-value keeps the value, bumps the version.
    p.ok(&["put", "foo", "--ignore-value"]);
    p.ok(&["get", "foo", "-w", "json"]);
    // Errors: empty key (server), --ignore-value on a missing key (server),
    // --ignore-lease without a lease (server), missing args (client).
    p.fails(&["put", "", "v"], 1);
    p.fails(&["get", ""], 1);
    p.fails(&["put", "nokey", "--ignore-value"], 1);
    p.ok(&["put", "foo", "v", "--ignore-lease"]);
    p.fails(&["put", "nokey", "v", "--ignore-lease"], 1);
    p.fails(&["put", "onlykey"], 128);
    // Not a 3.4 flag (etcdctl rejects it before talking to the server).
    p.fails(&["get", "foo", "--count-only"], 1);
    // table output is not supported for get
    p.fails(&["get", "foo", "-w", "table"], 4);
    p.ok(&["get", "", "--prefix", "-w", "json"]);
}

/// get --rev; get KEY END; get --prefix --limit; get --from-key; --sort-by/--order.
#[test]
fn get_revisions_ranges_and_sorting() {
    let Some(mut p) = Pair::start() else { return };
    // rev 2..=8
    for (k, v) in [("a", "3"), ("b", "1"), ("c", "2"), ("a", "4"), ("d", "0"), ("ab", "5"), ("b", "9")] {
        p.ok(&["put", k, v]);
    }
    p.ok_expect(&["get", "a", "--rev=2"], "a\n3\n");
    p.ok_expect(&["get", "a", "--rev=5"], "a\n4\n");
    p.ok_expect(&["get", "a", "--rev=1"], "");
    p.ok(&["get", "a", "--rev=3", "-w", "json"]);
    p.ok(&["get", "", "--prefix", "--rev=4", "-w", "json"]);
    p.fails(&["get", "a", "--rev=100"], 1);
    // [a, c)
    p.ok_expect(&["get", "a", "c"], "a\n4\nab\n5\nb\n9\n");
    p.ok(&["get", "a", "c", "-w", "json"]);
    p.ok_expect(&["get", "b", "b"], "");
    p.ok(&["get", "a", "c", "--rev=3", "-w", "json"]);
    p.ok(&["get", "a", "--prefix"]);
    p.ok(&["get", "a", "--prefix", "--limit", "1"]);
    p.ok(&["get", "a", "--prefix", "--limit", "1", "-w", "json"]);
    p.ok(&["get", "", "--prefix", "--limit", "2"]);
    p.ok(&["get", "", "--prefix", "--limit", "2", "-w", "json"]);
    p.ok(&["get", "", "--prefix", "--limit", "2", "-w", "fields"]);
    p.ok_expect(&["get", "b", "--from-key"], "b\n9\nc\n2\nd\n0\n");
    p.ok(&["get", "b", "--from-key", "--limit", "2", "-w", "json"]);
    p.ok(&["get", "", "--from-key", "--keys-only"]);
    p.ok(&["get", "zzz", "--from-key", "-w", "json"]);
    for target in ["KEY", "CREATE", "MODIFY", "VALUE", "VERSION"] {
        for order in ["ASCEND", "DESCEND"] {
            p.ok(&["get", "", "--prefix", &format!("--sort-by={target}"), &format!("--order={order}")]);
        }
        p.ok(&["get", "", "--prefix", &format!("--sort-by={target}")]);
    }
    p.ok(&["get", "", "--prefix", "--order=DESCEND", "-w", "json"]);
    p.ok(&["get", "", "--prefix", "--sort-by=VALUE", "--order=DESCEND", "--limit", "2", "-w", "json"]);
    p.fails(&["get", "", "--prefix", "--sort-by=BOGUS"], 4);
    p.fails(&["get", "", "--prefix", "--order=SIDEWAYS"], 4);
}

/// del; del --prev-kv; del KEY END; del --prefix; del --from-key.
#[test]
fn delete() {
    let Some(mut p) = Pair::start() else { return };
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5"), ("f", "6"), ("p/1", "x"), ("p/2", "y")] {
        p.ok(&["put", k, v]);
    }
    p.ok_expect(&["del", "a"], "1\n");
    p.ok_expect(&["del", "a"], "0\n");
    p.ok_expect(&["del", "b", "--prev-kv"], "1\nb\n2\n");
    p.ok(&["del", "nope", "--prev-kv", "-w", "json"]);
    p.ok_expect(&["del", "c", "e"], "2\n");
    p.ok(&["del", "p/", "--prefix", "--prev-kv", "-w", "json"]);
    p.ok(&["get", "", "--prefix", "-w", "json"]);
    p.ok(&["put", "g", "7"]);
    p.ok(&["del", "f", "--from-key", "--prev-kv"]);
    p.ok(&["del", "", "--prefix", "-w", "fields"]);
    p.ok(&["get", "", "--prefix", "-w", "json"]);
    p.fails(&["del"], 128);
    p.fails(&["del", ""], 1);
}

/// txn from stdin (non-interactive and `-i`), all compare targets, json/fields output, errors.
#[test]
fn txn() {
    let Some(mut p) = Pair::start() else { return };
    p.ok(&["put", "x", "1"]);
    p.ok(&["put", "y", "1"]);
    // success branch
    p.run_stdin(&["txn"], "value(\"x\") = \"1\"\n\nput x 2\nget x\n\nput y 9\n\n");
    // failure branch with del, range get and put --prev-kv
    p.run_stdin(
        &["txn"],
        "mod(\"x\") > \"100\"\nversion(\"y\") = \"0\"\n\nput x 3\n\ndel x\nget y --prefix\nput z 1 --prev-kv\n\n",
    );
    p.ok(&["get", "", "--prefix", "-w", "json"]);
    p.run_stdin(&["txn", "-w", "json"], "create(\"z\") > \"0\"\n\nput z 2 --prev-kv\nget z\ndel y --prev-kv\n\n\n");
    p.run_stdin(&["txn", "-w", "json"], "create(\"nope\") = \"0\"\nvalue(\"z\") != \"2\"\n\n\nget z\n\n");
    p.run_stdin(&["txn", "-w", "fields"], "version(\"z\") < \"5\"\n\nput z 3\nget z\n\nget x\n\n");
    p.run_stdin(&["txn", "-w", "fields"], "mod(\"z\") = \"1\"\n\nput z 4\n\nget z --rev=3\ndel z --prev-kv\n\n");
    p.run_stdin(&["txn"], "create(\"x\") = \"0\"\n\nput x created\n\n\n");
    // Empty txn.
    p.run_stdin(&["txn", "-w", "json"], "\n\n\n");
    // Interactive form, fed from stdin.
    let r = p.run_stdin(&["txn", "-i"], "value(\"x\") = \"created\"\n\nput x via-i\n\nput x fail\n\n");
    assert_eq!(r[0].code, Some(0), "{}", show(&r[0]));
    p.ok_expect(&["get", "x", "--print-value-only"], "via-i\n");
    // Errors: duplicate key (server), malformed compare and missing sections (client).
    let r = p.run_stdin(&["txn"], "\nput d 1\nput d 2\n\n\n");
    assert_eq!(r[0].code, Some(1), "{}", show(&r[0]));
    p.run_stdin(&["txn"], "bogus\n");
    p.run_stdin(&["txn"], "\nput d 1\n");
    p.ok(&["get", "", "--prefix", "-w", "json"]);
}

/// compaction; get --rev of a compacted revision; watch/hashkv at compacted revisions.
#[test]
fn compaction() {
    let Some(mut p) = Pair::start() else { return };
    for v in ["1", "2", "3", "4", "5"] {
        p.ok(&["put", "k", v]); // revs 2..=6
    }
    p.ok_expect(&["compaction", "3"], "compacted revision 3\n");
    let r = p.fails(&["get", "k", "--rev=2"], 1);
    assert!(r[0].stderr.contains("Error: etcdserver: mvcc: required revision has been compacted"), "{}", r[0].stderr);
    // The compacted revision itself is still readable.
    p.ok_expect(&["get", "k", "--rev=3"], "k\n2\n");
    p.ok_expect(&["get", "k", "--rev=4"], "k\n3\n");
    p.ok(&["get", "k", "-w", "json"]);
    // Compacting again at or below the compacted revision; past the head.
    p.fails(&["compaction", "3"], 1);
    p.fails(&["compaction", "2"], 1);
    p.fails(&["compaction", "100"], 1);
    p.ok_expect(&["compaction", "--physical", "5"], "compacted revision 5\n");
    p.fails(&["get", "k", "--rev=4"], 1);
    p.ok(&["get", "k", "--rev=5", "-w", "json"]);
    // A watch from a compacted revision is canceled by the server.
    let r = p.fails(&["watch", "k", "--rev=2"], 5);
    assert!(r[0].stderr.contains("watch was canceled"), "{}", show(&r[0]));
    p.fails(&["endpoint", "hashkv", "--rev=4"], 1);
    p.ok(&["endpoint", "hashkv", "--rev=6", "-w", "json"]);
    p.fails(&["compaction", "0"], 1);
    p.fails(&["compaction", "abc"], 1);
}

/// watch in the background (prefix, key, range, json, --prev-kv, --rev) while puts/deletes run.
#[test]
fn watch() {
    let Some(mut p) = Pair::start() else { return };
    p.ok(&["put", "w0", "before"]);
    let prefix = p.spawn(&["watch", "w", "--prefix", "--prev-kv"]);
    let key = p.spawn(&["watch", "w1"]);
    let range = p.spawn(&["watch", "w1", "w3"]);
    let json = p.spawn(&["watch", "w1", "-w", "json"]);
    let from = p.sync_watchers(&[&prefix, &key, &range, &json], "w1");
    let start_rev = {
        let r = p.ok(&["get", "w1", "-w", "json"]);
        json_u64(&r[0].raw_stdout(), "revision").unwrap() + 1
    };
    p.ok(&["put", "w1", "a"]);
    p.ok(&["put", "w1", "b"]);
    p.ok(&["put", "w2", "multi word value"]);
    p.ok(&["put", "w3", "outside the range"]);
    p.ok(&["put", "x", "not watched"]);
    p.ok(&["del", "w1"]);
    p.ok(&["del", "w", "--prefix"]);
    p.run_stdin(&["txn"], "\nput w1 t1\nput w2 t2\ndel w0\n\n\n");
    p.ok(&["put", "w1", "end"]);
    let watchers = [("watch w --prefix --prev-kv", &prefix, 0), ("watch w1", &key, 1), ("watch w1 w3", &range, 2)];
    for (what, w, n) in watchers {
        for bg in w.iter() {
            bg.wait_stdout(what, Duration::from_secs(10), |s| event_end(s, "end").is_some());
        }
        assert_same_bg(what, w, from[n], &p.sides);
    }
    for bg in json.iter() {
        bg.wait_stdout("watch -w json", Duration::from_secs(10), |s| event_end(s, "end").is_some());
    }
    assert_same_bg("watch w1 -w json", &json, from[3], &p.sides);
    // Sanity: retcd's prefix watcher saw the expected events.
    let seen = p.sides[0].normalize(&prefix[0].stdout()[from[0][0]..]);
    assert!(seen.starts_with("PUT\nw1\nready-"), "{seen}");
    assert!(seen.contains("DELETE\nw2\nmulti word value\nw2\n\n"), "{seen}");
    assert!(!seen.contains("not watched"), "{seen}");
    drop((prefix, key, range, json));

    // Replay from a revision: identical regardless of when the watcher connects.
    let rev = format!("--rev={start_rev}");
    let replay = p.spawn(&["watch", "w", "--prefix", "--prev-kv", &rev]);
    let replay_json = p.spawn(&["watch", "w1", &rev, "-w", "json"]);
    for bg in replay.iter().chain(replay_json.iter()) {
        bg.wait_stdout("watch --rev", Duration::from_secs(10), |s| event_end(s, "end").is_some());
    }
    assert_same_bg("watch w --prefix --prev-kv --rev", &replay, [0, 0], &p.sides);
    assert_same_bg("watch w1 --rev -w json", &replay_json, [0, 0], &p.sides);
    // Errors.
    p.fails(&["watch"], 128);
}

/// lease grant; put --lease; timetolive (--keys); list; keep-alive --once; revoke; errors.
#[test]
fn lease() {
    let Some(mut p) = Pair::start() else { return };
    let l1 = p.grant(&["100"]);
    let l2 = p.grant(&["60"]);
    p.run_each(|i| vec!["put".into(), format!("--lease={}", l2[i]), "k1".into(), "v1".into()]);
    p.run_each(|i| vec!["put".into(), format!("--lease={}", l2[i]), "k2".into(), "v2".into()]);
    p.ok(&["get", "k", "--prefix", "-w", "json"]);
    p.run_each(|i| vec!["lease".into(), "timetolive".into(), l2[i].clone()]);
    p.run_each_with(|i| vec!["lease".into(), "timetolive".into(), "--keys".into(), l2[i].clone()], sort_lease_keys);
    p.run_each_with(
        |i| vec!["lease".into(), "timetolive".into(), "--keys".into(), l2[i].clone(), "-w".into(), "json".into()],
        sort_lease_keys,
    );
    p.run_each(|i| vec!["lease".into(), "timetolive".into(), l1[i].clone(), "-w".into(), "fields".into()]);
    p.run_each(|i| vec!["lease".into(), "timetolive".into(), l1[i].clone(), "--keys".into()]);
    p.run_with(&["lease", "list"], None, sort_lease_list);
    p.run_with(&["lease", "list", "-w", "json"], None, sort_lease_list);
    p.run_each(|i| vec!["lease".into(), "keep-alive".into(), "--once".into(), l2[i].clone()]);
    p.run_each(|i| {
        vec!["lease".into(), "keep-alive".into(), "--once".into(), l2[i].clone(), "-w".into(), "json".into()]
    });
    p.grant(&["10", "-w", "json"]);
    // The minimum TTL (1.5 x election timeout, rounded up) applies to tiny grants.
    p.grant(&["0"]);
    p.grant(&["1"]);
    // Attaching a key to a second lease moves it.
    p.run_each(|i| vec!["put".into(), format!("--lease={}", l1[i]), "k2".into(), "moved".into()]);
    p.run_each_with(|i| vec!["lease".into(), "timetolive".into(), "--keys".into(), l2[i].clone()], sort_lease_keys);
    p.run_each_with(|i| vec!["lease".into(), "timetolive".into(), "--keys".into(), l1[i].clone()], sort_lease_keys);
    // --ignore-lease keeps the lease; a plain put detaches it.
    p.ok(&["put", "k2", "again", "--ignore-lease"]);
    p.ok(&["get", "k2", "-w", "json"]);
    p.ok(&["put", "k2", "detached"]);
    p.ok(&["get", "k2", "-w", "json"]);
    // Revoke deletes the attached keys in one revision.
    p.run_each(|i| vec!["lease".into(), "revoke".into(), l2[i].clone()]);
    p.ok(&["get", "k", "--prefix", "-w", "json"]);
    p.run_each(|i| vec!["lease".into(), "revoke".into(), l2[i].clone()]);
    p.run_each(|i| vec!["lease".into(), "timetolive".into(), l2[i].clone()]);
    p.run_each(|i| vec!["lease".into(), "timetolive".into(), l2[i].clone(), "-w".into(), "json".into()]);
    let r = p.run_each(|i| vec!["lease".into(), "keep-alive".into(), "--once".into(), l2[i].clone()]);
    assert_eq!(r[0].code, Some(2), "{}", show(&r[0]));
    let r = p.run_each(|i| vec!["put".into(), format!("--lease={}", l2[i]), "k3".into(), "v".into()]);
    assert_eq!(r[0].code, Some(1), "{}", show(&r[0]));
    // Never-granted IDs, malformed IDs and TTLs.
    p.run(&["lease", "timetolive", "1234"]);
    p.run(&["lease", "timetolive", "1234", "-w", "json"]);
    p.fails(&["lease", "revoke", "1234"], 1);
    p.fails(&["lease", "keep-alive", "--once", "1234"], 2);
    p.fails(&["put", "--lease=1234", "k4", "v"], 1);
    p.fails(&["put", "--lease=zz", "k4", "v"], 128);
    p.fails(&["lease", "grant", "abc"], 128);
    p.fails(&["lease", "grant"], 128);
    p.fails(&["lease", "revoke"], 128);
}

/// lease keep-alive, streaming: kept alive for a couple of seconds then
/// killed; and ended by a revoke.
#[test]
fn lease_keep_alive_streaming() {
    let Some(mut p) = Pair::start() else { return };
    // TTL 60: the first refresh is sent at once, the next only after 20 s,
    // so a stream killed after ~2 s has printed exactly one response.
    let l1 = p.grant(&["60"]);
    let l2 = p.grant(&["60"]);
    let mut simple = p.spawn_each(|i| vec!["lease".into(), "keep-alive".into(), l1[i].clone()]);
    let mut json =
        p.spawn_each(|i| vec!["lease".into(), "keep-alive".into(), l2[i].clone(), "-w".into(), "json".into()]);
    for bg in simple.iter().chain(json.iter()) {
        bg.wait_stdout("first keep-alive", Duration::from_secs(10), |s| s.contains('\n'));
    }
    std::thread::sleep(Duration::from_secs(2));
    p.run_each(|i| vec!["lease".into(), "timetolive".into(), l1[i].clone()]);
    for bg in simple.iter_mut().chain(json.iter_mut()) {
        bg.kill();
    }
    assert_same_bg("lease keep-alive (killed)", &simple, [0, 0], &p.sides);
    assert_same_bg("lease keep-alive -w json (killed)", &json, [0, 0], &p.sides);
    assert_eq!(p.sides[0].normalize(&simple[0].stdout()), "lease <LEASE_1> keepalived with TTL(60)\n");
    assert!(p.sides[0].normalize(&json[0].stdout()).contains("\"ID\":<LEASE_2>,\"TTL\":60}"));

    // The client learns of a revoke from its next refresh (TTL/3 later): with
    // TTL 6 that is within 2 s of the first one. The stream then ends with a
    // notice and exit code 0.
    let l3 = p.grant(&["6"]);
    let mut revoked = p.spawn_each(|i| vec!["lease".into(), "keep-alive".into(), l3[i].clone()]);
    for bg in revoked.iter() {
        bg.wait_stdout("first keep-alive", Duration::from_secs(10), |s| s.contains('\n'));
    }
    p.run_each(|i| vec!["lease".into(), "revoke".into(), l3[i].clone()]);
    let codes = [0, 1].map(|i| revoked[i].wait_exit(Duration::from_secs(15)));
    assert_same_bg("lease keep-alive (revoked)", &revoked, [0, 0], &p.sides);
    assert_eq!(codes[0], codes[1], "keep-alive exit codes differ (retcd, etcd)");
    assert_eq!(codes[0], Some(0));
    assert_eq!(
        p.sides[0].normalize(&revoked[0].stdout()),
        "lease <LEASE_3> keepalived with TTL(6)\nlease <LEASE_3> expired or revoked.\n"
    );
    // A stream for a lease that was never granted.
    let mut never = p.spawn(&["lease", "keep-alive", "1234"]);
    let codes = [0, 1].map(|i| never[i].wait_exit(Duration::from_secs(15)));
    assert_same_bg("lease keep-alive (never granted)", &never, [0, 0], &p.sides);
    assert_eq!(codes[0], codes[1], "keep-alive exit codes differ (retcd, etcd)");
}

/// A lease that expires deletes its keys; timetolive reports it expired.
#[test]
fn lease_expiry() {
    let Some(mut p) = Pair::start() else { return };
    let l = p.grant(&["2"]);
    p.run_each(|i| vec!["put".into(), format!("--lease={}", l[i]), "ephemeral".into(), "v".into()]);
    p.ok(&["put", "durable", "v"]);
    // Bounded wait until both have revoked it.
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..2 {
        loop {
            let out = etcdctl(&p.endpoint(i), &["get", "ephemeral"], None);
            if out.status.success() && out.stdout.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{}: leased key never expired", p.sides[i].label);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    p.ok(&["get", "", "--prefix", "-w", "json"]);
    p.run_each_with(|i| vec!["lease".into(), "timetolive".into(), "--keys".into(), l[i].clone()], sort_lease_keys);
    p.run(&["lease", "list"]);
}

/// member list -w simple / table / json / fields.
#[test]
fn member_list() {
    let Some(mut p) = Pair::start() else { return };
    p.ok(&["put", "a", "1"]);
    p.ok_expect(
        &["member", "list"],
        "<MEMBER_ID>, started, default, http://<PEER_ADDR>, http://<CLIENT_ADDR>, false\n",
    );
    p.ok(&["member", "list", "-w", "table"]);
    // etcd's MemberList header carries no revision.
    p.ok(&["member", "list", "-w", "json"]);
    p.ok(&["member", "list", "-w", "fields"]);
}

/// endpoint status (shape), health, hashkv; alarm list; version.
#[test]
fn endpoint_and_maintenance() {
    let Some(mut p) = Pair::start() else { return };
    p.ok(&["put", "a", "1"]);
    p.ok(&["put", "b", "2"]);
    p.ok(&["del", "a"]);
    for fmt in ["simple", "json", "table", "fields"] {
        p.run_with(&["endpoint", "status", "-w", fmt], None, status_shape);
        p.run_with(&["endpoint", "health", "-w", fmt], None, health_shape);
    }
    // The KV hash is computed the same way: identical values.
    p.ok(&["endpoint", "hashkv"]);
    p.ok(&["endpoint", "hashkv", "-w", "json"]);
    p.ok(&["endpoint", "hashkv", "-w", "fields"]);
    p.ok(&["endpoint", "hashkv", "-w", "table"]);
    p.ok(&["endpoint", "hashkv", "--rev=3", "-w", "json"]);
    p.fails(&["endpoint", "hashkv", "--rev=100"], 1);
    p.ok_expect(&["alarm", "list"], "");
    // etcd's Alarm response has no header at all.
    p.ok(&["alarm", "list", "-w", "json"]);
    // Client-side only; the exact patch release depends on the installed etcdctl.
    let r = p.ok(&["version"]);
    assert!(r[0].stdout.starts_with("etcdctl version: 3.4.") && r[0].stdout.ends_with("API version: 3.4\n"));
    let r = p.run_with(&["endpoint", "status", "-w", "json"], None, status_shape);
    assert!(r[0].stdout.contains("\"leader\":<MEMBER_ID>"), "{}", r[0].stdout);
}

/// defrag, then the data is still there (the NOSPACE flow with defrag is in
/// quota_alarm.rs).
#[test]
fn defrag() {
    let Some(mut p) = Pair::start() else { return };
    p.ok(&["put", "a", "1"]);
    p.ok(&["defrag"]);
    p.ok(&["get", "a", "-w", "json"]);
    p.ok(&["alarm", "disarm"]);
}
