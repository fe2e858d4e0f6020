//! Logging through `tracing`, configured by etcd's flags: `--log-level`,
//! `--logger` (zap: JSON lines; capnslog: text) and `--log-outputs`.

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use crate::config::{Config, ConfigError};

pub fn init(cfg: &Config) -> Result<(), ConfigError> {
    let level = match cfg.log_level.as_str() {
        "debug" => "debug",
        "info" => "info",
        "warn" => "warn",
        "error" | "dpanic" | "panic" | "fatal" => "error",
        other => {
            return Err(ConfigError(format!(
                "unknown log level {other:?}: only supports debug, info, warn, error, panic, or fatal"
            )))
        }
    };
    // raft-rs is chatty at debug; keep it one level quieter than ours.
    let filter = EnvFilter::try_from_env("RETCD_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let outputs: Vec<&str> = cfg.log_outputs.split(',').map(str::trim).collect();
    let output = outputs.first().copied().unwrap_or("default");
    let json = cfg.logger == "zap";
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let result = match output {
        "default" | "stderr" => {
            if json {
                builder.json().with_writer(std::io::stderr).try_init()
            } else {
                builder.with_writer(std::io::stderr).try_init()
            }
        }
        "stdout" => {
            if json {
                builder.json().with_writer(std::io::stdout).try_init()
            } else {
                builder.with_writer(std::io::stdout).try_init()
            }
        }
        path => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| ConfigError(format!("--log-outputs: cannot open {path}: {e}")))?;
            let writer = Mutex::new(file);
            if json {
                builder.json().with_ansi(false).with_writer(writer).try_init()
            } else {
                builder.with_ansi(false).with_writer(writer).try_init()
            }
        }
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
    Ok(())
}
