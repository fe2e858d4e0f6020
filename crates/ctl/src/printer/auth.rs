//! How the `user` and `role` queries print (their changes are
//! [`super::HeaderOnly`]). etcdctl has no table or protobuf for these, and
//! no fields for the user queries.

use retcd_client::authpb::{permission, Permission};
use retcd_client::etcdserverpb::{
    AuthRoleGetResponse, AuthRoleListResponse, AuthUserGetResponse, AuthUserListResponse,
};
use retcd_client::prefix_end;

use super::gofmt::quote;
use super::{fields, json, Printable, Printer};

fn perm_type_name(t: i32) -> &'static str {
    match permission::Type::try_from(t) {
        Ok(permission::Type::Read) => "READ",
        Ok(permission::Type::Write) => "WRITE",
        Ok(permission::Type::Readwrite) => "READWRITE",
        Err(_) => "READ",
    }
}

/// A permission's key range as `role get` lists it.
fn perm_range(perm: &Permission) -> String {
    let key = String::from_utf8_lossy(&perm.key).into_owned();
    let end = String::from_utf8_lossy(&perm.range_end).into_owned();
    if perm.range_end.is_empty() {
        return format!("\t{key}\n");
    }
    let mut s = if perm.range_end != [0] { format!("\t[{key}, {end})") } else { format!("\t[{key}, <open ended>") };
    if prefix_end(&perm.key) == perm.range_end {
        s.push_str(&format!(" (prefix {key})"));
    }
    s.push('\n');
    s
}

/// `role get <role>` (and each role of `user get --detail`).
pub struct RoleGet<'a> {
    pub role: &'a str,
    pub resp: &'a AuthRoleGetResponse,
}

impl Printable for RoleGet<'_> {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        let grants = |t: permission::Type| {
            let perms = self.resp.perm.iter();
            perms
                .filter(|p| p.perm_type == t as i32 || p.perm_type == permission::Type::Readwrite as i32)
                .map(perm_range)
                .collect::<String>()
        };
        let s = format!(
            "Role {}\nKV Read:\n{}KV Write:\n{}",
            self.role,
            grants(permission::Type::Read),
            grants(permission::Type::Write)
        );
        Some(s.into_bytes())
    }
    fn json(&self) -> Option<String> {
        let mut o = json::Obj::new();
        o.header(&self.resp.header);
        if !self.resp.perm.is_empty() {
            let items = self.resp.perm.iter().map(|perm| {
                json::Obj::new()
                    .num("permType", perm.perm_type, true)
                    .bytes("key", &perm.key)
                    .bytes("range_end", &perm.range_end)
                    .done()
            });
            o.raw("perm", &json::array(items));
        }
        Some(o.done())
    }
    fn fields(&self) -> Option<String> {
        let mut s = fields::header_only(&self.resp.header);
        for perm in &self.resp.perm {
            s.push_str(&format!("\"PermType\" :  {}\n", perm_type_name(perm.perm_type)));
            s.push_str(&format!("\"Key\" : {}\n", quote(&perm.key)));
            s.push_str(&format!("\"RangeEnd\" : {}\n", quote(&perm.range_end)));
        }
        Some(s)
    }
}

/// `user get <name>` without `--detail`.
pub struct UserGet<'a> {
    pub name: &'a str,
    pub resp: &'a AuthUserGetResponse,
}

impl Printable for UserGet<'_> {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        let roles: String = self.resp.roles.iter().map(|x| format!(" {x}")).collect();
        Some(format!("User: {}\nRoles:{roles}\n", self.name).into_bytes())
    }
    fn json(&self) -> Option<String> {
        Some(json::names(&self.resp.header, "roles", &self.resp.roles))
    }
}

impl Printable for AuthUserListResponse {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        Some(self.users.iter().map(|u| format!("{u}\n")).collect::<String>().into_bytes())
    }
    fn json(&self) -> Option<String> {
        Some(json::names(&self.header, "users", &self.users))
    }
}

impl Printable for AuthRoleListResponse {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        Some(self.roles.iter().map(|x| format!("{x}\n")).collect::<String>().into_bytes())
    }
    fn json(&self) -> Option<String> {
        Some(json::names(&self.header, "roles", &self.roles))
    }
    fn fields(&self) -> Option<String> {
        let mut s = fields::header_only(&self.header);
        s.push_str("\"Roles\" :");
        for role in &self.roles {
            s.push_str(&format!(" {}", quote(role.as_bytes())));
        }
        s.push('\n');
        Some(s)
    }
}
