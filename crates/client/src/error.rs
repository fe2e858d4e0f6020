//! Client errors: etcd's error kinds, transport failures and timeouts.
//!
//! A status from the server is mapped to [`EtcdError`] when its message is one
//! of etcd's texts (etcd's clients recognise errors by text alone, so do we).
//! `Display` prints what etcd's Go client prints for the same failure, so a
//! CLI can show it unchanged.

use std::error::Error as StdError;
use std::time::Duration;

pub use retcd_api::errors::EtcdError;
use tonic::{Code, Status};

/// Result alias used across the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with one of etcd's errors.
    #[error("{kind}")]
    Etcd {
        /// Which etcd error.
        kind: EtcdError,
        /// The status as received.
        status: Status,
    },
    /// Any other gRPC status (transport failures included).
    #[error("rpc error: code = {} desc = {}", code_name(.0.code()), .0.message())]
    Rpc(Status),
    /// The request (or the dial) did not finish in time.
    #[error("context deadline exceeded")]
    Timeout(Duration),
    /// No endpoint was configured or one could not be parsed.
    #[error("{0}")]
    InvalidEndpoint(String),
    /// The TLS settings could not be used (unreadable file, bad PEM, ...).
    #[error("{0}")]
    Tls(String),
    /// A caller-side argument was not acceptable (caught before any request).
    #[error("{0}")]
    InvalidArgument(String),
    /// A watch was canceled by the server (compaction, permission, ...).
    #[error("{0}")]
    WatchCanceled(String),
    /// The watch or keep-alive stream ended and could not be resumed.
    #[error("stream closed")]
    StreamClosed,
}

impl Error {
    /// The etcd error kind, when the server sent one of etcd's errors.
    pub fn etcd_kind(&self) -> Option<EtcdError> {
        match self {
            Error::Etcd { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The gRPC code of a server or transport error.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Etcd { status, .. } | Error::Rpc(status) => Some(status.code()),
            Error::Timeout(_) => Some(Code::DeadlineExceeded),
            _ => None,
        }
    }

    /// True when the request provably never reached a server (the
    /// connection could not be made), so even a write may be retried.
    pub fn is_connect_failure(&self) -> bool {
        match self {
            Error::Rpc(status) => is_connect_failure(status),
            _ => false,
        }
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Error {
        match EtcdError::from_status(&status) {
            Some(kind) => Error::Etcd { kind, status },
            None => Error::Rpc(status),
        }
    }
}

/// True when `status` carries a connect error in its source chain: the
/// request was never written to a connection.
pub(crate) fn is_connect_failure(status: &Status) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = status.source();
    while let Some(err) = source {
        if err.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Go's name of a gRPC code (as grpc-go prints it).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_etcd_texts() {
        let err: Error = Status::new(Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted").into();
        assert_eq!(err.etcd_kind(), Some(EtcdError::Compacted));
        assert_eq!(err.to_string(), "etcdserver: mvcc: required revision has been compacted");
        let err: Error = Status::unimplemented("unknown service etcdserverpb.Auth").into();
        assert_eq!(err.etcd_kind(), None);
        assert_eq!(err.to_string(), "rpc error: code = Unimplemented desc = unknown service etcdserverpb.Auth");
        assert!(!err.is_connect_failure());
    }
}
