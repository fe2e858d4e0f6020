//! The Auth service: every request goes through raft (as etcd's), with the
//! caller's credentials, and is checked on the apply thread. Passwords are
//! hashed or checked here, on the blocking pool, and never proposed.

use std::sync::Arc;

use retcd_api::errors::EtcdError;
use retcd_api::etcdserverpb::auth_server::Auth;
use retcd_api::etcdserverpb::*;
use retcd_api::retcdpb::auth_request::Request as AuthOp;
use retcd_api::retcdpb::{
    AuthRequest, AuthenticateInternal, InternalRequest, UserAddInternal, UserChangePasswordInternal,
};
use tonic::{Request, Response, Status};

use crate::auth::apply::AuthApplied;
use crate::auth::token::SimpleTokens;
use crate::server::EtcdServer;

pub struct AuthService {
    pub server: Arc<EtcdServer>,
}

/// Longest password bcrypt looks at (it ignores the rest, and refuses
/// longer input in the crate we use): longer passwords are cut, as Go's
/// bcrypt 0.0-era versions that etcd 3.4 vendors do.
const BCRYPT_MAX_PASSWORD: usize = 72;

fn truncate_password(p: &str) -> &[u8] {
    let b = p.as_bytes();
    &b[..b.len().min(BCRYPT_MAX_PASSWORD)]
}

impl AuthService {
    async fn run(
        &self,
        creds: &crate::auth::credentials::Creds,
        op: AuthOp,
    ) -> Result<(Option<ResponseHeader>, AuthApplied), Status> {
        let req = InternalRequest { auth: Some(AuthRequest { request: Some(op) }), ..Default::default() };
        let out = self.server.propose_as(req, creds).await?;
        let mut header = None;
        self.server.fill_header(&mut header);
        Ok((header, out))
    }

    async fn dummy_verify(&self, password: &str) {
        static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let cost = self.server.auth.bcrypt_cost;
        let password = password.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(h) = DUMMY.get_or_init(|| bcrypt::hash("retcd-no-such-user", cost).ok()) {
                let _ = bcrypt::verify(truncate_password(&password), h);
            }
        })
        .await;
    }

    async fn hash(&self, password: String) -> Result<Vec<u8>, Status> {
        let cost = self.server.auth.bcrypt_cost;
        let hashed = tokio::task::spawn_blocking(move || bcrypt::hash(truncate_password(&password), cost))
            .await
            .map_err(|_| Status::from(EtcdError::Stopped))?;
        match hashed {
            Ok(h) => Ok(h.into_bytes()),
            Err(e) => {
                tracing::error!("failed to hash a password: {e}");
                Err(Status::internal("etcdserver: failed to hash the password"))
            }
        }
    }
}

