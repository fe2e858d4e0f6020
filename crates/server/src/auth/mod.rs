//! The auth store: users, roles, their key permissions, whether auth is
//! enabled, and the auth revision (bumped by every change that can take a
//! permission away, so requests checked against an older state fail).
//!
//! Its state changes only on the apply thread ([`apply`]), staged in the same
//! backend batch as the entry's consistent index (table `Auth`), so it is in
//! snapshots and survives restarts. Everything else reads the in-memory copy.
//! It never sees a plain password: hashing and checking happen before
//! proposing, and bcrypt runs off the async runtime.

pub mod apply;
pub mod checks;
pub mod credentials;
pub mod jwt;
pub mod password;
pub mod perms;
pub mod token;

use std::collections::BTreeMap;
use std::time::Duration;

use parking_lot::RwLock;
use prost::Message as _;
use retcd_api::authpb::{Role, User};
use retcd_api::errors::EtcdError;
use retcd_storage::backend::{Backend, BackendError, Table};

use jwt::JwtTokens;
use perms::Access;
use token::SimpleTokens;

pub const ROOT_USER: &str = "root";
pub const ROOT_ROLE: &str = "root";

/// bcrypt's default cost, etcd's `--bcrypt-cost` default.
pub const DEFAULT_BCRYPT_COST: u32 = 10;

const ENABLED_KEY: &[u8] = b"enabled";
const REVISION_KEY: &[u8] = b"revision";
const USER_PREFIX: &[u8] = b"user/";
const ROLE_PREFIX: &[u8] = b"role/";

/// How etcd's maintenance service reports a refused admin check: the auth
/// store's own error, untranslated (gRPC code Unknown, "auth: ..." text).
pub fn untranslated(e: EtcdError) -> tonic::Status {
    let text = match e {
        EtcdError::UserEmpty => "auth: user name is empty",
        EtcdError::UserNotFound => "auth: user not found",
        EtcdError::PermissionDenied => "auth: permission denied",
        EtcdError::InvalidAuthToken => "auth: invalid auth token",
        other => return other.into(),
    };
    tonic::Status::unknown(text)
}

/// Who sent a request and the auth revision their credentials were checked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub username: String,
    pub revision: u64,
}

#[derive(Default)]
struct State {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

/// How tokens are issued and checked (`--auth-token`).
pub enum Tokens {
    Simple(SimpleTokens),
    Jwt(JwtTokens),
}

impl Tokens {
    /// From `--auth-token` (`simple`, or `jwt,key=value,...`); `ttl` is
    /// `--auth-token-ttl`, the lifetime of simple tokens.
    pub fn from_flag(flag: &str, ttl: Duration) -> Result<Tokens, String> {
        let invalid = || "auth: invalid auth options".to_string();
        let mut parts = flag.split(',');
        let kind = parts.next().unwrap_or("");
        let mut opts = std::collections::HashMap::new();
        for part in parts {
            let (k, v) = part.split_once('=').ok_or_else(invalid)?;
            if v.contains('=') || opts.insert(k.to_string(), v.to_string()).is_some() {
                return Err(invalid());
            }
        }
        match kind {
            "simple" => Ok(Tokens::Simple(SimpleTokens::new(ttl))),
            "jwt" => Ok(Tokens::Jwt(JwtTokens::from_options(&opts)?)),
            _ => Err(invalid()),
        }
    }

    /// The token for `user`, as assigned when the Authenticate entry at raft
    /// index `index` is applied.
    fn assign(&self, user: &str, prefix: &str, index: u64, revision: u64) -> Result<String, EtcdError> {
        match self {
            Tokens::Simple(t) => Ok(t.assign(user, prefix, index)),
            Tokens::Jwt(t) => t.assign(user, revision).map_err(|e| {
                tracing::error!("failed to sign a JWT: {e}");
                EtcdError::AuthFailed
            }),
        }
    }

    fn invalidate_user(&self, user: &str) {
        if let Tokens::Simple(t) = self {
            t.invalidate_user(user);
        }
    }

    fn clear(&self) {
        if let Tokens::Simple(t) = self {
            t.clear();
        }
    }

