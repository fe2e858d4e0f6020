//! Rules that use etcd's revisions, checked against the ground truth
//! (`History::committed`, every committed event read at the end of the run).
//!
//! Linearizability per key (linearizability.rs) cannot see everything: a
//! read can return the right value with a header revision that claims a
//! newer state, a txn can be split over revisions, a watch can skip or
//! repeat an event. Revisions name each state of the store, so these rules
//! compare what clients were told with what was committed:
//!
//! - [`reads_match_header_revision`]: a read at header revision H returns
//!   the key exactly as it was at H;
//! - [`writes_accounted`]: an acknowledged write is at its revision (all of
//!   a txn's pairs together), a failed write is nowhere, and nothing was
//!   committed that no client wrote;
//! - [`real_time_order`]: revisions respect real time across clients;
//! - [`client_revisions_monotone`]: one client never sees time go back;
//! - [`watches_exact`]: a watch delivers the committed events in order,
//!   each once, with the right prev_kv;
//! - [`hashes_equal`]: the members ended with the same store.
//!
//! Values are unique per write in the harness (`c<client>-<seq>`), so a
//! committed (key, value) names the write that produced it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::history::{Event, EventKind, History, KeyValue, Nanos, Operation, Outcome, Request, Response};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    ReadsMatchHeaderRevision,
    WritesAccounted,
    RealTimeOrder,
    ClientRevisionsMonotone,
    WatchesExact,
    HashesEqual,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::ReadsMatchHeaderRevision => "reads_match_header_revision",
            Rule::WritesAccounted => "writes_accounted",
            Rule::RealTimeOrder => "real_time_order",
            Rule::ClientRevisionsMonotone => "client_revisions_monotone",
            Rule::WatchesExact => "watches_exact",
            Rule::HashesEqual => "hashes_equal",
        })
    }
}

/// One broken rule, with a message naming the ops or events involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.message)
    }
}

fn violation(rule: Rule, message: String) -> Violation {
    Violation { rule, message }
}

/// Every rule's violations, rule by rule.
pub fn check_all(history: &History) -> Vec<Violation> {
    let mut out = reads_match_header_revision(history);
    out.extend(writes_accounted(history));
    out.extend(real_time_order(history));
    out.extend(client_revisions_monotone(history));
    out.extend(watches_exact(history));
    out.extend(hashes_equal(history));
    out
}

/// etcd's store starts at revision 1 with nothing in it, so a read on an
/// untouched cluster legitimately reports header revision 1.
const FIRST_REVISION: i64 = 1;

/// The state of every key at every revision, rebuilt from `committed`.
struct Timeline<'h> {
    /// Per key: (revision, state from then on), in revision order.
    keys: HashMap<&'h str, Vec<(i64, Option<&'h KeyValue>)>>,
    /// For each committed event, the key's state just before it.
    before: Vec<Option<&'h KeyValue>>,
    last_revision: i64,
}

impl<'h> Timeline<'h> {
    fn new(committed: &'h [Event]) -> Self {
        let mut keys: HashMap<&str, Vec<(i64, Option<&KeyValue>)>> = HashMap::new();
        let mut before = Vec::with_capacity(committed.len());
        for e in committed {
            let states = keys.entry(e.kv.key.as_str()).or_default();
            before.push(states.last().and_then(|&(_, s)| s));
            let after = match e.kind {
                EventKind::Put => Some(&e.kv),
                EventKind::Delete => None,
            };
            states.push((e.kv.mod_revision, after));
        }
        let last_revision = committed.iter().map(|e| e.kv.mod_revision).max().unwrap_or(0).max(FIRST_REVISION);
        Timeline { keys, before, last_revision }
    }

    /// `key` as a read at `revision` must return it.
    fn at(&self, key: &str, revision: i64) -> Option<&'h KeyValue> {
        let states = self.keys.get(key)?;
        let n = states.partition_point(|&(r, _)| r <= revision);
        n.checked_sub(1).and_then(|i| states[i].1)
    }
}

fn show_kv(kv: Option<&KeyValue>) -> String {
    match kv {
        None => "absent".to_owned(),
        Some(kv) => format!(
            "{}={:?} (create {}, mod {}, version {})",
            kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version
        ),
    }
}

