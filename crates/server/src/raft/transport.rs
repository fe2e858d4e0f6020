//! The peer transport: raft messages between members over gRPC on the peer
//! URLs.
//!
//! Each remote member has a sender task with a bounded queue. The raft
//! thread only ever `try_send`s into it: a member that is down or slow fills
//! its own queue and loses messages (raft retransmits; the member is reported
//! unreachable so the leader probes it gently) but never blocks the raft
//! loop or the other members. A sender batches whatever is queued into one
//! `RaftBatch` per write on a long-lived client stream, and reconnects with
//! a backoff when the stream breaks. Senders start for every known member
//! at once, not on the first message, so [`PeerActivity`] tells how long
//! each link has been up (etcd's strict reconfiguration checks need it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use prost011::Message as _;
use raft::eraftpb::{ConfChangeType, ConfState, Message};
use retcd_api::retcdpb::peer_client::PeerClient;
use retcd_api::retcdpb::RaftBatch;
use retcd_storage::backend::Backend;
use tokio::sync::mpsc;

use super::RaftInput;
use crate::peer_dial::PeerDialer;

/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;
/// Messages sent in one batch at most.
const MAX_BATCH: usize = 512;

/// Where the raft loop's messages go: the other members over gRPC in a
/// running member ([`PeerTransport`]), channels between in-process nodes in
/// the raft tests. Neither call may block the raft loop.
pub trait RaftTransport: Send {
    /// Queues `msgs` for their recipients; returns the ids that cannot be
    /// reached now (raft is told, and probes them gently).
    fn send(&mut self, msgs: Vec<Message>) -> Vec<u64>;

    /// Follows a membership change: an added or updated member is reached
    /// at `urls` from now on; a removed one is forgotten.
    fn set_peer(&mut self, id: u64, urls: Vec<String>, change: ConfChangeType);

    /// Sends a lagging member `msg` (a `MsgSnapshot`) with the backend's
    /// committed data, streamed off the raft thread, its metadata rewritten
    /// to match the data (see [`crate::snapshot::send`]). The outcome comes back to raft as
    /// [`RaftInput::SnapshotStatus`]; false when it could not even start.
    fn send_snapshot(&mut self, msg: Message, backend: Arc<Backend>, conf_state: ConfState) -> bool;
}

/// Since when this member's link to each peer has been up (etcd's
/// `ActiveSince`): set when a sender connects, cleared when its stream
/// breaks or the peer is removed.
#[derive(Clone, Default)]
pub struct PeerActivity(Arc<parking_lot::Mutex<HashMap<u64, Instant>>>);

impl PeerActivity {
    /// None while the link to `id` is down (or was never up).
    pub fn active_since(&self, id: u64) -> Option<Instant> {
        self.0.lock().get(&id).copied()
    }

    fn up(&self, id: u64) {
        self.0.lock().entry(id).or_insert_with(Instant::now);
    }

    fn down(&self, id: u64) {
        self.0.lock().remove(&id);
    }
}

/// The transport of a running member: one sender task per peer.
pub struct PeerTransport {
    cluster_id: u64,
    self_id: u64,
    runtime: tokio::runtime::Handle,
    raft_tx: Sender<RaftInput>,
    peers: HashMap<u64, mpsc::Sender<Message>>,
    /// Peer URLs by member id, as currently known.
    urls: HashMap<u64, Vec<String>>,
    rejected: Rejection,
    dialer: PeerDialer,
    activity: PeerActivity,
}

/// What a [`PeerTransport`] is built from.
pub struct PeerTransportParts {
    pub cluster_id: u64,
    pub self_id: u64,
    pub runtime: tokio::runtime::Handle,
    pub raft_tx: Sender<RaftInput>,
    /// The other members' peer URLs.
    pub urls: HashMap<u64, Vec<String>>,
    pub rejected: Rejection,
    pub dialer: PeerDialer,
    pub activity: PeerActivity,
}

impl PeerTransport {
    /// Starts a sender for every member in `parts.urls`.
    pub fn new(parts: PeerTransportParts) -> PeerTransport {
        let PeerTransportParts { cluster_id, self_id, runtime, raft_tx, urls, rejected, dialer, activity } = parts;
        let ids: Vec<u64> = urls.keys().copied().collect();
        let mut t = PeerTransport {
            cluster_id,
            self_id,
            runtime,
            raft_tx,
            peers: HashMap::new(),
            urls,
            rejected,
            dialer,
            activity,
        };
        for id in ids {
            t.peer(id);
        }
        t
    }

    fn peer(&mut self, id: u64) -> Option<&mpsc::Sender<Message>> {
        if !self.peers.contains_key(&id) {
            let url = self.urls.get(&id)?.first()?.clone();
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            let sender = PeerSender {
                rejected: self.rejected.clone(),
                dialer: self.dialer.clone(),
                activity: self.activity.clone(),
                url,
                cluster_id: self.cluster_id,
                from: self.self_id,
                to: id,
            };
            let raft_tx = self.raft_tx.clone();
            self.runtime.spawn(sender.run(rx, raft_tx));
            self.peers.insert(id, tx);
        }
        self.peers.get(&id)
    }
}

