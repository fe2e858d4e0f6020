//! Per-key linearizability: is there one order of the operations on each key,
//! consistent with real time, in which every read returns the last write?
//!
//! Each key is checked on its own as a register, with the Wing & Gong search
//! and Lowe's memoisation (the approach porcupine takes): the operations'
//! calls and returns form one time-ordered linked list; the search takes the
//! earliest call that may go next, lifts it (and its return) out of the list,
//! and backtracks when it meets a return whose operation has not taken
//! effect yet. A cache of (set of ops taken, register state) stops it from
//! exploring the same situation twice.
//!
//! What an operation means to a key:
//! - an Ok op takes effect somewhere in [invoke, complete];
//! - a Failed op never happened (the harness records Failed only when the
//!   request was certainly refused), so it is dropped;
//! - an Unknown write may take effect at any time after invoke, or never:
//!   its complete is infinity (taking effect after everything else is the
//!   same as never taking effect); an Unknown read observed nothing and is
//!   dropped;
//! - a PutMany is a put of its value on each key it touches. Whether the
//!   keys of one txn changed together is not visible per key; checks.rs
//!   checks that atomicity with revisions.
//!
//! Values are unique per write, so a read is compared by value, and also by
//! mod_revision against a put acknowledged with header revision R (which
//! produced mod_revision R). Keys start absent.
//!
//! The search is exponential in the worst case, so it runs under a step
//! budget per key; running out is reported as [`Verdict::GaveUp`], and gave
//! up is never a pass.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::history::{History, Nanos, Outcome, Request, Response};

/// A budget that keeps a few thousand ops per key with modest concurrency
/// well inside it, while still ending a pathological search in seconds.
pub const DEFAULT_BUDGET: u64 = 5_000_000;

/// The answer for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order exists; `explanation` names the ops where the search got stuck.
    NotLinearizable {
        explanation: String,
    },
    /// The step budget ran out before an order was found or ruled out.
    GaveUp {
        steps: u64,
    },
}

#[derive(Clone, Debug)]
pub struct KeyReport {
    pub key: String,
    /// Ops that were checked on this key (after dropping Failed ops and
    /// Unknown reads).
    pub ops: usize,
    pub steps: u64,
    pub verdict: Verdict,
}

impl KeyReport {
    pub fn is_ok(&self) -> bool {
        self.verdict == Verdict::Linearizable
    }
}

/// Every key's verdict, in key order.
#[derive(Clone, Debug)]
pub struct LinReport {
    pub budget: u64,
    pub keys: Vec<KeyReport>,
}

impl LinReport {
    /// True only if every key is linearizable: a key the search gave up on
    /// is a failure too, or a too-hard history would pass unchecked.
    pub fn is_ok(&self) -> bool {
        self.keys.iter().all(KeyReport::is_ok)
    }

    pub fn failures(&self) -> impl Iterator<Item = &KeyReport> {
        self.keys.iter().filter(|k| !k.is_ok())
    }
}

impl fmt::Display for LinReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops: usize = self.keys.iter().map(|k| k.ops).sum();
        let failed = self.failures().count();
        writeln!(f, "linearizability: {} keys, {ops} ops, {failed} failing", self.keys.len())?;
        for k in self.failures() {
            match &k.verdict {
                Verdict::Linearizable => {}
                Verdict::NotLinearizable { explanation } => {
                    writeln!(f, "  key {:?}: NOT linearizable ({} ops): {explanation}", k.key, k.ops)?
                }
                Verdict::GaveUp { steps } => writeln!(
                    f,
                    "  key {:?}: gave up after {steps} steps (budget {}, {} ops); counts as a failure",
                    k.key, self.budget, k.ops
                )?,
            }
        }
        Ok(())
    }
}

/// Checks every key of `history`, spending at most `budget` search steps on
/// each key.
pub fn check(history: &History, budget: u64) -> LinReport {
    let keys = partition(history)
        .into_iter()
        .map(|(key, ops)| {
            let (verdict, steps) = search(&ops, budget);
            KeyReport { key, ops: ops.len(), steps, verdict }
        })
        .collect();
    LinReport { budget, keys }
}

/// What one operation does to one key's register.
#[derive(Clone, Debug)]
enum Action {
    /// `revision`: the mod_revision it produced, if the put was acknowledged.
    Write { value: String, revision: Option<i64> },
    /// `observed`: (value, mod_revision), None if the key did not exist.
    Read { observed: Option<(String, i64)> },
}

