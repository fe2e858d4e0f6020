//! retcd's storage layer, bottom to top:
//!
//! - [`wal`]: the write-ahead log of raft entries and hard state. A write is
//!   acknowledged only after its WAL record is fsynced.
//! - [`snap`]: raft snapshot files (metadata only; the data lives in the backend).
//! - [`backend`]: the redb database with a write buffer that is committed in
//!   batches, off the acknowledgement path.
//! - [`backup`]: restoring a backup file into a new member's backend.
//! - [`mvcc`]: revisions, the in-memory tree index of key generations, and the
//!   multi-version key-value store built on the backend.
//!
//! Nothing here knows about gRPC or raft's state machine; the server crate
//! drives these pieces.

pub mod backend;
pub mod backup;
pub mod failpoints;
pub mod mvcc;
pub mod snap;
pub mod wal;
