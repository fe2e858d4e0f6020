//! Crash and error points for the failpoint tests (issues 11 and 17).
//!
//! With the `failpoints` cargo feature (on only in the server's test builds,
//! through its dev-dependency) each [`crash_point`] and [`error_point`] is a
//! `fail` crate failpoint, configured from the `FAILPOINTS` environment variable at start
//! (e.g. `FAILPOINTS='wal::after_fsync=2*off->return'`); when it fires it
//! prints `failpoint NAME: crashing` and aborts the process, as a power cut or
//! `kill -9` would, at exactly that point. Without the feature both functions
//! are empty and inlined away, so release builds carry no failpoint.
//!
//! A crash point must never be placed where aborting could be mistaken for
//! a handled error: it models the process vanishing, nothing else.

/// Reads `FAILPOINTS` and arms the configured points for the life of the
/// process. Call once, early in `main`.
#[cfg(feature = "failpoints")]
pub fn setup() {
    // The scenario owns the registry; leaking it keeps the points armed until
    // the process ends (they are meant to end it).
    std::mem::forget(fail::FailScenario::setup());
}

/// Without the feature: nothing to arm.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn setup() {}

/// Aborts the process here if the point `name` is configured to fire.
#[cfg(feature = "failpoints")]
pub fn crash_point(name: &'static str) {
    fail::fail_point!(name, |_| {
        eprintln!("failpoint {name}: crashing");
        std::process::abort()
    });
}

/// Without the feature: compiled away.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn crash_point(_name: &'static str) {}

/// Whether the point `name` is configured to fire here (any action but
/// `off`); the caller then fails as the storage it models would, e.g. with
/// `FAILPOINTS='mvcc::read=5*off->return'` the sixth read fails.
#[cfg(feature = "failpoints")]
pub fn error_point(name: &'static str) -> bool {
    fail::fail_point!(name, |_| {
        eprintln!("failpoint {name}: failing");
        true
    });
    false
}

/// Without the feature: never fires.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn error_point(_name: &'static str) -> bool {
    false
}
