//! `retcd-client`: a Rust client for etcd v3 and retcd.
//!
//! One [`Client`] talks to many endpoints: calls are spread round-robin,
//! fail over to the next endpoint when one is down, has no leader or is a
//! learner, and are retried only when that is safe (see [`client`]). Watches
//! resume on another member without losing or repeating events ([`watch`]);
//! leases can be kept alive in the background ([`lease`]); locks and
//! elections follow etcd's recipes ([`concurrency`]). Errors expose etcd's
//! error kinds ([`Error::etcd_kind`]).
//!
//! Requests and responses are etcd's own protobuf messages (re-exported
//! from [`retcd_api`]), so every field etcd offers is available.
//!
//! ```no_run
//! # async fn demo() -> retcd_client::Result<()> {
//! use retcd_client::{Client, Config};
//! use std::time::Duration;
//!
//! let cfg = Config::new(["127.0.0.1:12379", "127.0.0.1:22379", "127.0.0.1:32379"])
//!     .request_timeout(Duration::from_secs(5));
//! let client = Client::new(cfg)?;
//! client.put("k", "v").await?;
//! let got = client.get("k").await?;
//! println!("{} keys at revision {}", got.count, got.header.map(|h| h.revision).unwrap_or(0));
//! # Ok(()) }
//! ```

pub mod auth;
pub mod client;
pub mod cluster;
pub mod concurrency;
pub mod config;
pub mod endpoints;
pub mod error;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod srv;
pub mod tls;
pub mod watch;

pub use client::{Client, Retry};
pub use config::Config;
pub use error::{Error, EtcdError, Result};
pub use kv::prefix_end;
pub use lease::KeepAlive;
pub use tls::TlsConfig;
pub use watch::Watcher;

pub use retcd_api::etcdserverpb::{
    compare, request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseOp,
    TxnRequest, WatchCreateRequest,
};
pub use retcd_api::{authpb, etcdserverpb, mvccpb};
