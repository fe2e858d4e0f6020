//! Corruption checks between members, as etcd's:
//!
//! - at start (`--experimental-initial-corrupt-check`): this member's KV hash
//!   at its revision is compared with each peer's at the same revision; a
//!   mismatch (with the same compaction) stops the member before it serves.
//! - periodically on the leader (`--experimental-corrupt-check-time`): the
//!   leader asks every member for its hash at the leader's revision; a
//!   member whose hash differs at the same compaction, or which is ahead of
//!   the leader, gets the CORRUPT alarm raised for it, which stops writes
//!   cluster-wide until an operator intervenes.
//!
//! Hashes travel over the peer service (HashKv).

use std::sync::{Arc, Weak};
use std::time::Duration;

use retcd_api::etcdserverpb::alarm_request::AlarmAction;
use retcd_api::etcdserverpb::{AlarmRequest, AlarmType, HashKvRequest, HashKvResponse};
use retcd_api::retcdpb::peer_client::PeerClient;
use retcd_api::retcdpb::InternalRequest;
use retcd_storage::mvcc::HashKv;

use crate::server::EtcdServer;

/// Asks every other member for its hash at `rev`; members that cannot
/// answer (down, or not at that revision yet) are left out.
async fn peer_hashes(server: &EtcdServer, rev: i64) -> Vec<(u64, HashKvResponse)> {
    let mut out = Vec::new();
    for m in server.members().into_iter().filter(|m| m.id != server.settings.member_id) {
        let Some(url) = m.peer_ur_ls.first() else { continue };
        let connecting = server.peer_dialer.connect(url, Duration::from_secs(1), Some(Duration::from_secs(5)));
        let Ok(channel) = connecting.await else { continue };
        match PeerClient::new(channel).hash_kv(HashKvRequest { revision: rev }).await {
            Ok(r) => out.push((m.id, r.into_inner())),
            Err(e) => tracing::warn!("cannot fetch the hash of member {:x}: {}", m.id, e.message()),
        }
    }
    out
}

/// The start-up check; Err is the reason to stop.
pub async fn initial_check(server: &EtcdServer) -> Result<(), String> {
    let kv = server.kv.clone();
    let own = tokio::task::spawn_blocking(move || kv.hash_kv(0))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    tracing::info!("starting initial corruption check (revision {})", own.revision);
    let mut mismatched = false;
    for (id, peer) in peer_hashes(server, own.revision).await {
        if peer.compact_revision == own.compact_revision && peer.hash != own.hash {
            tracing::error!(
                "local member {:x} hash {} differs from member {id:x} hash {} at revision {}",
                server.settings.member_id,
                own.hash,
                peer.hash,
                own.revision
            );
            mismatched = true;
        }
    }
    if mismatched {
        return Err(format!("{:x} found data inconsistency with peers", server.settings.member_id));
    }
    tracing::info!("initial corruption check passed; no corruption detected");
    Ok(())
}

/// Starts the leader's periodic check; it ends when the server is dropped.
pub fn spawn_periodic(server: &Arc<EtcdServer>, every: Duration) {
    let weak = Arc::downgrade(server);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(server) = Weak::upgrade(&weak) else { return };
            if server.raft.is_leader() {
                check(&server).await;
            }
        }
    });
}

async fn own_hash(server: &EtcdServer) -> Option<HashKv> {
    let kv = server.kv.clone();
    match tokio::task::spawn_blocking(move || kv.hash_kv(0)).await {
        Ok(Ok(h)) => Some(h),
        _ => None,
    }
}

async fn check(server: &EtcdServer) {
    let Some(own) = own_hash(server).await else { return };
    let peers = peer_hashes(server, own.revision).await;
    // Writes go on while the peers answer: a follower may by now have
    // applied past `own.revision`, so "ahead" is judged against the
    // leader's revision after the answers came in.
    let Some(now) = own_hash(server).await else { return };
    let mut corrupt = Vec::new();
    for (id, peer) in peers {
        let peer_rev = peer.header.as_ref().map(|h| h.revision).unwrap_or(0);
        // A follower is never ahead of its leader, and its compaction
        // follows the leader's; at the same compaction the hashes agree.
        let ahead = peer_rev > now.revision || peer.compact_revision > now.compact_revision;
        let differs = peer.compact_revision == own.compact_revision && peer.hash != own.hash;
        if ahead || differs {
            tracing::error!(
                "member {id:x} is inconsistent with the leader at revision {} (hash {} vs {}, compacted at {} vs {}, revision now {} vs {})",
                own.revision,
                peer.hash,
                own.hash,
                peer.compact_revision,
                own.compact_revision,
                peer_rev,
                now.revision
            );
            corrupt.push(id);
        }
    }
    for id in corrupt {
        let alarm =
            AlarmRequest { action: AlarmAction::Activate as i32, member_id: id, alarm: AlarmType::Corrupt as i32 };
        if let Err(e) = server.propose::<()>(InternalRequest { alarm: Some(alarm), ..Default::default() }).await {
            tracing::warn!("cannot raise the CORRUPT alarm for member {id:x}: {e}");
        }
    }
}