fn show_event(e: &Event) -> String {
    let kind = match e.kind {
        EventKind::Put => "put",
        EventKind::Delete => "delete",
    };
    let prev = e.prev_kv.as_ref().map(|p| format!(", prev {}", show_kv(Some(p)))).unwrap_or_default();
    format!("{kind} {}{prev}", show_kv(Some(&e.kv)))
}

fn show_op(i: usize, op: &Operation) -> String {
    let what = match &op.request {
        Request::Get { key, .. } => format!("get {key}"),
        Request::Put { key, value } => format!("put {key}={value:?}"),
        Request::PutMany { pairs } => {
            let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!("txn put {}", pairs.join(" "))
        }
    };
    let rev = match &op.outcome {
        Outcome::Ok(r) => format!("header rev {}", r.header_revision()),
        Outcome::Failed(e) => format!("failed: {e}"),
        Outcome::Unknown(e) => format!("unknown: {e}"),
    };
    format!("op #{i} (client {}, member {}, {what}, {rev}, [{}, {}])", op.client, op.member, op.invoke, op.complete)
}

/// Every Ok get returns its key exactly as it was at the get's header
/// revision H (value, create_revision, mod_revision and version), and H is
/// a revision that was committed. This catches a read whose data is older
/// than the revision it claims, which per-key linearizability can miss.
/// Serializable gets (the negative control) are held to the same rule, so
/// the control fails when a member serves stale data.
pub fn reads_match_header_revision(history: &History) -> Vec<Violation> {
    let timeline = Timeline::new(&history.committed);
    let mut out = Vec::new();
    for (i, op) in history.ops.iter().enumerate() {
        let (Request::Get { key, .. }, Outcome::Ok(Response::Get { kv, header_revision: h })) =
            (&op.request, &op.outcome)
        else {
            continue;
        };
        if *h > timeline.last_revision {
            out.push(violation(
                Rule::ReadsMatchHeaderRevision,
                format!(
                    "{}: header revision is past the last committed revision {}",
                    show_op(i, op),
                    timeline.last_revision
                ),
            ));
        }
        let expected = timeline.at(key, *h);
        if kv.as_ref() != expected {
            out.push(violation(
                Rule::ReadsMatchHeaderRevision,
                format!(
                    "{} returned {}, but at revision {h} the key was {}",
                    show_op(i, op),
                    show_kv(kv.as_ref()),
                    show_kv(expected)
                ),
            ));
        }
    }
    out
}