#[derive(Clone, Debug)]
struct KeyOp {
    /// Index into `History::ops`, so a report can be matched to the run.
    op: usize,
    client: usize,
    action: Action,
    invoke: Nanos,
    /// None: an Unknown write, which may take effect at any time.
    complete: Option<Nanos>,
}

impl fmt::Display for KeyOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op #{} client {} ", self.op, self.client)?;
        match &self.action {
            Action::Write { value, revision: Some(r) } => write!(f, "put {value:?} (rev {r})")?,
            Action::Write { value, revision: None } => write!(f, "put {value:?} (outcome unknown)")?,
            Action::Read { observed: None } => write!(f, "get -> absent")?,
            Action::Read { observed: Some((v, r)) } => write!(f, "get -> {v:?} (mod rev {r})")?,
        }
        match self.complete {
            Some(c) => write!(f, " during [{}, {c}]", self.invoke),
            None => write!(f, " from {} on", self.invoke),
        }
    }
}

/// Splits the history into one register history per key.
fn partition(history: &History) -> BTreeMap<String, Vec<KeyOp>> {
    let mut keys: BTreeMap<String, Vec<KeyOp>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        let complete = match &op.outcome {
            Outcome::Ok(_) => Some(op.complete),
            Outcome::Unknown(_) if op.request.is_write() => None,
            Outcome::Unknown(_) | Outcome::Failed(_) => continue,
        };
        let mut push = |key: &str, action| {
            let kop = KeyOp { op: i, client: op.client, action, invoke: op.invoke, complete };
            keys.entry(key.to_owned()).or_default().push(kop);
        };
        let revision = match &op.outcome {
            Outcome::Ok(Response::Put { header_revision }) => Some(*header_revision),
            _ => None,
        };
        match (&op.request, &op.outcome) {
            (Request::Get { key, .. }, Outcome::Ok(Response::Get { kv, .. })) => {
                let observed = kv.as_ref().map(|kv| (kv.value.clone(), kv.mod_revision));
                push(key, Action::Read { observed });
            }
            // A get answered with a put response is not something the
            // recorder produces; it observed nothing usable.
            (Request::Get { .. }, _) => {}
            (Request::Put { key, value }, _) => push(key, Action::Write { value: value.clone(), revision }),
            (Request::PutMany { pairs }, _) => {
                for (key, value) in pairs {
                    push(key, Action::Write { value: value.clone(), revision });
                }
            }
        }
    }
    keys
}

/// The register's content: the index of the write it holds, None while the
/// key is absent. An index is cheaper to hash and cache than the value.
type State = Option<usize>;

