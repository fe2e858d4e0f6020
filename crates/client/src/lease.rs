//! Lease calls and the keep-alive helper.
//!
//! [`Client::lease_keep_alive`] runs a background task that renews one
//! lease every third of its TTL over a bidirectional stream, and moves to
//! the next endpoint when the stream breaks (renewing twice is harmless).
//! The task ends when the lease is gone (a response with TTL <= 0) or when
//! the [`KeepAlive`] handle is dropped.

use std::time::Duration;

use retcd_api::etcdserverpb::lease_client::LeaseClient;
use retcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::client::{backoff, retriable, Client, Retry};
use crate::error::{Error, Result};

impl Client {
    /// Lease.LeaseGrant (`id` 0: the server picks one).
    pub async fn lease_grant(&self, ttl: i64, id: i64) -> Result<LeaseGrantResponse> {
        self.unary(Retry::NotIdempotent, LeaseGrantRequest { ttl, id }, |ch, r| async move {
            LeaseClient::new(ch).lease_grant(r).await
        })
        .await
    }

    /// Lease.LeaseRevoke.
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse> {
        self.unary(Retry::NotIdempotent, LeaseRevokeRequest { id }, |ch, r| async move {
            LeaseClient::new(ch).lease_revoke(r).await
        })
        .await
    }

    /// Lease.LeaseTimeToLive.
    pub async fn lease_time_to_live(&self, id: i64, keys: bool) -> Result<LeaseTimeToLiveResponse> {
        self.unary(Retry::Idempotent, LeaseTimeToLiveRequest { id, keys }, |ch, r| async move {
            LeaseClient::new(ch).lease_time_to_live(r).await
        })
        .await
    }

    /// Lease.LeaseLeases.
    pub async fn lease_leases(&self) -> Result<LeaseLeasesResponse> {
        self.unary(Retry::Idempotent, LeaseLeasesRequest {}, |ch, r| async move {
            LeaseClient::new(ch).lease_leases(r).await
        })
        .await
    }

    /// One renewal of lease `id`: the server's answer (TTL <= 0 means the
    /// lease no longer exists).
    pub async fn lease_keep_alive_once(&self, id: i64) -> Result<LeaseKeepAliveResponse> {
        self.with_timeout(async {
            let mut last = None;
            for round in 0..self.inner.cfg.max_retry_rounds.max(1) {
                if round > 0 {
                    tokio::time::sleep(backoff(round)).await;
                }
                for ep in self.order() {
                    match keep_alive_once_on(self, ep.channel(), id).await {
                        Ok(r) => return Ok(r),
                        Err(e) if retriable(&e) => last = Some(e),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(last.unwrap_or(Error::StreamClosed))
        })
        .await
    }

    /// Keeps lease `id` alive until the returned handle is dropped; every
    /// server answer is delivered through [`KeepAlive::next`].
    ///
    /// ```no_run
    /// # async fn demo() -> retcd_client::Result<()> {
    /// use retcd_client::{Client, Config};
    /// let client = Client::new(Config::new(["127.0.0.1:2379"]))?;
    /// let lease = client.lease_grant(10, 0).await?;
    /// let mut ka = client.lease_keep_alive(lease.id);
    /// while let Some(resp) = ka.next().await {
    ///     println!("ttl {}", resp?.ttl);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn lease_keep_alive(&self, id: i64) -> KeepAlive {
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(keep_alive_loop(self.clone(), id, tx));
        KeepAlive { rx, task }
    }
}

async fn keep_alive_once_on(client: &Client, ch: Channel, id: i64) -> Result<LeaseKeepAliveResponse> {
    let (tx, rx) = mpsc::channel(1);
    tx.send(LeaseKeepAliveRequest { id }).await.map_err(|_| Error::StreamClosed)?;
    let mut stream = LeaseClient::new(ch).lease_keep_alive(client.request(ReceiverStream::new(rx))).await?.into_inner();
    match stream.message().await? {
        Some(r) => Ok(r),
        None => Err(Error::StreamClosed),
    }
}

/// Renewals of one lease, from [`Client::lease_keep_alive`].
#[derive(Debug)]
pub struct KeepAlive {
    rx: mpsc::Receiver<Result<LeaseKeepAliveResponse>>,
    task: JoinHandle<()>,
}

impl KeepAlive {
    /// The next server answer; `None` once the lease is gone or renewing
    /// failed for good (the last item is then the error).
    pub async fn next(&mut self) -> Option<Result<LeaseKeepAliveResponse>> {
        self.rx.recv().await
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn keep_alive_loop(client: Client, id: i64, out: mpsc::Sender<Result<LeaseKeepAliveResponse>>) {
    let mut failures: u32 = 0;
    loop {
        for ep in client.order() {
            match keep_alive_on(&client, ep.channel(), id, &out, &mut failures).await {
                Ok(()) => return,
                Err(e) if retriable(&e) && failures < client.inner.cfg.max_retry_rounds.max(1) * 3 => {
                    failures += 1;
                    tokio::time::sleep(backoff(failures.min(5))).await;
                }
                Err(e) => {
                    let _ = out.send(Err(e)).await;
                    return;
                }
            }
        }
    }
}

/// Renews over one stream until the lease is gone (Ok) or the stream fails.
async fn keep_alive_on(
    client: &Client,
    ch: Channel,
    id: i64,
    out: &mpsc::Sender<Result<LeaseKeepAliveResponse>>,
    failures: &mut u32,
) -> Result<()> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(LeaseKeepAliveRequest { id }).await.map_err(|_| Error::StreamClosed)?;
    let mut stream = LeaseClient::new(ch).lease_keep_alive(client.request(ReceiverStream::new(rx))).await?.into_inner();
    loop {
        let resp = match stream.message().await? {
            Some(r) => r,
            None => return Err(Error::Rpc(tonic::Status::unavailable("keep-alive stream closed"))),
        };
        *failures = 0;
        let ttl = resp.ttl;
        if out.send(Ok(resp)).await.is_err() || ttl <= 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis((ttl as u64 * 1000 / 3).max(500))).await;
        tx.send(LeaseKeepAliveRequest { id }).await.map_err(|_| Error::StreamClosed)?;
    }
}
