//! The watch hub: delivers the store's events to watchers, in revision
//! order, each event once.
//!
//! A watcher is either *synced* (it has seen everything up to the last
//! revision the hub was notified of, and receives new events as the apply
//! thread reports them) or *unsynced* (it still has history to read, from
//! `next_rev`). New watchers with a past start revision begin unsynced; a
//! synced watcher whose stream's bounded queue is full becomes unsynced
//! instead of buffering, so a slow consumer costs a revision number, not
//! memory. A background pass moves unsynced watchers forward by reading the
//! store's history, a bounded window at a time.
//!
//! Exactly-once rests on one rule: `notified_rev` only changes under the hub
//! lock, and a catch-up pass reads history up to `notified_rev` and flips the
//! watcher to synced under that same lock. Events of one revision are always
//! sent together.
//!
//! A progress report at revision R promises the stream that every event up
//! to R was already sent, so a progress request is answered only once every
//! watcher of the stream is synced (etcd 3.5's rule; 3.4 answered at once and
//! could report progress past events a catching-up watcher had not sent).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use retcd_api::mvccpb::{event::EventType, Event};
use retcd_storage::mvcc::{KvStore, MvccError, RangeOptions};
use tokio::sync::mpsc;

/// Revisions read per catch-up step of one watcher.
const SYNC_WINDOW_REVS: i64 = 512;

/// What a watch stream's sender turns into WatchResponses, in this order.
#[derive(Debug)]
pub enum StreamMsg {
    Created {
        watch_id: i64,
        revision: i64,
        canceled: bool,
        reason: String,
    },
    Canceled {
        watch_id: i64,
        revision: i64,
        compact_revision: i64,
    },
    /// `fragment`: the watch asked for large responses to be split.
    Events {
        watch_id: i64,
        revision: i64,
        events: Vec<Event>,
        fragment: bool,
    },
    /// A progress report; `watch_id` -1 answers a progress request.
    Progress {
        watch_id: i64,
        revision: i64,
    },
}

pub type StreamTx = mpsc::Sender<StreamMsg>;

/// A watch's parameters as the client asked.
#[derive(Debug, Clone, Default)]
pub struct WatchSpec {
    pub key: Vec<u8>,
    pub end: Vec<u8>,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
    pub progress_notify: bool,
    pub fragment: bool,
}

struct Watcher {
    spec: WatchSpec,
    tx: StreamTx,
    /// Next revision this watcher must receive.
    next_rev: i64,
    synced: bool,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        let Some(kv) = &ev.kv else { return false };
        if ev.r#type == EventType::Put as i32 && self.spec.no_put {
            return false;
        }
        if ev.r#type == EventType::Delete as i32 && self.spec.no_delete {
            return false;
        }
        in_range(&kv.key, &self.spec.key, &self.spec.end)
    }

    /// The event as this watcher sends it (prev_kv only if asked for).
    fn shape(&self, ev: &Event) -> Event {
        let mut ev = ev.clone();
        if !self.spec.prev_kv {
            ev.prev_kv = None;
        }
        ev
    }
}

/// Whether `key` falls in the watch range (`end` empty: the key itself;
/// `[0]`: every key from `start`).
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

#[derive(Default)]
struct HubInner {
    notified_rev: i64,
    watchers: HashMap<(u64, i64), Watcher>,
    /// Streams with a progress request not answered yet, because one of
    /// their watchers is still catching up (or the queue was full).
    progress_requested: HashMap<u64, StreamTx>,
}

impl HubInner {
    /// Answers `stream`'s progress request if all its watchers are synced;
    /// false if it must wait.
    fn try_answer_progress(&self, stream: u64, tx: &StreamTx) -> bool {
        let all_synced = self.watchers.iter().all(|(&(s, _), w)| s != stream || w.synced);
        all_synced && {
            let msg = StreamMsg::Progress { watch_id: -1, revision: self.notified_rev };
            !matches!(tx.try_send(msg), Err(mpsc::error::TrySendError::Full(_)))
        }
    }
}

pub struct WatchHub {
    kv: Arc<KvStore>,
    inner: Mutex<HubInner>,
}

impl WatchHub {
    pub fn new(kv: Arc<KvStore>) -> WatchHub {
        let rev = kv.rev();
        WatchHub { kv, inner: Mutex::new(HubInner { notified_rev: rev, ..Default::default() }) }
    }

    /// The last revision whose events have been handed to watchers.
    pub fn notified_rev(&self) -> i64 {
        self.inner.lock().notified_rev
    }

