//! The Auth service: validate, call [`EtcdServer`]'s auth methods (see
//! `crate::server::auth`), answer.

use std::sync::Arc;

use retcd_api::etcdserverpb::auth_server::Auth;
use retcd_api::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::auth::credentials::Creds;
use crate::server::EtcdServer;

pub struct AuthService {
    pub server: Arc<EtcdServer>,
}

/// The service: each method in the list hands the request and its
/// credentials to the server method of the same name; the items after it
/// are the methods that do more. (One macro makes the whole impl, so that
/// `async_trait` sees every method.)
macro_rules! auth_service {
    ($($method:ident($req:ty) -> $resp:ty;)* ; $($more:item)*) => {
        #[tonic::async_trait]
        impl Auth for AuthService {
            $(
                async fn $method(&self, req: Request<$req>) -> Result<Response<$resp>, Status> {
                    let creds = Creds::from_request(&req);
                    Ok(Response::new(self.server.$method(req.into_inner(), &creds).await?))
                }
            )*
            $($more)*
        }
    };
}

auth_service! {
    auth_enable(AuthEnableRequest) -> AuthEnableResponse;
    auth_disable(AuthDisableRequest) -> AuthDisableResponse;
    authenticate(AuthenticateRequest) -> AuthenticateResponse;
    user_add(AuthUserAddRequest) -> AuthUserAddResponse;
    user_get(AuthUserGetRequest) -> AuthUserGetResponse;
    user_list(AuthUserListRequest) -> AuthUserListResponse;
    user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse;
    user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse;
    user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse;
    user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse;
    role_add(AuthRoleAddRequest) -> AuthRoleAddResponse;
    role_get(AuthRoleGetRequest) -> AuthRoleGetResponse;
    role_list(AuthRoleListRequest) -> AuthRoleListResponse;
    role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse;
    role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse;
    ;

    /// etcd 3.5's: no permission needed.
    async fn auth_status(&self, req: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        Ok(Response::new(self.server.auth_status(req.into_inner()).await?))
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
        let creds = Creds::from_request(&req);
        Ok(Response::new(self.server.role_grant_permission(req.into_inner(), &creds).await?))
    }
}
