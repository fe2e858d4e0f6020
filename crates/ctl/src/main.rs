//! `retcdctl`: etcdctl 3.4's command line on retcd-client. Same commands,
//! flags, `ETCDCTL_*` variables, output in every format and exit codes, so
//! scripts written for etcdctl work unchanged against retcd or etcd.

mod cli;
mod commands;
mod context;
mod exit;
mod printer;

use clap::error::ErrorKind;

/// The etcdctl release whose behaviour retcdctl reproduces (printed by
/// `version`, like etcdctl's own).
pub const VERSION: &str = "3.4.23";

fn main() {
    check_env();
    let cli = match cli::Cli::parse_args() {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return;
        }
        Err(e) => {
            let (msg, twice) = go_parse_error(&e);
            if twice {
                // cobra prints a flag error, the usage (not reproduced) and
                // the error again.
                context::err(format!("Error: {msg}\n\nError: {msg}\n"));
            } else {
                context::err(format!("Error: {msg}\n"));
            }
            std::process::exit(exit::EXIT_ERROR);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            context::err(format!("Error: {e}\n"));
            std::process::exit(exit::EXIT_ERROR);
        }
    };
    let result = runtime.block_on(commands::run(cli));
    if let Err(e) = result {
        context::err(format!("Error: {}\n", e.msg));
        std::process::exit(e.code);
    }
}

/// etcdctl's top-level commands in the order it adds them (cobra suggests
/// in this order, `help` and `completion` last).
const ETCDCTL_COMMANDS: &[&str] = &[
    "get",
    "put",
    "del",
    "txn",
    "compaction",
    "alarm",
    "defrag",
    "endpoint",
    "move-leader",
    "watch",
    "version",
    "lease",
    "member",
    "snapshot",
    "make-mirror",
    "migrate",
    "lock",
    "elect",
    "auth",
    "user",
    "role",
    "check",
    "help",
    "completion",
];

/// cobra's "Did you mean this?" for an unknown command `typed`: the
/// commands within two edits of it, or that it is a prefix of (both
/// ignoring case).
fn suggestions(typed: &str) -> String {
    let typed = typed.to_lowercase();
    let found: Vec<&str> =
        ETCDCTL_COMMANDS.iter().copied().filter(|c| c.starts_with(&typed) || edit_distance(&typed, c) <= 2).collect();
    if found.is_empty() {
        return String::new();
    }
    let mut text = "\n\nDid you mean this?\n".to_string();
    for c in found {
        text.push_str(&format!("\t{c}\n"));
    }
    text
}

/// Levenshtein distance between `a` and `b`, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// etcdctl's (cobra and pflag's) text for a command line clap refused, and
/// whether cobra prints it twice (flag errors) or with its usage hint
/// (unknown commands).
fn go_parse_error(e: &clap::Error) -> (String, bool) {
    use clap::error::ContextKind;
    let ctx = |k: ContextKind| e.get(k).map(|v| v.to_string()).unwrap_or_default();
    match e.kind() {
        ErrorKind::InvalidSubcommand => {
            let name = ctx(ContextKind::InvalidSubcommand);
            // Under a command group, cobra shows the group's help and exits 0.
            const GROUPS: [&str; 8] = ["lease", "member", "endpoint", "alarm", "user", "role", "auth", "snapshot"];
            let args: Vec<String> = std::env::args().collect();
            let before = args.iter().position(|a| *a == name).unwrap_or(0);
            if args[..before].iter().any(|a| GROUPS.contains(&a.as_str())) {
                use clap::CommandFactory;
                let _ = cli::Cli::command().print_help();
                std::process::exit(0);
            }
            let msg = format!("unknown command \"{name}\" for \"etcdctl\"{}", suggestions(&name));
            (format!("{msg}\nRun 'etcdctl --help' for usage.\nError: {msg}"), false)
        }
        ErrorKind::UnknownArgument => {
            let arg = ctx(ContextKind::InvalidArg);
            if let Some(long) = arg.strip_prefix("--") {
                let name = long.split('=').next().unwrap_or(long);
                (format!("unknown flag: --{name}"), true)
            } else if let Some(short) = arg.strip_prefix('-') {
                let c = short.chars().next().unwrap_or('-');
                (format!("unknown shorthand flag: '{c}' in {arg}"), true)
            } else {
                (format!("unknown command \"{arg}\" for \"etcdctl\""), false)
            }
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let flag = ctx(ContextKind::InvalidArg);
            let flag = flag.split([' ', '=', '[']).next().unwrap_or("").to_string();
            let value = ctx(ContextKind::InvalidValue);
            if value.is_empty() {
                return (format!("flag needs an argument: {flag}"), true);
            }
            let why = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default();
            (format!("invalid argument \"{value}\" for \"{flag}\" flag: {why}"), true)
        }
        _ => {
            let text = e.to_string();
            (text.lines().next().unwrap_or("").trim_start_matches("error: ").to_string(), false)
        }
    }
}

