//! The lessor: leases, their TTLs and the keys attached to them.
//!
//! Grants and revokes are raft entries applied in log order (the apply thread
//! calls [`Lessor::grant`] / [`Lessor::revoke`] and persists the change in the
//! same backend batch). Keep-alives are not replicated: only the leader tracks
//! expiry, and on becoming leader it restarts every lease's full TTL (etcd's
//! `Promote`), so no lease expires because of a restart or leader change.
//!
//! The lessor never touches the key-value store itself: revoking returns the
//! attached keys and the apply thread deletes them in one write transaction
//! (this breaks the lease <-> mvcc cycle, as etcd does).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prost::Message as _;
use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::LeaseTimeToLiveResponse;
use retcd_api::retcdpb::LeaseRecord;
use retcd_storage::backend::{Backend, BackendError, Table};
use retcd_storage::mvcc::KvStore;

/// etcd's `MaxLeaseTTL`: 9,000,000,000 seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

struct Lease {
    ttl: i64,
    /// When the lease expires; None while this member is not the leader.
    expiry: Option<Instant>,
    keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    fn remaining(&self, now: Instant) -> Duration {
        match self.expiry {
            Some(e) => e.saturating_duration_since(now),
            // Not tracked here (a follower's view): report the full TTL.
            None => Duration::from_secs(self.ttl.max(0) as u64),
        }
    }
}

#[derive(Default)]
struct Inner {
    leases: HashMap<i64, Lease>,
    primary: bool,
    /// Leases whose revoke was proposed, and when, so expiry is not proposed
    /// again while the first proposal is in flight.
    revoking: HashMap<i64, Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseLoadError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{0}")]
    Corrupt(String),
}

pub struct Lessor {
    inner: Mutex<Inner>,
    min_ttl: i64,
}

/// A lease's time-to-live report.
pub struct LeaseTtl {
    pub granted: i64,
    /// Remaining seconds; -1 if the lease has expired but is not yet revoked.
    pub remaining: i64,
    pub keys: Vec<Vec<u8>>,
}

impl Lessor {
    /// `min_ttl` is etcd's minimum: a lease shorter than an election could
    /// expire before a new leader takes over (1.5 election timeouts, in seconds, rounded up).
    pub fn new(min_ttl: i64) -> Lessor {
        Lessor { inner: Mutex::new(Inner::default()), min_ttl }
    }

