//! `lease-keepalive`: each client grants one lease (TTL 100 s, untimed) and
//! then renews it once per request over its own LeaseKeepAlive stream: send
//! one request, wait for its response. (etcd's tool opens a fresh stream per
//! `KeepAliveOnce`; a long-lived stream is what real clients do and keeps
//! stream setup out of the measurement.)

use retcd_api::etcdserverpb::lease_client::LeaseClient;
use retcd_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::Status;

use super::{Ctx, Outcome};
use crate::driver::{self, Op, Plan};
use crate::progress::Progress;
use crate::report::Summary;

const DEFAULT_TOTAL: u64 = 10_000;
const LEASE_TTL: i64 = 100;

struct KeepAliveOp {
    client: LeaseClient<Channel>,
    id: i64,
    stream: Option<(mpsc::Sender<LeaseKeepAliveRequest>, Streaming<LeaseKeepAliveResponse>)>,
}

impl KeepAliveOp {
    async fn once(&mut self) -> Result<(), Status> {
        let req = LeaseKeepAliveRequest { id: self.id };
        let resp = match &mut self.stream {
            Some((tx, inbound)) => {
                tx.send(req).await.map_err(|_| Status::unavailable("keepalive stream closed"))?;
                inbound.message().await?
            }
            None => {
                // Queue the first request before opening: a server may send
                // its response headers only with the first message.
                let (tx, rx) = mpsc::channel(1);
                tx.send(req).await.map_err(|_| Status::internal("keepalive queue closed"))?;
                let mut inbound = self.client.lease_keep_alive(ReceiverStream::new(rx)).await?.into_inner();
                let resp = inbound.message().await?;
                self.stream = Some((tx, inbound));
                resp
            }
        };
        match resp {
            Some(r) if r.ttl > 0 => Ok(()),
            Some(_) => Err(Status::not_found("etcdserver: requested lease not found")),
            None => Err(Status::unavailable("keepalive stream ended")),
        }
    }
}

impl Op for KeepAliveOp {
    async fn call(&mut self, _i: u64) -> (usize, Result<(), Status>) {
        let r = self.once().await;
        if r.is_err() {
            // Reopen on the next request.
            self.stream = None;
        }
        (0, r)
    }
}

pub async fn keepalive(ctx: &Ctx) -> Result<Outcome, String> {
    let mut ops = Vec::with_capacity(ctx.clients());
    for i in 0..ctx.clients() {
        let mut client = LeaseClient::new(ctx.channel(i));
        let grant = client
            .lease_grant(LeaseGrantRequest { ttl: LEASE_TTL, id: 0 })
            .await
            .map_err(|e| format!("lease grant failed: {e}"))?
            .into_inner();
        ops.push(KeepAliveOp { client, id: grant.id, stream: None });
    }
    let total = ctx.total(DEFAULT_TOTAL);
    let progress = Progress::start(total);
    let plan = Plan { total, reports: 1, limiter: ctx.limiter(ctx.g.rate), done: progress.counter() };
    let (samples, elapsed) = driver::run(ops, plan).await;
    progress.finish();
    let summaries: Vec<Summary> = samples.into_iter().map(|s| Summary::new("lease-keepalive", s, elapsed)).collect();
    Ok(Outcome { text: summaries.iter().map(|s| s.text(ctx.g.precise)).collect(), summaries })
}
