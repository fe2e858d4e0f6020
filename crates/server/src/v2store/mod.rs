//! The v2 keys store (`--enable-v2`): etcd v2's hierarchical key space of
//! directories and files, its own index, TTLs, and a short event history
//! for `wait=true` watches. Enough of it for the discovery protocol and for
//! simple v2 clients. Its HTTP API is `crate::http::v2keys`.
//!
//! Only the apply thread changes it ([`V2Store::apply`]), inside the entry's
//! backend batch, so the nodes in the `v2keys` table and the index always
//! match the consistent index. Reads and watches are served from memory.
//! Expiry is deterministic: the leader proposes a `SYNC` with its clock and
//! every member removes the nodes that had expired by then.
//!
//! The store never reads the clock while applying, except to render the
//! `ttl` of a node (what a client sees, not what is stored).

use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use prost::Message as _;
use retcd_api::retcdpb::{V2Node, V2Request};
use retcd_storage::backend::{Backend, BackendError, BatchTx, Table};
use serde::Serialize;
use tokio::sync::oneshot;

/// Backend key of the store's index; nodes are keyed by their path, which
/// always starts with '/'.
const INDEX_KEY: &[u8] = b"index";
/// Events kept for `waitIndex` (etcd keeps the last 1000).
const HISTORY: usize = 1000;

/// A v2 error as etcd's v2error package renders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct V2Error {
    pub error_code: u32,
    pub message: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cause: String,
    pub index: u64,
}

impl V2Error {
    pub fn new(code: u32, cause: impl Into<String>, index: u64) -> V2Error {
        let message = match code {
            100 => "Key not found",
            101 => "Compare failed",
            102 => "Not a file",
            104 => "Not a directory",
            105 => "Key already exists",
            107 => "Root is read only",
            108 => "Directory not empty",
            201 => "PrevValue is Required in POST form",
            202 => "The given TTL in POST form is not a number",
            203 => "The given index in POST form is not a number",
            209 => "Invalid field",
            210 => "Invalid POST form",
            211 => "Value provided on refresh",
            212 => "A TTL must be provided on refresh",
            300 => "Raft Internal Error",
            301 => "During Leader Election",
            401 => "The event in requested index is outdated and cleared",
            _ => "Client Internal Error",
        };
        V2Error { error_code: code, message, cause: cause.into(), index }
    }

    /// The HTTP status etcd answers this error with.
    pub fn status(&self) -> u16 {
        match self.error_code {
            100 => 404,
            102 | 108 => 403,
            110 => 401,
            101 | 105 => 412,
            300 | 301 => 500,
            _ => 400,
        }
    }
}

/// A node as the v2 API renders it (etcd's NodeExtern; field order and
/// omitted zero values as Go's encoding/json writes them).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub ttl: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeView>,
    #[serde(skip_serializing_if = "is_zero")]
    pub modified_index: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub created_index: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &u64) -> bool {
    *n == 0
}
fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// One change (or a read), as the v2 API renders it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub action: &'static str,
    pub node: NodeView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_node: Option<NodeView>,
    /// The store's index after the event (the X-Etcd-Index header).
    #[serde(skip)]
    pub etcd_index: u64,
    /// A TTL refresh: kept in the history but not sent to waiting watchers.
    #[serde(skip)]
    pub refresh: bool,
}

impl Event {
    /// Whether the v2 API answers this event with 201 Created.
    pub fn is_created(&self) -> bool {
        self.action == "create" || (self.action == "set" && self.prev_node.is_none())
    }

    /// The index a watcher matches against.
    fn index(&self) -> u64 {
        self.node.modified_index
    }

    fn key(&self) -> &str {
        self.node.key.as_deref().unwrap_or("/")
    }

    /// etcd's history match: the key itself, anything under it when
    /// recursive, and a deleted or expired directory above it.
    fn matches(&self, key: &str, recursive: bool) -> bool {
        let ekey = self.key();
        if ekey == key || (recursive && is_under(ekey, key)) {
            return true;
        }
        let removed = matches!(self.action, "delete" | "expire");
        removed && self.prev_node.as_ref().is_some_and(|p| p.dir && is_under(key, p.key.as_deref().unwrap_or("/")))
    }
}

