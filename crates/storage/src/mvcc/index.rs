//! The tree index: every key's [`KeyIndex`], in key order.
//!
//! The store keeps it behind a `parking_lot::RwLock`. Only the apply thread
//! changes it (write transactions and compaction hold the backend's batch tx,
//! so they never run concurrently); readers take the read lock just long
//! enough to collect revisions, then read values from the backend unlocked.
//! Readers ignore revisions newer than the store revision they captured, so a
//! write transaction can index its changes before it ends.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use super::key_index::{KeyAt, KeyIndex, KeyIndexError};
use super::Revision;

/// Which keys a `key`/`end` pair selects (see the module docs of `mvcc`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyRange<'a> {
    /// `end` empty: exactly `key`.
    Single(&'a [u8]),
    /// `end` = `[0]`: every key >= `key`.
    From(&'a [u8]),
    /// `[key, end)`.
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeyRange<'a> {
    pub(crate) fn new(key: &'a [u8], end: &'a [u8]) -> KeyRange<'a> {
        match end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::From(key),
            _ => KeyRange::Between(key, end),
        }
    }

    pub(crate) fn contains(&self, k: &[u8]) -> bool {
        match *self {
            KeyRange::Single(key) => k == key,
            KeyRange::From(key) => k >= key,
            KeyRange::Between(key, end) => k >= key && k < end,
        }
    }
}

/// Keys -> their histories.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

/// A key as of some revision, from [`Tree::live`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveKey {
    pub(crate) key: Vec<u8>,
    /// The revision holding the key's value.
    pub(crate) modified: Revision,
    pub(crate) created: Revision,
    pub(crate) version: i64,
}

