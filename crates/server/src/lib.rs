//! retcd's server: an etcd v3 compatible member.
//!
//! Requests flow: gRPC service ([`v3rpc`]) -> [`server::EtcdServer`] ->
//! raft proposal ([`raft`], one ready-loop thread, WAL fsync per batch) ->
//! apply thread ([`apply`], mvcc + lessor, one backend batch) -> waiter and
//! watchers ([`watch`]). Reads are served from the store after a read-index
//! round ([`server::EtcdServer::linearizable_read`]).

pub mod apply;
pub mod config;
pub mod etcd;
pub mod gateway;
pub mod ids;
pub mod lease;
pub mod logging;
pub mod membership;
pub mod peer;
pub mod raft;
pub mod server;
pub mod snapshot;
pub mod v3rpc;
pub mod wait;
pub mod watch;
