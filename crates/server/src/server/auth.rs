//! The Auth requests as [`EtcdServer`] serves them. Every change and every
//! read of users and roles goes through raft with the caller's credentials
//! (as etcd's) and is checked on the apply thread; passwords are hashed or
//! checked here, before proposing. Each returns its response with the
//! header filled.
//!
//! These return `tonic::Status`, not [`EtcdError`]: two of auth's answers
//! (a password given for a no-password user, a failed hash) are outside
//! etcd's gRPC error table.

use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::*;
use retcd_api::retcdpb::auth_request::Request as AuthOp;
use retcd_api::retcdpb::{
    AuthRequest, AuthenticateInternal, InternalRequest, UserAddInternal, UserChangePasswordInternal,
};
use tonic::Status;

use super::EtcdServer;
use crate::auth::apply::AuthApplied;
use crate::auth::credentials::Creds;
use crate::auth::password;
use crate::auth::token::SimpleTokens;

impl EtcdServer {
    /// Proposes one auth request as the caller and waits for its result.
    async fn auth_request(&self, op: AuthOp, creds: &Creds) -> Result<AuthApplied, EtcdError> {
        let req = InternalRequest { auth: Some(AuthRequest { request: Some(op) }), ..Default::default() };
        self.propose_as(req, creds).await
    }

    fn auth_header(&self) -> Option<ResponseHeader> {
        let mut header = None;
        self.fill_header(&mut header);
        header
    }

    /// etcd 3.5's: no permission needed.
    pub async fn auth_status(&self, _r: AuthStatusRequest) -> Result<AuthStatusResponse, Status> {
        self.linearizable_read().await?;
        let enabled = self.auth.is_enabled();
        let auth_revision = self.auth.revision();
        Ok(AuthStatusResponse { header: self.auth_header(), enabled, auth_revision })
    }

    /// Checks the password, then proposes the token. A change to auth while
    /// the (slow) check ran makes it stale, so it is checked again, as etcd
    /// does, a bounded number of times.
    pub async fn authenticate(&self, r: AuthenticateRequest, creds: &Creds) -> Result<AuthenticateResponse, Status> {
        self.linearizable_read().await?;
        for _ in 0..16 {
            let (hash, checked_rev) = match self.auth.password_hash(&r.name) {
                Ok(found) => found,
                Err(status) => {
                    if EtcdError::from_status(&status) == Some(EtcdError::AuthFailed) {
                        password::verify_nothing(r.password.clone(), self.auth.bcrypt_cost).await;
                    }
                    return Err(status);
                }
            };
            if !password::verify(r.password.clone(), hash).await? {
                let user: String = r.name.chars().take(64).collect();
                tracing::warn!(user = %user.escape_debug(), "invalid authentication was requested");
                return Err(EtcdError::AuthFailed.into());
            }
            let op = AuthOp::Authenticate(AuthenticateInternal {
                name: r.name.clone(),
                simple_token: SimpleTokens::gen_prefix(),
            });
            let AuthApplied::Token(token) = self.auth_request(op, creds).await? else {
                return Err(unexpected());
            };
            if checked_rev == self.auth.revision() {
                return Ok(AuthenticateResponse { header: self.auth_header(), token });
            }
            tracing::info!("auth revision changed while checking a password; retrying");
        }
        Err(EtcdError::Timeout.into())
    }

    pub async fn user_add(&self, r: AuthUserAddRequest, creds: &Creds) -> Result<AuthUserAddResponse, Status> {
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        // Cheap refusals first, so bad requests do not cost a bcrypt round
        // (the apply thread checks again, in etcd's order).
        self.check_admin(creds).await?;
        if r.name.is_empty() {
            return Err(EtcdError::UserEmpty.into());
        }
        let hashed_password =
            if no_password { Vec::new() } else { password::hash(r.password, self.auth.bcrypt_cost).await? };
        let op = AuthOp::UserAdd(UserAddInternal { name: r.name, hashed_password, options: r.options });
        self.auth_request(op, creds).await?;
        Ok(AuthUserAddResponse { header: self.auth_header() })
    }

    pub async fn user_change_password(
        &self,
        r: AuthUserChangePasswordRequest,
        creds: &Creds,
    ) -> Result<AuthUserChangePasswordResponse, Status> {
        // Refuse before hashing when the caller may not change passwords.
        self.check_admin(creds).await?;
        let hashed_password = password::hash(r.password, self.auth.bcrypt_cost).await?;
        let op = AuthOp::UserChangePassword(UserChangePasswordInternal { name: r.name, hashed_password });
        self.auth_request(op, creds).await?;
        Ok(AuthUserChangePasswordResponse { header: self.auth_header() })
    }

    pub async fn user_get(&self, r: AuthUserGetRequest, creds: &Creds) -> Result<AuthUserGetResponse, Status> {
        let AuthApplied::Names(roles) = self.auth_request(AuthOp::UserGet(r), creds).await? else {
            return Err(unexpected());
        };
        Ok(AuthUserGetResponse { header: self.auth_header(), roles })
    }

    pub async fn user_list(&self, r: AuthUserListRequest, creds: &Creds) -> Result<AuthUserListResponse, Status> {
        let AuthApplied::Names(users) = self.auth_request(AuthOp::UserList(r), creds).await? else {
            return Err(unexpected());
        };
        Ok(AuthUserListResponse { header: self.auth_header(), users })
    }

    pub async fn role_get(&self, r: AuthRoleGetRequest, creds: &Creds) -> Result<AuthRoleGetResponse, Status> {
        let AuthApplied::Perms(perm) = self.auth_request(AuthOp::RoleGet(r), creds).await? else {
            return Err(unexpected());
        };
        Ok(AuthRoleGetResponse { header: self.auth_header(), perm })
    }

    pub async fn role_list(&self, r: AuthRoleListRequest, creds: &Creds) -> Result<AuthRoleListResponse, Status> {
        let AuthApplied::Names(roles) = self.auth_request(AuthOp::RoleList(r), creds).await? else {
            return Err(unexpected());
        };
        Ok(AuthRoleListResponse { header: self.auth_header(), roles })
    }
}

/// The requests whose response is only a header.
macro_rules! header_only {
    ($($method:ident($req:ty) -> $resp:ident via $op:ident;)*) => {
        impl EtcdServer {
            $(
                pub async fn $method(&self, r: $req, creds: &Creds) -> Result<$resp, Status> {
                    self.auth_request(AuthOp::$op(r), creds).await?;
                    Ok($resp { header: self.auth_header() })
                }
            )*
        }
    };
}

header_only! {
    auth_enable(AuthEnableRequest) -> AuthEnableResponse via Enable;
    auth_disable(AuthDisableRequest) -> AuthDisableResponse via Disable;
    user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse via UserDelete;
    user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse via UserGrantRole;
    user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse via UserRevokeRole;
    role_add(AuthRoleAddRequest) -> AuthRoleAddResponse via RoleAdd;
    role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse via RoleDelete;
    role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse via RoleGrantPermission;
    role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse via RoleRevokePermission;
}

/// The apply thread answered with another kind of result: a bug.
fn unexpected() -> Status {
    tracing::error!("bug: an auth request was answered with another kind of result");
    Status::internal("retcd: unexpected apply result")
}
