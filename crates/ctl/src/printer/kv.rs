//! How the key-value responses print: `get`, `put`, `del`, `txn` (which
//! nests the other three) and `watch` events. These are the only kinds
//! with `--hex`, `--print-value-only` and `-w protobuf`.

use prost::Message;
use retcd_client::etcdserverpb::{
    response_op, DeleteRangeResponse, PutResponse, RangeResponse, TxnResponse, WatchResponse,
};
use retcd_client::mvccpb::KeyValue;

use super::{fields, json, Printable, Printer};

/// etcd's `Event_EventType` names.
pub fn event_type(t: i32) -> &'static str {
    if t == 1 {
        "DELETE"
    } else {
        "PUT"
    }
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("\\x{x:02x}")).collect()
}

/// Key line (unless `--print-value-only`) and value line, raw or `--hex`.
fn kv_simple(p: &Printer, out: &mut Vec<u8>, kv: &KeyValue) {
    let (k, v) = if p.hex {
        (hex_bytes(&kv.key).into_bytes(), hex_bytes(&kv.value).into_bytes())
    } else {
        (kv.key.clone(), kv.value.clone())
    };
    if !p.value_only {
        out.extend_from_slice(&k);
        out.push(b'\n');
    }
    out.extend_from_slice(&v);
    out.push(b'\n');
}

// The `*_simple` and `*_fields` functions append, so `txn` can print its
// nested responses into the same buffer.

fn get_simple(p: &Printer, out: &mut Vec<u8>, r: &RangeResponse) {
    for kv in &r.kvs {
        kv_simple(p, out, kv);
    }
}

fn get_fields(s: &mut String, r: &RangeResponse) {
    fields::header(s, &r.header);
    for kv in &r.kvs {
        fields::kv(s, "", kv);
    }
    s.push_str(&format!("\"More\" : {}\n\"Count\" : {}\n", r.more, r.count));
}

fn put_simple(p: &Printer, out: &mut Vec<u8>, r: &PutResponse) {
    out.extend_from_slice(b"OK\n");
    if let Some(prev) = &r.prev_kv {
        kv_simple(p, out, prev);
    }
}

fn put_fields(s: &mut String, r: &PutResponse) {
    fields::header(s, &r.header);
    if let Some(prev) = &r.prev_kv {
        fields::kv(s, "Prev", prev);
    }
}

fn del_simple(p: &Printer, out: &mut Vec<u8>, r: &DeleteRangeResponse) {
    out.extend_from_slice(format!("{}\n", r.deleted).as_bytes());
    for kv in &r.prev_kvs {
        kv_simple(p, out, kv);
    }
}

fn del_fields(s: &mut String, r: &DeleteRangeResponse) {
    fields::header(s, &r.header);
    s.push_str(&format!("\"Deleted\" : {}\n", r.deleted));
    for kv in &r.prev_kvs {
        fields::kv(s, "Prev", kv);
    }
}

/// Runs `f` on an empty buffer and returns it.
fn filled<T: Default>(f: impl FnOnce(&mut T)) -> Option<T> {
    let mut out = T::default();
    f(&mut out);
    Some(out)
}

impl Printable for RangeResponse {
    fn simple(&self, p: &Printer) -> Option<Vec<u8>> {
        filled(|out| get_simple(p, out, self))
    }
    fn json(&self) -> Option<String> {
        Some(json::range(self))
    }
    fn fields(&self) -> Option<String> {
        filled(|s| get_fields(s, self))
    }
    fn protobuf(&self) -> Option<Vec<u8>> {
        Some(self.encode_to_vec())
    }
}

impl Printable for PutResponse {
    fn simple(&self, p: &Printer) -> Option<Vec<u8>> {
        filled(|out| put_simple(p, out, self))
    }
    fn json(&self) -> Option<String> {
        Some(json::put(self))
    }
    fn fields(&self) -> Option<String> {
        filled(|s| put_fields(s, self))
    }
    fn protobuf(&self) -> Option<Vec<u8>> {
        Some(self.encode_to_vec())
    }
}

impl Printable for DeleteRangeResponse {
    fn simple(&self, p: &Printer) -> Option<Vec<u8>> {
        filled(|out| del_simple(p, out, self))
    }
    fn json(&self) -> Option<String> {
        Some(json::delete(self))
    }
    fn fields(&self) -> Option<String> {
        filled(|s| del_fields(s, self))
    }
    fn protobuf(&self) -> Option<Vec<u8>> {
        Some(self.encode_to_vec())
    }
}

impl Printable for TxnResponse {
    fn simple(&self, p: &Printer) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        out.extend_from_slice(if self.succeeded { b"SUCCESS\n" } else { b"FAILURE\n" });
        for op in &self.responses {
            out.push(b'\n');
            match &op.response {
                Some(response_op::Response::ResponseDeleteRange(d)) => del_simple(p, &mut out, d),
                Some(response_op::Response::ResponsePut(r)) => put_simple(p, &mut out, r),
                Some(response_op::Response::ResponseRange(g)) => get_simple(p, &mut out, g),
                _ => out.extend_from_slice(b"unexpected response\n"),
            }
        }
        Some(out)
    }
    fn json(&self) -> Option<String> {
        Some(json::txn(self))
    }
    fn fields(&self) -> Option<String> {
        let mut s = String::new();
        fields::header(&mut s, &self.header);
        s.push_str(&format!("\"Succeeded\" : {}\n", self.succeeded));
        for op in &self.responses {
            match &op.response {
                Some(response_op::Response::ResponseDeleteRange(d)) => del_fields(&mut s, d),
                Some(response_op::Response::ResponsePut(r)) => put_fields(&mut s, r),
                Some(response_op::Response::ResponseRange(g)) => get_fields(&mut s, g),
                _ => s.push_str("\"Unknown\" : \"\"\n"),
            }
        }
        Some(s)
    }
    fn protobuf(&self) -> Option<Vec<u8>> {
        Some(self.encode_to_vec())
    }
}

impl Printable for WatchResponse {
    fn simple(&self, p: &Printer) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for e in &self.events {
            out.extend_from_slice(event_type(e.r#type).as_bytes());
            out.push(b'\n');
            if let Some(prev) = &e.prev_kv {
                kv_simple(p, &mut out, prev);
            }
            kv_simple(p, &mut out, &e.kv.clone().unwrap_or_default());
        }
        Some(out)
    }
    fn json(&self) -> Option<String> {
        Some(json::watch(self))
    }
    fn fields(&self) -> Option<String> {
        let mut s = String::new();
        fields::header(&mut s, &self.header);
        for e in &self.events {
            s.push_str(&format!("\"Type\" : {}\n", event_type(e.r#type)));
            if let Some(prev) = &e.prev_kv {
                fields::kv(&mut s, "Prev", prev);
            }
            fields::kv(&mut s, "", &e.kv.clone().unwrap_or_default());
        }
        Some(s)
    }
    fn protobuf(&self) -> Option<Vec<u8>> {
        // etcdctl rebuilds the message from clientv3's fields only.
        let msg = WatchResponse {
            header: Some(self.header.unwrap_or_default()),
            events: self.events.clone(),
            compact_revision: self.compact_revision,
            canceled: self.canceled,
            created: self.created,
            ..Default::default()
        };
        Some(msg.encode_to_vec())
    }
}