    /// Registers a watch. Its first event has revision >= `start_rev`.
    pub fn add(&self, stream: u64, watch_id: i64, spec: WatchSpec, start_rev: i64, tx: StreamTx) {
        let mut inner = self.inner.lock();
        let synced = start_rev > inner.notified_rev;
        inner.watchers.insert((stream, watch_id), Watcher { spec, tx, next_rev: start_rev, synced });
    }

    pub fn contains(&self, stream: u64, watch_id: i64) -> bool {
        self.inner.lock().watchers.contains_key(&(stream, watch_id))
    }

    pub fn remove(&self, stream: u64, watch_id: i64) -> bool {
        self.inner.lock().watchers.remove(&(stream, watch_id)).is_some()
    }

    pub fn remove_stream(&self, stream: u64) {
        let mut inner = self.inner.lock();
        inner.watchers.retain(|(s, _), _| *s != stream);
        inner.progress_requested.remove(&stream);
    }

    /// A progress request on `stream`: answered with the notified revision
    /// now if every watcher of the stream is synced, else by the catch-up
    /// pass that syncs the last of them (and at the revision of that time).
    pub fn request_progress(&self, stream: u64, tx: &StreamTx) {
        let mut inner = self.inner.lock();
        if !inner.try_answer_progress(stream, tx) {
            inner.progress_requested.insert(stream, tx.clone());
        }
    }

    /// Called by the apply thread, in revision order, after the revision's
    /// changes are visible in the store.
    pub fn notify(&self, rev: i64, events: &[Event]) {
        let mut inner = self.inner.lock();
        inner.notified_rev = rev;
        if events.is_empty() {
            return;
        }
        for ((_, watch_id), w) in inner.watchers.iter_mut() {
            if !w.synced || rev < w.next_rev {
                continue;
            }
            let evs: Vec<Event> = events.iter().filter(|e| w.wants(e)).map(|e| w.shape(e)).collect();
            if evs.is_empty() {
                w.next_rev = rev + 1;
                continue;
            }
            match w.tx.try_send(StreamMsg::Events {
                watch_id: *watch_id,
                revision: rev,
                events: evs,
                fragment: w.spec.fragment,
            }) {
                Ok(()) => w.next_rev = rev + 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Slow consumer: catch up from history later.
                    w.synced = false;
                    w.next_rev = rev;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => w.synced = false,
            }
        }
    }

    /// After the store was replaced by a snapshot: every watcher catches up
    /// from history again (or is canceled as compacted), as etcd's restore.
    pub fn reset(&self, rev: i64) {
        let mut inner = self.inner.lock();
        inner.notified_rev = rev;
        for w in inner.watchers.values_mut() {
            w.synced = false;
        }
    }

    /// One catch-up pass over the unsynced watchers. Returns how many are
    /// still behind.
    pub fn sync_pass(&self) -> usize {
        let mut inner = self.inner.lock();
        let notified = inner.notified_rev;
        let compact = self.kv.compact_rev();
        let mut behind = 0;
        let mut gone = Vec::new();
        for (&(stream, watch_id), w) in inner.watchers.iter_mut() {
            if w.synced {
                continue;
            }
            if w.tx.is_closed() {
                gone.push((stream, watch_id));
                continue;
            }
            if w.next_rev < compact {
                // etcd's compaction cancel carries no revision (its header's
                // revision is 0).
                let msg = StreamMsg::Canceled { watch_id, revision: 0, compact_revision: compact };
                if w.tx.try_send(msg).is_ok() {
                    gone.push((stream, watch_id));
                } else {
                    behind += 1;
                }
                continue;
            }
            let Ok(permit) = w.tx.try_reserve() else {
                behind += 1;
                continue;
            };
            // The compaction revision itself is still readable (etcd replays
            // a watch that starts exactly there from that revision).
            let from = w.next_rev;
            let to = notified.min(from + SYNC_WINDOW_REVS - 1);
            let events = match self.history(w, from, to) {
                Ok(evs) => evs,
                Err(MvccError::Compacted) => {
                    behind += 1;
                    continue;
                }
                Err(e) => {
                    tracing::error!("watch catch-up failed: {e}");
                    behind += 1;
                    continue;
                }
            };
            if !events.is_empty() {
                permit.send(StreamMsg::Events { watch_id, revision: to, events, fragment: w.spec.fragment });
            }
            w.next_rev = to + 1;
            if w.next_rev > notified {
                w.synced = true;
            } else {
                behind += 1;
            }
        }
        for key in gone {
            inner.watchers.remove(&key);
        }
        let requested = std::mem::take(&mut inner.progress_requested);
        for (stream, tx) in requested {
            if !tx.is_closed() && !inner.try_answer_progress(stream, &tx) {
                inner.progress_requested.insert(stream, tx);
            }
        }
        behind
    }

