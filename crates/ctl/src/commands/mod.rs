//! One module per command group; [`run`] dispatches a parsed command line.

pub mod auth;
pub mod check;
pub mod endpoint;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod member;
pub mod mirror;
pub mod txn;
pub mod watch;

use crate::cli::{Cli, Command};
use crate::context::{out, Ctx};
use crate::exit::CtlError;

/// Runs one command to completion.
pub async fn run(cli: Cli) -> Result<(), CtlError> {
    let ctx = Ctx::new(cli.global);
    match cli.command {
        Command::Get(a) => kv::get(&ctx, a).await,
        Command::Put(a) => kv::put(&ctx, a).await,
        Command::Del(a) => kv::del(&ctx, a).await,
        Command::Compaction(a) => kv::compaction(&ctx, a).await,
        Command::Txn(a) => txn::txn(&ctx, a).await,
        Command::Watch(a) => watch::watch(&ctx, a).await,
        Command::Lease(c) => lease::run(&ctx, c).await,
        Command::Member(c) => member::run(&ctx, c).await,
        Command::Endpoint(a) => endpoint::run(&ctx, a).await,
        Command::Alarm(c) => maintenance::alarm(&ctx, c).await,
        Command::MoveLeader(a) => maintenance::move_leader(&ctx, a).await,
        Command::Defrag(a) => maintenance::defrag(&ctx, a).await,
        Command::Lock(a) => lock::lock(&ctx, a).await,
        Command::Elect(a) => lock::elect(&ctx, a).await,
        Command::Snapshot(c) => maintenance::snapshot(&ctx, c).await,
        Command::MakeMirror(a) => mirror::make_mirror(&ctx, a).await,
        Command::Check(crate::cli::CheckCommand::Perf(a)) => check::perf(&ctx, a).await,
        Command::User(c) => auth::user(&ctx, c).await,
        Command::Role(c) => auth::role(&ctx, c).await,
        Command::Auth(c) => auth::auth(&ctx, c).await,
        Command::Completion(shell) => {
            completion(shell);
            Ok(())
        }
        Command::Version => {
            out(format!("etcdctl version: {}\nAPI version: 3.4\n", crate::VERSION));
            Ok(())
        }
    }
}

/// Writes the completion script for `shell` (clap's script, for
/// retcdctl's own commands and flags; cobra's differs in form).
fn completion(shell: crate::cli::CompletionCommand) {
    use crate::cli::CompletionCommand as C;
    use clap::CommandFactory;
    use clap_complete::Shell;
    let shell = match shell {
        C::Bash => Shell::Bash,
        C::Fish => Shell::Fish,
        C::Powershell => Shell::PowerShell,
        C::Zsh => Shell::Zsh,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut crate::cli::Cli::command(), "retcdctl", &mut script);
    out(script);
}

/// A Go int64 flag value, with pflag's error text.
pub fn int_flag(name: &str, v: &str) -> Result<i64, CtlError> {
    crate::exit::go_parse_i64(v, 10).map_err(|e| {
        // Printed twice, as cobra does for a flag error.
        let msg = format!("invalid argument \"{v}\" for \"--{name}\" flag: {e}");
        CtlError::new(crate::exit::EXIT_ERROR, format!("{msg}\n\nError: {msg}"))
    })
}
