//! The background committer: a std thread that calls [`Backend::commit`]
//! every interval, or as soon as a [`super::BatchTx`] is dropped with at
//! least `max_ops` operations staged.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{Backend, BackendError};

/// How often the committer refreshes [`Backend::size_in_use`].
const SIZE_REFRESH: Duration = Duration::from_secs(30);

/// Wake-ups for committers, owned by the backend.
pub(super) struct CommitSignal {
    /// Incremented on every kick; committers wait for it to change.
    kicks: Mutex<u64>,
    cv: Condvar,
    /// Staged operations at which a dropped `BatchTx` kicks the committers
    /// (`usize::MAX` while none runs).
    threshold: AtomicUsize,
}

impl Default for CommitSignal {
    fn default() -> Self {
        CommitSignal { kicks: Mutex::new(0), cv: Condvar::new(), threshold: AtomicUsize::new(usize::MAX) }
    }
}

impl CommitSignal {
    /// Called when a `BatchTx` is dropped (after it released the writer lock).
    pub(super) fn maybe_kick(&self, backend: &Backend) {
        let threshold = self.threshold.load(Ordering::Relaxed);
        if threshold != usize::MAX && backend.staged_ops() >= threshold {
            self.kick();
        }
    }

    fn kick(&self) {
        let mut k = self.kicks.lock();
        *k = k.wrapping_add(1);
        self.cv.notify_all();
    }
}

/// Handle of a committer thread; [`CommitterHandle::stop`] (or drop) stops
/// it, joins it and commits what is still staged.
pub struct CommitterHandle {
    backend: Arc<Backend>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Starts a thread that commits every `interval`, or earlier once
    /// `max_ops` operations are staged (checked when a `BatchTx` ends).
    /// Commit errors are logged and retried on the next round.
    pub fn spawn_committer(self: &Arc<Self>, interval: Duration, max_ops: usize) -> CommitterHandle {
        self.signal.threshold.store(max_ops.max(1), Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let backend = Arc::clone(self);
        let stop2 = Arc::clone(&stop);
        // Read before the thread starts, so a kick that comes before it
        // waits is not missed.
        let seen = *self.signal.kicks.lock();
        let thread = std::thread::Builder::new()
            .name("backend-committer".into())
            .spawn(move || run(&backend, interval, &stop2, seen))
            .map_err(|e| tracing::error!("cannot start the backend committer: {e}"))
            .ok();
        CommitterHandle { backend: Arc::clone(self), stop, thread }
    }
}

fn run(backend: &Backend, interval: Duration, stop: &AtomicBool, mut seen: u64) {
    let sig = &backend.signal;
    let mut last_size_refresh: Option<Instant> = None;
    loop {
        let deadline = Instant::now() + interval;
        {
            let mut k = sig.kicks.lock();
            while *k == seen && !stop.load(Ordering::Acquire) {
                if sig.cv.wait_until(&mut k, deadline).timed_out() {
                    break;
                }
            }
            seen = *k;
        }
        if stop.load(Ordering::Acquire) {
            return;
        }
        match backend.commit() {
            Ok(()) => {}
            // The member is stopping; nothing more will be written.
            Err(super::BackendError::Abandoned) => return,
            Err(e) => tracing::error!("background commit failed (will retry): {e}"),
        }
        if last_size_refresh.is_none_or(|t| t.elapsed() >= SIZE_REFRESH) {
            if let Err(e) = backend.refresh_size_in_use() {
                tracing::warn!("cannot compute the backend's size in use: {e}");
            }
            last_size_refresh = Some(Instant::now());
        }
    }
}

impl CommitterHandle {
    /// Stops the committer, waits for it, and commits what is staged.
    pub fn stop(mut self) -> Result<(), BackendError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), BackendError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.stop.store(true, Ordering::Release);
        self.backend.signal.kick();
        if thread.join().is_err() {
            tracing::error!("the backend committer panicked");
        }
        self.backend.commit()
    }
}

impl Drop for CommitterHandle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!("final backend commit failed: {e}");
        }
    }
}
