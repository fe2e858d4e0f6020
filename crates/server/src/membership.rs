//! The cluster's members: ids, names, peer and client URLs.
//!
//! The member list is replicated state: it is written to the backend's
//! `Members` table at bootstrap (every member derives the same list from
//! `--initial-cluster`) and changed only by applied raft entries (a member
//! publishing its name and client URLs). A restarted member reads it back,
//! so it needs no `--initial-cluster` flags.

use std::collections::BTreeMap;

use parking_lot::RwLock;
use prost::Message as _;
use retcd_api::etcdserverpb::Member;
use retcd_storage::backend::{Backend, BackendError, BatchTx, Table};

pub struct Membership {
    members: RwLock<BTreeMap<u64, Member>>,
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("corrupt member record for {id:x}: {reason}")]
    Corrupt { id: u64, reason: String },
}

fn member_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

impl Membership {
    /// Reads the member list from the backend (empty for a new member).
    pub fn load(backend: &Backend) -> Result<Membership, MembershipError> {
        let mut members = BTreeMap::new();
        for (key, value) in backend.range(Table::Members, &[], None, 0)? {
            let id = key.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0);
            let m =
                Member::decode(value.as_slice()).map_err(|e| MembershipError::Corrupt { id, reason: e.to_string() })?;
            members.insert(m.id, m);
        }
        Ok(Membership { members: RwLock::new(members) })
    }

    /// Re-reads the member list (after the backend was replaced by a snapshot).
    pub fn reload(&self, backend: &Backend) -> Result<(), MembershipError> {
        let fresh = Membership::load(backend)?;
        *self.members.write() = fresh.members.into_inner();
        Ok(())
    }

    /// Records the initial members of a new cluster.
    pub fn bootstrap(&self, btx: &mut BatchTx<'_>, initial: Vec<Member>) {
        let mut members = self.members.write();
        for m in initial {
            btx.put(Table::Members, &member_key(m.id), &m.encode_to_vec());
            members.insert(m.id, m);
        }
    }

    /// Applies a member's published name and client URLs.
    pub fn set_attributes(&self, btx: &mut BatchTx<'_>, id: u64, name: &str, client_urls: &[String]) {
        let mut members = self.members.write();
        let Some(m) = members.get_mut(&id) else {
            tracing::warn!("ignoring attributes of unknown member {id:x}");
            return;
        };
        m.name = name.to_string();
        m.client_ur_ls = client_urls.to_vec();
        btx.put(Table::Members, &member_key(id), &m.encode_to_vec());
    }

    /// Adds a member, or promotes it if it is a learner being made a voter.
    pub fn add(&self, btx: &mut BatchTx<'_>, member: Member) {
        let mut members = self.members.write();
        let m = members.entry(member.id).or_insert(member.clone());
        m.is_learner = member.is_learner;
        btx.put(Table::Members, &member_key(m.id), &m.encode_to_vec());
    }

    pub fn remove(&self, btx: &mut BatchTx<'_>, id: u64) {
        self.members.write().remove(&id);
        btx.delete(Table::Members, &member_key(id));
    }

    pub fn update_peer_urls(&self, btx: &mut BatchTx<'_>, id: u64, peer_urls: Vec<String>) {
        let mut members = self.members.write();
        if let Some(m) = members.get_mut(&id) {
            m.peer_ur_ls = peer_urls;
            btx.put(Table::Members, &member_key(id), &m.encode_to_vec());
        }
    }

    pub fn list(&self) -> Vec<Member> {
        self.members.read().values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<Member> {
        self.members.read().get(&id).cloned()
    }
}
