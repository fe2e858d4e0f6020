//! Every command etcdctl 3.4 lists is a retcdctl command under the same
//! name, and, as etcdctl turns on cobra's prefix matching, under its
//! shortest unambiguous prefix too (`user del`, `mem li`). An ambiguous
//! prefix is refused by both alike.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use retcd_testkit::require_tool;

const RETCDCTL: &str = env!("CARGO_BIN_EXE_retcdctl");

/// etcdctl commands retcdctl does not have yet (each is checked to be
/// missing, so the list stays true).
const NOT_YET: &[&str] = &["check datascale", "migrate"];

fn run(program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    cmd.env("ETCDCTL_API", "3").args(args).env_remove("ETCDCTL_ENDPOINTS");
    retcd_testkit::wait_output(
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap(),
        std::time::Duration::from_secs(20),
    )
}

/// The command paths of `etcdctl --help` ("COMMANDS:" lines).
fn etcdctl_commands() -> Vec<Vec<String>> {
    let help = String::from_utf8(run("etcdctl", &["--help"]).stdout).unwrap();
    let section = help.split("COMMANDS:").nth(1).unwrap().split("OPTIONS:").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.trim_start().split('\t').next())
        .filter(|c| !c.is_empty())
        .map(|c| c.split(' ').map(String::from).collect())
        .collect()
}

/// Whether retcdctl knows the command `path` (its help prints).
fn known(path: &[&str]) -> bool {
    let mut args = path.to_vec();
    // `help` is itself the way to ask for help.
    if path != ["help"] {
        args.push("--help");
    }
    let out = run(RETCDCTL, &args);
    out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("unknown command")
}

/// The shortest prefix of `word` no other name in `siblings` starts with.
fn shortest_prefix(word: &str, siblings: &[&str]) -> String {
    (1..=word.len())
        .map(|n| &word[..n])
        .find(|p| siblings.iter().filter(|s| s.starts_with(p)).count() == 1)
        .unwrap_or(word)
        .to_string()
}

#[test]
fn every_etcdctl_command_and_prefix_is_a_retcdctl_command() {
    if require_tool("etcdctl").is_none() {
        return;
    }
    let commands = etcdctl_commands();
    assert!(commands.len() > 40, "{commands:?}");
    let top: Vec<&str> = {
        let mut t: Vec<&str> = commands.iter().map(|c| c[0].as_str()).collect();
        t.dedup();
        t
    };
    for path in &commands {
        let words: Vec<&str> = path.iter().map(String::as_str).collect();
        let name = words.join(" ");
        if NOT_YET.contains(&name.as_str()) {
            assert!(!known(&words), "{name} works now: take it off NOT_YET");
            continue;
        }
        assert!(known(&words), "retcdctl has no `{name}`");
        // The same command under its shortest unambiguous prefixes.
        let mut short = vec![shortest_prefix(words[0], &top)];
        if let Some(sub) = words.get(1) {
            let siblings: Vec<&str> =
                commands.iter().filter(|c| c[0] == words[0] && c.len() > 1).map(|c| c[1].as_str()).collect();
            short.push(shortest_prefix(sub, &siblings));
        }
        let short: Vec<&str> = short.iter().map(String::as_str).collect();
        if short != words && words != ["help"] {
            assert!(known(&short), "retcdctl does not take `{}` for `{name}`", short.join(" "));
        }
    }
}

#[test]
fn an_ambiguous_prefix_is_refused_as_by_etcdctl() {
    if require_tool("etcdctl").is_none() {
        return;
    }
    for args in [&["e", "status"][..], &["comp"], &["user", "g"], &["gte", "k"], &["memebr", "list"], &["xyzzy"]] {
        let theirs = run("etcdctl", args);
        let ours = run(RETCDCTL, args);
        assert_eq!(ours.status.code(), theirs.status.code(), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&ours.stderr), String::from_utf8_lossy(&theirs.stderr), "{args:?}");
    }
}
