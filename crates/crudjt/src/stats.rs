//! What a store reports about itself.

use std::time::{Duration, SystemTime};

use crate::config::Durability;

/// A snapshot of a store's state, from [`Store::stats`](crate::Store::stats).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Stats {
    /// Tokens stored, counting expired ones that no read or sweep has
    /// removed yet.
    pub tokens: u64,
    /// Size of the store file.
    pub file_bytes: u64,
    /// Records changed in memory and not yet committed.
    pub pending_writes: u64,
    /// Memory held by those changes.
    pub pending_bytes: u64,
    /// Clean records in the read cache.
    pub cached_records: u64,
    /// When writes become durable.
    pub durability: Durability,
    /// Successful commits since the store was opened.
    pub flushes: u64,
    /// The most recent successful commit.
    pub last_flush: Option<FlushReport>,
    /// Commits that failed since the store was opened.
    pub flush_failures: u64,
    /// The most recent completed sweep.
    pub last_sweep: Option<SweepReport>,
}

/// One commit of pending writes.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct FlushReport {
    /// When it finished.
    pub at: SystemTime,
    /// How long the transaction and its fsync took.
    pub duration: Duration,
    /// Records written or removed.
    pub records: u64,
}

/// One pass of the expiry sweep.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct SweepReport {
    /// When it finished.
    pub at: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// Expired records it removed (they leave the file at the next flush).
    pub removed: u64,
}
