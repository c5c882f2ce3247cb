//! A clock that tests can stop and move, behind the `testing` feature; not
//! a public API.
//!
//! Expiry is read from the wall clock, so without this a test of lifetimes
//! has to sleep through them, and cannot land a call on an exact
//! millisecond: the clock moves on between the test's arithmetic and the
//! store's. [`advance_clock`] stops the store's clock and moves it only
//! when told, so that a property test can check the rounding of `ttl` and
//! the instant of expiry exactly, across lifetimes of hours, in no time.
//!
//! The clock is process-wide: every store in the process reads it. Tests
//! that move it should have a test binary to themselves, or take turns.
//! Until the first call the store reads the wall clock as usual.

use std::sync::atomic::{AtomicU64, Ordering};

/// The stopped clock in milliseconds since the Unix epoch, or 0 while the
/// store reads the wall clock.
static STOPPED_AT: AtomicU64 = AtomicU64::new(0);

/// Moves the store's clock `ms` milliseconds forward and returns its new
/// reading, in milliseconds since the Unix epoch.
///
/// The first call stops the clock at the wall clock's time, then moves
/// it: from then on it moves only by these calls, so `advance_clock(0)`
/// stops it and tells its time. It saturates instead of overflowing.
pub fn advance_clock(ms: u64) -> u64 {
    let mut after = 0;
    // The closure runs again if another thread moved the clock meanwhile,
    // so `after` is the value that was stored.
    let _ = STOPPED_AT.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |at| {
        let from = if at == 0 { crate::store::now_ms() } else { at };
        // 0 means "running", so a stopped clock reads at least 1.
        after = from.saturating_add(ms).max(1);
        Some(after)
    });
    after
}

/// The stopped clock's reading, or `None` while it runs.
///
/// Relaxed is enough for one variable, and is a plain load: benchmarks
/// build with this feature too, through the dev-dependency on this crate.
pub(crate) fn stopped_at() -> Option<u64> {
    match STOPPED_AT.load(Ordering::Relaxed) {
        0 => None,
        at => Some(at),
    }
}
