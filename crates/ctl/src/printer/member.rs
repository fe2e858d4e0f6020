//! How the `member` responses print: the list (in every format but
//! protobuf) and the one-line reports of add, remove, update and promote.

use retcd_client::etcdserverpb::{Member, MemberListResponse, ResponseHeader};

use super::gofmt::quote;
use super::{fields, json, table, Printable, Printer};

/// One row per member, shared by `simple` (comma-joined) and `table`.
fn rows(r: &MemberListResponse) -> Vec<Vec<String>> {
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

impl Printable for MemberListResponse {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        Some(rows(self).iter().map(|row| row.join(", ") + "\n").collect::<String>().into_bytes())
    }
    fn json(&self) -> Option<String> {
        Some(json::members(&self.header, None, &self.members))
    }
    fn fields(&self) -> Option<String> {
        let mut s = fields::header_only(&self.header);
        for m in &self.members {
            s.push_str(&format!("\"ID\" : {}\n\"Name\" : {}\n", m.id, quote(m.name.as_bytes())));
            for u in &m.peer_ur_ls {
                s.push_str(&format!("\"PeerURL\" : {}\n", quote(u.as_bytes())));
            }
            for u in &m.client_ur_ls {
                s.push_str(&format!("\"ClientURL\" : {}\n", quote(u.as_bytes())));
            }
            s.push_str(&format!("\"IsLearner\" : {}\n\n", m.is_learner));
        }
        Some(s)
    }
    fn table(&self) -> Option<String> {
        Some(table::render(&["ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"], &rows(self)))
    }
}

/// MemberAdd/Remove/Update/Promote: `verb` is "added to", "removed from",
/// "updated in" or "promoted in"; `member` is the added one (add only).
pub struct MemberChanged<'a> {
    pub id: u64,
    pub verb: &'a str,
    pub header: &'a Option<ResponseHeader>,
    pub member: Option<&'a Member>,
    pub members: &'a [Member],
}

impl Printable for MemberChanged<'_> {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        let cid = self.header.map(|h| h.cluster_id).unwrap_or(0);
        Some(format!("Member {:16x} {} cluster {cid:16x}\n", self.id, self.verb).into_bytes())
    }
    fn json(&self) -> Option<String> {
        Some(json::members(self.header, self.member, self.members))
    }
}
