//! Auth management calls: enable/disable, users, roles, permissions.
//!
//! Authentication itself (Authenticate and the `token` metadata) lives in
//! [`crate::client`]; these are the administrative RPCs.

use retcd_api::etcdserverpb::auth_client::AuthClient;
use retcd_api::etcdserverpb::*;

use crate::client::{Client, Retry};
use crate::error::Result;

macro_rules! auth_calls {
    ($($(#[$doc:meta])* $name:ident($req:ty) -> $resp:ty, $retry:ident;)*) => {
        impl Client {
            $(
                $(#[$doc])*
                pub async fn $name(&self, req: $req) -> Result<$resp> {
                    self.unary(Retry::$retry, req, |ch, r| async move { AuthClient::new(ch).$name(r).await }).await
                }
            )*
        }
    };
}

auth_calls! {
    /// Auth.AuthEnable.
    auth_enable(AuthEnableRequest) -> AuthEnableResponse, NotIdempotent;
    /// Auth.AuthDisable.
    auth_disable(AuthDisableRequest) -> AuthDisableResponse, NotIdempotent;
    /// Auth.UserAdd.
    user_add(AuthUserAddRequest) -> AuthUserAddResponse, NotIdempotent;
    /// Auth.UserGet.
    user_get(AuthUserGetRequest) -> AuthUserGetResponse, Idempotent;
    /// Auth.UserList.
    user_list(AuthUserListRequest) -> AuthUserListResponse, Idempotent;
    /// Auth.UserDelete.
    user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse, NotIdempotent;
    /// Auth.UserChangePassword.
    user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse, NotIdempotent;
    /// Auth.UserGrantRole.
    user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse, NotIdempotent;
    /// Auth.UserRevokeRole.
    user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse, NotIdempotent;
    /// Auth.RoleAdd.
    role_add(AuthRoleAddRequest) -> AuthRoleAddResponse, NotIdempotent;
    /// Auth.RoleGet.
    role_get(AuthRoleGetRequest) -> AuthRoleGetResponse, Idempotent;
    /// Auth.RoleList.
    role_list(AuthRoleListRequest) -> AuthRoleListResponse, Idempotent;
    /// Auth.RoleDelete.
    role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse, NotIdempotent;
    /// Auth.RoleGrantPermission.
    role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse, NotIdempotent;
    /// Auth.RoleRevokePermission.
    role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse, NotIdempotent;
}
