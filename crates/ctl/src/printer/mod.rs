//! Output formats: `simple`, `json`, `fields`, `table` (and the error for
//! a format a command does not support), matching etcdctl 3.4 byte for byte.
//!
//! Every function returns the text for stdout; nothing here writes or
//! exits, so the printers can be tested alone.

pub mod gofmt;
pub mod json;
pub mod table;

use prost::Message;
use retcd_client::etcdserverpb::{
    response_op, AlarmResponse, DeleteRangeResponse, HashKvResponse, LeaseGrantResponse, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseTimeToLiveResponse, MemberListResponse, PutResponse, RangeResponse, ResponseHeader,
    StatusResponse, TxnResponse, WatchResponse,
};
use retcd_client::mvccpb::KeyValue;

use crate::exit::{CtlError, EXIT_BAD_FEATURE};
use gofmt::{duration, human_bytes, quote};

/// Output format chosen with `-w/--write-out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Table,
    Protobuf,
}

impl Format {
    /// etcdctl's names; anything else is refused as it refuses it.
    pub fn parse(s: &str) -> Result<Format, CtlError> {
        match s {
            "simple" => Ok(Format::Simple),
            "json" => Ok(Format::Json),
            "fields" => Ok(Format::Fields),
            "table" => Ok(Format::Table),
            "protobuf" => Ok(Format::Protobuf),
            _ => Err(CtlError::new(EXIT_BAD_FEATURE, "unsupported output format")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Table => "table",
            Format::Protobuf => "protobuf",
        }
    }
}

/// Result of a printer: stdout text, or etcdctl's unsupported-format error.
pub type Out = Result<String, CtlError>;

/// One endpoint's health as `endpoint health` reports it.
#[derive(Debug, Clone)]
pub struct EpHealth {
    pub ep: String,
    pub health: bool,
    pub took: std::time::Duration,
    pub error: String,
}

/// How to print, from the global flags.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: Format,
    pub hex: bool,
    pub value_only: bool,
}

fn unsupported(f: Format) -> CtlError {
    CtlError::new(EXIT_BAD_FEATURE, format!("{} not supported as output format", f.name()))
}

/// etcd's `Event_EventType` names.
pub fn event_type(t: i32) -> &'static str {
    if t == 1 {
        "DELETE"
    } else {
        "PUT"
    }
}

/// etcd's `AlarmType` names.
pub fn alarm_type(t: i32) -> String {
    match t {
        0 => "NONE".into(),
        1 => "NOSPACE".into(),
        2 => "CORRUPT".into(),
        n => n.to_string(),
    }
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("\\x{x:02x}")).collect()
}

impl Printer {
    fn kv_simple(&self, out: &mut Vec<u8>, kv: &KeyValue) {
        let (k, v) = if self.hex {
            (hex_bytes(&kv.key).into_bytes(), hex_bytes(&kv.value).into_bytes())
        } else {
            (kv.key.clone(), kv.value.clone())
        };
        if !self.value_only {
            out.extend_from_slice(&k);
            out.push(b'\n');
        }
        out.extend_from_slice(&v);
        out.push(b'\n');
    }

    fn kv_fields(out: &mut String, pfx: &str, kv: &KeyValue) {
        out.push_str(&format!("\"{pfx}Key\" : {}\n", quote(&kv.key)));
        out.push_str(&format!("\"{pfx}CreateRevision\" : {}\n", kv.create_revision));
        out.push_str(&format!("\"{pfx}ModRevision\" : {}\n", kv.mod_revision));
        out.push_str(&format!("\"{pfx}Version\" : {}\n", kv.version));
        out.push_str(&format!("\"{pfx}Value\" : {}\n", quote(&kv.value)));
        out.push_str(&format!("\"{pfx}Lease\" : {}\n", kv.lease));
    }

    fn hdr_fields(out: &mut String, h: &Option<ResponseHeader>) {
        let h = h.unwrap_or_default();
        out.push_str(&format!(
            "\"ClusterID\" : {}\n\"MemberID\" : {}\n\"Revision\" : {}\n\"RaftTerm\" : {}\n",
            h.cluster_id, h.member_id, h.revision, h.raft_term
        ));
    }

