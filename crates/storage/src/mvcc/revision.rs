//! Revision keys of the backend's `Key` table, as etcd lays them out: 8-byte
//! big-endian main, `_`, 8-byte big-endian sub (17 bytes), plus a trailing
//! `t` for a tombstone (18 bytes). Byte order equals revision order.

use super::{MvccError, Revision};

/// Length of a revision key without the tombstone mark.
pub(crate) const REV_BYTES_LEN: usize = 17;
/// Length of a tombstone's revision key.
pub(crate) const MARKED_REV_BYTES_LEN: usize = 18;
const TOMBSTONE_MARK: u8 = b't';

impl Revision {
    pub fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// The 17-byte key of this revision in the `Key` table.
    pub fn to_bytes(self) -> [u8; REV_BYTES_LEN] {
        let mut b = [0u8; REV_BYTES_LEN];
        // etcd stores the int64s as uint64 bit patterns.
        b[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        b[8] = b'_';
        b[9..].copy_from_slice(&(self.sub as u64).to_be_bytes());
        b
    }

    /// The 18-byte key of a tombstone at this revision.
    pub fn to_tombstone_bytes(self) -> [u8; MARKED_REV_BYTES_LEN] {
        let mut b = [0u8; MARKED_REV_BYTES_LEN];
        b[..REV_BYTES_LEN].copy_from_slice(&self.to_bytes());
        b[REV_BYTES_LEN] = TOMBSTONE_MARK;
        b
    }

    /// Parses a `Key`-table key: the revision and whether it marks a
    /// tombstone.
    pub fn from_key(b: &[u8]) -> Result<(Revision, bool), MvccError> {
        let bad = || MvccError::Corrupt(format!("bad revision key {b:02x?}"));
        let tombstone = match b.len() {
            REV_BYTES_LEN => false,
            MARKED_REV_BYTES_LEN if b[REV_BYTES_LEN] == TOMBSTONE_MARK => true,
            _ => return Err(bad()),
        };
        if b[8] != b'_' {
            return Err(bad());
        }
        let main = b[..8].try_into().map_err(|_| bad())?;
        let sub = b[9..REV_BYTES_LEN].try_into().map_err(|_| bad())?;
        let rev = Revision { main: u64::from_be_bytes(main) as i64, sub: u64::from_be_bytes(sub) as i64 };
        Ok((rev, tombstone))
    }
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_order() {
        let revs =
            [Revision::new(0, 0), Revision::new(1, 0), Revision::new(1, 1), Revision::new(2, 0), Revision::new(256, 3)];
        for w in revs.windows(2) {
            assert!(w[0].to_bytes() < w[1].to_bytes());
            // A tombstone sorts right after the plain key of its revision.
            assert!(w[0].to_tombstone_bytes()[..] < w[1].to_bytes()[..]);
        }
        for r in revs {
            assert_eq!(Revision::from_key(&r.to_bytes()).unwrap(), (r, false));
            assert_eq!(Revision::from_key(&r.to_tombstone_bytes()).unwrap(), (r, true));
        }
        assert_eq!(Revision::new(5, 2).to_bytes(), *b"\0\0\0\0\0\0\0\x05_\0\0\0\0\0\0\0\x02");
    }

    #[test]
    fn rejects_malformed_keys() {
        let mut k = Revision::new(3, 1).to_tombstone_bytes();
        k[17] = b'x';
        assert!(Revision::from_key(&k).is_err());
        let mut k = Revision::new(3, 1).to_bytes();
        k[8] = b'-';
        assert!(Revision::from_key(&k).is_err());
        assert!(Revision::from_key(b"short").is_err());
        assert!(Revision::from_key(&[0u8; 19]).is_err());
    }
}
