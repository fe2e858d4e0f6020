//! retcd's wire API: the etcd v3 gRPC services and messages, wire-identical to
//! etcd 3.4, plus the table of etcd's gRPC errors ([`errors::EtcdError`]).
//!
//! The modules are generated at build time from `proto/` (see `build.rs`).
//! They are siblings at the crate root because the generated `etcdserverpb`
//! code refers to `super::mvccpb` and `super::authpb`.

pub mod duration;

/// The etcd v3 client API: `KV`, `Watch`, `Lease`, `Cluster`, `Maintenance`
/// and `Auth` services (clients and servers) and their messages.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// The stored key-value pair and watch event.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// Users, roles and permissions.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// retcd's own internal messages (raft log payloads, WAL metadata, leases).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod retcdpb {
    tonic::include_proto!("retcdpb");
}

/// Distributed locks (`v3lockpb.Lock`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// Leader election (`v3electionpb.Election`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

pub mod errors;

pub use errors::EtcdError;

/// The encoded `google.protobuf.FileDescriptorSet` of every proto file above
/// (for gRPC server reflection or dynamic decoding).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/retcd_descriptor.bin"));
