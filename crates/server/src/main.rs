//! `retcd`: the server binary. Accepts etcd's flags and `ETCD_*` variables.
//! `retcd discovery new` creates a discovery token (see [`discovery_new`]).

use retcd_server::config::Config;
use retcd_server::etcd::Etcd;
use retcd_server::stop::StopReason;

/// `retcd discovery new --size N [--endpoint URL]`: the local analogue of
/// `https://discovery.etcd.io/new?size=N`. Writes `<token>/_config/size` on
/// a v2 keys service (a member started with `--enable-v2`) and prints the
/// discovery URL to pass as `--discovery`.
#[derive(clap::Parser)]
#[command(name = "retcd discovery new", about = "Create a v2 discovery token on a v2 keys service")]
struct DiscoveryNew {
    /// Number of members expected to bootstrap through the token.
    #[arg(long, default_value_t = 3)]
    size: u64,
    /// Client URL of the v2 keys service.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    endpoint: String,
}

fn discovery_new(args: Vec<String>) -> i32 {
    let opts = <DiscoveryNew as clap::Parser>::parse_from(args);
    if opts.size == 0 {
        eprintln!("retcd discovery new: --size must be at least 1");
        return 1;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("retcd: cannot start the runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(retcd_server::discovery::v2::new_token(&opts.endpoint, opts.size)) {
        Ok(url) => {
            println!("{url}");
            0
        }
        Err(e) => {
            eprintln!("retcd discovery new: {e}");
            1
        }
    }
}

fn main() {
    // Test builds only (the `failpoints` feature): arm FAILPOINTS first.
    retcd_storage::failpoints::setup();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("discovery") {
        if args.get(2).map(String::as_str) != Some("new") {
            eprintln!("usage: retcd discovery new [--size N] [--endpoint URL]");
            std::process::exit(2);
        }
        let mut rest = vec!["retcd discovery new".to_string()];
        rest.extend(args.into_iter().skip(3));
        std::process::exit(discovery_new(rest));
    }
    let cfg = Config::from_args();
    if let Err(e) = retcd_server::logging::init(&cfg) {
        eprintln!("retcd: {e}");
        std::process::exit(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("retcd: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async move {
        let etcd = match Etcd::start(cfg).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("retcd: {e}");
                return 1;
            }
        };
        let code = tokio::select! {
            () = wait_for_signal() => {
                tracing::info!("received signal, shutting down");
                0
            }
            reason = etcd.stopped() => match reason {
                // etcd exits 0 once removed from its cluster.
                StopReason::Removed => 0,
                StopReason::Failed(why) => {
                    eprintln!("retcd: {why}");
                    1
                }
            },
        };
        etcd.stop().await;
        code
    });
    std::process::exit(code);
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers, run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