    pub fn is_simple(&self) -> bool {
        matches!(self, Tokens::Simple(_))
    }
}

pub struct AuthStore {
    state: RwLock<State>,
    pub tokens: Tokens,
    pub bcrypt_cost: u32,
}

fn user_key(name: &str) -> Vec<u8> {
    [USER_PREFIX, name.as_bytes()].concat()
}

fn role_key(name: &str) -> Vec<u8> {
    [ROLE_PREFIX, name.as_bytes()].concat()
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

fn has_root_role(u: &User) -> bool {
    u.roles.iter().any(|r| r == ROOT_ROLE)
}

impl AuthStore {
    /// An out-of-range bcrypt cost falls back to the default, as etcd.
    pub fn new(tokens: Tokens, bcrypt_cost: u32) -> AuthStore {
        let bcrypt_cost = if (4..=31).contains(&bcrypt_cost) { bcrypt_cost } else { DEFAULT_BCRYPT_COST };
        AuthStore { state: RwLock::new(State::default()), tokens, bcrypt_cost }
    }

    /// Loads the state from the backend (at start and after a snapshot is
    /// installed). Tokens are not kept across either.
    pub fn reload(&self, backend: &Backend) -> Result<(), BackendError> {
        let mut st = State {
            enabled: backend.get(Table::Auth, ENABLED_KEY)?.is_some_and(|v| v == [1]),
            revision: backend
                .get(Table::Auth, REVISION_KEY)?
                .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
                .unwrap_or(0),
            ..Default::default()
        };
        let mut bad = 0usize;
        backend.scan(Table::Auth, USER_PREFIX, Some(&prefix_end(USER_PREFIX)), |_, v| {
            match User::decode(v) {
                Ok(u) => {
                    st.users.insert(String::from_utf8_lossy(&u.name).into_owned(), u);
                }
                Err(_) => bad += 1,
            }
            true
        })?;
        backend.scan(Table::Auth, ROLE_PREFIX, Some(&prefix_end(ROLE_PREFIX)), |_, v| {
            match Role::decode(v) {
                Ok(r) => {
                    st.roles.insert(String::from_utf8_lossy(&r.name).into_owned(), r);
                }
                Err(_) => bad += 1,
            }
            true
        })?;
        if bad > 0 {
            tracing::error!("{bad} auth records could not be decoded and were ignored");
        }
        *self.state.write() = st;
        self.tokens.clear();
        Ok(())
    }

    pub fn is_enabled(&self) -> bool {
        self.state.read().enabled
    }

    pub fn revision(&self) -> u64 {
        self.state.read().revision
    }

    /// A user's password hash and the auth revision it was read at, for
    /// checking a password outside the lock; errors as etcd's CheckPassword.
    pub fn password_hash(&self, name: &str) -> Result<(Vec<u8>, u64), tonic::Status> {
        let st = self.state.read();
        if !st.enabled {
            return Err(EtcdError::AuthNotEnabled.into());
        }
        let user = st.users.get(name).ok_or(EtcdError::AuthFailed)?;
        if user.options.as_ref().is_some_and(|o| o.no_password) {
            // etcd does not translate this one into a gRPC error.
            return Err(tonic::Status::unknown("auth: authentication failed, password was given for no password user"));
        }
        Ok((user.password.clone(), st.revision))
    }

    /// etcd's check for operations only root may run.
    pub fn check_admin(&self, ai: Option<&AuthInfo>) -> Result<(), EtcdError> {
        let st = self.state.read();
        if !st.enabled {
            return Ok(());
        }
        let name = ai.map(|a| a.username.as_str()).unwrap_or("");
        if name.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        let user = st.users.get(name).ok_or(EtcdError::UserNotFound)?;
        if !has_root_role(user) {
            return Err(EtcdError::PermissionDenied);
        }
        Ok(())
    }

    /// etcd's check of a key or range operation: the credentials must be
    /// current, and the user root or granted `access` on the whole range.
    pub fn check_key(
        &self,
        ai: Option<&AuthInfo>,
        access: Access,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), EtcdError> {
        let st = self.state.read();
        if !st.enabled {
            return Ok(());
        }
        let Some(ai) = ai.filter(|a| a.revision != 0) else {
            return Err(EtcdError::UserEmpty);
        };
        if ai.revision < st.revision {
            return Err(EtcdError::AuthOldRevision);
        }
        let user = st.users.get(&ai.username).ok_or(EtcdError::PermissionDenied)?;
        if has_root_role(user) {
            return Ok(());
        }
        let perms = user.roles.iter().filter_map(|r| st.roles.get(r)).flat_map(|r| r.key_permission.iter());
        if perms::allows(perms, access, key, range_end) {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    /// After a read was served: etcd refuses it if the auth store changed
    /// since the credentials were checked.
    pub fn check_unchanged(&self, ai: Option<&AuthInfo>) -> Result<(), EtcdError> {
        match ai {
            Some(ai) if ai.revision != 0 && ai.revision != self.revision() => Err(EtcdError::AuthOldRevision),
            _ => Ok(()),
        }
    }

    fn has_role(&self, user: &str, role: &str) -> bool {
        self.state.read().users.get(user).is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// The credentials of a request that carries `token`.
    /// A simple token's revision is the store's current one; a JWT carries
    /// the revision it was issued at.
    pub fn info_from_token(&self, token: &str) -> Option<AuthInfo> {
        match &self.tokens {
            Tokens::Simple(t) => {
                let username = t.user(token)?;
                Some(AuthInfo { username, revision: self.revision() })
            }
            Tokens::Jwt(t) => t.info(token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_flag() {
        let ttl = Duration::from_secs(1);
        assert!(Tokens::from_flag("simple", ttl).unwrap().is_simple());
        for bad in ["", "bogus", "jwt,sign-method", "jwt,a=b=c", "jwt,sign-method=HS256,sign-method=HS256"] {
            assert_eq!(Tokens::from_flag(bad, ttl).err().as_deref(), Some("auth: invalid auth options"), "{bad}");
        }
        assert!(Tokens::from_flag("jwt,sign-method=nope", ttl).is_err());
        // HMAC needs its key.
        assert!(Tokens::from_flag("jwt,sign-method=HS256", ttl).is_err());
    }
}
