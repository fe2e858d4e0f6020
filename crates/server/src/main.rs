//! `retcd`: the server binary. Accepts etcd's flags and `ETCD_*` variables.

use retcd_server::config::Config;
use retcd_server::etcd::Etcd;

fn main() {
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
        wait_for_signal().await;
        tracing::info!("received signal, shutting down");
        etcd.stop().await;
        0
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
