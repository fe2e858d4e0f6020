//! Fault injection and history checking for retcd clusters.
//!
//! A test starts real members, puts a [`proxy::FaultProxy`] on every
//! member-to-member connection, runs clients that record a [`history::History`],
//! injects faults (partitions, delays, kill -9, SIGSTOP) and then checks the
//! history: [`linearizability`] searches for a legal order per key, and
//! [`checks`] holds the rules that use etcd's revisions (reads match the
//! history at their header revision, watches see every event once).
//! [`powerloss`] rebuilds what a member's data dir holds after a power loss
//! (only what was fsynced) from a journal its `LD_PRELOAD` shim wrote.

pub mod checks;
pub mod history;
pub mod linearizability;
pub mod powerloss;
pub mod proxy;