macro_rules! done {
    ($self:ident, $req:ident, $variant:ident, $resp:ident) => {{
        let creds = crate::auth::credentials::Creds::from_request(&$req);
        let (header, _) = $self.run(&creds, AuthOp::$variant($req.into_inner())).await?;
        Ok(Response::new($resp { header }))
    }};
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, req: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        done!(self, req, Enable, AuthEnableResponse)
    }

    async fn auth_disable(&self, req: Request<AuthDisableRequest>) -> Result<Response<AuthDisableResponse>, Status> {
        done!(self, req, Disable, AuthDisableResponse)
    }

    /// etcd 3.5's: no permission needed.
    async fn auth_status(&self, _req: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        self.server.linearizable_read().await?;
        let enabled = self.server.auth.is_enabled();
        let auth_revision = self.server.auth.revision();
        let mut header = None;
        self.server.fill_header(&mut header);
        Ok(Response::new(AuthStatusResponse { header, enabled, auth_revision }))
    }

    async fn authenticate(&self, req: Request<AuthenticateRequest>) -> Result<Response<AuthenticateResponse>, Status> {
        let creds = crate::auth::credentials::Creds::from_request(&req);
        let r = req.into_inner();
        self.server.linearizable_read().await?;
        // Bounded: a concurrent auth change makes the check stale; etcd retries
        // until the revision it checked at is still current.
        for _ in 0..16 {
            let (hash, checked_rev) = match self.server.auth.password_hash(&r.name) {
                Ok(found) => found,
                Err(status) => {
                    if EtcdError::from_status(&status) == Some(EtcdError::AuthFailed) {
                        // An unknown user costs what a wrong password costs,
                        // so timing does not tell which names exist.
                        self.dummy_verify(&r.password).await;
                    }
                    return Err(status);
                }
            };
            let password = r.password.clone();
            let ok = tokio::task::spawn_blocking(move || {
                // bcrypt compares in constant time; a malformed hash fails.
                std::str::from_utf8(&hash)
                    .ok()
                    .and_then(|h| bcrypt::verify(truncate_password(&password), h).ok())
                    .unwrap_or(false)
            })
            .await
            .map_err(|_| Status::from(EtcdError::Stopped))?;
            if !ok {
                let user: String = r.name.chars().take(64).collect();
                tracing::warn!(user = %user.escape_debug(), "invalid authentication was requested");
                return Err(EtcdError::AuthFailed.into());
            }
            let op = AuthOp::Authenticate(AuthenticateInternal {
                name: r.name.clone(),
                simple_token: SimpleTokens::gen_prefix(),
            });
            let (header, out) = self.run(&creds, op).await?;
            if checked_rev == self.server.auth.revision() {
                let token = match out {
                    AuthApplied::Token(t) => t,
                    _ => return Err(Status::internal("retcd: unexpected apply result")),
                };
                return Ok(Response::new(AuthenticateResponse { header, token }));
            }
            tracing::info!("auth revision changed while checking a password; retrying");
        }
        Err(EtcdError::Timeout.into())
    }

    async fn user_add(&self, req: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        let creds = crate::auth::credentials::Creds::from_request(&req);
        let r = req.into_inner();
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        // Cheap refusals first, so bad requests do not cost a bcrypt round
        // (the apply thread checks again, in etcd's order).
        let ai = self.server.auth_info(&creds).await?;
        self.server.auth.check_admin(ai.as_ref())?;
        if r.name.is_empty() {
            return Err(EtcdError::UserEmpty.into());
        }
        let hashed_password = if no_password { Vec::new() } else { self.hash(r.password).await? };
        let op = AuthOp::UserAdd(UserAddInternal { name: r.name, hashed_password, options: r.options });
        let (header, _) = self.run(&creds, op).await?;
        Ok(Response::new(AuthUserAddResponse { header }))
    }

    async fn user_get(&self, req: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        let creds = crate::auth::credentials::Creds::from_request(&req);
        let (header, out) = self.run(&creds, AuthOp::UserGet(req.into_inner())).await?;
        let roles = match out {
            AuthApplied::Names(n) => n,
            _ => Vec::new(),
        };
        Ok(Response::new(AuthUserGetResponse { header, roles }))
    }

    async fn user_list(&self, req: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        let creds = crate::auth::credentials::Creds::from_request(&req);
        let (header, out) = self.run(&creds, AuthOp::UserList(req.into_inner())).await?;
        let users = match out {
            AuthApplied::Names(n) => n,
            _ => Vec::new(),
        };
        Ok(Response::new(AuthUserListResponse { header, users }))
    }

    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        done!(self, req, UserDelete, AuthUserDeleteResponse)
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let creds = crate::auth::credentials::Creds::from_request(&req);
        let r = req.into_inner();
        // Refuse before hashing when the caller may not change passwords.
        let ai = self.server.auth_info(&creds).await?;
        self.server.auth.check_admin(ai.as_ref())?;
        let hashed_password = self.hash(r.password).await?;
        let op = AuthOp::UserChangePassword(UserChangePasswordInternal { name: r.name, hashed_password });
        let (header, _) = self.run(&creds, op).await?;
        Ok(Response::new(AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        done!(self, req, UserGrantRole, AuthUserGrantRoleResponse)
    }

    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        done!(self, req, UserRevokeRole, AuthUserRevokeRoleResponse)
    }

    async fn role_add(&self, req: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        done!(self, req, RoleAdd, AuthRoleAddResponse)
    }

    async fn role_get(&self, req: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        let creds = crate::auth::credentials::Creds::from_request(&req);
        let (header, out) = self.run(&creds, AuthOp::RoleGet(req.into_inner())).await?;
        let perm = match out {
            AuthApplied::Perms(p) => p,
            _ => Vec::new(),
        };
        Ok(Response::new(AuthRoleGetResponse { header, perm }))
    }

    async fn role_list(&self, req: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        let creds = crate::auth::credentials::Creds::from_request(&req);
        let (header, out) = self.run(&creds, AuthOp::RoleList(req.into_inner())).await?;
        let roles = match out {
            AuthApplied::Names(n) => n,
            _ => Vec::new(),
        };
        Ok(Response::new(AuthRoleListResponse { header, roles }))
    }

    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        done!(self, req, RoleDelete, AuthRoleDeleteResponse)
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        // etcd does not survive these; refuse them before they are proposed.
        match &req.get_ref().perm {
            None => return Err(Status::invalid_argument("retcd: no permission given")),
            Some(p) if retcd_api::authpb::permission::Type::try_from(p.perm_type).is_err() => {
                return Err(Status::invalid_argument("retcd: unknown permission type"));
            }
            Some(_) => {}
        }
        done!(self, req, RoleGrantPermission, AuthRoleGrantPermissionResponse)
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        done!(self, req, RoleRevokePermission, AuthRoleRevokePermissionResponse)
    }
}