    /// Applies a grant. Returns the effective TTL (raised to the minimum).
    pub fn grant(&self, id: i64, ttl: i64) -> Result<i64, EtcdError> {
        if ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTTLTooLarge);
        }
        let ttl = ttl.max(self.min_ttl);
        let mut inner = self.inner.lock();
        if inner.leases.contains_key(&id) {
            return Err(EtcdError::LeaseExist);
        }
        let expiry = inner.primary.then(|| Instant::now() + Duration::from_secs(ttl as u64));
        inner.leases.insert(id, Lease { ttl, expiry, keys: BTreeSet::new() });
        Ok(ttl)
    }

    /// Replaces every lease with what the backend holds (on start, and after
    /// a snapshot from the leader replaced the store), keys attached as the
    /// store has them.
    pub fn reload(&self, backend: &Backend, kv: &KvStore) -> Result<(), LeaseLoadError> {
        let mut leases = HashMap::new();
        for (key, value) in backend.range(Table::Lease, &[], None, 0)? {
            let rec = LeaseRecord::decode(value.as_slice())
                .map_err(|e| LeaseLoadError::Corrupt(format!("lease record {key:02x?}: {e}")))?;
            leases.insert(rec.id, Lease { ttl: rec.ttl, expiry: None, keys: BTreeSet::new() });
        }
        for (lease, key) in kv.leased_keys() {
            if let Some(l) = leases.get_mut(&lease) {
                l.keys.insert(key);
            }
        }
        let mut inner = self.inner.lock();
        if inner.primary {
            let now = Instant::now();
            for l in leases.values_mut() {
                l.expiry = Some(now + Duration::from_secs(l.ttl as u64));
            }
        }
        inner.leases = leases;
        inner.revoking.clear();
        Ok(())
    }

    /// Applies a revoke: forgets the lease and returns its keys, which the
    /// caller deletes.
    pub fn revoke(&self, id: i64) -> Result<Vec<Vec<u8>>, EtcdError> {
        let mut inner = self.inner.lock();
        inner.revoking.remove(&id);
        let lease = inner.leases.remove(&id).ok_or(EtcdError::LeaseNotFound)?;
        Ok(lease.keys.into_iter().collect())
    }

    pub fn exists(&self, id: i64) -> bool {
        self.inner.lock().leases.contains_key(&id)
    }

    pub fn attach(&self, id: i64, key: &[u8]) {
        if let Some(l) = self.inner.lock().leases.get_mut(&id) {
            l.keys.insert(key.to_vec());
        }
    }

    pub fn detach(&self, id: i64, key: &[u8]) {
        if let Some(l) = self.inner.lock().leases.get_mut(&id) {
            l.keys.remove(key);
        }
    }

    /// Renews a lease (leader only); returns its granted TTL. An unknown or
    /// already expired lease is LeaseNotFound.
    pub fn renew(&self, id: i64) -> Result<i64, EtcdError> {
        let mut inner = self.inner.lock();
        if !inner.primary {
            return Err(EtcdError::NotLeader);
        }
        let now = Instant::now();
        let lease = inner.leases.get_mut(&id).ok_or(EtcdError::LeaseNotFound)?;
        if lease.expiry.is_some_and(|e| e <= now) {
            return Err(EtcdError::LeaseNotFound);
        }
        lease.expiry = Some(now + Duration::from_secs(lease.ttl as u64));
        Ok(lease.ttl)
    }

    pub fn time_to_live(&self, id: i64) -> Option<LeaseTtl> {
        let inner = self.inner.lock();
        let lease = inner.leases.get(&id)?;
        let now = Instant::now();
        let expired = lease.expiry.is_some_and(|e| e <= now);
        Some(LeaseTtl {
            granted: lease.ttl,
            remaining: if expired { -1 } else { lease.remaining(now).as_secs() as i64 },
            keys: lease.keys.iter().cloned().collect(),
        })
    }

    /// A TimeToLive answer as etcd gives it: TTL -1 for an unknown lease.
    pub fn time_to_live_response(&self, id: i64, with_keys: bool) -> LeaseTimeToLiveResponse {
        match self.time_to_live(id) {
            Some(ttl) => LeaseTimeToLiveResponse {
                header: None,
                id,
                ttl: ttl.remaining,
                granted_ttl: ttl.granted,
                keys: if with_keys { ttl.keys } else { Vec::new() },
            },
            None => LeaseTimeToLiveResponse { header: None, id, ttl: -1, ..Default::default() },
        }
    }

    /// Whether this member tracks expiry (it leads).
    pub fn is_primary(&self) -> bool {
        self.inner.lock().primary
    }

    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.inner.lock().leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Becomes the lease authority: every lease gets its full TTL from now.
    pub fn promote(&self) {
        let mut inner = self.inner.lock();
        inner.primary = true;
        let now = Instant::now();
        for l in inner.leases.values_mut() {
            l.expiry = Some(now + Duration::from_secs(l.ttl as u64));
        }
        inner.revoking.clear();
    }

    /// Stops tracking expiry (no longer the leader).
    pub fn demote(&self) {
        let mut inner = self.inner.lock();
        inner.primary = false;
        for l in inner.leases.values_mut() {
            l.expiry = None;
        }
    }

    /// Expired leases whose revoke has not been proposed in the last
    /// `retry_after`; marks them as being revoked.
    pub fn take_expired(&self, retry_after: Duration, max: usize) -> Vec<i64> {
        let mut inner = self.inner.lock();
        if !inner.primary {
            return Vec::new();
        }
        let now = Instant::now();
        let mut out: Vec<i64> = inner
            .leases
            .iter()
            .filter(|(_, l)| l.expiry.is_some_and(|e| e <= now))
            .map(|(id, _)| *id)
            .filter(|id| inner.revoking.get(id).is_none_or(|t| now.duration_since(*t) >= retry_after))
            .collect();
        out.sort_unstable();
        out.truncate(max);
        for id in &out {
            inner.revoking.insert(*id, now);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_raises_to_min_and_refuses_duplicates_and_huge() {
        let l = Lessor::new(2);
        assert_eq!(l.grant(1, 1).unwrap(), 2);
        assert_eq!(l.grant(1, 10).unwrap_err(), EtcdError::LeaseExist);
        assert_eq!(l.grant(2, MAX_LEASE_TTL + 1).unwrap_err(), EtcdError::LeaseTTLTooLarge);
    }

    #[test]
    fn revoke_returns_attached_keys() {
        let l = Lessor::new(1);
        l.promote();
        l.grant(7, 10).unwrap();
        l.attach(7, b"a");
        l.attach(7, b"b");
        l.detach(7, b"a");
        assert_eq!(l.revoke(7).unwrap(), vec![b"b".to_vec()]);
        assert_eq!(l.revoke(7).unwrap_err(), EtcdError::LeaseNotFound);
    }

    #[test]
    fn expiry_only_on_primary_and_proposed_once() {
        let l = Lessor::new(0);
        l.grant(1, 0).unwrap();
        assert!(l.take_expired(Duration::from_secs(3), 10).is_empty());
        l.promote();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(l.take_expired(Duration::from_secs(3), 10), vec![1]);
        assert!(l.take_expired(Duration::from_secs(3), 10).is_empty());
        assert_eq!(l.renew(1).unwrap_err(), EtcdError::LeaseNotFound);
    }
}
