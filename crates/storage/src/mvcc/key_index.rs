//! The history of one key: etcd's `keyIndex`.
//!
//! A key lives through generations. A generation starts with the put that
//! creates the key, collects every later put, and ends with a tombstone (the
//! delete), after which a new, empty generation waits for the key to be
//! created again. The last generation is the current one (empty if the key is
//! deleted).
//!
//! For example, put(1), put(2), tombstone(3), put(4), tombstone(5) gives
//! `{1.0, 2.0, 3.0(t)}, {4.0, 5.0(t)}, {}`.

use std::collections::HashSet;

use super::Revision;

/// One life of a key, from its creation to its deletion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Generation {
    /// Number of puts (and the tombstone) in this generation, counting those
    /// compacted away: the version of the latest revision.
    pub(crate) ver: i64,
    /// The revision that created the key in this generation.
    pub(crate) created: Revision,
    /// The revisions still indexed, oldest first; the last one of a
    /// non-current generation is its tombstone.
    pub(crate) revs: Vec<Revision>,
}

impl Generation {
    fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// Walks the revisions newest first; returns the index of the first one
    /// for which `keep_going` is false.
    fn walk(&self, mut keep_going: impl FnMut(Revision) -> bool) -> Option<usize> {
        self.revs.iter().rposition(|r| !keep_going(*r))
    }
}

/// Index operations that the key's history does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyIndexError {
    /// A revision not newer than the key's last modification.
    NotIncreasing { modified: Revision, rev: Revision },
    /// A tombstone for a key that does not currently exist.
    NotFound,
}

/// A key as of some revision: (the revision holding its value, the
/// generation's creation revision, the version).
pub(crate) type KeyAt = (Revision, Revision, i64);

/// The generations of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    pub(crate) key: Vec<u8>,
    /// The last revision that changed the key.
    pub(crate) modified: Revision,
    pub(crate) generations: Vec<Generation>,
}

impl KeyIndex {
    pub(crate) fn new(key: Vec<u8>) -> KeyIndex {
        KeyIndex { key, modified: Revision::default(), generations: vec![Generation::default()] }
    }

    /// Rebuilds a key from its first record found in the backend when that
    /// record is not the key's creation (older ones were compacted): the
    /// record carries the generation's creation revision and its version.
    pub(crate) fn restored(key: Vec<u8>, created: Revision, modified: Revision, ver: i64) -> KeyIndex {
        KeyIndex { key, modified, generations: vec![Generation { ver, created, revs: vec![modified] }] }
    }

    /// Records a put at `rev` in the current generation (creating the key if
    /// the generation is empty).
    pub(crate) fn put(&mut self, rev: Revision) -> Result<(), KeyIndexError> {
        if rev <= self.modified {
            return Err(KeyIndexError::NotIncreasing { modified: self.modified, rev });
        }
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let last = self.generations.len().saturating_sub(1);
        let g = &mut self.generations[last];
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
        Ok(())
    }

    /// Records a delete at `rev`: ends the current generation with the
    /// tombstone and starts a new, empty one.
    pub(crate) fn tombstone(&mut self, rev: Revision) -> Result<(), KeyIndexError> {
        if self.generations.last().is_none_or(Generation::is_empty) {
            return Err(KeyIndexError::NotFound);
        }
        self.put(rev)?;
        self.generations.push(Generation::default());
        Ok(())
    }

    /// The key as of `at_rev`: (the revision holding its value, the
    /// generation's creation revision, the version). None if the key did not
    /// exist at `at_rev` (not created yet, or deleted).
    pub(crate) fn get(&self, at_rev: i64) -> Option<KeyAt> {
        let g = self.find_generation(at_rev)?;
        let n = g.walk(|r| r.main > at_rev)?;
        let newer = (g.revs.len() - n - 1) as i64;
        Some((g.revs[n], g.created, g.ver - newer))
    }

