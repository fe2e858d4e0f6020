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
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("").trim_start_matches("error: ");
            context::err(format!("Error: {first}\n"));
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