/// Writes against `committed`:
/// - an Ok write acknowledged at revision R: the events at R are exactly its
///   pairs (for a txn, all of them at one revision: atomicity);
/// - a Failed write: none of its pairs was committed;
/// - each (key, value) is committed at most once;
/// - on keys that ops touched, every committed event is a put of a value
///   some client wrote (keys no op touched are not the test's business).
pub fn writes_accounted(history: &History) -> Vec<Violation> {
    let rule = Rule::WritesAccounted;
    let mut out = Vec::new();
    let mut at_revision: BTreeMap<i64, Vec<&Event>> = BTreeMap::new();
    let mut revisions_of: HashMap<(&str, &str), Vec<i64>> = HashMap::new();
    for e in &history.committed {
        at_revision.entry(e.kv.mod_revision).or_default().push(e);
        if e.kind == EventKind::Put {
            revisions_of.entry((&e.kv.key, &e.kv.value)).or_default().push(e.kv.mod_revision);
        }
    }
    let mut written: HashSet<(&str, &str)> = HashSet::new();
    let mut touched: HashSet<&str> = HashSet::new();
    for (i, op) in history.ops.iter().enumerate() {
        touched.extend(op.request.keys());
        let pairs: Vec<(&str, &str)> = match &op.request {
            Request::Get { .. } => continue,
            Request::Put { key, value } => vec![(key.as_str(), value.as_str())],
            Request::PutMany { pairs } => pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        };
        written.extend(pairs.iter().copied());
        match &op.outcome {
            Outcome::Ok(resp) => {
                let r = resp.header_revision();
                let mut want: Vec<(EventKind, &str, &str)> =
                    pairs.iter().map(|&(k, v)| (EventKind::Put, k, v)).collect();
                let mut got: Vec<(EventKind, &str, &str)> = at_revision
                    .get(&r)
                    .into_iter()
                    .flatten()
                    .map(|e| (e.kind, e.kv.key.as_str(), e.kv.value.as_str()))
                    .collect();
                want.sort_by_key(|&(_, k, v)| (k, v));
                got.sort_by_key(|&(_, k, v)| (k, v));
                if want != got {
                    let got: Vec<String> = at_revision.get(&r).into_iter().flatten().map(|e| show_event(e)).collect();
                    out.push(violation(
                        rule,
                        format!("{} was acknowledged, but revision {r} committed [{}]", show_op(i, op), got.join("; ")),
                    ));
                }
            }
            Outcome::Failed(_) => {
                for (k, v) in &pairs {
                    if let Some(revs) = revisions_of.get(&(k, v)) {
                        out.push(violation(
                            rule,
                            format!("{} failed, but {k}={v:?} was committed at revision {revs:?}", show_op(i, op)),
                        ));
                    }
                }
            }
            Outcome::Unknown(_) => {}
        }
    }
    let mut twice: Vec<_> = revisions_of.iter().filter(|(_, revs)| revs.len() > 1).collect();
    twice.sort();
    for ((k, v), revs) in twice {
        out.push(violation(rule, format!("{k}={v:?} was committed more than once, at revisions {revs:?}")));
    }
    for e in &history.committed {
        if !touched.contains(e.kv.key.as_str()) {
            continue;
        }
        let phantom = match e.kind {
            // The harness never deletes, so a delete is unexplained too.
            EventKind::Delete => true,
            EventKind::Put => !written.contains(&(e.kv.key.as_str(), e.kv.value.as_str())),
        };
        if phantom {
            out.push(violation(rule, format!("committed {} which no client wrote", show_event(e))));
        }
    }
    out
}

/// Where an Ok op sits in revision order, doubled so that a read can sit
/// between revisions: a write at R is at 2R, a read at header H (it sees
/// every write <= H and none after) is at 2H + 1.
fn position(op: &Operation) -> Option<(i64, bool)> {
    let Outcome::Ok(resp) = &op.outcome else { return None };
    let is_write = op.request.is_write();
    Some((2 * resp.header_revision() + i64::from(!is_write), is_write))
}

/// If op A completed before op B was invoked (both Ok), A's revision comes
/// no later than B's: write→write R_A < R_B, write→read R_A <= H_B,
/// read→write H_A < R_B, read→read H_A <= H_B.
///
/// With the doubled positions all four become pos(A) <= pos(B), except
/// that two writes must differ (the parities keep a read and a write from
/// ever being equal). So a sweep over ops in invoke order keeps the greatest
/// position among ops that completed before the current one was invoked,
/// separately for writes (compared strictly) and reads. Ops that touch at an
/// instant (A.complete == B.invoke) count as concurrent, as in the
/// linearizability search.
pub fn real_time_order(history: &History) -> Vec<Violation> {
    let ops: Vec<(usize, &Operation, i64, bool)> =
        history.ops.iter().enumerate().filter_map(|(i, op)| position(op).map(|(p, w)| (i, op, p, w))).collect();
    let mut by_complete: Vec<usize> = (0..ops.len()).collect();
    by_complete.sort_by_key(|&j| ops[j].1.complete);
    let mut by_invoke: Vec<usize> = (0..ops.len()).collect();
    by_invoke.sort_by_key(|&j| ops[j].1.invoke);

    let mut out = Vec::new();
    // (position, index into ops) of the latest write and read completed so far.
    let mut max_write: Option<(i64, usize)> = None;
    let mut max_read: Option<(i64, usize)> = None;
    let mut done = 0;
    let mut reported = HashSet::new();
    for &b in &by_invoke {
        let (bi, bop, bpos, _) = ops[b];
        while done < by_complete.len() && ops[by_complete[done]].1.complete < bop.invoke {
            let a = by_complete[done];
            let slot = if ops[a].3 { &mut max_write } else { &mut max_read };
            if slot.is_none_or(|(p, _)| ops[a].2 > p) {
                *slot = Some((ops[a].2, a));
            }
            done += 1;
        }
        // Name the offender furthest ahead in revision order.
        let culprit = [max_write.filter(|&(p, _)| p >= bpos), max_read.filter(|&(p, _)| p > bpos)]
            .into_iter()
            .flatten()
            .max()
            .map(|(_, a)| a);
        // One early op can precede many later ones; naming it once is enough.
        if let Some(a) = culprit.filter(|&a| reported.insert(a)) {
            let (ai, aop, _, _) = ops[a];
            out.push(violation(
                Rule::RealTimeOrder,
                format!(
                    "{} completed before {} was invoked, but its revision is not earlier",
                    show_op(ai, aop),
                    show_op(bi, bop)
                ),
            ));
        }
    }
    out
}

