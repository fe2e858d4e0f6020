//! Lease expiry: the leader revokes leases whose TTL ran out, through the
//! log, as root (as etcd's server does).

use std::sync::Arc;
use std::time::Duration;

use retcd_api::etcdserverpb::LeaseRevokeRequest;
use retcd_api::retcdpb::{InternalRequest, RequestHeader};

use crate::server::EtcdServer;

/// The leader's lease expiry loop: proposes a revoke for each expired
/// lease (at most 1000 a second, as etcd).
pub fn spawn(server: &Arc<EtcdServer>) {
    let weak = Arc::downgrade(server);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let Some(server) = weak.upgrade() else { return };
            for id in server.lessor.take_expired(Duration::from_secs(3), 500) {
                let s = server.clone();
                tokio::spawn(async move {
                    // The server revokes as root, as etcd does.
                    let header = RequestHeader {
                        id: 0,
                        username: crate::auth::ROOT_USER.to_string(),
                        auth_revision: s.auth.revision(),
                    };
                    let req = InternalRequest {
                        header: Some(header),
                        lease_revoke: Some(LeaseRevokeRequest { id }),
                        ..Default::default()
                    };
                    if let Err(e) = s.propose::<()>(req).await {
                        tracing::warn!("failed to revoke expired lease {id:x}: {e}");
                    }
                });
            }
        }
    });
}
