//! Applies auth requests on the apply thread, with etcd's checks in etcd's
//! order and its errors. Each change is staged in the entry's backend batch
//! and then made visible in memory.

use prost::Message as _;
use retcd_api::authpb::{Permission, Role, User, UserAddOptions};
use retcd_api::errors::EtcdError;
use retcd_api::retcdpb::auth_request::Request;
use retcd_api::retcdpb::AuthRequest;
use retcd_storage::backend::{BatchTx, Table};

use super::{has_root_role, role_key, user_key, AuthInfo, AuthStore, State, ROOT_ROLE, ROOT_USER};
use super::{ENABLED_KEY, REVISION_KEY};

/// What an applied auth request answers (the RPC layer builds the response).
#[derive(Debug)]
pub enum AuthApplied {
    Done,
    Token(String),
    Names(Vec<String>),
    Perms(Vec<Permission>),
}

/// Whether only root may run the request (etcd's `needAdminPermission`).
fn needs_admin(r: &Request) -> bool {
    !matches!(r, Request::Authenticate(_) | Request::UserGet(_) | Request::RoleGet(_))
}

impl AuthStore {
    /// Applies one auth request proposed by `ai` at raft index `index`.
    pub fn apply(
        &self,
        btx: &mut BatchTx<'_>,
        ai: Option<&AuthInfo>,
        req: AuthRequest,
        index: u64,
    ) -> Result<AuthApplied, EtcdError> {
        let Some(r) = req.request else {
            return Err(EtcdError::NotCapable);
        };
        if needs_admin(&r) {
            self.check_admin(ai)?;
        }
        // Users may read themselves and roles they hold; root reads all.
        let name = ai.map(|a| a.username.as_str()).unwrap_or("");
        let own = match &r {
            Request::UserGet(g) => g.name == name,
            Request::RoleGet(g) => self.has_role(name, &g.role),
            _ => true,
        };
        if !own {
            self.check_admin(ai)?;
        }
        let mut st = self.state.write();
        apply_locked(&mut st, self, btx, r, index)
    }
}

fn put_user(btx: &mut BatchTx<'_>, st: &mut State, user: User) {
    let name = String::from_utf8_lossy(&user.name).into_owned();
    btx.put(Table::Auth, &user_key(&name), &user.encode_to_vec());
    st.users.insert(name, user);
}

fn put_role(btx: &mut BatchTx<'_>, st: &mut State, role: Role) {
    let name = String::from_utf8_lossy(&role.name).into_owned();
    btx.put(Table::Auth, &role_key(&name), &role.encode_to_vec());
    st.roles.insert(name, role);
}

fn bump_revision(btx: &mut BatchTx<'_>, st: &mut State) {
    st.revision += 1;
    btx.put(Table::Auth, REVISION_KEY, &st.revision.to_be_bytes());
}

