//! What only the leader does, each a background task that proposes through
//! the log like any client: lease expiry, v2 TTL expiry, auto compaction,
//! and the periodic corruption check (with its start-up variant, which any
//! member runs).

pub mod compactor;
pub mod corrupt;
pub mod lease_expiry;
pub mod v2_expiry;
