//! `retcdctl`: etcdctl 3.4's command line on retcd-client. Same commands,
//! flags, `ETCDCTL_*` variables, output in every format and exit codes, so
//! scripts written for etcdctl work unchanged against retcd or etcd.

mod cli;
mod commands;
mod context;
mod exit;
mod printer;

use clap::error::ErrorKind;
use clap::Parser;

/// The etcdctl release whose behaviour retcdctl reproduces (printed by
/// `version`, like etcdctl's own).
pub const VERSION: &str = "3.4.23";

fn main() {
    let cli = match cli::Cli::try_parse() {
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
            let msg = format!("unknown command \"{name}\" for \"etcdctl\"");
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
