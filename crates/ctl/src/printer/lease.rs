//! How the lease responses print: `lease grant`, `keep-alive`,
//! `timetolive` and `list` (`revoke` is a [`super::HeaderOnly`]).

use retcd_client::etcdserverpb::{
    LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseTimeToLiveResponse,
};

use super::gofmt::quote;
use super::{fields, json, Printable, Printer};

impl Printable for LeaseGrantResponse {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        Some(format!("lease {:016x} granted with TTL({}s)\n", self.id, self.ttl).into_bytes())
    }
    fn json(&self) -> Option<String> {
        Some(json::grant(self))
    }
    fn fields(&self) -> Option<String> {
        let mut s = fields::header_only(&self.header);
        s.push_str(&format!("\"ID\" : {}\n\"TTL\" : {}\n", self.id, self.ttl));
        Some(s)
    }
}

impl Printable for LeaseKeepAliveResponse {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        Some(format!("lease {:016x} keepalived with TTL({})\n", self.id, self.ttl).into_bytes())
    }
    fn json(&self) -> Option<String> {
        Some(json::keep_alive(self))
    }
    fn fields(&self) -> Option<String> {
        let mut s = fields::header_only(&self.header);
        s.push_str(&format!("\"ID\" : {}\n\"TTL\" : {}\n", self.id, self.ttl));
        Some(s)
    }
}

/// `lease timetolive`; `keys` is `--keys` (only `simple` depends on it).
pub struct TimeToLive<'a> {
    pub resp: &'a LeaseTimeToLiveResponse,
    pub keys: bool,
}

impl Printable for TimeToLive<'_> {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        let r = self.resp;
        if r.granted_ttl == 0 && r.ttl == -1 {
            return Some(format!("lease {:016x} already expired\n", r.id).into_bytes());
        }
        let mut s = format!("lease {:016x} granted with TTL({}s), remaining({}s)", r.id, r.granted_ttl, r.ttl);
        if self.keys {
            let ks: Vec<String> = r.keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
            s.push_str(&format!(", attached keys([{}])", ks.join(" ")));
        }
        s.push('\n');
        Some(s.into_bytes())
    }
    fn json(&self) -> Option<String> {
        Some(json::time_to_live(self.resp))
    }
    fn fields(&self) -> Option<String> {
        let r = self.resp;
        let mut s = fields::header_only(&r.header);
        s.push_str(&format!("\"ID\" : {}\n\"TTL\" : {}\n\"GrantedTTL\" : {}\n", r.id, r.ttl, r.granted_ttl));
        for k in &r.keys {
            s.push_str(&format!("\"Key\" : {}\n", quote(k)));
        }
        Some(s)
    }
}

impl Printable for LeaseLeasesResponse {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        let mut s = format!("found {} leases\n", self.leases.len());
        for l in &self.leases {
            s.push_str(&format!("{:016x}\n", l.id));
        }
        Some(s.into_bytes())
    }
    fn json(&self) -> Option<String> {
        Some(json::leases(self))
    }
    fn fields(&self) -> Option<String> {
        let mut s = fields::header_only(&self.header);
        for l in &self.leases {
            s.push_str(&format!("\"ID\" : {}\n", l.id));
        }
        Some(s)
    }
}
