//! The backend's in-memory write buffers.
//!
//! A [`Buffer`] holds staged puts (`Some(value)`) and deletes (`None`) per
//! table, in key order. The backend keeps up to two of them: the *staged*
//! buffer that [`super::BatchTx`] writes into, and the *committing* buffer that
//! is being written to redb by a commit. Readers overlay them on the redb
//! snapshot: staged wins over committing, which wins over the database, and a
//! `None` (delete) in a buffer hides whatever the layers below hold.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use super::Table;

/// Number of [`Table`] variants.
pub(super) const TABLES: usize = 7;

/// Every table, in the order of their buffer slots.
pub(super) const ALL_TABLES: [Table; TABLES] =
    [Table::Key, Table::Meta, Table::Lease, Table::Members, Table::Auth, Table::Alarm, Table::V2];

/// The buffer slot of a table.
pub(super) fn slot(table: Table) -> usize {
    match table {
        Table::Key => 0,
        Table::Meta => 1,
        Table::Lease => 2,
        Table::Members => 3,
        Table::Auth => 4,
        Table::Alarm => 5,
        Table::V2 => 6,
    }
}

/// One table's staged changes: key -> `Some(value)` (put) or `None` (delete).
pub(super) type TableBuf = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Staged changes for every table (a map keyed by (table, key), stored as one
/// ordered map per table so lookups borrow `&[u8]` without allocating).
#[derive(Default, Clone)]
pub(super) struct Buffer {
    pub(super) tables: [TableBuf; TABLES],
    /// Operations staged into this buffer (puts and deletes, overwrites
    /// included).
    pub(super) ops: usize,
}

/// An entry of an overlay: a key and what the buffers say about it.
pub(super) type OverlayEntry = (Vec<u8>, Option<Vec<u8>>);

impl Buffer {
    pub(super) fn is_empty(&self) -> bool {
        self.tables.iter().all(BTreeMap::is_empty)
    }

    pub(super) fn put(&mut self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>) -> Option<Option<Vec<u8>>> {
        self.ops += 1;
        self.tables[slot(table)].insert(key, value)
    }

    /// What this buffer says about `key`: `None` if it holds nothing for it,
    /// `Some(None)` if it deletes it, `Some(Some(v))` if it puts `v`.
    pub(super) fn lookup(&self, table: Table, key: &[u8]) -> Option<Option<&[u8]>> {
        self.tables[slot(table)].get(key).map(Option::as_deref)
    }

    fn range<'a>(
        &'a self,
        table: Table,
        start: &'a [u8],
        end: Option<&'a [u8]>,
    ) -> std::collections::btree_map::Range<'a, Vec<u8>, Option<Vec<u8>>> {
        let upper = match end {
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        self.tables[slot(table)].range::<[u8], _>((Bound::Included(start), upper))
    }

    /// Moves `older`'s entries that this buffer does not override into it
    /// (used to put a failed commit's batch back under newer staged writes).
    pub(super) fn absorb_older(&mut self, older: Buffer) {
        for (mine, theirs) in self.tables.iter_mut().zip(older.tables) {
            for (k, v) in theirs {
                mine.entry(k).or_insert(v);
            }
        }
        self.ops += older.ops;
    }
}

/// Copies what the buffers say about keys in `[start, end)` of `table`,
/// staged over committing, in key order. Stops after `max_puts` puts (0: no
/// limit): a range limited to `n` results can never return a key past the
/// n-th live buffered key, so later entries are not needed.
///
/// The caller must have checked `start < end`.
pub(super) fn overlay(
    staged: &Buffer,
    committing: Option<&Buffer>,
    table: Table,
    start: &[u8],
    end: Option<&[u8]>,
    max_puts: usize,
) -> Vec<OverlayEntry> {
    let mut out = Vec::new();
    let mut puts = 0usize;
    let mut push = |k: &Vec<u8>, v: &Option<Vec<u8>>| {
        if v.is_some() {
            puts += 1;
        }
        out.push((k.clone(), v.clone()));
        max_puts == 0 || puts < max_puts
    };
    let mut a = staged.range(table, start, end).peekable();
    let Some(c) = committing else {
        for (k, v) in a {
            if !push(k, v) {
                break;
            }
        }
        return out;
    };
    let mut b = c.range(table, start, end).peekable();
    loop {
        let next = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (Some((ka, _)), Some((kb, _))) => match ka.cmp(kb) {
                Ordering::Less => a.next(),
                Ordering::Greater => b.next(),
                Ordering::Equal => {
                    // The staged entry is newer: it hides the committing one.
                    b.next();
                    a.next()
                }
            },
        };
        let Some((k, v)) = next else { break };
        if !push(k, v) {
            break;
        }
    }
    out
}

/// Byte access to a key or value yielded by the database iterator (redb's
/// access guards; owned vectors in tests).
pub(super) trait AsBytes {
    fn as_bytes(&self) -> &[u8];
}

impl AsBytes for Vec<u8> {
    fn as_bytes(&self) -> &[u8] {
        self
    }
}

impl AsBytes for redb::AccessGuard<'_, &'static [u8]> {
    fn as_bytes(&self) -> &[u8] {
        self.value()
    }
}

/// Merges an overlay (from [`overlay`]) with a sorted stream of database
/// pairs, calling `f` on each live pair in key order until it returns false.
/// Deletes in the overlay hide database pairs; puts replace them.
pub(super) fn merge<I, K, V, E, F>(overlay: Vec<OverlayEntry>, mut db: I, mut f: F) -> Result<(), E>
where
    I: Iterator<Item = Result<(K, V), E>>,
    K: AsBytes,
    V: AsBytes,
    F: FnMut(&[u8], &[u8]) -> bool,
{
    let mut ov = overlay.into_iter().peekable();
    let mut next_db = db.next().transpose()?;
    loop {
        let order = match (ov.peek(), &next_db) {
            (None, None) => return Ok(()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ok, _)), Some((dk, _))) => ok.as_slice().cmp(dk.as_bytes()),
        };
        let go_on = if order == Ordering::Greater {
            match next_db.take() {
                Some((k, v)) => {
                    let go_on = f(k.as_bytes(), v.as_bytes());
                    if go_on {
                        next_db = db.next().transpose()?;
                    }
                    go_on
                }
                None => true,
            }
        } else {
            if order == Ordering::Equal {
                // The buffered entry is newer than the database's.
                next_db = db.next().transpose()?;
            }
            match ov.next() {
                Some((k, Some(v))) => f(&k, &v),
                _ => true,
            }
        };
        if !go_on {
            return Ok(());
        }
    }
}
