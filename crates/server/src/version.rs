//! The versions retcd reports (`/version`, Maintenance.Status, metrics):
//! those of the etcd release whose API and behaviour it implements, so
//! clients that gate features on the server version work.

/// The etcd server version retcd answers as.
pub const SERVER: &str = "3.4.23";

/// The cluster version reported beside it (etcd reports major.minor.0 of
/// the lowest member version).
pub const CLUSTER: &str = "3.4.0";
