//! The one table of etcd's gRPC errors.
//!
//! Every error an etcd 3.4 server returns over gRPC, with its exact status code
//! and message text (etcd's `rpctypes` package). etcd clients recognise these
//! errors by their message text alone, so the text must match byte for byte:
//! always build error statuses from [`EtcdError`], never by hand.
//!
//! ```
//! use retcd_api::errors::EtcdError;
//!
//! let status: tonic::Status = EtcdError::Compacted.into();
//! assert_eq!(status.code(), tonic::Code::OutOfRange);
//! assert_eq!(EtcdError::from_status(&status), Some(EtcdError::Compacted));
//! ```

use tonic::{Code, Status};

/// Declares [`EtcdError`] and its lookups from one list of
/// `Variant => Code, "message";` rows, so each row's data appears once.
macro_rules! etcd_errors {
    ($($variant:ident => $code:ident, $msg:literal;)*) => {
        /// An etcd gRPC error. Each variant's doc is its exact message text.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EtcdError {
            $(
                #[doc = concat!("`", stringify!($code), "`: \"", $msg, "\"")]
                $variant,
            )*
        }

        impl EtcdError {
            /// Every variant, in table order.
            pub const ALL: &'static [EtcdError] = &[$(EtcdError::$variant,)*];

            /// The gRPC status code etcd returns for this error.
            pub fn code(&self) -> Code {
                match self {
                    $(EtcdError::$variant => Code::$code,)*
                }
            }

            /// The exact message text etcd returns for this error.
            pub fn message(&self) -> &'static str {
                match self {
                    $(EtcdError::$variant => $msg,)*
                }
            }

            /// The error whose message text is exactly `msg`, if any.
            pub fn from_message(msg: &str) -> Option<EtcdError> {
                match msg {
                    $($msg => Some(EtcdError::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

etcd_errors! {
    // KV
    EmptyKey => InvalidArgument, "etcdserver: key is not provided";
    KeyNotFound => InvalidArgument, "etcdserver: key not found";
    ValueProvided => InvalidArgument, "etcdserver: value is provided";
    LeaseProvided => InvalidArgument, "etcdserver: lease is provided";
    TooManyOps => InvalidArgument, "etcdserver: too many operations in txn request";
    DuplicateKey => InvalidArgument, "etcdserver: duplicate key given in txn request";
    Compacted => OutOfRange, "etcdserver: mvcc: required revision has been compacted";
    FutureRev => OutOfRange, "etcdserver: mvcc: required revision is a future revision";
    NoSpace => ResourceExhausted, "etcdserver: mvcc: database space exceeded";

    // Lease
    LeaseNotFound => NotFound, "etcdserver: requested lease not found";
    LeaseExist => FailedPrecondition, "etcdserver: lease already exists";
    LeaseTTLTooLarge => OutOfRange, "etcdserver: too large lease TTL";

    // Watch
    WatchCanceled => Cancelled, "etcdserver: watch canceled";

    // Cluster
    MemberExist => FailedPrecondition, "etcdserver: member ID already exist";
    PeerURLExist => FailedPrecondition, "etcdserver: Peer URLs already exists";
    // etcd 3.4 maps this one to its client-side error type, which grpc-go
    // sends as Unknown (real etcd answers code = Unknown).
    MemberNotEnoughStarted => Unknown, "etcdserver: re-configuration failed due to not enough started members";
    MemberBadURLs => InvalidArgument, "etcdserver: given member URLs are invalid";
    MemberNotFound => NotFound, "etcdserver: member not found";
    MemberNotLearner => FailedPrecondition, "etcdserver: can only promote a learner member";
    LearnerNotReady => FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader";
    TooManyLearners => FailedPrecondition, "etcdserver: too many learner members in cluster";

    // Request limits
    RequestTooLarge => InvalidArgument, "etcdserver: request is too large";
    TooManyRequests => ResourceExhausted, "etcdserver: too many requests";

    // Auth
    RootUserNotExist => FailedPrecondition, "etcdserver: root user does not exist";
    RootRoleNotExist => FailedPrecondition, "etcdserver: root user does not have root role";
    UserAlreadyExist => FailedPrecondition, "etcdserver: user name already exists";
    UserEmpty => InvalidArgument, "etcdserver: user name is empty";
    UserNotFound => FailedPrecondition, "etcdserver: user name not found";
    RoleAlreadyExist => FailedPrecondition, "etcdserver: role name already exists";
    RoleNotFound => FailedPrecondition, "etcdserver: role name not found";
    RoleEmpty => InvalidArgument, "etcdserver: role name is empty";
    AuthFailed => InvalidArgument, "etcdserver: authentication failed, invalid user ID or password";
    PermissionDenied => PermissionDenied, "etcdserver: permission denied";
    RoleNotGranted => FailedPrecondition, "etcdserver: role is not granted to the user";
    PermissionNotGranted => FailedPrecondition, "etcdserver: permission is not granted to the role";
    AuthNotEnabled => FailedPrecondition, "etcdserver: authentication is not enabled";
    InvalidAuthToken => Unauthenticated, "etcdserver: invalid auth token";
    InvalidAuthMgmt => InvalidArgument, "etcdserver: invalid auth management";
    AuthOldRevision => InvalidArgument, "etcdserver: revision of auth store is old";

    // Server / raft state
    NoLeader => Unavailable, "etcdserver: no leader";
    NotLeader => FailedPrecondition, "etcdserver: not leader";
    LeaderChanged => Unavailable, "etcdserver: leader changed";
    NotCapable => Unavailable, "etcdserver: not capable";
    Stopped => Unavailable, "etcdserver: server stopped";
    Timeout => Unavailable, "etcdserver: request timed out";
    TimeoutDueToLeaderFail => Unavailable, "etcdserver: request timed out, possibly due to previous leader failure";
    TimeoutDueToConnectionLost => Unavailable, "etcdserver: request timed out, possibly due to connection lost";
    TimeoutWaitAppliedIndex => Unavailable, "etcdserver: request timed out, waiting for the applied index took too long";
    Unhealthy => Unavailable, "etcdserver: unhealthy cluster";
    Corrupt => DataLoss, "etcdserver: corrupt cluster";
    NotSupportedForLearner => Unavailable, "etcdserver: rpc not supported for learner";
    BadLeaderTransferee => FailedPrecondition, "etcdserver: bad leader transferee";
}

impl EtcdError {
    /// The gRPC status etcd returns for this error (code and exact message).
    pub fn to_status(&self) -> Status {
        Status::new(self.code(), self.message())
    }

    /// The etcd error a status carries, recognised (as etcd's clients do) by
    /// its message text alone.
    pub fn from_status(status: &Status) -> Option<EtcdError> {
        EtcdError::from_message(status.message())
    }
}

impl From<EtcdError> for Status {
    fn from(err: EtcdError) -> Status {
        err.to_status()
    }
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for EtcdError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_codes_and_texts() {
        let cases = [
            (EtcdError::EmptyKey, Code::InvalidArgument, "etcdserver: key is not provided"),
            (EtcdError::Compacted, Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            (EtcdError::FutureRev, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            (EtcdError::LeaseNotFound, Code::NotFound, "etcdserver: requested lease not found"),
            (EtcdError::NoSpace, Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
            (EtcdError::InvalidAuthToken, Code::Unauthenticated, "etcdserver: invalid auth token"),
            (EtcdError::Corrupt, Code::DataLoss, "etcdserver: corrupt cluster"),
            (EtcdError::WatchCanceled, Code::Cancelled, "etcdserver: watch canceled"),
            (EtcdError::NoLeader, Code::Unavailable, "etcdserver: no leader"),
        ];
        for (err, code, text) in cases {
            assert_eq!(err.code(), code, "{err:?}");
            assert_eq!(err.message(), text, "{err:?}");
            assert_eq!(err.to_string(), text, "{err:?}");
        }
    }

    #[test]
    fn from_message_round_trips_every_variant() {
        // etcd 3.4 rpctypes declares 52 server-side errors.
        assert_eq!(EtcdError::ALL.len(), 52);
        for &err in EtcdError::ALL {
            assert_eq!(EtcdError::from_message(err.message()), Some(err));
        }
    }

    #[test]
    fn messages_are_unique_and_prefixed() {
        let mut seen = std::collections::HashSet::new();
        for err in EtcdError::ALL {
            assert!(err.message().starts_with("etcdserver: "), "{err:?}");
            assert!(seen.insert(err.message()), "duplicate text: {err:?}");
        }
    }

    #[test]
    fn status_conversion() {
        let status: Status = EtcdError::TooManyOps.into();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "etcdserver: too many operations in txn request");
        assert_eq!(EtcdError::from_status(&status), Some(EtcdError::TooManyOps));
        assert_eq!(EtcdError::from_message("etcdserver: nope"), None);
        assert_eq!(EtcdError::from_status(&Status::internal("boom")), None);
    }
}
