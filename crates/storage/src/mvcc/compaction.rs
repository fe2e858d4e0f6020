//! Physical compaction: deleting the revision records the index forgot.

use super::{Compaction, MvccError, Revision, FINISHED_COMPACT_KEY};
use crate::backend::Table;

/// Records examined per batch tx, so applies interleave with a long
/// compaction (the batch tx is handed over fairly when dropped).
const BATCH: usize = 1000;

impl Compaction {
    /// The revision compacted to.
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// Deletes the compacted records from the backend in batches (through the
    /// backend's batch tx, so it interleaves with applies), then records the
    /// compaction as finished. Blocking; run off the apply thread (it takes
    /// the batch tx, so never on a thread that holds one).
    ///
    /// Deleted: every `Key` record with main revision <= the compaction's
    /// that the index no longer refers to. Compactions run one at a time,
    /// in the order they were scheduled if run in that order.
    pub fn run(self) -> Result<(), MvccError> {
        let _serial = self.lock.lock();
        crate::failpoints::crash_point("compact::before_delete");
        let end = Revision::new(self.rev.saturating_add(1), 0).to_bytes();
        let mut from: Vec<u8> = Vec::new();
        let mut deleted = 0usize;
        loop {
            let mut btx = self.backend.batch_tx();
            // Read under the batch tx: nothing else writes this range anyway
            // (new revisions are above the compaction's), but it keeps each
            // batch's view and deletes together.
            let keys = self.backend.range_keys(Table::Key, &from, Some(&end), BATCH)?;
            for k in &keys {
                match Revision::from_key(k) {
                    Ok((rev, _)) if self.keep.contains(&rev) => {}
                    Ok(_) => {
                        btx.delete(Table::Key, k);
                        deleted += 1;
                    }
                    Err(e) => tracing::warn!("compaction skips a malformed record: {e}"),
                }
            }
            if keys.len() < BATCH {
                btx.put(Table::Meta, FINISHED_COMPACT_KEY, &Revision::new(self.rev, 0).to_bytes());
                tracing::info!(rev = self.rev, deleted, "finished scheduled compaction");
                drop(btx);
                // The deletions and the finished mark are staged, not yet
                // committed: the backend's next batch commit carries them.
                crate::failpoints::crash_point("compact::after_delete");
                return Ok(());
            }
            // Continue right after the last key seen.
            if let Some(last) = keys.last() {
                from.clone_from(last);
                from.push(0);
            }
        }
    }
}