    /// Bytes for stdout (simple output may carry raw, non-UTF-8 values).
    pub fn get(&self, r: &RangeResponse) -> Result<Vec<u8>, CtlError> {
        match self.format {
            Format::Simple => {
                let mut out = Vec::new();
                self.get_simple(&mut out, r);
                Ok(out)
            }
            Format::Json => Ok(line(json::range(r))),
            Format::Protobuf => Ok(r.encode_to_vec()),
            Format::Fields => {
                let mut s = String::new();
                Self::get_fields(&mut s, r);
                Ok(s.into_bytes())
            }
            f => Err(unsupported(f)),
        }
    }

    fn get_simple(&self, out: &mut Vec<u8>, r: &RangeResponse) {
        for kv in &r.kvs {
            self.kv_simple(out, kv);
        }
    }

    fn get_fields(s: &mut String, r: &RangeResponse) {
        Self::hdr_fields(s, &r.header);
        for kv in &r.kvs {
            Self::kv_fields(s, "", kv);
        }
        s.push_str(&format!("\"More\" : {}\n\"Count\" : {}\n", r.more, r.count));
    }

    pub fn put(&self, r: &PutResponse) -> Result<Vec<u8>, CtlError> {
        match self.format {
            Format::Simple => {
                let mut out = Vec::new();
                self.put_simple(&mut out, r);
                Ok(out)
            }
            Format::Json => Ok(line(json::put(r))),
            Format::Protobuf => Ok(r.encode_to_vec()),
            Format::Fields => {
                let mut s = String::new();
                Self::put_fields(&mut s, r);
                Ok(s.into_bytes())
            }
            f => Err(unsupported(f)),
        }
    }

    fn put_simple(&self, out: &mut Vec<u8>, r: &PutResponse) {
        out.extend_from_slice(b"OK\n");
        if let Some(p) = &r.prev_kv {
            self.kv_simple(out, p);
        }
    }

    fn put_fields(s: &mut String, r: &PutResponse) {
        Self::hdr_fields(s, &r.header);
        if let Some(p) = &r.prev_kv {
            Self::kv_fields(s, "Prev", p);
        }
    }

    pub fn del(&self, r: &DeleteRangeResponse) -> Result<Vec<u8>, CtlError> {
        match self.format {
            Format::Simple => {
                let mut out = Vec::new();
                self.del_simple(&mut out, r);
                Ok(out)
            }
            Format::Json => Ok(line(json::delete(r))),
            Format::Protobuf => Ok(r.encode_to_vec()),
            Format::Fields => {
                let mut s = String::new();
                Self::del_fields(&mut s, r);
                Ok(s.into_bytes())
            }
            f => Err(unsupported(f)),
        }
    }

    fn del_simple(&self, out: &mut Vec<u8>, r: &DeleteRangeResponse) {
        out.extend_from_slice(format!("{}\n", r.deleted).as_bytes());
        for kv in &r.prev_kvs {
            self.kv_simple(out, kv);
        }
    }

    fn del_fields(s: &mut String, r: &DeleteRangeResponse) {
        Self::hdr_fields(s, &r.header);
        s.push_str(&format!("\"Deleted\" : {}\n", r.deleted));
        for kv in &r.prev_kvs {
            Self::kv_fields(s, "Prev", kv);
        }
    }

