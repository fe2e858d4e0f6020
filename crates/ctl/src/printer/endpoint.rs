//! How `endpoint health`, `status` and `hashkv` print: one entry per
//! endpoint, in every format but protobuf.

use retcd_client::etcdserverpb::{HashKvResponse, StatusResponse};

use super::gofmt::{duration, human_bytes, quote};
use super::{fields, json, table, Printable, Printer};

/// One endpoint's health as `endpoint health` reports it.
#[derive(Debug, Clone)]
pub struct EpHealth {
    pub ep: String,
    pub health: bool,
    pub took: std::time::Duration,
    pub error: String,
}

/// `simple` is the text etcdctl writes to stderr, not stdout; the command
/// routes it.
impl Printable for [EpHealth] {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        let mut s = String::new();
        for h in self {
            if h.error.is_empty() {
                s.push_str(&format!(
                    "{} is healthy: successfully committed proposal: took = {}\n",
                    h.ep,
                    duration(h.took)
                ));
            } else {
                s.push_str(&format!("{} is unhealthy: failed to commit proposal: {}\n", h.ep, h.error));
            }
        }
        Some(s.into_bytes())
    }
    fn json(&self) -> Option<String> {
        let items = self.iter().map(|h| {
            json::Obj::new()
                .string("endpoint", &h.ep, false)
                .boolean("health", h.health, false)
                .string("took", &duration(h.took), false)
                .string("error", &h.error, true)
                .done()
        });
        Some(json::array(items))
    }
    fn fields(&self) -> Option<String> {
        let mut s = String::new();
        for h in self {
            s.push_str(&format!(
                "\"Endpoint\" : {}\n\"Health\" : {}\n\"Took\" : {}\n\"Error\" : {}\n\n",
                quote(h.ep.as_bytes()),
                h.health,
                duration(h.took),
                h.error
            ));
        }
        Some(s)
    }
    fn table(&self) -> Option<String> {
        let rows: Vec<Vec<String>> =
            self.iter().map(|h| vec![h.ep.clone(), h.health.to_string(), duration(h.took), h.error.clone()]).collect();
        Some(table::render(&["endpoint", "health", "took", "error"], &rows))
    }
}

/// Comma-joined rows: the `simple` form of the status and hash lists.
fn joined(rows: Vec<Vec<String>>) -> Option<Vec<u8>> {
    Some(rows.iter().map(|r| r.join(", ") + "\n").collect::<String>().into_bytes())
}

fn status_rows(list: &[(String, StatusResponse)]) -> Vec<Vec<String>> {
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
}

/// `endpoint status`: each endpoint with its answer.
impl Printable for [(String, StatusResponse)] {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        joined(status_rows(self))
    }
    fn json(&self) -> Option<String> {
        let items = self
            .iter()
            .map(|(ep, r)| json::Obj::new().string("Endpoint", ep, false).raw("Status", &json::status(r)).done());
        Some(json::array(items))
    }
    fn fields(&self) -> Option<String> {
        let mut s = String::new();
        for (ep, r) in self {
            fields::header(&mut s, &r.header);
            s.push_str(&format!("\"Version\" : {}\n", quote(r.version.as_bytes())));
            s.push_str(&format!("\"DBSize\" : {}\n\"Leader\" : {}\n", r.db_size, r.leader));
            s.push_str(&format!("\"IsLearner\" : {}\n\"RaftIndex\" : {}\n", r.is_learner, r.raft_index));
            s.push_str(&format!("\"RaftTerm\" : {}\n\"RaftAppliedIndex\" : {}\n", r.raft_term, r.raft_applied_index));
            s.push_str(&format!("\"Errors\" : [{}]\n", r.errors.join(" ")));
            s.push_str(&format!("\"Endpoint\" : {}\n\n", quote(ep.as_bytes())));
        }
        Some(s)
    }
    fn table(&self) -> Option<String> {
        let header = [
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
        ];
        Some(table::render(&header, &status_rows(self)))
    }
}

fn hash_rows(list: &[(String, HashKvResponse)]) -> Vec<Vec<String>> {
    list.iter().map(|(ep, r)| vec![ep.clone(), r.hash.to_string()]).collect()
}

/// `endpoint hashkv`: each endpoint with its answer.
impl Printable for [(String, HashKvResponse)] {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        joined(hash_rows(self))
    }
    fn json(&self) -> Option<String> {
        let items = self
            .iter()
            .map(|(ep, r)| json::Obj::new().string("Endpoint", ep, false).raw("HashKV", &json::hash_kv(r)).done());
        Some(json::array(items))
    }
    fn fields(&self) -> Option<String> {
        let mut s = String::new();
        for (ep, r) in self {
            fields::header(&mut s, &r.header);
            s.push_str(&format!("\"Endpoint\" : {}\n\"Hash\" : {}\n\n", quote(ep.as_bytes()), r.hash));
        }
        Some(s)
    }
    fn table(&self) -> Option<String> {
        Some(table::render(&["endpoint", "hash"], &hash_rows(self)))
    }
}
