//! How the member's own threads stop it: the apply and raft threads report
//! why they cannot go on through one [`StopSignal`], and [`crate::etcd::Etcd`]
//! (its owner) decides what stopping means. The binary then exits, 0 for a
//! removed member and 1 for a failure, as etcd does; a member run in-process
//! (tests) is stopped without ending the process.

use std::sync::Arc;

/// Why a member stopped on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// A membership change removed this member; its data dir must not be
    /// reused.
    Removed,
    /// Going on would lose or diverge data (a backend error while applying,
    /// a failed WAL write, a snapshot that cannot be installed). Nothing
    /// staged after the failure reaches the disk; a restart replays the log.
    Failed(String),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Removed => f.write_str("the member has been permanently removed from the cluster"),
            StopReason::Failed(why) => f.write_str(why),
        }
    }
}

/// Shared by the threads that may stop the member and by its owner. The
/// first reason reported is kept.
#[derive(Clone)]
pub struct StopSignal {
    reason: Arc<tokio::sync::watch::Sender<Option<StopReason>>>,
}

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal { reason: Arc::new(tokio::sync::watch::channel(None).0) }
    }
}

impl StopSignal {
    /// Asks the owner to stop the member (callable from any thread).
    pub fn stop(&self, reason: StopReason) {
        self.reason.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            match &reason {
                StopReason::Removed => tracing::warn!("{reason}; stopping"),
                StopReason::Failed(why) => tracing::error!("{why}; stopping the member"),
            }
            *current = Some(reason);
            true
        });
    }

    /// The reason, once one was reported.
    pub fn reason(&self) -> Option<StopReason> {
        self.reason.borrow().clone()
    }

    /// Waits until a reason is reported.
    pub async fn stopped(&self) -> StopReason {
        let mut rx = self.reason.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone(),
            // The sender lives in `self`: never closed while we wait.
            Err(_) => None,
        };
        reason.unwrap_or(StopReason::Removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_is_kept() {
        let signal = StopSignal::default();
        assert_eq!(signal.reason(), None);
        let waiter = tokio::spawn({
            let s = signal.clone();
            async move { s.stopped().await }
        });
        signal.stop(StopReason::Failed("disk".into()));
        signal.stop(StopReason::Removed);
        assert_eq!(waiter.await.ok(), Some(StopReason::Failed("disk".into())));
        assert_eq!(signal.reason(), Some(StopReason::Failed("disk".into())));
    }
}