fn apply_locked(
    st: &mut State,
    store: &AuthStore,
    btx: &mut BatchTx<'_>,
    r: Request,
    index: u64,
) -> Result<AuthApplied, EtcdError> {
    match r {
        Request::Enable(_) => {
            if st.enabled {
                return Ok(AuthApplied::Done);
            }
            let root = st.users.get(ROOT_USER).ok_or(EtcdError::RootUserNotExist)?;
            if !has_root_role(root) {
                return Err(EtcdError::RootRoleNotExist);
            }
            btx.put(Table::Auth, ENABLED_KEY, &[1]);
            if st.revision == 0 {
                bump_revision(btx, st);
            }
            st.enabled = true;
            store.tokens.clear();
        }
        Request::Disable(_) => {
            if !st.enabled {
                return Ok(AuthApplied::Done);
            }
            btx.put(Table::Auth, ENABLED_KEY, &[0]);
            bump_revision(btx, st);
            st.enabled = false;
            store.tokens.clear();
        }
        Request::Authenticate(a) => {
            if !st.enabled {
                return Err(EtcdError::AuthNotEnabled);
            }
            let user = st.users.get(&a.name).ok_or(EtcdError::AuthFailed)?;
            if user.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(EtcdError::AuthFailed);
            }
            return store.tokens.assign(&a.name, &a.simple_token, index, st.revision).map(AuthApplied::Token);
        }
        Request::UserAdd(u) => {
            if u.name.is_empty() {
                return Err(EtcdError::UserEmpty);
            }
            if st.users.contains_key(&u.name) {
                return Err(EtcdError::UserAlreadyExist);
            }
            let user = User {
                name: u.name.into_bytes(),
                password: u.hashed_password,
                roles: Vec::new(),
                options: Some(u.options.unwrap_or(UserAddOptions { no_password: false })),
            };
            put_user(btx, st, user);
            bump_revision(btx, st);
        }
        Request::UserDelete(d) => {
            if st.enabled && d.name == ROOT_USER {
                return Err(EtcdError::InvalidAuthMgmt);
            }
            if st.users.remove(&d.name).is_none() {
                return Err(EtcdError::UserNotFound);
            }
            btx.delete(Table::Auth, &user_key(&d.name));
            bump_revision(btx, st);
            store.tokens.invalidate_user(&d.name);
        }
        Request::UserChangePassword(c) => {
            let mut user = st.users.get(&c.name).cloned().ok_or(EtcdError::UserNotFound)?;
            user.password = c.hashed_password;
            put_user(btx, st, user);
            bump_revision(btx, st);
            store.tokens.invalidate_user(&c.name);
        }
        Request::UserGrantRole(g) => {
            let mut user = st.users.get(&g.user).cloned().ok_or(EtcdError::UserNotFound)?;
            if g.role != ROOT_ROLE && !st.roles.contains_key(&g.role) {
                return Err(EtcdError::RoleNotFound);
            }
            if let Err(at) = user.roles.binary_search(&g.role) {
                user.roles.insert(at, g.role);
                put_user(btx, st, user);
                bump_revision(btx, st);
            }
        }
        Request::UserRevokeRole(r) => {
            if st.enabled && r.name == ROOT_USER && r.role == ROOT_ROLE {
                return Err(EtcdError::InvalidAuthMgmt);
            }
            let mut user = st.users.get(&r.name).cloned().ok_or(EtcdError::UserNotFound)?;
            let before = user.roles.len();
            user.roles.retain(|x| *x != r.role);
            if user.roles.len() == before {
                return Err(EtcdError::RoleNotGranted);
            }
            put_user(btx, st, user);
            bump_revision(btx, st);
        }
        Request::UserGet(g) => {
            let user = st.users.get(&g.name).ok_or(EtcdError::UserNotFound)?;
            return Ok(AuthApplied::Names(user.roles.clone()));
        }
        Request::UserList(_) => return Ok(AuthApplied::Names(st.users.keys().cloned().collect())),
        Request::RoleAdd(a) => {
            if a.name.is_empty() {
                return Err(EtcdError::RoleEmpty);
            }
            if st.roles.contains_key(&a.name) {
                return Err(EtcdError::RoleAlreadyExist);
            }
            put_role(btx, st, Role { name: a.name.into_bytes(), key_permission: Vec::new() });
            bump_revision(btx, st);
        }
        Request::RoleDelete(d) => {
            if st.enabled && d.role == ROOT_ROLE {
                return Err(EtcdError::InvalidAuthMgmt);
            }
            if st.roles.remove(&d.role).is_none() {
                return Err(EtcdError::RoleNotFound);
            }
            btx.delete(Table::Auth, &role_key(&d.role));
            let holders: Vec<User> = st.users.values().filter(|u| u.roles.contains(&d.role)).cloned().collect();
            for mut u in holders {
                u.roles.retain(|x| *x != d.role);
                put_user(btx, st, u);
            }
            bump_revision(btx, st);
        }
        Request::RoleGet(g) => {
            let role = st.roles.get(&g.role).ok_or(EtcdError::RoleNotFound)?;
            return Ok(AuthApplied::Perms(role.key_permission.clone()));
        }
        Request::RoleList(_) => return Ok(AuthApplied::Names(st.roles.keys().cloned().collect())),
        Request::RoleGrantPermission(g) => {
            let mut role = st.roles.get(&g.name).cloned().ok_or(EtcdError::RoleNotFound)?;
            let perm = g.perm.unwrap_or_default();
            match role.key_permission.iter_mut().find(|p| p.key == perm.key && p.range_end == perm.range_end) {
                Some(p) => p.perm_type = perm.perm_type,
                None => {
                    role.key_permission.push(perm);
                    // Stable: equal keys keep their grant order, as etcd's
                    // insertion keeps them.
                    role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
                }
            }
            put_role(btx, st, role);
            bump_revision(btx, st);
        }
        Request::RoleRevokePermission(r) => {
            let mut role = st.roles.get(&r.role).cloned().ok_or(EtcdError::RoleNotFound)?;
            let before = role.key_permission.len();
            role.key_permission.retain(|p| p.key != r.key || p.range_end != r.range_end);
            if role.key_permission.len() == before {
                return Err(EtcdError::PermissionNotGranted);
            }
            put_role(btx, st, role);
            bump_revision(btx, st);
        }
    }
    Ok(AuthApplied::Done)
}