/// One client's Ok ops, in invoke order, never see the header revision go
/// back (a client that saw revision R must not be shown an older store).
pub fn client_revisions_monotone(history: &History) -> Vec<Violation> {
    let mut clients: BTreeMap<usize, Vec<(Nanos, usize, i64)>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        if let Outcome::Ok(resp) = &op.outcome {
            clients.entry(op.client).or_default().push((op.invoke, i, resp.header_revision()));
        }
    }
    let mut out = Vec::new();
    for (client, mut ops) in clients {
        ops.sort();
        for pair in ops.windows(2) {
            let ((_, a, ra), (_, b, rb)) = (pair[0], pair[1]);
            if rb < ra {
                out.push(violation(
                    Rule::ClientRevisionsMonotone,
                    format!(
                        "client {client}: {} after {} went back from revision {ra} to {rb}",
                        show_op(b, &history.ops[b]),
                        show_op(a, &history.ops[a])
                    ),
                ));
            }
        }
    }
    out
}

/// Each watch delivers exactly the committed events from its start
/// revision on, in order, each once, with the same fields; it may have
/// stopped early (a prefix is fine) but not skip, repeat or reorder. With
/// prev_kv, each event's prev_kv is the key's state before it (None for a
/// create); without, it is None. Only the first mismatch of a watch is
/// reported, since everything after it is shifted.
pub fn watches_exact(history: &History) -> Vec<Violation> {
    let timeline = Timeline::new(&history.committed);
    let mut out = Vec::new();
    for (w, watch) in history.watches.iter().enumerate() {
        let first = history.committed.partition_point(|e| e.kv.mod_revision < watch.start_revision);
        let name = format!(
            "watch #{w} (member {}, from revision {}, prev_kv {})",
            watch.member, watch.start_revision, watch.prev_kv
        );
        for (n, got) in watch.events.iter().enumerate() {
            let Some(want) = history.committed.get(first + n) else {
                out.push(violation(
                    Rule::WatchesExact,
                    format!("{name}: event {n} is {}, but no committed event is left for it", show_event(got)),
                ));
                break;
            };
            let want = Event {
                prev_kv: if watch.prev_kv { timeline.before[first + n].cloned() } else { None },
                ..want.clone()
            };
            if *got != want {
                out.push(violation(
                    Rule::WatchesExact,
                    format!("{name}: event {n} is {}, expected {}", show_event(got), show_event(&want)),
                ));
                break;
            }
        }
    }
    out
}