    pub fn txn(&self, r: &TxnResponse) -> Result<Vec<u8>, CtlError> {
        match self.format {
            Format::Simple => {
                let mut out = Vec::new();
                out.extend_from_slice(if r.succeeded { b"SUCCESS\n" } else { b"FAILURE\n" });
                for op in &r.responses {
                    out.push(b'\n');
                    match &op.response {
                        Some(response_op::Response::ResponseDeleteRange(d)) => self.del_simple(&mut out, d),
                        Some(response_op::Response::ResponsePut(p)) => self.put_simple(&mut out, p),
                        Some(response_op::Response::ResponseRange(g)) => self.get_simple(&mut out, g),
                        _ => out.extend_from_slice(b"unexpected response\n"),
                    }
                }
                Ok(out)
            }
            Format::Json => Ok(line(json::txn(r))),
            Format::Protobuf => Ok(r.encode_to_vec()),
            Format::Fields => {
                let mut s = String::new();
                Self::hdr_fields(&mut s, &r.header);
                s.push_str(&format!("\"Succeeded\" : {}\n", r.succeeded));
                for op in &r.responses {
                    match &op.response {
                        Some(response_op::Response::ResponseDeleteRange(d)) => Self::del_fields(&mut s, d),
                        Some(response_op::Response::ResponsePut(p)) => Self::put_fields(&mut s, p),
                        Some(response_op::Response::ResponseRange(g)) => Self::get_fields(&mut s, g),
                        _ => s.push_str("\"Unknown\" : \"\"\n"),
                    }
                }
                Ok(s.into_bytes())
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn watch(&self, r: &WatchResponse) -> Result<Vec<u8>, CtlError> {
        match self.format {
            Format::Simple => {
                let mut out = Vec::new();
                for e in &r.events {
                    out.extend_from_slice(event_type(e.r#type).as_bytes());
                    out.push(b'\n');
                    if let Some(p) = &e.prev_kv {
                        self.kv_simple(&mut out, p);
                    }
                    self.kv_simple(&mut out, &e.kv.clone().unwrap_or_default());
                }
                Ok(out)
            }
            Format::Json => Ok(line(json::watch(r))),
            Format::Protobuf => {
                // etcdctl rebuilds the message from clientv3's fields only.
                let msg = WatchResponse {
                    header: Some(r.header.unwrap_or_default()),
                    events: r.events.clone(),
                    compact_revision: r.compact_revision,
                    canceled: r.canceled,
                    created: r.created,
                    ..Default::default()
                };
                Ok(msg.encode_to_vec())
            }
            Format::Fields => {
                let mut s = String::new();
                Self::hdr_fields(&mut s, &r.header);
                for e in &r.events {
                    s.push_str(&format!("\"Type\" : {}\n", event_type(e.r#type)));
                    if let Some(p) = &e.prev_kv {
                        Self::kv_fields(&mut s, "Prev", p);
                    }
                    Self::kv_fields(&mut s, "", &e.kv.clone().unwrap_or_default());
                }
                Ok(s.into_bytes())
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn grant(&self, r: &LeaseGrantResponse) -> Out {
        match self.format {
            Format::Simple => Ok(format!("lease {:016x} granted with TTL({}s)\n", r.id, r.ttl)),
            Format::Json => Ok(json::grant(r) + "\n"),
            Format::Fields => {
                let mut s = String::new();
                Self::hdr_fields(&mut s, &r.header);
                s.push_str(&format!("\"ID\" : {}\n\"TTL\" : {}\n", r.id, r.ttl));
                Ok(s)
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn revoke(&self, id: i64, header: &Option<ResponseHeader>) -> Out {
        match self.format {
            Format::Simple => Ok(format!("lease {id:016x} revoked\n")),
            Format::Json => Ok(json::header_only(header) + "\n"),
            Format::Fields => {
                let mut s = String::new();
                Self::hdr_fields(&mut s, header);
                Ok(s)
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn keep_alive(&self, r: &LeaseKeepAliveResponse) -> Out {
        match self.format {
            Format::Simple => Ok(format!("lease {:016x} keepalived with TTL({})\n", r.id, r.ttl)),
            Format::Json => Ok(json::keep_alive(r) + "\n"),
            Format::Fields => {
                let mut s = String::new();
                Self::hdr_fields(&mut s, &r.header);
                s.push_str(&format!("\"ID\" : {}\n\"TTL\" : {}\n", r.id, r.ttl));
                Ok(s)
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn time_to_live(&self, r: &LeaseTimeToLiveResponse, keys: bool) -> Out {
        match self.format {
            Format::Simple => {
                if r.granted_ttl == 0 && r.ttl == -1 {
                    return Ok(format!("lease {:016x} already expired\n", r.id));
                }
                let mut s = format!("lease {:016x} granted with TTL({}s), remaining({}s)", r.id, r.granted_ttl, r.ttl);
                if keys {
                    let ks: Vec<String> = r.keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
                    s.push_str(&format!(", attached keys([{}])", ks.join(" ")));
                }
                s.push('\n');
                Ok(s)
            }
            Format::Json => Ok(json::time_to_live(r) + "\n"),
            Format::Fields => {
                let mut s = String::new();
                Self::hdr_fields(&mut s, &r.header);
                s.push_str(&format!("\"ID\" : {}\n\"TTL\" : {}\n\"GrantedTTL\" : {}\n", r.id, r.ttl, r.granted_ttl));
                for k in &r.keys {
                    s.push_str(&format!("\"Key\" : {}\n", quote(k)));
                }
                Ok(s)
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn leases(&self, r: &LeaseLeasesResponse) -> Out {
        match self.format {
            Format::Simple => {
                let mut s = format!("found {} leases\n", r.leases.len());
                for l in &r.leases {
                    s.push_str(&format!("{:016x}\n", l.id));
                }
                Ok(s)
            }
            Format::Json => Ok(json::leases(r) + "\n"),
            Format::Fields => {
                let mut s = String::new();
                Self::hdr_fields(&mut s, &r.header);
                for l in &r.leases {
                    s.push_str(&format!("\"ID\" : {}\n", l.id));
                }
                Ok(s)
            }
            f => Err(unsupported(f)),
        }
    }

    fn member_rows(r: &MemberListResponse) -> Vec<Vec<String>> {
        r.members
            .iter()
            .map(|m| {
                vec![
                    format!("{:x}", m.id),
                    if m.name.is_empty() { "unstarted" } else { "started" }.to_string(),
                    m.name.clone(),
                    m.peer_ur_ls.join(","),
                    m.client_ur_ls.join(","),
                    m.is_learner.to_string(),
                ]
            })
            .collect()
    }

    pub fn member_list(&self, r: &MemberListResponse) -> Out {
        match self.format {
            Format::Simple => Ok(Self::member_rows(r).iter().map(|row| row.join(", ") + "\n").collect()),
            Format::Json => Ok(json::members(&r.header, None, &r.members) + "\n"),
            Format::Fields => {
                let mut s = String::new();
                Self::hdr_fields(&mut s, &r.header);
                for m in &r.members {
                    s.push_str(&format!("\"ID\" : {}\n\"Name\" : {}\n", m.id, quote(m.name.as_bytes())));
                    for u in &m.peer_ur_ls {
                        s.push_str(&format!("\"PeerURL\" : {}\n", quote(u.as_bytes())));
                    }
                    for u in &m.client_ur_ls {
                        s.push_str(&format!("\"ClientURL\" : {}\n", quote(u.as_bytes())));
                    }
                    s.push_str(&format!("\"IsLearner\" : {}\n\n", m.is_learner));
                }
                Ok(s)
            }
            Format::Table => Ok(table::render(
                &["ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"],
                &Self::member_rows(r),
            )),
            f => Err(unsupported(f)),
        }
    }

    /// MemberAdd/Remove/Update/Promote: `verb` is "added to",
    /// "removed from", "updated in" or "promoted in".
    pub fn member_change(&self, id: u64, verb: &str, header: &Option<ResponseHeader>, json: String) -> Out {
        match self.format {
            Format::Simple => {
                let cid = header.map(|h| h.cluster_id).unwrap_or(0);
                Ok(format!("Member {id:16x} {verb} cluster {cid:16x}\n"))
            }
            Format::Json => Ok(json + "\n"),
            f => Err(unsupported(f)),
        }
    }

    /// `endpoint health`: (stdout, stderr); the simple format reports on stderr.
    pub fn endpoint_health(&self, hs: &[EpHealth]) -> Result<(String, String), CtlError> {
        match self.format {
            Format::Simple => {
                let mut err = String::new();
                for h in hs {
                    if h.error.is_empty() {
                        err.push_str(&format!(
                            "{} is healthy: successfully committed proposal: took = {}\n",
                            h.ep,
                            duration(h.took)
                        ));
                    } else {
                        err.push_str(&format!("{} is unhealthy: failed to commit proposal: {}\n", h.ep, h.error));
                    }
                }
                Ok((String::new(), err))
            }
            Format::Json => {
                let items = hs.iter().map(|h| {
                    json::Obj::new()
                        .string("endpoint", &h.ep, false)
                        .boolean("health", h.health, false)
                        .string("took", &duration(h.took), false)
                        .string("error", &h.error, true)
                        .done()
                });
                Ok((json::array(items) + "\n", String::new()))
            }
            Format::Fields => {
                let mut s = String::new();
                for h in hs {
                    s.push_str(&format!(
                        "\"Endpoint\" : {}\n\"Health\" : {}\n\"Took\" : {}\n\"Error\" : {}\n\n",
                        quote(h.ep.as_bytes()),
                        h.health,
                        duration(h.took),
                        h.error
                    ));
                }
                Ok((s, String::new()))
            }
            Format::Table => {
                let rows: Vec<Vec<String>> = hs
                    .iter()
                    .map(|h| vec![h.ep.clone(), h.health.to_string(), duration(h.took), h.error.clone()])
                    .collect();
                Ok((table::render(&["endpoint", "health", "took", "error"], &rows), String::new()))
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn endpoint_status(&self, list: &[(String, StatusResponse)]) -> Out {
        let rows = || -> Vec<Vec<String>> {
            list.iter()
                .map(|(ep, r)| {
                    let member = r.header.map(|h| h.member_id).unwrap_or(0);
                    vec![
                        ep.clone(),
                        format!("{member:x}"),
                        r.version.clone(),
                        human_bytes(r.db_size.max(0) as u64),
                        (r.leader == member).to_string(),
                        r.is_learner.to_string(),
                        r.raft_term.to_string(),
                        r.raft_index.to_string(),
                        r.raft_applied_index.to_string(),
                        r.errors.join(", "),
                    ]
                })
                .collect()
        };
        match self.format {
            Format::Simple => Ok(rows().iter().map(|r| r.join(", ") + "\n").collect()),
            Format::Json => {
                let items = list.iter().map(|(ep, r)| {
                    json::Obj::new().string("Endpoint", ep, false).raw("Status", &json::status(r)).done()
                });
                Ok(json::array(items) + "\n")
            }
            Format::Fields => {
                let mut s = String::new();
                for (ep, r) in list {
                    Self::hdr_fields(&mut s, &r.header);
                    s.push_str(&format!("\"Version\" : {}\n", quote(r.version.as_bytes())));
                    s.push_str(&format!("\"DBSize\" : {}\n\"Leader\" : {}\n", r.db_size, r.leader));
                    s.push_str(&format!("\"IsLearner\" : {}\n\"RaftIndex\" : {}\n", r.is_learner, r.raft_index));
                    s.push_str(&format!(
                        "\"RaftTerm\" : {}\n\"RaftAppliedIndex\" : {}\n",
                        r.raft_term, r.raft_applied_index
                    ));
                    s.push_str(&format!("\"Errors\" : [{}]\n", r.errors.join(" ")));
                    s.push_str(&format!("\"Endpoint\" : {}\n\n", quote(ep.as_bytes())));
                }
                Ok(s)
            }
            Format::Table => Ok(table::render(
                &[
                    "endpoint",
                    "ID",
                    "version",
                    "db size",
                    "is leader",
                    "is learner",
                    "raft term",
                    "raft index",
                    "raft applied index",
                    "errors",
                ],
                &rows(),
            )),
            f => Err(unsupported(f)),
        }
    }

    pub fn endpoint_hashkv(&self, list: &[(String, HashKvResponse)]) -> Out {
        let rows = || -> Vec<Vec<String>> { list.iter().map(|(ep, r)| vec![ep.clone(), r.hash.to_string()]).collect() };
        match self.format {
            Format::Simple => Ok(rows().iter().map(|r| r.join(", ") + "\n").collect()),
            Format::Json => {
                let items = list.iter().map(|(ep, r)| {
                    json::Obj::new().string("Endpoint", ep, false).raw("HashKV", &json::hash_kv(r)).done()
                });
                Ok(json::array(items) + "\n")
            }
            Format::Fields => {
                let mut s = String::new();
                for (ep, r) in list {
                    Self::hdr_fields(&mut s, &r.header);
                    s.push_str(&format!("\"Endpoint\" : {}\n\"Hash\" : {}\n\n", quote(ep.as_bytes()), r.hash));
                }
                Ok(s)
            }
            Format::Table => Ok(table::render(&["endpoint", "hash"], &rows())),
            f => Err(unsupported(f)),
        }
    }

    pub fn alarm(&self, r: &AlarmResponse) -> Out {
        match self.format {
            Format::Simple => {
                let mut s = String::new();
                for a in &r.alarms {
                    let mut fields = String::new();
                    if a.member_id != 0 {
                        fields.push_str(&format!("memberID:{} ", a.member_id));
                    }
                    if a.alarm != 0 {
                        fields.push_str(&format!("alarm:{} ", alarm_type(a.alarm)));
                    }
                    s.push_str(&fields);
                    s.push('\n');
                }
                Ok(s)
            }
            Format::Json => Ok(json::alarm(r) + "\n"),
            Format::Fields => {
                let mut s = String::new();
                Self::hdr_fields(&mut s, &r.header);
                for a in &r.alarms {
                    s.push_str(&format!("\"MemberID\" : {}\n\"AlarmType\" : {}\n\n", a.member_id, alarm_type(a.alarm)));
                }
                Ok(s)
            }
            f => Err(unsupported(f)),
        }
    }

    pub fn move_leader(&self, leader: u64, target: u64, header: &Option<ResponseHeader>) -> Out {
        match self.format {
            Format::Simple => Ok(format!("Leadership transferred from {leader:x} to {target:x}\n")),
            Format::Json => Ok(json::header_only(header) + "\n"),
            f => Err(unsupported(f)),
        }
    }

    /// `snapshot status`.
    pub fn db_status(&self, st: &retcd_storage::backup::Status) -> Out {
        let row = || {
            vec![
                format!("{:x}", st.hash),
                st.revision.to_string(),
                st.total_key.to_string(),
                human_bytes(st.total_size),
            ]
        };
        match self.format {
            Format::Simple => Ok(row().join(", ") + "\n"),
            Format::Json => Ok(json::Obj::new()
                .num("hash", st.hash, false)
                .num("revision", st.revision, false)
                .num("totalKey", st.total_key, false)
                .num("totalSize", st.total_size, false)
                .done()
                + "\n"),
            Format::Fields => Ok(format!(
                "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n",
                st.hash, st.revision, st.total_key, st.total_size
            )),
            Format::Table => Ok(table::render(&["hash", "revision", "total keys", "total size"], &[row()])),
            f => Err(unsupported(f)),
        }
    }

    /// Responses that are only a header (auth changes, defragment):
    /// `simple` prints `text`.
    pub fn header_only(&self, header: &Option<ResponseHeader>, text: String) -> Out {
        match self.format {
            Format::Simple => Ok(text),
            Format::Json => Ok(json::header_only(header) + "\n"),
            Format::Fields => {
                let mut s = String::new();
                Self::hdr_fields(&mut s, header);
                Ok(s)
            }
            f => Err(unsupported(f)),
        }
    }
}

fn line(s: String) -> Vec<u8> {
    let mut v = s.into_bytes();
    v.push(b'\n');
    v
}