/// Applies op `i` to `state`; None if the op cannot happen in that state.
fn step(ops: &[KeyOp], state: State, i: usize) -> Option<State> {
    match &ops[i].action {
        Action::Write { .. } => Some(Some(i)),
        Action::Read { observed } => {
            let matches = match (observed, state) {
                (None, None) => true,
                (Some((value, mod_rev)), Some(w)) => match &ops[w].action {
                    Action::Write { value: wrote, revision } => {
                        wrote == value && revision.is_none_or(|r| r == *mod_rev)
                    }
                    Action::Read { .. } => false,
                },
                _ => false,
            };
            matches.then_some(state)
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(n: usize) -> Self {
        Bitset(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Marks the end of the linked list.
const END: usize = usize::MAX;

/// Node e + 1 holds entry e (node 0 is the list head): op e / 2's call if
/// e is even, its return if odd.
fn is_call(node: usize) -> bool {
    node != END && (node - 1).is_multiple_of(2)
}

fn op_of(node: usize) -> usize {
    (node - 1) / 2
}

/// Where the search got furthest before it had to backtrack: the material
/// for a readable explanation.
struct Stuck {
    depth: usize,
    /// The op whose return was reached before it could take effect.
    blocked: usize,
    state: State,
    /// Ops whose calls were still open at that point.
    candidates: Vec<usize>,
}

fn search(ops: &[KeyOp], budget: u64) -> (Verdict, u64) {
    let n = ops.len();
    // Entries as is_call() describes them. Calls sort before returns at equal times:
    // ops that touch at an instant count as concurrent, the permissive choice.
    let mut order: Vec<usize> = (0..2 * n).collect();
    order.sort_by_key(|&e| {
        let op = &ops[e / 2];
        let time = if e % 2 == 0 { op.invoke } else { op.complete.unwrap_or(Nanos::MAX) };
        (time, e % 2)
    });
    let mut next = vec![END; 2 * n + 1];
    let mut prev = vec![0; 2 * n + 1];
    let mut last = 0;
    for &e in &order {
        next[last] = e + 1;
        prev[e + 1] = last;
        last = e + 1;
    }
    let call_node = |i: usize| 2 * i + 1;
    let unlink = |next: &mut [usize], prev: &mut [usize], node: usize| {
        next[prev[node]] = next[node];
        if next[node] != END {
            prev[next[node]] = prev[node];
        }
    };
    // The removed node still remembers its neighbours (dancing links), so
    // undoing removals in reverse order restores the list exactly.
    let relink = |next: &mut [usize], prev: &mut [usize], node: usize| {
        next[prev[node]] = node;
        if next[node] != END {
            prev[next[node]] = node;
        }
    };

    // Once only Unknown writes are left, they can all go last (= never
    // happened), so the search is done.
    let mut required = ops.iter().filter(|o| o.complete.is_some()).count();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut taken = Bitset::new(n);
    let mut cache: HashSet<(Bitset, State)> = HashSet::new();
    let mut state: State = None;
    let mut node = next[0];
    let mut steps = 0;
    let mut stuck: Option<Stuck> = None;

    while required > 0 {
        steps += 1;
        if steps > budget {
            return (Verdict::GaveUp { steps: budget }, budget);
        }
        if is_call(node) {
            let i = op_of(node);
            if let Some(new_state) = step(ops, state, i) {
                taken.set(i);
                if cache.insert((taken.clone(), new_state)) {
                    stack.push((i, state));
                    state = new_state;
                    unlink(&mut next, &mut prev, call_node(i));
                    unlink(&mut next, &mut prev, call_node(i) + 1);
                    if ops[i].complete.is_some() {
                        required -= 1;
                    }
                    node = next[0];
                    continue;
                }
                taken.clear(i);
            }
            node = next[node];
            continue;
        }
        // A return (or the end of the list) was reached: every op still
        // open here either cannot go next or leads to a situation already
        // explored, so the last choice was wrong.
        if node != END && stuck.as_ref().is_none_or(|s| stack.len() > s.depth) {
            let mut candidates = Vec::new();
            let mut c = next[0];
            while c != node {
                if is_call(c) {
                    candidates.push(op_of(c));
                }
                c = next[c];
            }
            stuck = Some(Stuck { depth: stack.len(), blocked: op_of(node), state, candidates });
        }
        let Some((i, prev_state)) = stack.pop() else {
            return (Verdict::NotLinearizable { explanation: explain(ops, stuck) }, steps);
        };
        taken.clear(i);
        state = prev_state;
        relink(&mut next, &mut prev, call_node(i) + 1);
        relink(&mut next, &mut prev, call_node(i));
        if ops[i].complete.is_some() {
            required += 1;
        }
        node = next[call_node(i)];
    }
    (Verdict::Linearizable, steps)
}

fn explain(ops: &[KeyOp], stuck: Option<Stuck>) -> String {
    let Some(s) = stuck else {
        return "no order exists (the search never got past the first op)".to_owned();
    };
    let held = match s.state {
        None => "nothing (key absent)".to_owned(),
        Some(w) => format!("the value of {}", ops[w]),
    };
    let mut out = format!(
        "at best {} of {} ops could be ordered; then {} had to take effect before it returned, \
         but the key held {held}",
        s.depth,
        ops.len(),
        ops[s.blocked]
    );
    // For a read, name the write it saw: usually the heart of the problem.
    if let Action::Read { observed: Some((value, _)) } = &ops[s.blocked].action {
        match ops.iter().find(|o| matches!(&o.action, Action::Write { value: v, .. } if v == value)) {
            Some(w) => out += &format!("; the value read was written by {w}"),
            None => out += "; no recorded (Ok or Unknown) write wrote the value read",
        }
    }
    const SHOWN: usize = 8;
    let others: Vec<String> =
        s.candidates.iter().filter(|&&c| c != s.blocked).take(SHOWN).map(|&c| ops[c].to_string()).collect();
    if !others.is_empty() {
        let more = s.candidates.len().saturating_sub(SHOWN + 1);
        out += &format!("; ops still open: {}", others.join("; "));
        if more > 0 {
            out += &format!(" (and {more} more)");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{KeyValue, Operation};

    fn kv(key: &str, value: &str, mod_revision: i64) -> KeyValue {
        KeyValue { key: key.into(), value: value.into(), create_revision: 2, mod_revision, version: 1 }
    }

    fn put(client: usize, key: &str, value: &str, invoke: Nanos, complete: Nanos, rev: i64) -> Operation {
        Operation {
            client,
            member: 0,
            request: Request::Put { key: key.into(), value: value.into() },
            invoke,
            complete,
            outcome: Outcome::Ok(Response::Put { header_revision: rev }),
        }
    }

    fn put_with(client: usize, key: &str, value: &str, invoke: Nanos, outcome: Outcome) -> Operation {
        Operation {
            client,
            member: 0,
            request: Request::Put { key: key.into(), value: value.into() },
            invoke,
            complete: invoke + 5,
            outcome,
        }
    }

    /// A get that saw `seen` = (value, mod_revision), or an absent key.
    fn get(client: usize, key: &str, seen: Option<(&str, i64)>, invoke: Nanos, complete: Nanos) -> Operation {
        Operation {
            client,
            member: 0,
            request: Request::Get { key: key.into(), serializable: false },
            invoke,
            complete,
            outcome: Outcome::Ok(Response::Get {
                kv: seen.map(|(v, r)| kv(key, v, r)),
                header_revision: seen.map_or(1, |(_, r)| r),
            }),
        }
    }

    fn run(ops: Vec<Operation>) -> LinReport {
        check(&History { ops, ..History::default() }, DEFAULT_BUDGET)
    }

    fn only_verdict(report: &LinReport) -> &Verdict {
        assert_eq!(report.keys.len(), 1, "{report}");
        &report.keys[0].verdict
    }

    #[test]
    fn sequential_reads_and_writes_pass() {
        let r = run(vec![
            get(0, "k", None, 0, 5),
            put(0, "k", "a", 10, 20, 2),
            get(1, "k", Some(("a", 2)), 30, 40),
            put(1, "k", "b", 50, 60, 3),
            get(0, "k", Some(("b", 3)), 70, 80),
        ]);
        assert!(r.is_ok(), "{r}");
    }

    #[test]
    fn concurrent_writes_may_be_seen_in_either_order() {
        // a and b overlap; each read may see either, as long as one order
        // explains all of them.
        for (first, second) in [("a", "b"), ("b", "a")] {
            let rev = |v| if v == "a" { 2 } else { 3 };
            let r = run(vec![
                put(0, "k", "a", 0, 100, 2),
                put(1, "k", "b", 0, 100, 3),
                get(2, "k", Some((first, rev(first))), 10, 20),
                get(2, "k", Some((second, rev(second))), 30, 40),
                get(3, "k", Some((second, rev(second))), 110, 120),
            ]);
            assert!(r.is_ok(), "{first} then {second}: {r}");
        }
    }

    #[test]
    fn flip_flopping_between_concurrent_writes_fails() {
        // b, a, b would need b to take effect twice.
        let r = run(vec![
            put(0, "k", "a", 0, 100, 2),
            put(1, "k", "b", 0, 100, 3),
            get(2, "k", Some(("b", 3)), 10, 20),
            get(2, "k", Some(("a", 2)), 30, 40),
            get(2, "k", Some(("b", 3)), 50, 60),
        ]);
        assert!(matches!(only_verdict(&r), Verdict::NotLinearizable { .. }), "{r}");
    }

    #[test]
    fn stale_read_fails() {
        let r = run(vec![
            put(0, "k", "a", 0, 10, 2),
            put(0, "k", "b", 20, 30, 3),
            // Starts after b was acknowledged, still sees a.
            get(1, "k", Some(("a", 2)), 40, 50),
        ]);
        assert!(!r.is_ok());
        let Verdict::NotLinearizable { explanation } = only_verdict(&r) else { panic!("{r}") };
        assert!(explanation.contains("op #2"), "{explanation}");
        assert!(explanation.contains("written by op #0"), "{explanation}");
        assert!(r.to_string().contains("NOT linearizable"), "{r}");
    }

    #[test]
    fn read_with_wrong_mod_revision_fails() {
        // Right value, but the put that wrote it was acknowledged at rev 2.
        let r = run(vec![put(0, "k", "a", 0, 10, 2), get(1, "k", Some(("a", 4)), 20, 30)]);
        assert!(matches!(only_verdict(&r), Verdict::NotLinearizable { .. }), "{r}");
    }

    #[test]
    fn unknown_write_may_or_may_not_take_effect() {
        let unknown = || Outcome::Unknown("timeout".into());
        // Took effect, seen long after the client gave up on it.
        let took = run(vec![
            put(0, "k", "a", 0, 10, 2),
            put_with(1, "k", "x", 20, unknown()),
            get(2, "k", Some(("x", 3)), 100, 110),
        ]);
        assert!(took.is_ok(), "{took}");
        // Never took effect.
        let never = run(vec![
            put(0, "k", "a", 0, 10, 2),
            put_with(1, "k", "x", 20, unknown()),
            get(2, "k", Some(("a", 2)), 100, 110),
        ]);
        assert!(never.is_ok(), "{never}");
        // Took effect and then was undone: not allowed.
        let undone = run(vec![
            put(0, "k", "a", 0, 10, 2),
            put_with(1, "k", "x", 20, unknown()),
            get(2, "k", Some(("x", 3)), 100, 110),
            get(2, "k", Some(("a", 2)), 120, 130),
        ]);
        assert!(!undone.is_ok(), "{undone}");
    }

    #[test]
    fn failed_write_that_is_seen_fails_and_unknown_reads_are_ignored() {
        let r =
            run(vec![put_with(0, "k", "f", 0, Outcome::Failed("refused".into())), get(1, "k", Some(("f", 2)), 20, 30)]);
        let Verdict::NotLinearizable { explanation } = only_verdict(&r) else { panic!("{r}") };
        assert!(explanation.contains("no recorded"), "{explanation}");

        let mut lost_read = get(1, "k", Some(("zzz", 9)), 20, 30);
        lost_read.outcome = Outcome::Unknown("timeout".into());
        let r = run(vec![put(0, "k", "a", 0, 10, 2), lost_read]);
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.keys[0].ops, 1);
    }

    #[test]
    fn put_many_is_a_put_on_each_key() {
        let many = Operation {
            client: 0,
            member: 0,
            request: Request::PutMany { pairs: vec![("a".into(), "a1".into()), ("b".into(), "b1".into())] },
            invoke: 0,
            complete: 10,
            outcome: Outcome::Ok(Response::Put { header_revision: 2 }),
        };
        let many_again = many.clone();
        let r = run(vec![many, get(1, "a", Some(("a1", 2)), 20, 30), get(1, "b", Some(("b1", 2)), 20, 30)]);
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.keys.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        // A key the txn wrote must not read absent afterwards.
        let r = run(vec![Operation { complete: 10, ..many_again }, get(1, "b", None, 20, 30)]);
        assert!(!r.is_ok(), "{r}");
    }

    /// Clients running concurrently against a correct register, each op
    /// taking effect at a pseudo-random instant inside its interval.
    #[test]
    fn a_thousand_concurrent_ops_on_one_key_pass_within_the_budget() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let mut planned = Vec::new(); // (effect time, client, invoke, complete, is write)
        for client in 0..4 {
            let mut t = 0;
            for _ in 0..250 {
                let invoke = t + rand(20);
                let complete = invoke + 1 + rand(60);
                planned.push((invoke + rand(complete - invoke), client, invoke, complete, rand(2) == 0));
                t = complete;
            }
        }
        planned.sort();
        let (mut ops, mut current, mut rev) = (Vec::new(), None, 1);
        for (n, &(_, client, invoke, complete, write)) in planned.iter().enumerate() {
            if write {
                rev += 1;
                let value = format!("c{client}-{n}");
                ops.push(put(client, "k", &value, invoke, complete, rev));
                current = Some((value, rev));
            } else {
                let seen = current.as_ref().map(|(v, r): &(String, i64)| (v.as_str(), *r));
                ops.push(get(client, "k", seen, invoke, complete));
            }
        }
        let r = run(ops);
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.keys[0].ops, 1000);
    }

    #[test]
    fn tiny_budget_gives_up_and_gave_up_is_a_failure() {
        let mut ops = Vec::new();
        for c in 0..6 {
            ops.push(put(c, "k", &format!("v{c}"), 0, 100, 2 + c as i64));
        }
        ops.push(get(9, "k", Some(("v5", 7)), 110, 120));
        let history = History { ops, ..History::default() };
        let r = check(&history, 3);
        assert_eq!(only_verdict(&r), &Verdict::GaveUp { steps: 3 });
        assert!(!r.is_ok());
        assert!(r.to_string().contains("gave up"), "{r}");
        // The same history passes with room to search.
        assert!(check(&history, DEFAULT_BUDGET).is_ok());
    }
}
