//! Key permissions as intervals: whether a role's permissions cover a key
//! or a range, with etcd's meaning of `range_end` (empty: one key; `"\0"`:
//! every key from `key` on; otherwise `[key, range_end)`).

use retcd_api::authpb::permission::Type as PermType;
use retcd_api::authpb::Permission;

/// What a request needs on a key or range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A half-open interval of keys; `end` None is unbounded.
struct Interval<'a> {
    begin: &'a [u8],
    end: End<'a>,
}

#[derive(Clone, Copy)]
enum End<'a> {
    /// Just past the single key `begin` (the key followed by `\0`).
    AfterKey(&'a [u8]),
    Key(&'a [u8]),
    Unbounded,
}

impl End<'_> {
    /// Whether key `k` lies before this end (inside `[.., self)`).
    fn is_after(&self, k: &[u8]) -> bool {
        match self {
            End::Unbounded => true,
            End::Key(e) => k < *e,
            End::AfterKey(p) => k <= *p,
        }
    }

    /// Whether this end covers at least up to `other`.
    fn reaches(&self, other: &End<'_>) -> bool {
        match (self, other) {
            (End::Unbounded, _) => true,
            (_, End::Unbounded) => false,
            (End::Key(a), End::Key(b)) => a >= b,
            // `p\0` is the smallest key after `p`.
            (End::AfterKey(p), End::Key(b)) => is_at_most_after(b, p),
            (End::Key(a), End::AfterKey(p)) => *a > *p,
            (End::AfterKey(a), End::AfterKey(b)) => a >= b,
        }
    }
}

/// Whether `b <= p + "\0"`.
fn is_at_most_after(b: &[u8], p: &[u8]) -> bool {
    if b <= p {
        return true;
    }
    b.len() == p.len() + 1 && b.starts_with(p) && b[p.len()] == 0
}

fn interval<'a>(key: &'a [u8], range_end: &'a [u8]) -> Interval<'a> {
    let end = match range_end {
        [] => End::AfterKey(key),
        [0] => End::Unbounded,
        e => End::Key(e),
    };
    Interval { begin: key, end }
}

fn grants(p: &Permission, access: Access) -> bool {
    // An unknown type (never accepted by RoleGrantPermission) grants nothing.
    let Ok(t) = PermType::try_from(p.perm_type) else { return false };
    matches!((t, access), (PermType::Readwrite, _) | (PermType::Read, Access::Read) | (PermType::Write, Access::Write))
}

/// Whether `perms` allow `access` on `key` (`range_end` empty) or on every
/// key of the range `[key, range_end)`.
pub fn allows<'a>(perms: impl Iterator<Item = &'a Permission>, access: Access, key: &[u8], range_end: &[u8]) -> bool {
    let mut ivs: Vec<Interval<'_>> =
        perms.filter(|p| grants(p, access)).map(|p| interval(&p.key, &p.range_end)).collect();
    if range_end.is_empty() {
        return ivs.iter().any(|iv| iv.begin <= key && iv.end.is_after(key));
    }
    let want = interval(key, range_end);
    ivs.sort_by(|a, b| a.begin.cmp(b.begin));
    // Sweep from the start of the range: each interval must begin at or
    // before the part covered so far.
    let mut covered: Option<End<'_>> = None;
    for iv in &ivs {
        let reached = match &covered {
            None => iv.begin <= want.begin,
            Some(c) => match c {
                End::Unbounded => true,
                End::Key(e) => iv.begin <= *e,
                End::AfterKey(p) => is_at_most_after(iv.begin, p),
            },
        };
        if !reached {
            if covered.is_none() {
                continue;
            }
            break;
        }
        if covered.is_none() && !iv.end.is_after(want.begin) {
            // Ends before the range starts.
            continue;
        }
        covered = Some(match covered {
            Some(c) if c.reaches(&iv.end) => c,
            _ => iv.end,
        });
        if covered.as_ref().is_some_and(|c| c.reaches(&want.end)) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: PermType, key: &str, end: &[u8]) -> Permission {
        Permission { perm_type: t as i32, key: key.as_bytes().to_vec(), range_end: end.to_vec() }
    }

    #[test]
    fn single_key() {
        let p = [perm(PermType::Read, "a", b"")];
        assert!(allows(p.iter(), Access::Read, b"a", b""));
        assert!(!allows(p.iter(), Access::Write, b"a", b""));
        assert!(!allows(p.iter(), Access::Read, b"ab", b""));
        assert!(allows(p.iter(), Access::Read, b"a", b"a\0"));
        assert!(!allows(p.iter(), Access::Read, b"a", b"b"));
    }

    #[test]
    fn ranges_prefixes_and_from_key() {
        let p = [perm(PermType::Readwrite, "a", b"c"), perm(PermType::Write, "x", b"\0")];
        assert!(allows(p.iter(), Access::Read, b"a", b"c"));
        assert!(allows(p.iter(), Access::Read, b"b", b"bz"));
        assert!(!allows(p.iter(), Access::Read, b"b", b"d"));
        assert!(!allows(p.iter(), Access::Read, b"c", b""));
        assert!(allows(p.iter(), Access::Write, b"zzz", b""));
        assert!(allows(p.iter(), Access::Write, b"x", b"\0"));
        assert!(!allows(p.iter(), Access::Read, b"x", b"\0"));
        assert!(!allows(p.iter(), Access::Write, b"a", b"\0"));
        assert!(!allows(p.iter(), Access::Write, b"w", b""));
    }

    #[test]
    fn adjacent_intervals_join() {
        let p = [perm(PermType::Read, "a", b"b"), perm(PermType::Read, "b", b"c"), perm(PermType::Read, "c", b"")];
        assert!(allows(p.iter(), Access::Read, b"a", b"c"));
        assert!(allows(p.iter(), Access::Read, b"a", b"c\0"));
        assert!(!allows(p.iter(), Access::Read, b"a", b"c\0\0"));
        let point_first = [perm(PermType::Read, "a", b""), perm(PermType::Read, "a\0", b"b")];
        assert!(allows(point_first.iter(), Access::Read, b"a", b"b"));
        assert!(!allows(point_first.iter(), Access::Read, b"a", b"b\0"));
        let gap = [perm(PermType::Read, "a", b"b"), perm(PermType::Read, "bb", b"c")];
        assert!(!allows(gap.iter(), Access::Read, b"a", b"c"));
    }
}
