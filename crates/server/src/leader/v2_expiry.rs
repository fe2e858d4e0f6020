//! The v2 keys store's TTLs, expired by the leader through the log.

use std::sync::Arc;
use std::time::Duration;

use retcd_api::retcdpb::{InternalRequest, V2Request};

use crate::server::EtcdServer;

/// On the leader, every half second: when some node's TTL ran out,
/// propose a SYNC with the leader's clock (etcd's v2 expiry).
pub fn spawn(server: &Arc<EtcdServer>) {
    let weak = Arc::downgrade(server);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let Some(server) = weak.upgrade() else { return };
            let now = crate::v2store::now_nanos();
            if !server.raft.is_leader() || !server.v2.has_expired(now) {
                continue;
            }
            let req = V2Request { method: "SYNC".into(), time: now, ..Default::default() };
            let req = InternalRequest { v2: Some(req), ..Default::default() };
            if let Err(e) = server.propose::<()>(req).await {
                tracing::warn!("failed to expire v2 keys: {e}");
            }
        }
    });
}
