//! Maintenance calls: status, hash, hashkv, alarms, defragment, snapshot,
//! move-leader.
//!
//! Status, HashKV, Defragment and Snapshot are about one member: use them on
//! a client from [`Client::for_endpoint`] to pick which.

use retcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use retcd_api::etcdserverpb::{
    alarm_request, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse, HashKvRequest,
    HashKvResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use tonic::Streaming;

use crate::client::{Client, Retry, MAX_DECODE};
use crate::error::{Error, Result};

impl Client {
    /// Maintenance.Status.
    pub async fn status(&self) -> Result<StatusResponse> {
        self.unary(
            Retry::Idempotent,
            StatusRequest {},
            |ch, r| async move { MaintenanceClient::new(ch).status(r).await },
        )
        .await
    }

    /// Maintenance.HashKV at `revision` (0: current).
    pub async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse> {
        self.unary(Retry::Idempotent, HashKvRequest { revision }, |ch, r| async move {
            MaintenanceClient::new(ch).hash_kv(r).await
        })
        .await
    }

    /// Maintenance.Alarm (get, activate or deactivate).
    pub async fn alarm(
        &self,
        action: alarm_request::AlarmAction,
        member_id: u64,
        alarm: AlarmType,
    ) -> Result<AlarmResponse> {
        let req = AlarmRequest { action: action as i32, member_id, alarm: alarm as i32 };
        self.unary(Retry::Idempotent, req, |ch, r| async move { MaintenanceClient::new(ch).alarm(r).await }).await
    }

    /// Maintenance.Defragment.
    pub async fn defragment(&self) -> Result<DefragmentResponse> {
        self.unary(Retry::Idempotent, DefragmentRequest {}, |ch, r| async move {
            MaintenanceClient::new(ch).defragment(r).await
        })
        .await
    }

    /// Maintenance.MoveLeader (send it to the current leader).
    pub async fn move_leader(&self, target_id: u64) -> Result<MoveLeaderResponse> {
        self.unary(Retry::NotIdempotent, MoveLeaderRequest { target_id }, |ch, r| async move {
            MaintenanceClient::new(ch).move_leader(r).await
        })
        .await
    }

    /// Maintenance.Snapshot: the backend as a stream of chunks, from the
    /// first endpoint that accepts the call (not retried once streaming).
    pub async fn snapshot(&self) -> Result<Streaming<SnapshotResponse>> {
        let mut last = None;
        for ep in self.order() {
            let mut c = MaintenanceClient::new(ep.channel()).max_decoding_message_size(MAX_DECODE);
            match c.snapshot(self.request(SnapshotRequest {})).await {
                Ok(s) => return Ok(s.into_inner()),
                Err(status) => {
                    let e = Error::from(status);
                    if !crate::client::retriable(&e) {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(Error::StreamClosed))
    }
}
