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
    /// Every secret key the store has used, by number, with the committed
    /// records that depend on it. A previous key can be dropped once no
    /// record depends on it.
    pub keys: Vec<KeyStats>,
}

/// One secret key the store has used, and what still depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyStats {
    /// The store's number for the key: 0 for its first key, then one more
    /// for each new key it was given.
    pub number: u16,
    /// Whether it is the key that makes new tokens and seals every write.
    pub current: bool,
    /// Whether the open store was given it (as current or previous key).
    pub given: bool,
    /// Committed records whose token it made. They need the key for as
    /// long as they live: dropping it ends those sessions.
    pub tokens: u64,
    /// Committed records sealed under it. The sweep and every write move
    /// them to the current key.
    pub sealed: u64,
}

impl KeyStats {
    /// Whether any committed record still needs this key.
    pub fn in_use(&self) -> bool {
        self.tokens > 0 || self.sealed > 0
    }
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
    /// Records it found sealed under a previous key and handed to the
    /// flusher to seal under the current one.
    pub resealed: u64,
    /// Records it removed because they need a key the store is no longer
    /// given, so that no token can reach them.
    pub dropped: u64,
}