impl RaftTransport for PeerTransport {
    fn send(&mut self, msgs: Vec<Message>) -> Vec<u64> {
        let mut unreachable = Vec::new();
        for m in msgs {
            let to = m.to;
            let Some(tx) = self.peer(to) else {
                unreachable.push(to);
                continue;
            };
            if tx.try_send(m).is_err() && !unreachable.contains(&to) {
                unreachable.push(to);
            }
        }
        unreachable
    }

    fn set_peer(&mut self, id: u64, urls: Vec<String>, change: ConfChangeType) {
        if id == self.self_id {
            return;
        }
        // The removed or changed member's sender task ends when its queue
        // is dropped.
        self.peers.remove(&id);
        self.activity.down(id);
        if change == ConfChangeType::RemoveNode || urls.is_empty() {
            self.urls.remove(&id);
        } else {
            self.urls.insert(id, urls);
            self.peer(id);
        }
    }

    fn send_snapshot(&mut self, msg: Message, backend: Arc<Backend>, conf_state: ConfState) -> bool {
        let to = msg.to;
        let Some(url) = self.urls.get(&to).and_then(|u| u.first()).cloned() else {
            return false;
        };
        let raft_tx = self.raft_tx.clone();
        let dialer = self.dialer.clone();
        tracing::info!("sending a snapshot to member {to:x}");
        self.runtime.spawn(async move {
            let result = crate::snapshot::send(&dialer, &url, msg, backend, conf_state).await;
            if let Err(e) = &result {
                tracing::warn!("snapshot to member {to:x} failed: {e}");
            }
            let _ = raft_tx.send(RaftInput::SnapshotStatus { to, delivered: result.is_ok() });
        });
        true
    }
}

/// How a member answers raft messages from another cluster.
pub const CLUSTER_ID_MISMATCH: &str = "cluster ID mismatch";

/// Set when a peer refused this member as not part of its cluster.
pub type Rejection = Arc<parking_lot::Mutex<Option<String>>>;

struct PeerSender {
    rejected: Rejection,
    dialer: PeerDialer,
    activity: PeerActivity,
    url: String,
    cluster_id: u64,
    from: u64,
    to: u64,
}

impl PeerSender {
    async fn run(self, rx: mpsc::Receiver<Message>, raft_tx: Sender<RaftInput>) {
        self.deliver(rx, raft_tx).await;
        self.activity.down(self.to);
    }

    /// Connects and streams until the transport forgets this peer.
    async fn deliver(&self, mut rx: mpsc::Receiver<Message>, raft_tx: Sender<RaftInput>) {
        let mut backoff = Duration::from_millis(50);
        let mut logged_down = false;
        loop {
            match self.dialer.dial(&self.url, Duration::from_secs(1), None).await {
                Ok(channel) => {
                    if logged_down {
                        tracing::info!("peer {:x} ({}) is reachable again", self.to, self.url);
                        logged_down = false;
                    }
                    backoff = Duration::from_millis(50);
                    self.activity.up(self.to);
                    let transport_alive = self.stream(channel, &mut rx).await;
                    self.activity.down(self.to);
                    if !transport_alive {
                        return;
                    }
                }
                Err(e) => {
                    if !logged_down {
                        tracing::warn!("peer {:x} ({}) unreachable: {}", self.to, self.url, e.text);
                        logged_down = true;
                    }
                    if e.refused && raft_tx.send(RaftInput::PeerGone(self.to)).is_err() {
                        return;
                    }
                }
            }
            // Whatever queued while the peer was down is stale: raft resends.
            while rx.try_recv().is_ok() {}
            if raft_tx.send(RaftInput::Unreachable(self.to)).is_err() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Sends batches on one stream until it breaks (true) or the transport
    /// is gone (false).
    async fn stream(&self, channel: tonic::transport::Channel, rx: &mut mpsc::Receiver<Message>) -> bool {
        let mut client = PeerClient::new(channel).max_encoding_message_size(usize::MAX >> 1);
        let (batch_tx, batch_rx) = mpsc::channel::<RaftBatch>(16);
        let mut call =
            tokio::spawn(async move { client.raft(tokio_stream::wrappers::ReceiverStream::new(batch_rx)).await });
        loop {
            let first = tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => return false,
                },
                res = &mut call => {
                    if let Ok(Err(status)) = res {
                        if status.message().starts_with(CLUSTER_ID_MISMATCH) {
                            *self.rejected.lock() = Some(format!(
                                "member {:x} ({}) rejected this member: {}",
                                self.to,
                                self.url,
                                status.message()
                            ));
                        }
                        tracing::warn!("peer {:x}: stream closed: {}", self.to, status.message());
                    }
                    return true;
                }
            };
            let mut messages = vec![first.encode_to_vec()];
            while messages.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => messages.push(m.encode_to_vec()),
                    Err(_) => break,
                }
            }
            let batch = RaftBatch { cluster_id: self.cluster_id, from: self.from, messages };
            if batch_tx.send(batch).await.is_err() {
                return true;
            }
        }
    }
}
