//! Alarms: cluster-wide conditions a member raises (NOSPACE when its backend
//! reaches the quota, CORRUPT when its data disagrees with the others).
//! Raised and cleared through raft, so every member holds the same set, kept
//! in the backend's alarm table (and so in snapshots). While one is active
//! the apply path refuses what it forbids (see [`AlarmStore::refuses`]).

use std::collections::BTreeMap;

use parking_lot::RwLock;
use prost::Message as _;
use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::{AlarmMember, AlarmType};
use retcd_storage::backend::{Backend, BackendError, BatchTx, Table};

/// What a write does, for deciding whether an active alarm refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Puts (also inside a txn) and lease grants: they need space.
    Grows,
    /// Deletes, compaction, lease revocation: they free space.
    Shrinks,
}

#[derive(Default)]
pub struct AlarmStore {
    /// (alarm type, member id) -> active.
    active: RwLock<BTreeMap<(i32, u64), ()>>,
}

fn key(member: u64, alarm: i32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&member.to_be_bytes());
    k[8..].copy_from_slice(&alarm.to_be_bytes());
    k
}

impl AlarmStore {
    /// The alarms recorded in `backend`.
    pub fn load(backend: &Backend) -> Result<AlarmStore, BackendError> {
        let store = AlarmStore::default();
        store.reload(backend)?;
        Ok(store)
    }

    /// Replaces the in-memory set with the backend's (after a snapshot).
    pub fn reload(&self, backend: &Backend) -> Result<(), BackendError> {
        let mut active = BTreeMap::new();
        for (_, v) in backend.range(Table::Alarm, &[], None, 0)? {
            match AlarmMember::decode(v.as_slice()) {
                Ok(m) => {
                    active.insert((m.alarm, m.member_id), ());
                }
                Err(e) => tracing::error!("skipping an unreadable alarm record: {e}"),
            }
        }
        *self.active.write() = active;
        Ok(())
    }

    /// Active alarms of type `alarm` (every type for `None`), by type then member.
    pub fn list(&self, alarm: AlarmType) -> Vec<AlarmMember> {
        self.active
            .read()
            .keys()
            .filter(|(a, _)| alarm == AlarmType::None || *a == alarm as i32)
            .map(|&(alarm, member_id)| AlarmMember { member_id, alarm })
            .collect()
    }

    pub fn is_active(&self, alarm: AlarmType) -> bool {
        self.active.read().keys().any(|(a, _)| *a == alarm as i32)
    }

    pub fn any(&self) -> bool {
        !self.active.read().is_empty()
    }

    /// Raises `alarm` for `member` (idempotent); returns the alarm.
    pub fn activate(&self, btx: &mut BatchTx<'_>, member: u64, alarm: i32) -> AlarmMember {
        let m = AlarmMember { member_id: member, alarm };
        btx.put(Table::Alarm, &key(member, alarm), &m.encode_to_vec());
        self.active.write().insert((alarm, member), ());
        m
    }

    /// Clears `alarm` for `member`; returns it if it was active.
    pub fn deactivate(&self, btx: &mut BatchTx<'_>, member: u64, alarm: i32) -> Option<AlarmMember> {
        self.active.write().remove(&(alarm, member))?;
        btx.delete(Table::Alarm, &key(member, alarm));
        Some(AlarmMember { member_id: member, alarm })
    }

    /// The error an active alarm gives a write of `kind`, if any: CORRUPT
    /// stops every write, NOSPACE only those that need space (as etcd's
    /// capped applier).
    pub fn refuses(&self, kind: WriteKind) -> Option<EtcdError> {
        if self.is_active(AlarmType::Corrupt) {
            return Some(EtcdError::Corrupt);
        }
        (kind == WriteKind::Grows && self.is_active(AlarmType::Nospace)).then_some(EtcdError::NoSpace)
    }
}
