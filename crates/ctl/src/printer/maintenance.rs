//! How `alarm list|disarm`, `move-leader` and `snapshot status` print.

use retcd_client::etcdserverpb::{AlarmResponse, ResponseHeader};
use retcd_storage::backup::Status;

use super::gofmt::human_bytes;
use super::{fields, json, table, Printable, Printer};

/// etcd's `AlarmType` names.
pub fn alarm_type(t: i32) -> String {
    match t {
        0 => "NONE".into(),
        1 => "NOSPACE".into(),
        2 => "CORRUPT".into(),
        n => n.to_string(),
    }
}

impl Printable for AlarmResponse {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        // The alarm's protobuf text form, as etcdctl's `%+v`: non-zero fields only.
        let mut s = String::new();
        for a in &self.alarms {
            if a.member_id != 0 {
                s.push_str(&format!("memberID:{} ", a.member_id));
            }
            if a.alarm != 0 {
                s.push_str(&format!("alarm:{} ", alarm_type(a.alarm)));
            }
            s.push('\n');
        }
        Some(s.into_bytes())
    }
    fn json(&self) -> Option<String> {
        Some(json::alarm(self))
    }
    fn fields(&self) -> Option<String> {
        let mut s = fields::header_only(&self.header);
        for a in &self.alarms {
            s.push_str(&format!("\"MemberID\" : {}\n\"AlarmType\" : {}\n\n", a.member_id, alarm_type(a.alarm)));
        }
        Some(s)
    }
}

/// `move-leader`: from `leader` to `target`.
pub struct MoveLeader<'a> {
    pub leader: u64,
    pub target: u64,
    pub header: &'a Option<ResponseHeader>,
}

impl Printable for MoveLeader<'_> {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        Some(format!("Leadership transferred from {:x} to {:x}\n", self.leader, self.target).into_bytes())
    }
    fn json(&self) -> Option<String> {
        Some(json::header_only(self.header))
    }
}

fn status_row(st: &Status) -> Vec<String> {
    vec![format!("{:x}", st.hash), st.revision.to_string(), st.total_key.to_string(), human_bytes(st.total_size)]
}

/// `snapshot status`.
impl Printable for Status {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        Some((status_row(self).join(", ") + "\n").into_bytes())
    }
    fn json(&self) -> Option<String> {
        Some(
            json::Obj::new()
                .num("hash", self.hash, false)
                .num("revision", self.revision, false)
                .num("totalKey", self.total_key, false)
                .num("totalSize", self.total_size, false)
                .done(),
        )
    }
    fn fields(&self) -> Option<String> {
        Some(format!(
            "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n",
            self.hash, self.revision, self.total_key, self.total_size
        ))
    }
    fn table(&self) -> Option<String> {
        Some(table::render(&["hash", "revision", "total keys", "total size"], &[status_row(self)]))
    }
}