/// etcdctl's handling of `ETCDCTL_*` variables: an unknown one is warned
/// about; one whose flag is also on the command line is a fatal conflict;
/// a value its flag cannot parse is ignored (the flag keeps its default)
/// rather than refused.
fn check_env() {
    #[derive(Clone, Copy)]
    enum Kind {
        Text,
        Bool,
        Duration,
    }
    const KNOWN: &[(&str, Kind)] = &[
        ("API", Kind::Text),
        ("ENDPOINTS", Kind::Text),
        ("DEBUG", Kind::Bool),
        ("WRITE_OUT", Kind::Text),
        ("HEX", Kind::Bool),
        ("DIAL_TIMEOUT", Kind::Duration),
        ("COMMAND_TIMEOUT", Kind::Duration),
        ("KEEPALIVE_TIME", Kind::Duration),
        ("KEEPALIVE_TIMEOUT", Kind::Duration),
        ("INSECURE_TRANSPORT", Kind::Bool),
        ("INSECURE_DISCOVERY", Kind::Bool),
        ("INSECURE_SKIP_TLS_VERIFY", Kind::Bool),
        ("CERT", Kind::Text),
        ("KEY", Kind::Text),
        ("CACERT", Kind::Text),
        ("USER", Kind::Text),
        ("PASSWORD", Kind::Text),
        ("DISCOVERY_SRV", Kind::Text),
        ("DISCOVERY_SRV_NAME", Kind::Text),
        ("WATCH_KEY", Kind::Text),
        ("WATCH_RANGE_END", Kind::Text),
    ];
    let args: Vec<String> = std::env::args().skip(1).take_while(|a| a != "--").collect();
    let on_command_line = |flag: &str| {
        let long = format!("--{}", flag.to_lowercase().replace('_', "-"));
        let short = match flag {
            "WRITE_OUT" => Some("-w"),
            "DISCOVERY_SRV" => Some("-d"),
            _ => None,
        };
        args.iter().any(|a| {
            *a == long
                || a.starts_with(&format!("{long}="))
                || short.is_some_and(|s| a.starts_with(s) && !a.starts_with("--"))
        })
    };
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else { continue };
        let Some(flag) = name.strip_prefix("ETCDCTL_") else { continue };
        match KNOWN.iter().find(|(k, _)| *k == flag) {
            None => context::err(format!(
                "{} W | pkg/flags: unrecognized environment variable {name}={value}\n",
                log_time()
            )),
            Some(_) if !matches!(flag, "API" | "WATCH_KEY" | "WATCH_RANGE_END") && on_command_line(flag) => {
                context::err(format!(
                    "{} C | pkg/flags: conflicting environment variable \"{name}\" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)\n",
                    log_time()
                ));
                std::process::exit(exit::EXIT_ERROR);
            }
            Some((_, kind)) => {
                let ok = match kind {
                    Kind::Text => true,
                    Kind::Bool => cli::go_bool(value).is_ok(),
                    Kind::Duration => cli::go_duration(value).is_ok(),
                };
                if !ok {
                    std::env::remove_var(name);
                }
            }
        }
    }
}

/// `2006-01-02 15:04:05.000000` in UTC, the stamp of etcd's capnslog lines.
fn log_time() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_micros()
    )
}
