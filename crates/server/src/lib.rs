//! retcd's server: an etcd v3 compatible member.
//!
//! Requests flow: gRPC service ([`v3rpc`]) -> [`server::EtcdServer`] ->
//! raft proposal ([`raft`], one ready-loop thread, WAL fsync per batch) ->
//! apply thread ([`apply`], mvcc + lessor, one backend batch) -> waiter and
//! watchers ([`watch`]). Reads are served from the store after a read-index
//! round ([`server::EtcdServer::linearizable_read`]).

pub mod alarm;
pub mod apply;
pub mod auth;
pub mod backup;
pub mod config;
pub mod discovery;
pub mod etcd;
pub mod gateway;
pub mod http;
pub mod ids;
pub mod integration;
pub mod leader;
pub mod lease;
pub mod listener;
pub mod logging;
pub mod membership;
pub mod metrics;
pub mod peer;
pub mod peer_dial;
pub mod raft;
pub mod server;
pub mod snapshot;
pub mod stop;
pub mod tls;
pub mod v2store;
pub mod v3rpc;
pub mod version;
pub mod wait;
pub mod watch;
