//! Who a client request comes from: the token it carries and the client
//! certificate its connection was verified with, taken from the gRPC
//! request before it is consumed. [`crate::server::EtcdServer::auth_info`]
//! turns them into the user a request acts as.

use tonic::metadata::MetadataMap;

/// The token a request carries (etcd's gRPC metadata key "token", or
/// "authorization", which its gateway forwards), and the common name of
/// the client certificate its connection was verified with (if any), taken
/// before the request is consumed: no copy of the rest of its metadata.
#[derive(Debug, Clone, Default)]
pub struct Creds {
    pub(crate) token: Option<String>,
    pub(crate) cert_cn: Option<String>,
}

impl Creds {
    /// The token in `meta`; no certificate.
    pub fn of(meta: &MetadataMap) -> Creds {
        let v = meta.get("token").or_else(|| meta.get("authorization"));
        // A value that is not text cannot be a token we issued.
        Creds { token: v.map(|v| v.to_str().unwrap_or("").to_string()), cert_cn: None }
    }

    /// The token of a gRPC request and the verified client certificate of
    /// its connection. The certificate's name comes from a request
    /// extension only the TLS listener sets (a client cannot forge it; the
    /// JSON gateway, like etcd's, passes none on).
    pub fn from_request<T>(req: &tonic::Request<T>) -> Creds {
        let mut creds = Creds::of(req.metadata());
        creds.cert_cn = req.extensions().get::<crate::listener::VerifiedCn>().map(|cn| cn.0.clone());
        creds
    }
}
