//! What a fault run records: every client operation with its invoke and
//! complete times and its outcome, what each watch delivered, and the
//! ground truth read from the cluster at the end (every committed event).
//!
//! Values written in one history are unique (`c<client>-<seq>`), so a read
//! names the write it observed.

/// Nanoseconds since the run started (one monotonic clock for all clients).
pub type Nanos = u64;

/// A key's state as a read or a watch event returns it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
}

/// What a client asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A get of one key; `serializable` only in the negative control.
    Get { key: String, serializable: bool },
    /// A put of `key` = `value`.
    Put { key: String, value: String },
    /// One txn (no compares) putting every pair at one revision.
    PutMany { pairs: Vec<(String, String)> },
}

impl Request {
    /// The keys the request touches.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Request::Get { key, .. } | Request::Put { key, .. } => vec![key.as_str()],
            Request::PutMany { pairs } => pairs.iter().map(|(k, _)| k.as_str()).collect(),
        }
    }

    pub fn is_write(&self) -> bool {
        !matches!(self, Request::Get { .. })
    }
}

/// What the server answered to a request that succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `kv` None: the key does not exist at `header_revision`.
    Get { kv: Option<KeyValue>, header_revision: i64 },
    /// A put or txn: `header_revision` is the revision of its writes.
    Put { header_revision: i64 },
}

impl Response {
    pub fn header_revision(&self) -> i64 {
        match self {
            Response::Get { header_revision, .. } | Response::Put { header_revision } => *header_revision,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok(Response),
    /// Certainly had no effect (e.g. refused before it was sent). A failed
    /// read is simply no observation.
    Failed(String),
    /// May or may not have taken effect (timeouts, broken connections, any
    /// error after a write was sent).
    Unknown(String),
}

/// One client operation.
#[derive(Clone, Debug)]
pub struct Operation {
    /// Each client runs one operation at a time.
    pub client: usize,
    /// The member the client sent it to.
    pub member: usize,
    pub request: Request,
    pub invoke: Nanos,
    /// When the answer (or the error) arrived.
    pub complete: Nanos,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Put,
    Delete,
}

/// One watch event (etcd's mvccpb.Event).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    pub kind: EventKind,
    /// For a delete, only `key` and `mod_revision` are set (as etcd's).
    pub kv: KeyValue,
    /// Set only if the watch asked for prev_kv and the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// Everything one watch delivered, in order. A watch that is resumed after
/// its member restarted continues in the same record (from the revision
/// after the last event it had), so the record must still hold every event
/// once.
#[derive(Clone, Debug)]
pub struct WatchRecord {
    pub member: usize,
    /// The revision the watch started from (1: the whole history).
    pub start_revision: i64,
    pub prev_kv: bool,
    pub events: Vec<Event>,
}

/// One member's HashKV answer at the end of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberHash {
    pub member: usize,
    /// The revision the hash covers.
    pub revision: i64,
    pub hash: u32,
    pub compact_revision: i64,
}

/// A whole run.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub ops: Vec<Operation>,
    pub watches: Vec<WatchRecord>,
    /// Every committed event under the test's prefix from revision 1 to
    /// the end, read once the cluster is healthy again (with prev_kv).
    pub committed: Vec<Event>,
    pub hashes: Vec<MemberHash>,
}
