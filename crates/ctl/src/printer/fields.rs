//! `-w fields`: etcdctl's `"Name" : value` lines; here the header and
//! key-value lines that most response kinds share.

use retcd_client::etcdserverpb::ResponseHeader;
use retcd_client::mvccpb::KeyValue;

use super::gofmt::quote;

/// The header's four lines (zeros when absent, as Go's nil-safe getters).
pub fn header(out: &mut String, h: &Option<ResponseHeader>) {
    let h = h.unwrap_or_default();
    out.push_str(&format!(
        "\"ClusterID\" : {}\n\"MemberID\" : {}\n\"Revision\" : {}\n\"RaftTerm\" : {}\n",
        h.cluster_id, h.member_id, h.revision, h.raft_term
    ));
}

/// A key-value's six lines; `pfx` is "" or "Prev" (for previous values).
pub fn kv(out: &mut String, pfx: &str, kv: &KeyValue) {
    out.push_str(&format!("\"{pfx}Key\" : {}\n", quote(&kv.key)));
    out.push_str(&format!("\"{pfx}CreateRevision\" : {}\n", kv.create_revision));
    out.push_str(&format!("\"{pfx}ModRevision\" : {}\n", kv.mod_revision));
    out.push_str(&format!("\"{pfx}Version\" : {}\n", kv.version));
    out.push_str(&format!("\"{pfx}Value\" : {}\n", quote(&kv.value)));
    out.push_str(&format!("\"{pfx}Lease\" : {}\n", kv.lease));
}

/// Just the header: what a header-only response prints.
pub fn header_only(h: &Option<ResponseHeader>) -> String {
    let mut s = String::new();
    header(&mut s, h);
    s
}
