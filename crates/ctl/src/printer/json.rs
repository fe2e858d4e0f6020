//! `-w json`: what Go's encoding/json makes of etcd's protobuf structs and
//! of clientv3's wrappers (field names from their struct tags, `omitempty`
//! where the tag says so, bytes in base64, enums and 64-bit ids as plain
//! numbers).

use retcd_client::etcdserverpb::{
    response_op, AlarmResponse, DeleteRangeResponse, HashKvResponse, LeaseGrantResponse, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseTimeToLiveResponse, Member, PutResponse, RangeResponse, ResponseHeader, ResponseOp,
    StatusResponse, TxnResponse, WatchResponse,
};
use retcd_client::mvccpb::{Event, KeyValue};

use super::gofmt::{base64, json_string};

/// A JSON object under construction, fields in insertion order.
#[derive(Default)]
pub struct Obj {
    buf: String,
}

impl Obj {
    pub fn new() -> Obj {
        Obj::default()
    }

    /// A field whose value is already JSON.
    pub fn raw(&mut self, key: &str, value: &str) -> &mut Obj {
        if !self.buf.is_empty() {
            self.buf.push(',');
        }
        self.buf.push_str(&json_string(key));
        self.buf.push(':');
        self.buf.push_str(value);
        self
    }

    /// A number, left out when zero and `omitempty`.
    pub fn num<T: std::fmt::Display + Default + PartialEq>(&mut self, key: &str, v: T, omitempty: bool) -> &mut Obj {
        if !(omitempty && v == T::default()) {
            self.raw(key, &v.to_string());
        }
        self
    }

    pub fn boolean(&mut self, key: &str, v: bool, omitempty: bool) -> &mut Obj {
        if v || !omitempty {
            self.raw(key, if v { "true" } else { "false" });
        }
        self
    }

    pub fn string(&mut self, key: &str, v: &str, omitempty: bool) -> &mut Obj {
        if !(omitempty && v.is_empty()) {
            self.raw(key, &json_string(v));
        }
        self
    }

    pub fn bytes(&mut self, key: &str, v: &[u8]) -> &mut Obj {
        if !v.is_empty() {
            self.raw(key, &json_string(&base64(v)));
        }
        self
    }

    /// Header fields inlined (clientv3 embeds `*pb.ResponseHeader`).
    pub fn header_fields(&mut self, h: &Option<ResponseHeader>) -> &mut Obj {
        if let Some(h) = h {
            self.num("cluster_id", h.cluster_id, true)
                .num("member_id", h.member_id, true)
                .num("revision", h.revision, true)
                .num("raft_term", h.raft_term, true);
        }
        self
    }

    /// `"header":{...}` (left out when absent, as a nil pointer is).
    pub fn header(&mut self, h: &Option<ResponseHeader>) -> &mut Obj {
        if h.is_some() {
            let v = Obj::new().header_fields(h).done();
            self.raw("header", &v);
        }
        self
    }

    pub fn done(&self) -> String {
        format!("{{{}}}", self.buf)
    }
}

/// A JSON array of already-encoded values.
pub fn array(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(","))
}

/// An `omitempty` slice: left out when empty.
fn list(o: &mut Obj, key: &str, items: Vec<String>) {
    if !items.is_empty() {
        o.raw(key, &array(items));
    }
}

pub fn kv(kv: &KeyValue) -> String {
    Obj::new()
        .bytes("key", &kv.key)
        .num("create_revision", kv.create_revision, true)
        .num("mod_revision", kv.mod_revision, true)
        .num("version", kv.version, true)
        .bytes("value", &kv.value)
        .num("lease", kv.lease, true)
        .done()
}

pub fn range(r: &RangeResponse) -> String {
    let mut o = Obj::new();
    o.header(&r.header);
    list(&mut o, "kvs", r.kvs.iter().map(kv).collect());
    o.boolean("more", r.more, true).num("count", r.count, true).done()
}

pub fn put(r: &PutResponse) -> String {
    let mut o = Obj::new();
    o.header(&r.header);
    if let Some(p) = &r.prev_kv {
        o.raw("prev_kv", &kv(p));
    }
    o.done()
}

pub fn delete(r: &DeleteRangeResponse) -> String {
    let mut o = Obj::new();
    o.header(&r.header).num("deleted", r.deleted, true);
    list(&mut o, "prev_kvs", r.prev_kvs.iter().map(kv).collect());
    o.done()
}

fn response_op(op: &ResponseOp) -> String {
    let inner = match &op.response {
        Some(response_op::Response::ResponseRange(r)) => Obj::new().raw("ResponseRange", &range(r)).done(),
        Some(response_op::Response::ResponsePut(r)) => Obj::new().raw("ResponsePut", &put(r)).done(),
        Some(response_op::Response::ResponseDeleteRange(r)) => Obj::new().raw("ResponseDeleteRange", &delete(r)).done(),
        Some(response_op::Response::ResponseTxn(r)) => Obj::new().raw("ResponseTxn", &txn(r)).done(),
        None => "null".into(),
    };
    Obj::new().raw("Response", &inner).done()
}

