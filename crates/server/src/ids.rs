//! Identifiers derived as etcd derives them: member ids from peer URLs and the
//! cluster token, the cluster id from the member ids, and unique request ids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};

fn sha1_prefix_u64(bytes: &[u8]) -> u64 {
    let digest = Sha1::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// A member's id: SHA-1 over its sorted peer URLs followed by the cluster
/// token, first 8 bytes big-endian (etcd's `NewMember` without a timestamp).
pub fn member_id(peer_urls: &[String], cluster_token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut b = urls.concat().into_bytes();
    b.extend_from_slice(cluster_token.as_bytes());
    sha1_prefix_u64(&b)
}

/// The id of a member added to a running cluster: as etcd's MemberAdd, the
/// sorted peer URLs followed by the Unix time in seconds (no cluster token).
pub fn added_member_id(peer_urls: &[String], unix_secs: u64) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut b = urls.concat().into_bytes();
    b.extend_from_slice(unix_secs.to_string().as_bytes());
    sha1_prefix_u64(&b)
}

/// The cluster's id: SHA-1 over the sorted member ids, 8 bytes big-endian each.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let b: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    sha1_prefix_u64(&b)
}

/// Generates ids unique across members and restarts, as etcd's idutil: the
/// low 16 bits of the member id, then 40 bits of milliseconds at start-up,
/// then an 8-bit counter that carries into the timestamp bits.
pub struct IdGenerator {
    prefix: u64,
    suffix: AtomicU64,
}

const SUFFIX_BITS: u32 = 48;
const COUNT_BITS: u32 = 8;

impl IdGenerator {
    pub fn new(member_id: u64) -> IdGenerator {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let ts_mask = (1u64 << (SUFFIX_BITS - COUNT_BITS)) - 1;
        IdGenerator {
            prefix: (member_id & 0xffff) << SUFFIX_BITS,
            suffix: AtomicU64::new((millis & ts_mask) << COUNT_BITS),
        }
    }

    pub fn next(&self) -> u64 {
        let suffix = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
        self.prefix | (suffix & ((1u64 << SUFFIX_BITS) - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_single_member_ids_match_etcd() {
        // etcd 3.4 started with no flags reports these ids.
        let m = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{m:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[m])), "cdf818194e3a8c32");
    }

    #[test]
    fn generator_is_unique_and_prefixed() {
        let g = IdGenerator::new(0x8e9e05c52164694d);
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        assert_eq!(a >> 48, 0x694d);
    }
}