/// Members that hashed the same revision have the same hash and compact
/// revision, and all members hashed the same revision (one that lags
/// behind at the end is a problem of its own).
pub fn hashes_equal(history: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut by_revision: BTreeMap<i64, Vec<&crate::history::MemberHash>> = BTreeMap::new();
    for h in &history.hashes {
        by_revision.entry(h.revision).or_default().push(h);
    }
    for (rev, hashes) in &by_revision {
        let first = hashes[0];
        for h in &hashes[1..] {
            if (h.hash, h.compact_revision) != (first.hash, first.compact_revision) {
                out.push(violation(
                    Rule::HashesEqual,
                    format!(
                        "at revision {rev}, member {} has hash {:#010x} (compacted at {}), member {} has {:#010x} (compacted at {})",
                        first.member, first.hash, first.compact_revision, h.member, h.hash, h.compact_revision
                    ),
                ));
            }
        }
    }
    if by_revision.len() > 1 {
        let ends: Vec<String> =
            history.hashes.iter().map(|h| format!("member {} at {}", h.member, h.revision)).collect();
        out.push(violation(Rule::HashesEqual, format!("members ended at different revisions: {}", ends.join(", "))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{MemberHash, WatchRecord};

    /// A correct single store that commits writes and records the ops a
    /// client would have seen, one after another in time; tests then
    /// corrupt one thing.
    struct Sim {
        rev: i64,
        now: Nanos,
        state: HashMap<String, KeyValue>,
        history: History,
    }

    impl Sim {
        fn new() -> Self {
            Sim { rev: FIRST_REVISION, now: 0, state: HashMap::new(), history: History::default() }
        }

        /// Commits `pairs` at one new revision.
        fn commit(&mut self, pairs: &[(&str, &str)]) -> i64 {
            self.rev += 1;
            for &(key, value) in pairs {
                let prev = self.state.get(key).cloned();
                let kv = KeyValue {
                    key: key.into(),
                    value: value.into(),
                    create_revision: prev.as_ref().map_or(self.rev, |p| p.create_revision),
                    mod_revision: self.rev,
                    version: prev.as_ref().map_or(1, |p| p.version + 1),
                };
                self.state.insert(key.into(), kv.clone());
                self.history.committed.push(Event { kind: EventKind::Put, kv, prev_kv: prev });
            }
            self.rev
        }

        fn record(&mut self, client: usize, request: Request, outcome: Outcome) -> usize {
            self.now += 10;
            let op = Operation { client, member: 0, request, invoke: self.now, complete: self.now + 5, outcome };
            self.history.ops.push(op);
            self.history.ops.len() - 1
        }

        fn put(&mut self, client: usize, key: &str, value: &str) -> usize {
            let rev = self.commit(&[(key, value)]);
            let request = Request::Put { key: key.into(), value: value.into() };
            self.record(client, request, Outcome::Ok(Response::Put { header_revision: rev }))
        }

        fn put_many(&mut self, client: usize, pairs: &[(&str, &str)]) -> usize {
            let rev = self.commit(pairs);
            let pairs = pairs.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect();
            self.record(client, Request::PutMany { pairs }, Outcome::Ok(Response::Put { header_revision: rev }))
        }

        /// A write the client got no answer to; `applied` says whether it
        /// was committed anyway.
        fn put_unknown(&mut self, client: usize, key: &str, value: &str, applied: bool) {
            if applied {
                self.commit(&[(key, value)]);
            }
            let request = Request::Put { key: key.into(), value: value.into() };
            self.record(client, request, Outcome::Unknown("timeout".into()));
        }

        fn get(&mut self, client: usize, key: &str) -> usize {
            let kv = self.state.get(key).cloned();
            let request = Request::Get { key: key.into(), serializable: false };
            self.record(client, request, Outcome::Ok(Response::Get { kv, header_revision: self.rev }))
        }

        fn watch(&mut self, start_revision: i64, prev_kv: bool) {
            let events = self
                .history
                .committed
                .iter()
                .filter(|e| e.kv.mod_revision >= start_revision)
                .map(|e| Event { prev_kv: if prev_kv { e.prev_kv.clone() } else { None }, ..e.clone() })
                .collect();
            self.history.watches.push(WatchRecord { member: 0, start_revision, prev_kv, events });
        }

        fn hashes(&mut self, members: usize) {
            for member in 0..members {
                let h = MemberHash { member, revision: self.rev, hash: 0xabcd, compact_revision: 0 };
                self.history.hashes.push(h);
            }
        }
    }

    /// A run with every feature: two clients, a txn, an Unknown write that
    /// was applied and one that was not, watches with and without prev_kv.
    fn clean() -> Sim {
        let mut s = Sim::new();
        s.get(0, "a");
        s.put(0, "a", "c0-1");
        s.put(1, "b", "c1-1");
        s.get(1, "a");
        s.put_many(0, &[("a", "c0-2"), ("b", "c0-3")]);
        s.put_unknown(1, "a", "c1-2", true);
        s.put_unknown(1, "b", "c1-3", false);
        s.get(0, "a");
        s.get(0, "b");
        s.put(1, "a", "c1-4");
        s.watch(1, true);
        s.watch(4, false);
        s.hashes(3);
        s
    }

    fn rules(violations: &[Violation]) -> Vec<Rule> {
        violations.iter().map(|v| v.rule).collect()
    }

    #[test]
    fn clean_history_passes_every_rule() {
        let s = clean();
        assert_eq!(check_all(&s.history), vec![]);
    }

    #[test]
    fn watch_that_stopped_early_passes() {
        let mut s = clean();
        s.history.watches[0].events.truncate(2);
        assert_eq!(watches_exact(&s.history), vec![]);
    }

    #[test]
    fn read_with_data_older_than_its_header_revision_is_caught() {
        let mut s = Sim::new();
        s.put(0, "k", "c0-1");
        s.put(0, "k", "c0-2");
        let old = s.state["k"].clone();
        s.put(0, "k", "c0-3");
        s.put(1, "other", "c1-1");
        let g = s.get(1, "k");
        // The data is from the second put, the header from after the third.
        s.history.ops[g].outcome = Outcome::Ok(Response::Get { kv: Some(old), header_revision: s.rev });
        let v = check_all(&s.history);
        assert_eq!(rules(&v), [Rule::ReadsMatchHeaderRevision], "{v:?}");
        assert!(v[0].message.contains("at revision 5 the key was k=\"c0-3\""), "{}", v[0]);
    }

    #[test]
    fn stale_read_with_an_old_header_breaks_real_time_order() {
        let mut s = Sim::new();
        s.put(0, "k", "c0-1");
        let h = s.rev;
        let old = s.state["k"].clone();
        let w = s.put(0, "k", "c0-2");
        let g = s.get(1, "k");
        s.history.ops[g].outcome = Outcome::Ok(Response::Get { kv: Some(old), header_revision: h });
        let v = check_all(&s.history);
        assert_eq!(rules(&v), [Rule::RealTimeOrder], "{v:?}");
        assert!(v[0].message.starts_with(&format!("op #{w} ")), "{}", v[0]);
    }

    #[test]
    fn header_revision_past_the_end_is_caught() {
        let mut s = Sim::new();
        s.put(0, "k", "c0-1");
        let g = s.get(0, "k");
        let kv = s.state.get("k").cloned();
        s.history.ops[g].outcome = Outcome::Ok(Response::Get { kv, header_revision: 9 });
        let v = reads_match_header_revision(&s.history);
        assert!(v.iter().any(|v| v.message.contains("past the last committed revision 2")), "{v:?}");
    }

    #[test]
    fn lost_acknowledged_write_is_caught() {
        let mut s = Sim::new();
        s.put(0, "k", "c0-1");
        s.put(0, "k", "c0-2");
        // Revision 3 vanishes from the store (and so from the watch too).
        s.history.committed.pop();
        let v = writes_accounted(&s.history);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("revision 3 committed []"), "{}", v[0]);
    }

    #[test]
    fn txn_split_over_two_revisions_is_caught() {
        let mut s = Sim::new();
        s.put_many(0, &[("a", "c0-1"), ("b", "c0-2")]);
        s.history.committed[1].kv.mod_revision = 3;
        s.history.committed[1].kv.create_revision = 3;
        let v = writes_accounted(&s.history);
        assert_eq!(rules(&v), [Rule::WritesAccounted], "{v:?}");
        assert!(v[0].message.contains("txn put"), "{}", v[0]);
    }

    #[test]
    fn failed_write_that_was_committed_and_phantoms_are_caught() {
        let mut s = Sim::new();
        s.put(0, "k", "c0-1");
        let f = s.put(0, "k", "c0-2");
        s.history.ops[f].outcome = Outcome::Failed("refused".into());
        s.commit(&[("k", "nobody")]);
        // A key no op touched is not checked.
        s.commit(&[("elsewhere", "x")]);
        let v = writes_accounted(&s.history);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].message.contains("failed, but k=\"c0-2\" was committed"), "{}", v[0]);
        assert!(v[1].message.contains("k=\"nobody\"") && v[1].message.contains("no client wrote"), "{}", v[1]);
    }

    #[test]
    fn write_applied_twice_is_caught() {
        let mut s = Sim::new();
        s.put(0, "k", "c0-1");
        s.commit(&[("k", "c0-1")]);
        let v = writes_accounted(&s.history);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("more than once, at revisions [2, 3]"), "{}", v[0]);
    }

    #[test]
    fn two_sequential_writes_at_one_revision_break_real_time_order() {
        let mut s = Sim::new();
        s.put(0, "a", "c0-1");
        let b = s.put(1, "b", "c1-1");
        s.history.ops[b].outcome = Outcome::Ok(Response::Put { header_revision: 2 });
        assert_eq!(rules(&real_time_order(&s.history)), [Rule::RealTimeOrder]);
        // Overlapping in time, the same pair is fine for this rule.
        s.history.ops[b].invoke = s.history.ops[0].complete;
        assert_eq!(real_time_order(&s.history), vec![]);
    }

    #[test]
    fn read_then_write_at_the_read_revision_breaks_real_time_order() {
        let mut s = Sim::new();
        s.put(0, "a", "c0-1");
        s.get(1, "a");
        let w = s.put(0, "a", "c0-2");
        s.history.ops[w].outcome = Outcome::Ok(Response::Put { header_revision: 2 });
        // The first put precedes it too, but the get is the one furthest ahead.
        let v = real_time_order(&s.history);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.starts_with("op #1 ") && v[0].message.contains(&format!("op #{w} ")), "{}", v[0]);
    }

    #[test]
    fn header_revision_going_back_for_a_client_is_caught() {
        let mut s = Sim::new();
        s.put(0, "a", "c0-1");
        s.put(0, "a", "c0-2");
        let g = s.get(0, "a");
        let kv = s.history.committed[0].kv.clone();
        s.history.ops[g].outcome = Outcome::Ok(Response::Get { kv: Some(kv), header_revision: 2 });
        let v = client_revisions_monotone(&s.history);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("from revision 3 to 2"), "{}", v[0]);
    }

    #[test]
    fn duplicate_missing_and_extra_watch_events_are_caught() {
        let s = clean();
        let mut dup = s.history.clone();
        let again = dup.watches[0].events[1].clone();
        dup.watches[0].events.insert(2, again);
        let v = watches_exact(&dup);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("event 2 is put b=\"c1-1\""), "{}", v[0]);

        let mut gap = s.history.clone();
        gap.watches[1].events.remove(0);
        let v = watches_exact(&gap);
        assert_eq!(v.len(), 1, "{v:?}");
        let msg = v[0].to_string();
        assert!(msg.starts_with("watches_exact: watch #1 (member 0, from revision 4"), "{msg}");
        assert!(msg.contains("event 0 is put b=\"c0-3\"") && msg.contains("expected put a=\"c0-2\""), "{msg}");

        let mut extra = s.history.clone();
        let last = extra.watches[1].events.last().cloned().expect("events");
        extra.watches[1].events.push(last);
        let v = watches_exact(&extra);
        assert!(v[0].message.contains("no committed event is left"), "{}", v[0]);
    }

    #[test]
    fn wrong_prev_kv_is_caught() {
        let s = clean();
        let mut h = s.history.clone();
        // A create must have no prev_kv.
        h.watches[0].events[0].prev_kv = h.watches[0].events[2].prev_kv.clone();
        assert_eq!(rules(&watches_exact(&h)), [Rule::WatchesExact]);
        // An update's prev_kv is the key before it, not something older.
        let mut h = s.history.clone();
        let stale = h.committed[0].kv.clone();
        let e = h.watches[0].events.iter_mut().filter(|e| e.kv.key == "a").nth(2).expect("third put of a");
        e.prev_kv = Some(stale);
        assert_eq!(rules(&watches_exact(&h)), [Rule::WatchesExact]);
        // Not asked for, not sent.
        let mut h = s.history.clone();
        h.watches[1].events[0].prev_kv = h.committed[2].prev_kv.clone();
        assert_eq!(rules(&watches_exact(&h)), [Rule::WatchesExact]);
    }

    #[test]
    fn differing_hashes_and_revisions_are_caught() {
        let mut s = clean();
        s.history.hashes[1].hash = 0x1234;
        let v = hashes_equal(&s.history);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("member 1 has 0x00001234"), "{}", v[0]);

        let mut s = clean();
        s.history.hashes[2].revision -= 1;
        let v = hashes_equal(&s.history);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("different revisions"), "{}", v[0]);
    }
}