impl Tree {
    /// Visits the key indexes selected by `range` in key order until `f`
    /// returns false.
    fn visit<'t>(&'t self, range: KeyRange<'_>, mut f: impl FnMut(&'t KeyIndex) -> bool) {
        match range {
            KeyRange::Single(key) => {
                if let Some(ki) = self.keys.get(key) {
                    f(ki);
                }
            }
            KeyRange::From(key) => {
                for ki in self.keys.range::<[u8], _>((Bound::Included(key), Bound::Unbounded)).map(|(_, v)| v) {
                    if !f(ki) {
                        return;
                    }
                }
            }
            KeyRange::Between(key, end) => {
                if end <= key {
                    return;
                }
                for ki in self.keys.range::<[u8], _>((Bound::Included(key), Bound::Excluded(end))).map(|(_, v)| v) {
                    if !f(ki) {
                        return;
                    }
                }
            }
        }
    }

    /// The revisions holding the values of the keys in `range` alive at
    /// `at_rev`, in key order, at most `max`; and the number of such keys.
    pub(crate) fn revisions(&self, range: KeyRange<'_>, at_rev: i64, max: usize) -> (Vec<Revision>, usize) {
        let mut revs = Vec::new();
        let mut count = 0;
        self.visit(range, |ki| {
            if let Some((modified, _, _)) = ki.get(at_rev) {
                count += 1;
                if revs.len() < max {
                    revs.push(modified);
                }
            }
            true
        });
        (revs, count)
    }

    /// The keys in `range` alive at `at_rev`, with their revisions.
    pub(crate) fn live(&self, range: KeyRange<'_>, at_rev: i64) -> Vec<LiveKey> {
        let mut out = Vec::new();
        self.visit(range, |ki| {
            if let Some((modified, created, version)) = ki.get(at_rev) {
                out.push(LiveKey { key: ki.key.clone(), modified, created, version });
            }
            true
        });
        out
    }

    /// `key` as of `at_rev`: (value revision, creation revision, version).
    pub(crate) fn get(&self, key: &[u8], at_rev: i64) -> Option<KeyAt> {
        self.keys.get(key).and_then(|ki| ki.get(at_rev))
    }

    pub(crate) fn put(&mut self, key: &[u8], rev: Revision) -> Result<(), KeyIndexError> {
        match self.keys.get_mut(key) {
            Some(ki) => ki.put(rev),
            None => {
                let mut ki = KeyIndex::new(key.to_vec());
                ki.put(rev)?;
                self.keys.insert(key.to_vec(), ki);
                Ok(())
            }
        }
    }

    pub(crate) fn tombstone(&mut self, key: &[u8], rev: Revision) -> Result<(), KeyIndexError> {
        self.keys.get_mut(key).ok_or(KeyIndexError::NotFound)?.tombstone(rev)
    }

    /// Replays one record of the backend's `Key` table (in revision order)
    /// while rebuilding the index, as etcd's restore does: the first record
    /// of a key that is a put restores the key from the record's creation
    /// revision and version; a leading tombstone (its generation's puts were
    /// compacted) is skipped.
    pub(crate) fn restore(
        &mut self,
        key: &[u8],
        rev: Revision,
        tombstone: bool,
        created: i64,
        version: i64,
    ) -> Result<(), KeyIndexError> {
        match self.keys.get_mut(key) {
            Some(ki) if tombstone => match ki.tombstone(rev) {
                // A tombstone of an already deleted key changes nothing.
                Err(KeyIndexError::NotFound) => Ok(()),
                other => other,
            },
            Some(ki) => ki.put(rev),
            None if tombstone => Ok(()),
            None => {
                let ki = KeyIndex::restored(key.to_vec(), Revision::new(created, 0), rev, version);
                self.keys.insert(key.to_vec(), ki);
                Ok(())
            }
        }
    }

    /// Compacts up to `max_keys` keys after `cursor` (from the first key if
    /// None) at `at_rev`, removing keys left empty and adding the revisions
    /// kept at or before `at_rev` to `available`. Returns the last key
    /// visited, or None when the whole tree is done.
    pub(crate) fn compact_chunk(
        &mut self,
        at_rev: i64,
        cursor: Option<&[u8]>,
        max_keys: usize,
        available: &mut HashSet<Revision>,
    ) -> Option<Vec<u8>> {
        let lower = match cursor {
            Some(c) => Bound::Excluded(c),
            None => Bound::Unbounded,
        };
        let mut emptied = Vec::new();
        let mut last = None;
        let mut n = 0;
        for (k, ki) in self.keys.range_mut::<[u8], _>((lower, Bound::Unbounded)) {
            if n == max_keys {
                break;
            }
            n += 1;
            ki.compact(at_rev, available);
            if ki.is_empty() {
                emptied.push(k.clone());
            }
            last = Some(k.clone());
        }
        for k in emptied {
            self.keys.remove(&k);
        }
        if n < max_keys {
            None
        } else {
            last
        }
    }

    /// The revisions at or before `at_rev` that compaction at `at_rev` keeps.
    pub(crate) fn keep(&self, at_rev: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        for ki in self.keys.values() {
            ki.keep(at_rev, &mut available);
        }
        available
    }

    /// Number of keys indexed (alive or with history).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Every key's history, for comparing two indexes in tests.
    #[cfg(test)]
    pub(crate) fn dump(&self) -> Vec<KeyIndex> {
        self.keys.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    #[test]
    fn ranges_and_counts() {
        let mut t = Tree::default();
        t.put(b"a", r(2)).unwrap();
        t.put(b"b", r(3)).unwrap();
        t.put(b"c", r(4)).unwrap();
        t.tombstone(b"b", r(5)).unwrap();
        assert_eq!(t.revisions(KeyRange::new(b"a", b"d"), 4, usize::MAX), (vec![r(2), r(3), r(4)], 3));
        assert_eq!(t.revisions(KeyRange::new(b"a", b"d"), 5, usize::MAX), (vec![r(2), r(4)], 2));
        assert_eq!(t.revisions(KeyRange::new(b"a", b"d"), 5, 1), (vec![r(2)], 2));
        assert_eq!(t.revisions(KeyRange::new(b"a", b"d"), 5, 0), (vec![], 2));
        assert_eq!(t.revisions(KeyRange::new(b"b", &[0]), 4, usize::MAX), (vec![r(3), r(4)], 2));
        assert_eq!(t.revisions(KeyRange::new(b"b", b""), 4, usize::MAX), (vec![r(3)], 1));
        assert_eq!(t.revisions(KeyRange::new(b"d", b"a"), 4, usize::MAX), (vec![], 0));
        assert_eq!(t.revisions(KeyRange::new(b"a", b"d"), 1, usize::MAX), (vec![], 0));
        assert_eq!(t.tombstone(b"zz", r(6)), Err(KeyIndexError::NotFound));
        let live = t.live(KeyRange::new(&[0], &[0]), 5);
        assert_eq!(live.iter().map(|l| l.key.clone()).collect::<Vec<_>>(), vec![b"a".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn chunked_compaction_equals_one_pass() {
        let build = || {
            let mut t = Tree::default();
            let mut rev = 1;
            for round in 0..3 {
                for k in 0..50u8 {
                    rev += 1;
                    t.put(&[k], r(rev)).unwrap();
                    if (k + round) % 3 == 0 {
                        rev += 1;
                        t.tombstone(&[k], r(rev)).unwrap();
                    }
                }
            }
            (t, rev)
        };
        let last = build().1;
        for at in [120, last] {
            let (mut one, _) = build();
            let mut avail_one = HashSet::new();
            assert_eq!(one.compact_chunk(at, None, usize::MAX, &mut avail_one), None);
            let (mut chunked, _) = build();
            let mut avail_chunked = HashSet::new();
            let mut cursor = None;
            loop {
                cursor = chunked.compact_chunk(at, cursor.as_deref(), 7, &mut avail_chunked);
                if cursor.is_none() {
                    break;
                }
            }
            assert_eq!(one.dump(), chunked.dump());
            assert_eq!(avail_one, avail_chunked);
            assert_eq!(build().0.keep(at), avail_one);
            if at == last {
                // Keys deleted in the last round are gone; the others keep
                // one revision each.
                assert_eq!(one.len(), 50 - 17);
                assert_eq!(avail_one.len(), 50 - 17);
            }
        }
    }
}