/// Whether `path` lies strictly below directory `dir`.
fn is_under(path: &str, dir: &str) -> bool {
    if dir == "/" {
        return path != "/";
    }
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// Whether `key` is hidden from a watcher on `dir`: some component below
/// `dir` starts with '_' (etcd does not send those to recursive watchers).
fn hidden_below(dir: &str, key: &str) -> bool {
    let rest = if dir == "/" { key } else { &key[dir.len().min(key.len())..] };
    rest.split('/').any(|c| c.starts_with('_'))
}

#[derive(Debug, Clone, PartialEq)]
struct Node {
    dir: bool,
    value: String,
    created: u64,
    modified: u64,
    /// Unix nanoseconds; 0 for a permanent node.
    expiration: i64,
}

struct Watcher {
    key: String,
    recursive: bool,
    since: u64,
    tx: oneshot::Sender<Event>,
}

#[derive(Default)]
struct Inner {
    /// Every node but the root, by path.
    nodes: BTreeMap<String, Node>,
    index: u64,
    history: VecDeque<Event>,
    /// The first index the history can answer for.
    history_start: u64,
    watchers: Vec<Watcher>,
}

/// What a `wait=true` request gets: an event from the history at once, or
/// a receiver for the next matching one.
pub enum WatchOutcome {
    Ready(Box<Event>),
    Pending { start_index: u64, rx: oneshot::Receiver<Event> },
}

#[derive(Default)]
pub struct V2Store {
    inner: Mutex<Inner>,
}

/// Cleans a key as Go's path.Clean("/" + key) does.
pub fn clean_path(key: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in key.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The ancestors of `path` below the root, outermost first.
fn ancestors(path: &str) -> Vec<&str> {
    path.match_indices('/').skip(1).map(|(i, _)| &path[..i]).collect()
}

pub fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// Go's RFC 3339 with nanoseconds, in UTC (trailing zeros of the fraction
/// dropped, as time.RFC3339Nano does).
pub fn format_time(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", sod / 3600, (sod / 60) % 60, sod % 60);
    if frac != 0 {
        let f = format!("{frac:09}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

impl Inner {
    fn view(&self, path: &str, n: &Node, with_children: bool, recursive: bool, sorted: bool, now: i64) -> NodeView {
        let mut v = NodeView {
            key: (path != "/").then(|| path.to_string()),
            value: (!n.dir).then(|| n.value.clone()),
            dir: n.dir,
            modified_index: n.modified,
            created_index: n.created,
            ..Default::default()
        };
        if n.expiration != 0 {
            v.expiration = Some(format_time(n.expiration));
            let left = n.expiration - now;
            // Whole seconds left, rounded up (etcd's ttl).
            v.ttl = left.div_euclid(1_000_000_000) + i64::from(left.rem_euclid(1_000_000_000) > 0);
        }
        if n.dir && with_children {
            for (cpath, child) in self.children(path) {
                // Hidden nodes ("_name") are left out of listings, as etcd does.
                if cpath.rsplit('/').next().is_some_and(|b| b.starts_with('_')) {
                    continue;
                }
                v.nodes.push(self.view(cpath, child, recursive, recursive, sorted, now));
            }
            // The BTreeMap already yields children in key order, so sorted
            // and unsorted listings are the same (etcd's unsorted order is
            // Go's map order, i.e. unspecified).
            let _ = sorted;
        }
        v
    }

    /// The direct children of directory `path`.
    fn children<'a>(&'a self, path: &str) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        let depth = prefix.len();
        self.nodes
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter(move |(k, _)| !k[depth..].contains('/'))
            .map(|(k, n)| (k.as_str(), n))
    }

    fn subtree_paths(&self, path: &str) -> Vec<String> {
        let prefix = format!("{path}/");
        let mut out = vec![path.to_string()];
        out.extend(
            self.nodes.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(k, _)| k.clone()),
        );
        out
    }

    fn root() -> Node {
        Node { dir: true, value: String::new(), created: 0, modified: 0, expiration: 0 }
    }

    /// Looks `path` up, failing as etcd's walk does when an ancestor is a
    /// file (104 "Not a directory", naming the file).
    fn lookup(&self, path: &str) -> Result<Option<&Node>, V2Error> {
        for a in ancestors(path) {
            match self.nodes.get(a) {
                Some(n) if !n.dir => return Err(V2Error::new(104, a, self.index)),
                Some(_) => {}
                None => return Ok(None),
            }
        }
        Ok(self.nodes.get(path))
    }

    fn existing(&self, path: &str) -> Result<&Node, V2Error> {
        self.lookup(path)?.ok_or_else(|| V2Error::new(100, path, self.index))
    }

    fn removed_view(&self, path: &str, n: &Node, index: u64) -> NodeView {
        NodeView {
            key: Some(path.to_string()),
            dir: n.dir,
            modified_index: index,
            created_index: n.created,
            ..Default::default()
        }
    }
}

/// Changes staged for the backend while applying one request.
struct Staged<'b, 'c> {
    btx: &'b mut BatchTx<'c>,
}

impl Staged<'_, '_> {
    fn put(&mut self, path: &str, n: &Node) {
        let rec = V2Node {
            dir: n.dir,
            value: n.value.clone(),
            created_index: n.created,
            modified_index: n.modified,
            expiration: n.expiration,
        };
        self.btx.put(Table::V2, path.as_bytes(), &rec.encode_to_vec());
    }
    fn delete(&mut self, path: &str) {
        self.btx.delete(Table::V2, path.as_bytes());
    }
    fn index(&mut self, index: u64) {
        self.btx.put(Table::V2, INDEX_KEY, &index.to_be_bytes());
    }
}

impl V2Store {
    /// Loads the store from the backend (after a restart or a snapshot).
    /// The event history starts empty: older `waitIndex` values are
    /// answered with "outdated and cleared", as etcd after a restart.
    pub fn reload(&self, backend: &Backend) -> Result<(), BackendError> {
        let mut nodes = BTreeMap::new();
        let mut index = 0;
        let mut bad = None;
        backend.scan(Table::V2, &[], None, |k, v| {
            if k == INDEX_KEY {
                let mut b = [0u8; 8];
                if v.len() == 8 {
                    b.copy_from_slice(v);
                }
                index = u64::from_be_bytes(b);
                return true;
            }
            match (std::str::from_utf8(k), V2Node::decode(v)) {
                (Ok(path), Ok(n)) => {
                    nodes.insert(
                        path.to_string(),
                        Node {
                            dir: n.dir,
                            value: n.value,
                            created: n.created_index,
                            modified: n.modified_index,
                            expiration: n.expiration,
                        },
                    );
                    true
                }
                _ => {
                    bad = Some(String::from_utf8_lossy(k).into_owned());
                    false
                }
            }
        })?;
        if let Some(k) = bad {
            return Err(BackendError::Db(format!("v2 store: corrupt node {k:?}")));
        }
        let mut inner = self.inner.lock();
        inner.nodes = nodes;
        inner.index = index;
        inner.history.clear();
        inner.history_start = index + 1;
        // Watchers of the old state cannot be answered consistently.
        inner.watchers.clear();
        Ok(())
    }

    pub fn index(&self) -> u64 {
        self.inner.lock().index
    }

    /// GET without wait.
    pub fn get(&self, path: &str, recursive: bool, sorted: bool) -> Result<Event, V2Error> {
        let inner = self.inner.lock();
        let now = now_nanos();
        let root = Inner::root();
        let node = if path == "/" { &root } else { inner.existing(path)? };
        let view = inner.view(path, node, true, recursive, sorted, now);
        Ok(Event { action: "get", node: view, prev_node: None, etcd_index: inner.index, refresh: false })
    }

    /// GET with `wait=true`: the first event at or after `since` (0: the
    /// next one) on `path` (or below it when recursive).
    pub fn watch(&self, path: &str, recursive: bool, since: u64) -> Result<WatchOutcome, V2Error> {
        let mut inner = self.inner.lock();
        let since = if since == 0 { inner.index + 1 } else { since };
        if since < inner.history_start {
            return Err(V2Error::new(
                401,
                format!("the requested history has been cleared [{}/{}]", inner.history_start, since),
                inner.index,
            ));
        }
        if since <= inner.index {
            if let Some(e) = inner.history.iter().find(|e| e.index() >= since && e.matches(path, recursive)) {
                return Ok(WatchOutcome::Ready(Box::new(e.clone())));
            }
        }
        let (tx, rx) = oneshot::channel();
        inner.watchers.retain(|w| !w.tx.is_closed());
        inner.watchers.push(Watcher { key: path.to_string(), recursive, since, tx });
        Ok(WatchOutcome::Pending { start_index: inner.index, rx })
    }

    /// Whether some node's TTL has run out by `now` (the leader then
    /// proposes a SYNC).
    pub fn has_expired(&self, now: i64) -> bool {
        self.inner.lock().nodes.values().any(|n| n.expiration != 0 && n.expiration <= now)
    }

    /// Applies one replicated request; the changes are staged in `btx`.
    /// SYNC returns the last expire event, if any.
    pub fn apply(&self, btx: &mut BatchTx<'_>, r: &V2Request) -> Result<Event, V2Error> {
        let mut inner = self.inner.lock();
        let mut st = Staged { btx };
        let result = match r.method.as_str() {
            "PUT" => put(&mut inner, &mut st, r),
            "POST" => create(&mut inner, &mut st, &r.path, r.dir, &r.val, true, false, r.expiration),
            "DELETE" if r.prev_index > 0 || !r.prev_value.is_empty() => {
                compare_and_delete(&mut inner, &mut st, &r.path, &r.prev_value, r.prev_index)
            }
            "DELETE" => delete(&mut inner, &mut st, &r.path, r.dir || r.recursive, r.recursive),
            "SYNC" => expire(&mut inner, &mut st, r.time),
            m => Err(V2Error::new(210, format!("unknown method {m:?}"), inner.index)),
        };
        if let Ok(e) = &result {
            st.index(inner.index);
            if r.method != "SYNC" {
                record(&mut inner, e.clone());
            }
        }
        result
    }
}

/// Adds an event to the history and wakes the watchers it matches.
fn record(inner: &mut Inner, e: Event) {
    if !e.refresh {
        let mut i = 0;
        while i < inner.watchers.len() {
            let w = &inner.watchers[i];
            let live = e.matches(&w.key, w.recursive) && !(w.recursive && hidden_below(&w.key, e.key()));
            if w.tx.is_closed() {
                inner.watchers.swap_remove(i);
            } else if live && e.index() >= w.since {
                let w = inner.watchers.swap_remove(i);
                let _ = w.tx.send(e.clone());
            } else {
                i += 1;
            }
        }
    }
    inner.history.push_back(e);
    while inner.history.len() > HISTORY {
        inner.history.pop_front();
        inner.history_start = inner.history.front().map(|e| e.index()).unwrap_or(inner.index + 1);
    }
}

fn put(inner: &mut Inner, st: &mut Staged<'_, '_>, r: &V2Request) -> Result<Event, V2Error> {
    let value = if r.refresh {
        // A refresh keeps the value and only renews the TTL.
        inner.lookup(&r.path)?.map(|n| n.value.clone()).unwrap_or_default()
    } else {
        r.val.clone()
    };
    let cas = r.prev_index > 0 || !r.prev_value.is_empty();
    let mut e = match r.prev_exist {
        Some(true) if !cas => update(inner, st, &r.path, &value, r.expiration),
        Some(true) => compare_and_swap(inner, st, &r.path, &r.prev_value, r.prev_index, &value, r.expiration),
        Some(false) => create(inner, st, &r.path, r.dir, &value, false, false, r.expiration),
        None if cas => compare_and_swap(inner, st, &r.path, &r.prev_value, r.prev_index, &value, r.expiration),
        None => create(inner, st, &r.path, r.dir, &value, false, true, r.expiration),
    }?;
    e.refresh = r.refresh;
    Ok(e)
}

#[allow(clippy::too_many_arguments)]
fn create(
    inner: &mut Inner,
    st: &mut Staged<'_, '_>,
    path: &str,
    dir: bool,
    value: &str,
    unique: bool,
    replace: bool,
    expiration: i64,
) -> Result<Event, V2Error> {
    let next = inner.index + 1;
    let path = if unique {
        // POST: an in-order key named after the index that creates it.
        clean_path(&format!("{path}/{next:020}"))
    } else {
        path.to_string()
    };
    if path == "/" {
        return Err(V2Error::new(107, "/", inner.index));
    }
    let mut prev = None;
    if let Some(existing) = inner.lookup(&path)? {
        if !replace {
            return Err(V2Error::new(105, path, inner.index));
        }
        if existing.dir {
            return Err(V2Error::new(102, path, inner.index));
        }
        prev = Some(inner.view(&path, existing, false, false, false, now_nanos()));
    }
    for a in ancestors(&path) {
        if !inner.nodes.contains_key(a) {
            let d = Node { dir: true, value: String::new(), created: next, modified: next, expiration: 0 };
            st.put(a, &d);
            inner.nodes.insert(a.to_string(), d);
        }
    }
    let n = Node {
        dir,
        value: if dir { String::new() } else { value.to_string() },
        created: next,
        modified: next,
        expiration,
    };
    st.put(&path, &n);
    let view = inner.view(&path, &n, false, false, false, now_nanos());
    inner.nodes.insert(path.clone(), n);
    inner.index = next;
    let action = if replace { "set" } else { "create" };
    Ok(Event { action, node: view, prev_node: prev, etcd_index: next, refresh: false })
}

fn update(
    inner: &mut Inner,
    st: &mut Staged<'_, '_>,
    path: &str,
    value: &str,
    expiration: i64,
) -> Result<Event, V2Error> {
    if path == "/" {
        return Err(V2Error::new(107, "/", inner.index));
    }
    let n = inner.existing(path)?.clone();
    if n.dir && !value.is_empty() {
        return Err(V2Error::new(102, path, inner.index));
    }
    let next = inner.index + 1;
    let now = now_nanos();
    let prev = inner.view(path, &n, false, false, false, now);
    // etcd moves a file's modified index; a directory's TTL changes alone.
    let n = Node {
        value: if n.dir { String::new() } else { value.to_string() },
        modified: if n.dir { n.modified } else { next },
        expiration,
        ..n
    };
    st.put(path, &n);
    let mut view = inner.view(path, &n, false, false, false, now);
    view.modified_index = next;
    inner.nodes.insert(path.to_string(), n);
    inner.index = next;
    Ok(Event { action: "update", node: view, prev_node: Some(prev), etcd_index: next, refresh: false })
}

/// etcd's compare-failure cause text.
fn compare_cause(n: &Node, prev_value: &str, prev_index: u64) -> Option<String> {
    let value_bad = !prev_value.is_empty() && prev_value != n.value;
    let index_bad = prev_index != 0 && prev_index != n.modified;
    match (value_bad, index_bad) {
        (false, false) => None,
        (true, false) => Some(format!("[{prev_value} != {}]", n.value)),
        (false, true) => Some(format!("[{prev_index} != {}]", n.modified)),
        (true, true) => Some(format!("[{prev_value} != {}] [{prev_index} != {}]", n.value, n.modified)),
    }
}

/// The file at `path` if it passes a compare-and-swap/delete's conditions
/// (etcd's errors otherwise: root read-only, not a file, compare failed).
fn compared_file(inner: &Inner, path: &str, prev_value: &str, prev_index: u64) -> Result<Node, V2Error> {
    if path == "/" {
        return Err(V2Error::new(107, "/", inner.index));
    }
    let n = inner.existing(path)?.clone();
    if n.dir {
        return Err(V2Error::new(102, path, inner.index));
    }
    if let Some(cause) = compare_cause(&n, prev_value, prev_index) {
        return Err(V2Error::new(101, cause, inner.index));
    }
    Ok(n)
}

fn compare_and_swap(
    inner: &mut Inner,
    st: &mut Staged<'_, '_>,
    path: &str,
    prev_value: &str,
    prev_index: u64,
    value: &str,
    expiration: i64,
) -> Result<Event, V2Error> {
    let n = compared_file(inner, path, prev_value, prev_index)?;
    let next = inner.index + 1;
    let now = now_nanos();
    let prev = inner.view(path, &n, false, false, false, now);
    let n = Node { value: value.to_string(), modified: next, expiration, ..n };
    st.put(path, &n);
    let view = inner.view(path, &n, false, false, false, now);
    inner.nodes.insert(path.to_string(), n);
    inner.index = next;
    Ok(Event { action: "compareAndSwap", node: view, prev_node: Some(prev), etcd_index: next, refresh: false })
}

fn remove_subtree(inner: &mut Inner, st: &mut Staged<'_, '_>, path: &str) {
    for p in inner.subtree_paths(path) {
        inner.nodes.remove(&p);
        st.delete(&p);
    }
}

fn delete(
    inner: &mut Inner,
    st: &mut Staged<'_, '_>,
    path: &str,
    dir: bool,
    recursive: bool,
) -> Result<Event, V2Error> {
    if path == "/" {
        return Err(V2Error::new(107, "/", inner.index));
    }
    let n = inner.existing(path)?.clone();
    if n.dir {
        if !dir {
            return Err(V2Error::new(102, path, inner.index));
        }
        if !recursive && inner.children(path).next().is_some() {
            return Err(V2Error::new(108, path, inner.index));
        }
    }
    let next = inner.index + 1;
    let prev = inner.view(path, &n, false, false, false, now_nanos());
    let view = inner.removed_view(path, &n, next);
    remove_subtree(inner, st, path);
    inner.index = next;
    Ok(Event { action: "delete", node: view, prev_node: Some(prev), etcd_index: next, refresh: false })
}

fn compare_and_delete(
    inner: &mut Inner,
    st: &mut Staged<'_, '_>,
    path: &str,
    prev_value: &str,
    prev_index: u64,
) -> Result<Event, V2Error> {
    let n = compared_file(inner, path, prev_value, prev_index)?;
    let next = inner.index + 1;
    let prev = inner.view(path, &n, false, false, false, now_nanos());
    let view = inner.removed_view(path, &n, next);
    remove_subtree(inner, st, path);
    inner.index = next;
    Ok(Event { action: "compareAndDelete", node: view, prev_node: Some(prev), etcd_index: next, refresh: false })
}

/// Removes every node that had expired at `time`, one index and one
/// "expire" event each (outermost first: a directory takes its children).
fn expire(inner: &mut Inner, st: &mut Staged<'_, '_>, time: i64) -> Result<Event, V2Error> {
    let expired: Vec<String> =
        inner.nodes.iter().filter(|(_, n)| n.expiration != 0 && n.expiration <= time).map(|(k, _)| k.clone()).collect();
    let mut last = None;
    for path in expired {
        let Some(n) = inner.nodes.get(&path).cloned() else { continue };
        let next = inner.index + 1;
        let prev = inner.view(&path, &n, false, false, false, time);
        let view = inner.removed_view(&path, &n, next);
        remove_subtree(inner, st, &path);
        inner.index = next;
        let e = Event { action: "expire", node: view, prev_node: Some(prev), etcd_index: next, refresh: false };
        record(inner, e.clone());
        last = Some(e);
    }
    last.ok_or_else(|| V2Error::new(100, "nothing expired", inner.index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_times() {
        assert_eq!(clean_path("a//b/./c/"), "/a/b/c");
        assert_eq!(clean_path(""), "/");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(ancestors("/a/b/c"), vec!["/a", "/a/b"]);
        assert!(is_under("/a/b", "/a") && !is_under("/ab", "/a") && is_under("/a", "/"));
        assert!(hidden_below("/d", "/d/_config/size") && !hidden_below("/d", "/d/abc"));
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_700_000_000_123_400_000), "2023-11-14T22:13:20.1234Z");
        assert_eq!(format_time(951_782_400_000_000_000), "2000-02-29T00:00:00Z");
    }

    fn req(method: &str, path: &str, val: &str) -> V2Request {
        V2Request { method: method.into(), path: path.into(), val: val.into(), ..Default::default() }
    }

    #[test]
    fn changes_survive_a_reload_and_expire_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::open(&dir.path().join("db")).unwrap();
        let store = V2Store::default();
        store.reload(&backend).unwrap();
        {
            let mut btx = backend.batch_tx();
            assert_eq!(store.apply(&mut btx, &req("PUT", "/a/b", "1")).unwrap().action, "set");
            let e = store.apply(&mut btx, &req("POST", "/q", "job")).unwrap();
            assert_eq!(e.node.key.as_deref(), Some("/q/00000000000000000002"));
            let ttl = V2Request { expiration: 1_000, ..req("PUT", "/t", "x") };
            store.apply(&mut btx, &ttl).unwrap();
            let err = store.apply(&mut btx, &req("DELETE", "/a", "")).unwrap_err();
            assert_eq!((err.error_code, err.index), (102, 3));
        }
        backend.commit().unwrap();
        let again = V2Store::default();
        again.reload(&backend).unwrap();
        assert_eq!(again.index(), 3);
        let listing = |s: &V2Store| serde_json::to_string(&s.get("/", true, true).unwrap()).unwrap();
        assert_eq!(listing(&again), listing(&store));
        // SYNC at a time before the expiration removes nothing; after it,
        // the node goes with one index and an expire event.
        let mut btx = backend.batch_tx();
        let early = V2Request { method: "SYNC".into(), time: 999, ..Default::default() };
        assert!(again.apply(&mut btx, &early).is_err());
        let late = V2Request { method: "SYNC".into(), time: 1_000, ..Default::default() };
        let e = again.apply(&mut btx, &late).unwrap();
        assert_eq!((e.action, e.node.modified_index), ("expire", 4));
        assert_eq!(again.get("/t", false, false).unwrap_err().error_code, 100);
    }

    #[test]
    fn errors_render_as_etcd() {
        let e = V2Error::new(100, "/foo", 7);
        assert_eq!(
            serde_json::to_string(&e).unwrap_or_default(),
            r#"{"errorCode":100,"message":"Key not found","cause":"/foo","index":7}"#
        );
        assert_eq!(e.status(), 404);
        assert_eq!(V2Error::new(105, "", 0).status(), 412);
    }
}