    /// The generation the key was in at `rev`, or None if it did not exist
    /// then (before its first revision, or in the gap after a tombstone).
    fn find_generation(&self, rev: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(tomb)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            if i != last && tomb.main <= rev {
                // Deleted at or before `rev`, and not recreated by then.
                return None;
            }
            if first.main <= rev {
                return Some(g);
            }
        }
        None
    }

    /// Shared first step of [`KeyIndex::compact`] and [`KeyIndex::keep`]:
    /// finds the first generation that was alive after `at_rev` (skipping
    /// generations whose tombstone is at or before it), and in it the latest
    /// revision at or before `at_rev`, which is added to `available`.
    fn do_compact(&self, at_rev: i64, available: &mut HashSet<Revision>) -> (usize, Option<usize>) {
        let mut gen_idx = 0;
        while gen_idx + 1 < self.generations.len() {
            match self.generations[gen_idx].revs.last() {
                Some(tomb) if tomb.main > at_rev => break,
                _ => gen_idx += 1,
            }
        }
        let Some(g) = self.generations.get(gen_idx) else {
            return (gen_idx, None);
        };
        let rev_idx = g.walk(|r| {
            if r.main <= at_rev {
                available.insert(r);
                false
            } else {
                true
            }
        });
        (gen_idx, rev_idx)
    }

    /// Forgets every revision at or before `at_rev` except the latest one of
    /// the generation alive at `at_rev` (and that one too if it is a
    /// tombstone); generations that ended at or before `at_rev` go entirely.
    /// Adds the revisions kept at or before `at_rev` to `available`.
    pub(crate) fn compact(&mut self, at_rev: i64, available: &mut HashSet<Revision>) {
        if self.is_empty() {
            return;
        }
        let (mut gen_idx, rev_idx) = self.do_compact(at_rev, available);
        let last = self.generations.len().saturating_sub(1);
        if let Some(g) = self.generations.get_mut(gen_idx) {
            if !g.is_empty() {
                if let Some(i) = rev_idx {
                    g.revs.drain(..i);
                }
                // Only a tombstone left: the generation is over.
                if g.revs.len() == 1 && gen_idx != last {
                    available.remove(&g.revs[0]);
                    gen_idx += 1;
                }
            }
        }
        self.generations.drain(..gen_idx);
    }

    /// Adds to `available` the revisions at or before `at_rev` that
    /// [`KeyIndex::compact`] at `at_rev` would keep, changing nothing.
    pub(crate) fn keep(&self, at_rev: i64, available: &mut HashSet<Revision>) {
        if self.is_empty() {
            return;
        }
        let (gen_idx, rev_idx) = self.do_compact(at_rev, available);
        let last = self.generations.len().saturating_sub(1);
        if let (Some(g), Some(i)) = (self.generations.get(gen_idx), rev_idx) {
            // The latest revision is a tombstone: compaction drops it.
            if i + 1 == g.revs.len() && gen_idx != last {
                available.remove(&g.revs[i]);
            }
        }
    }

    /// True when nothing is left: one empty generation.
    pub(crate) fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn r(main: i64, sub: i64) -> Revision {
        Revision::new(main, sub)
    }

    fn generation(ver: i64, created: Revision, revs: &[Revision]) -> Generation {
        Generation { ver, created, revs: revs.to_vec() }
    }

    /// The history used by etcd's key index tests, rebuilt here:
    /// {2 4 6(t)} {8 10 12(t)} {14 14.1 16(t)} {}.
    fn history() -> KeyIndex {
        let mut ki = KeyIndex::new(b"foo".to_vec());
        ki.put(r(2, 0)).unwrap();
        ki.put(r(4, 0)).unwrap();
        ki.tombstone(r(6, 0)).unwrap();
        ki.put(r(8, 0)).unwrap();
        ki.put(r(10, 0)).unwrap();
        ki.tombstone(r(12, 0)).unwrap();
        ki.put(r(14, 0)).unwrap();
        ki.put(r(14, 1)).unwrap();
        ki.tombstone(r(16, 0)).unwrap();
        ki
    }

    #[test]
    fn put_and_tombstone_build_generations() {
        let mut ki = KeyIndex::new(b"foo".to_vec());
        ki.put(r(5, 0)).unwrap();
        assert_eq!(ki.modified, r(5, 0));
        assert_eq!(ki.generations, vec![generation(1, r(5, 0), &[r(5, 0)])]);
        ki.put(r(7, 0)).unwrap();
        assert_eq!(ki.generations, vec![generation(2, r(5, 0), &[r(5, 0), r(7, 0)])]);
        ki.tombstone(r(9, 0)).unwrap();
        assert_eq!(ki.generations, vec![generation(3, r(5, 0), &[r(5, 0), r(7, 0), r(9, 0)]), Generation::default()]);
        // Deleting a deleted key is refused and changes nothing.
        assert_eq!(ki.tombstone(r(10, 0)), Err(KeyIndexError::NotFound));
        assert_eq!(ki.modified, r(9, 0));
        // Recreation starts a new generation at version 1.
        ki.put(r(11, 0)).unwrap();
        assert_eq!(ki.generations[1], generation(1, r(11, 0), &[r(11, 0)]));
        // Revisions must increase.
        assert!(matches!(ki.put(r(11, 0)), Err(KeyIndexError::NotIncreasing { .. })));
        assert!(matches!(ki.put(r(10, 5)), Err(KeyIndexError::NotIncreasing { .. })));
    }

    #[test]
    fn get_finds_the_revision_visible_at_each_point() {
        let ki = history();
        // (at_rev, expected (modified, created, version))
        let cases: &[(i64, Option<KeyAt>)] = &[
            (0, None),
            (1, None),
            (2, Some((r(2, 0), r(2, 0), 1))),
            (3, Some((r(2, 0), r(2, 0), 1))),
            (4, Some((r(4, 0), r(2, 0), 2))),
            (5, Some((r(4, 0), r(2, 0), 2))),
            (6, None),
            (7, None),
            (8, Some((r(8, 0), r(8, 0), 1))),
            (9, Some((r(8, 0), r(8, 0), 1))),
            (10, Some((r(10, 0), r(8, 0), 2))),
            (11, Some((r(10, 0), r(8, 0), 2))),
            (12, None),
            (13, None),
            (14, Some((r(14, 1), r(14, 0), 2))),
            (15, Some((r(14, 1), r(14, 0), 2))),
            (16, None),
            (17, None),
        ];
        for (at, want) in cases {
            assert_eq!(ki.get(*at), *want, "at {at}");
        }
    }

    #[test]
    fn compact_keeps_the_latest_revision_of_each_live_generation() {
        // (at_rev, remaining generations, available)
        let cases: Vec<(i64, Vec<Generation>, Vec<Revision>)> = vec![
            (1, history().generations, vec![]),
            (
                2,
                vec![
                    generation(3, r(2, 0), &[r(2, 0), r(4, 0), r(6, 0)]),
                    generation(3, r(8, 0), &[r(8, 0), r(10, 0), r(12, 0)]),
                    generation(3, r(14, 0), &[r(14, 0), r(14, 1), r(16, 0)]),
                    Generation::default(),
                ],
                vec![r(2, 0)],
            ),
            (
                4,
                vec![
                    generation(3, r(2, 0), &[r(4, 0), r(6, 0)]),
                    generation(3, r(8, 0), &[r(8, 0), r(10, 0), r(12, 0)]),
                    generation(3, r(14, 0), &[r(14, 0), r(14, 1), r(16, 0)]),
                    Generation::default(),
                ],
                vec![r(4, 0)],
            ),
            (
                5,
                vec![
                    generation(3, r(2, 0), &[r(4, 0), r(6, 0)]),
                    generation(3, r(8, 0), &[r(8, 0), r(10, 0), r(12, 0)]),
                    generation(3, r(14, 0), &[r(14, 0), r(14, 1), r(16, 0)]),
                    Generation::default(),
                ],
                vec![r(4, 0)],
            ),
            (
                6,
                vec![
                    generation(3, r(8, 0), &[r(8, 0), r(10, 0), r(12, 0)]),
                    generation(3, r(14, 0), &[r(14, 0), r(14, 1), r(16, 0)]),
                    Generation::default(),
                ],
                vec![],
            ),
            (
                7,
                vec![
                    generation(3, r(8, 0), &[r(8, 0), r(10, 0), r(12, 0)]),
                    generation(3, r(14, 0), &[r(14, 0), r(14, 1), r(16, 0)]),
                    Generation::default(),
                ],
                vec![],
            ),
            (
                10,
                vec![
                    generation(3, r(8, 0), &[r(10, 0), r(12, 0)]),
                    generation(3, r(14, 0), &[r(14, 0), r(14, 1), r(16, 0)]),
                    Generation::default(),
                ],
                vec![r(10, 0)],
            ),
            (12, vec![generation(3, r(14, 0), &[r(14, 0), r(14, 1), r(16, 0)]), Generation::default()], vec![]),
            (14, vec![generation(3, r(14, 0), &[r(14, 1), r(16, 0)]), Generation::default()], vec![r(14, 1)]),
            (15, vec![generation(3, r(14, 0), &[r(14, 1), r(16, 0)]), Generation::default()], vec![r(14, 1)]),
            (16, vec![Generation::default()], vec![]),
            (17, vec![Generation::default()], vec![]),
        ];
        for (at, want_gens, want_avail) in &cases {
            // Compacting a fresh copy...
            let mut ki = history();
            let mut avail = HashSet::new();
            ki.compact(*at, &mut avail);
            assert_eq!(&ki.generations, want_gens, "compact at {at}");
            assert_eq!(avail, want_avail.iter().copied().collect(), "available at {at}");
            // ...keep() predicts it without changing anything...
            let orig = history();
            let mut kept = HashSet::new();
            orig.keep(*at, &mut kept);
            assert_eq!(kept, avail, "keep at {at}");
            assert_eq!(orig, history());
        }
        // ...and compacting step by step ends in the same place.
        let mut ki = history();
        for (at, want_gens, _) in &cases {
            let mut avail = HashSet::new();
            ki.compact(*at, &mut avail);
            assert_eq!(&ki.generations, want_gens, "incremental compact at {at}");
        }
        assert!(ki.is_empty());
    }

    #[test]
    fn compacted_keys_still_answer_gets_after_the_compaction_point() {
        let mut ki = history();
        ki.compact(10, &mut HashSet::new());
        assert_eq!(ki.get(10), Some((r(10, 0), r(8, 0), 2)));
        assert_eq!(ki.get(11), Some((r(10, 0), r(8, 0), 2)));
        assert_eq!(ki.get(12), None);
        assert_eq!(ki.get(14), Some((r(14, 1), r(14, 0), 2)));
    }

    #[test]
    fn restored_key_continues_its_version() {
        // The first record left after compaction is the 3rd put of a generation
        // created at 2.
        let mut ki = KeyIndex::restored(b"k".to_vec(), r(2, 0), r(9, 0), 3);
        ki.put(r(11, 0)).unwrap();
        assert_eq!(ki.get(9), Some((r(9, 0), r(2, 0), 3)));
        assert_eq!(ki.get(11), Some((r(11, 0), r(2, 0), 4)));
        ki.tombstone(r(12, 0)).unwrap();
        assert_eq!(ki.get(12), None);
    }

    #[test]
    fn live_key_compaction_keeps_the_current_value() {
        let mut ki = KeyIndex::new(b"k".to_vec());
        ki.put(r(2, 0)).unwrap();
        ki.put(r(3, 0)).unwrap();
        let mut avail = HashSet::new();
        ki.compact(5, &mut avail);
        assert_eq!(ki.generations, vec![generation(2, r(2, 0), &[r(3, 0)])]);
        assert_eq!(avail, [r(3, 0)].into_iter().collect());
        assert_eq!(ki.get(5), Some((r(3, 0), r(2, 0), 2)));
        assert!(!ki.is_empty());
    }
}
