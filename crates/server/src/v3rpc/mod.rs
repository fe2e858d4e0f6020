//! The gRPC services, one module per etcd service, routed together with
//! their interceptors (`crate::etcd` puts the JSON gateway and the HTTP
//! endpoints on the same port).

pub mod auth;
pub mod cluster;
pub mod concurrency;
pub mod election;
pub mod inproc;
pub mod interceptors;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod validate;
pub mod watch;

use std::sync::Arc;

use retcd_api::etcdserverpb::auth_server::AuthServer;
use retcd_api::etcdserverpb::cluster_server::ClusterServer;
use retcd_api::etcdserverpb::kv_server::KvServer;
use retcd_api::etcdserverpb::lease_server::LeaseServer;
use retcd_api::etcdserverpb::maintenance_server::MaintenanceServer;
use retcd_api::etcdserverpb::watch_server::WatchServer;
use retcd_api::v3electionpb::election_server::ElectionServer;
use retcd_api::v3lockpb::lock_server::LockServer;
use tonic::Status;

use crate::server::EtcdServer;

/// The answer of a method whose issue has not come yet.
pub fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("retcd: {what} is not implemented yet"))
}

/// Headroom over `--max-request-bytes` for gRPC framing, as etcd grants
/// (etcd sets its gRPC receive limit to max-request-bytes + 512 KiB so that a
/// slightly oversized request gets etcd's "request is too large" error rather
/// than a transport error).
pub(crate) const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// The gRPC routes of every service, as an axum router.
pub fn routes(server: &Arc<EtcdServer>) -> axum::Router {
    let max_recv = server.settings.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let max_send = usize::MAX >> 1;
    let kv = KvServer::new(kv::KvService { server: server.clone() })
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(max_send);
    let watch = WatchServer::new(watch::WatchService { server: server.clone() })
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(max_send);
    let lease = LeaseServer::new(lease::LeaseService { server: server.clone() })
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(max_send);
    let cluster =
        ClusterServer::new(cluster::ClusterService { server: server.clone() }).max_decoding_message_size(max_recv);
    let maintenance = MaintenanceServer::new(maintenance::MaintenanceService { server: server.clone() })
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(max_send);
    let auth = AuthServer::new(auth::AuthService { server: server.clone() }).max_decoding_message_size(max_recv);
    let lock = LockServer::new(lock::LockService { server: server.clone() }).max_decoding_message_size(max_recv);
    let election =
        ElectionServer::new(election::ElectionService { server: server.clone() }).max_decoding_message_size(max_recv);
    tonic::service::Routes::new(kv)
        .add_service(watch)
        .add_service(lease)
        .add_service(cluster)
        .add_service(maintenance)
        .add_service(auth)
        .add_service(lock)
        .add_service(election)
        .into_axum_router()
        .layer(interceptors::InterceptLayer { raft: server.raft.clone() })
}