pub fn txn(r: &TxnResponse) -> String {
    let mut o = Obj::new();
    o.header(&r.header).boolean("succeeded", r.succeeded, true);
    list(&mut o, "responses", r.responses.iter().map(response_op).collect());
    o.done()
}

pub fn event(e: &Event) -> String {
    let mut o = Obj::new();
    o.num("type", e.r#type, true);
    if let Some(k) = &e.kv {
        o.raw("kv", &kv(k));
    }
    if let Some(p) = &e.prev_kv {
        o.raw("prev_kv", &kv(p));
    }
    o.done()
}

/// clientv3's WatchResponse: exported fields without tags.
pub fn watch(r: &WatchResponse) -> String {
    let header = Obj::new().header_fields(&r.header).done();
    // clientv3 always allocates the event slice: `[]`, never `null`.
    let events = array(r.events.iter().map(event));
    Obj::new()
        .raw("Header", &header)
        .raw("Events", &events)
        .num("CompactRevision", r.compact_revision, false)
        .boolean("Canceled", r.canceled, false)
        .boolean("Created", r.created, false)
        .done()
}

pub fn grant(r: &LeaseGrantResponse) -> String {
    Obj::new()
        .header_fields(&r.header)
        .num("ID", r.id, false)
        .num("TTL", r.ttl, false)
        .string("Error", &r.error, false)
        .done()
}

pub fn keep_alive(r: &LeaseKeepAliveResponse) -> String {
    Obj::new().header_fields(&r.header).num("ID", r.id, false).num("TTL", r.ttl, false).done()
}

pub fn time_to_live(r: &LeaseTimeToLiveResponse) -> String {
    let keys =
        if r.keys.is_empty() { "null".to_string() } else { array(r.keys.iter().map(|k| json_string(&base64(k)))) };
    Obj::new()
        .header_fields(&r.header)
        .num("id", r.id, false)
        .num("ttl", r.ttl, false)
        .num("granted-ttl", r.granted_ttl, false)
        .raw("keys", &keys)
        .done()
}

pub fn leases(r: &LeaseLeasesResponse) -> String {
    let items = if r.leases.is_empty() {
        "null".to_string()
    } else {
        array(r.leases.iter().map(|l| Obj::new().num("id", l.id, false).done()))
    };
    Obj::new().header_fields(&r.header).raw("leases", &items).done()
}

pub fn member(m: &Member) -> String {
    let mut o = Obj::new();
    o.num("ID", m.id, true).string("name", &m.name, true);
    list(&mut o, "peerURLs", m.peer_ur_ls.iter().map(|u| json_string(u)).collect());
    list(&mut o, "clientURLs", m.client_ur_ls.iter().map(|u| json_string(u)).collect());
    o.boolean("isLearner", m.is_learner, true).done()
}

/// Any response that is a header plus an optional member and members.
pub fn members(header: &Option<ResponseHeader>, one: Option<&Member>, all: &[Member]) -> String {
    let mut o = Obj::new();
    o.header(header);
    if let Some(m) = one {
        o.raw("member", &member(m));
    }
    list(&mut o, "members", all.iter().map(member).collect());
    o.done()
}

/// A response that is only a header.
pub fn header_only(header: &Option<ResponseHeader>) -> String {
    Obj::new().header(header).done()
}

pub fn status(r: &StatusResponse) -> String {
    let mut o = Obj::new();
    o.header(&r.header)
        .string("version", &r.version, true)
        .num("dbSize", r.db_size, true)
        .num("leader", r.leader, true)
        .num("raftIndex", r.raft_index, true)
        .num("raftTerm", r.raft_term, true)
        .num("raftAppliedIndex", r.raft_applied_index, true);
    list(&mut o, "errors", r.errors.iter().map(|e| json_string(e)).collect());
    o.num("dbSizeInUse", r.db_size_in_use, true).boolean("isLearner", r.is_learner, true).done()
}

pub fn hash_kv(r: &HashKvResponse) -> String {
    Obj::new().header(&r.header).num("hash", r.hash, true).num("compact_revision", r.compact_revision, true).done()
}

pub fn alarm(r: &AlarmResponse) -> String {
    let mut o = Obj::new();
    o.header(&r.header);
    let items = r
        .alarms
        .iter()
        .map(|a| Obj::new().num("memberID", a.member_id, true).num("alarm", a.alarm, true).done())
        .collect();
    list(&mut o, "alarms", items);
    o.done()
}

/// A header plus a list of strings (user and role lists).
pub fn names(header: &Option<ResponseHeader>, key: &str, names: &[String]) -> String {
    let mut o = Obj::new();
    o.header(header);
    list(&mut o, key, names.iter().map(|n| json_string(n)).collect());
    o.done()
}
