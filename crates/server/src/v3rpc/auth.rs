//! The Auth service: every method is declared and answers UNIMPLEMENTED
//! until the auth issue brings users, roles and tokens.

use retcd_api::etcdserverpb::auth_server::Auth;
use retcd_api::etcdserverpb::*;
use tonic::{Request, Response, Status};

use super::unimplemented;

pub struct AuthService;

/// Declares the trait's methods from `method, Request, Response, "Name";` rows.
macro_rules! unimplemented_methods {
    ($($method:ident, $req:ty, $resp:ty, $name:literal;)*) => {
        #[tonic::async_trait]
        impl Auth for AuthService {
            $(
                async fn $method(&self, _req: Request<$req>) -> Result<Response<$resp>, Status> {
                    Err(unimplemented($name))
                }
            )*
        }
    };
}

unimplemented_methods! {
    auth_enable, AuthEnableRequest, AuthEnableResponse, "AuthEnable";
    auth_disable, AuthDisableRequest, AuthDisableResponse, "AuthDisable";
    authenticate, AuthenticateRequest, AuthenticateResponse, "Authenticate";
    user_add, AuthUserAddRequest, AuthUserAddResponse, "UserAdd";
    user_get, AuthUserGetRequest, AuthUserGetResponse, "UserGet";
    user_list, AuthUserListRequest, AuthUserListResponse, "UserList";
    user_delete, AuthUserDeleteRequest, AuthUserDeleteResponse, "UserDelete";
    user_change_password, AuthUserChangePasswordRequest, AuthUserChangePasswordResponse, "UserChangePassword";
    user_grant_role, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse, "UserGrantRole";
    user_revoke_role, AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse, "UserRevokeRole";
    role_add, AuthRoleAddRequest, AuthRoleAddResponse, "RoleAdd";
    role_get, AuthRoleGetRequest, AuthRoleGetResponse, "RoleGet";
    role_list, AuthRoleListRequest, AuthRoleListResponse, "RoleList";
    role_delete, AuthRoleDeleteRequest, AuthRoleDeleteResponse, "RoleDelete";
    role_grant_permission, AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse, "RoleGrantPermission";
    role_revoke_permission, AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, "RoleRevokePermission";
}
