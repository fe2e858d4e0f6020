//! Waiters for proposals: a request registers its unique id before proposing
//! and the apply thread triggers it with the result once the entry is applied.
//! Sharded so concurrent clients do not contend on one lock.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::oneshot;

const SHARDS: usize = 32;

pub struct Wait<T> {
    shards: Vec<Mutex<HashMap<u64, oneshot::Sender<T>>>>,
}

impl<T> Default for Wait<T> {
    fn default() -> Self {
        Wait { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }
}

impl<T> Wait<T> {
    fn shard(&self, id: u64) -> &Mutex<HashMap<u64, oneshot::Sender<T>>> {
        &self.shards[(id as usize) % SHARDS]
    }

    pub fn register(&self, id: u64) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        self.shard(id).lock().insert(id, tx);
        rx
    }

    /// Delivers `value` to the waiter of `id`, if it is still waiting.
    pub fn trigger(&self, id: u64, value: T) {
        if let Some(tx) = self.shard(id).lock().remove(&id) {
            let _ = tx.send(value);
        }
    }

    pub fn cancel(&self, id: u64) {
        self.shard(id).lock().remove(&id);
    }
}