    fn history(&self, w: &Watcher, from: i64, to: i64) -> Result<Vec<Event>, MvccError> {
        if from > to {
            return Ok(Vec::new());
        }
        let mut evs = self.kv.events(&w.spec.key, &w.spec.end, from, to, 0)?;
        evs.retain(|e| w.wants(e));
        if w.spec.prev_kv {
            for ev in &mut evs {
                let Some(kv) = &ev.kv else { continue };
                let opts = RangeOptions { rev: kv.mod_revision - 1, ..Default::default() };
                ev.prev_kv = self.kv.range(&kv.key, &[], opts).ok().and_then(|r| r.kvs.into_iter().next());
            }
        }
        Ok(evs)
    }

    /// Sends a progress report to every synced watcher that asked for them.
    pub fn progress_pass(&self) {
        let inner = self.inner.lock();
        let rev = inner.notified_rev;
        for ((_, watch_id), w) in inner.watchers.iter() {
            if w.synced && w.spec.progress_notify {
                let _ = w.tx.try_send(StreamMsg::Progress { watch_id: *watch_id, revision: rev });
            }
        }
    }

    /// Runs the catch-up and progress passes until the hub is dropped.
    pub fn spawn_background(self: &Arc<Self>, progress_interval: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut sync_tick = tokio::time::interval(Duration::from_millis(50));
            // Zero disables periodic progress reports.
            let progress_interval =
                if progress_interval.is_zero() { Duration::from_secs(365 * 24 * 3600) } else { progress_interval };
            let mut progress_tick = tokio::time::interval(progress_interval);
            progress_tick.tick().await;
            loop {
                tokio::select! {
                    _ = sync_tick.tick() => {
                        let Some(hub) = weak.upgrade() else { return };
                        // Reading history may touch the disk: keep it off the runtime threads.
                        let _ = tokio::task::spawn_blocking(move || hub.sync_pass()).await;
                    }
                    _ = progress_tick.tick() => {
                        let Some(hub) = weak.upgrade() else { return };
                        hub.progress_pass();
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use retcd_storage::backend::Backend;

    use super::*;

    fn put(store: &KvStore, k: &str, v: &str) {
        let backend = Arc::clone(store.backend());
        let mut btx = backend.batch_tx();
        let mut txn = store.write(&mut btx);
        txn.put(k.as_bytes(), v.as_bytes(), 0);
        assert!(txn.take_error().is_none());
        txn.end();
    }

    /// A progress report must never run ahead of events a catching-up
    /// watcher of the stream has not sent yet.
    #[test]
    fn progress_waits_for_every_watcher_of_the_stream_to_catch_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(KvStore::open(Backend::open(&dir.path().join("db")).unwrap()).unwrap());
        for i in 0..3 {
            put(&store, "k", &i.to_string());
        }
        let hub = WatchHub::new(Arc::clone(&store));
        let (tx, mut rx) = mpsc::channel(16);
        let spec = WatchSpec { key: b"k".to_vec(), ..Default::default() };
        // Stream 1: one watcher from the current revision (synced), one
        // from revision 2 (history to read first).
        hub.add(1, 0, spec.clone(), store.rev() + 1, tx.clone());
        hub.add(1, 1, spec, 2, tx.clone());
        hub.request_progress(1, &tx);
        assert!(rx.try_recv().is_err(), "progress answered while watcher 1 was behind");

        assert_eq!(hub.sync_pass(), 0);
        match rx.try_recv().unwrap() {
            StreamMsg::Events { watch_id: 1, revision: 4, events, .. } => assert_eq!(events.len(), 3),
            other => panic!("{other:?}"),
        }
        assert!(matches!(rx.try_recv().unwrap(), StreamMsg::Progress { watch_id: -1, revision: 4 }));
        assert!(rx.try_recv().is_err(), "one request, one answer");

        // Everything synced: answered at once.
        hub.request_progress(1, &tx);
        assert!(matches!(rx.try_recv().unwrap(), StreamMsg::Progress { watch_id: -1, revision: 4 }));
    }
}
