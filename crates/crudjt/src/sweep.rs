//! The sweep, at open and every sweep interval: removes expired records
//! found through the expiry index, then, after a key rotation, re-seals
//! records still sealed under a previous key and removes those that need a
//! key the store is no longer given.
//!
//! It never holds more than one shard lock, for one record at a time, so
//! other calls go on while it runs. Removals go through the pending layer
//! like any delete and leave the file with the next flush.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use crate::error::Error;
use crate::record::KeyNumbers;
use crate::stats::SweepReport;
use crate::store::{Inner, now_ms};

/// Index entries read per read transaction.
const CHUNK: usize = 1024;

/// The sweeper thread's body: a sweep at once, then one every interval.
pub(crate) fn run(inner: Arc<Inner>) {
    loop {
        if let Err(err) = sweep_now(&inner) {
            tracing::warn!(error = %err, "expiry sweep failed, will retry at the next interval");
        }
        let mut control = inner.control.lock();
        let due = Instant::now() + inner.sweep_interval;
        while !control.shutdown {
            if inner.wake.wait_until(&mut control, due).timed_out() {
                break;
            }
        }
        if control.shutdown {
            return;
        }
    }
}

fn shutting_down(inner: &Inner) -> bool {
    inner.control.lock().shutdown
}

/// One sweep over everything expired as of its start.
pub(crate) fn sweep_now(inner: &Inner) -> Result<SweepReport, Error> {
    let started = Instant::now();
    let now = now_ms();
    let mut removed = 0u64;
    let mut after = None;
    while !shutting_down(inner) {
        let expired = inner.disk.expired(now, after, CHUNK)?;
        let Some(&last) = expired.last() else {
            break;
        };
        after = Some(last);
        for (_, id) in expired {
            inner.admit()?;
            let mut shard = inner.shard(id);
            // A pending change is newer than the index entry; the flush
            // that commits it also moves or drops the entry.
            if shard.dirty.contains_key(&id) {
                continue;
            }
            match inner.current(&mut shard, id) {
                Ok(Some(rec)) if rec.expired(now) => {
                    inner.put(&mut shard, id, None);
                    inner.tokens.fetch_sub(1, Ordering::Relaxed);
                    removed += 1;
                }
                Ok(_) => {}
                // A damaged record stays for an operator to look at; the
                // sweep goes on with the rest.
                Err(Error::Corrupt { id }) => tracing::warn!(id, "sweep skipped a damaged record"),
                Err(err) => return Err(err),
            }
        }
    }
    let (resealed, dropped) = if rekey_needed(inner) {
        rekey(inner)?
    } else {
        (0, 0)
    };
    let report = SweepReport {
        at: SystemTime::now(),
        duration: started.elapsed(),
        removed,
        resealed,
        dropped,
    };
    if resealed + dropped > 0 {
        tracing::info!(
            resealed,
            dropped,
            "sweep moved records off previous secret keys"
        );
    }
    tracing::debug!(removed, duration = ?report.duration, "sweep done");
    inner.control.lock().last_sweep = Some(report);
    Ok(report)
}

/// Whether committed records are sealed under a key other than the current
/// one, or depend on a key the store was not given.
fn rekey_needed(inner: &Inner) -> bool {
    let (current, _) = inner.keys.current();
    inner
        .disk
        .usage()
        .iter()
        .zip(0u16..)
        .any(|(usage, number)| {
            let given = inner.keys.get(number).is_some();
            (number != current && usage.sealed > 0) || (!given && usage.tokens > 0)
        })
}

/// Walks every record in id order: one sealed under a previous key is put
/// back unchanged, so the flusher seals it under the current key; one that
/// needs a key the store was not given is removed, as no token can reach
/// it any more. Returns `(re-sealed, removed)`.
fn rekey(inner: &Inner) -> Result<(u64, u64), Error> {
    let (current, _) = inner.keys.current();
    let (mut resealed, mut dropped) = (0u64, 0u64);
    let mut after = None;
    while !shutting_down(inner) {
        let page = inner.disk.key_numbers(after, CHUNK)?;
        let Some(&(last, _)) = page.last() else {
            break;
        };
        after = Some(last);
        for (id, numbers) in page {
            let Some(KeyNumbers { token, seal }) = numbers else {
                tracing::warn!(id, "sweep skipped a record with a damaged header");
                continue;
            };
            let lost = inner.keys.get(token).is_none() || inner.keys.get(seal).is_none();
            if !lost && seal == current {
                continue;
            }
            inner.admit()?;
            let mut shard = inner.shard(id);
            // A pending change is sealed under the current key anyway.
            if shard.dirty.contains_key(&id) {
                continue;
            }
            if lost {
                inner.put(&mut shard, id, None);
                inner.tokens.fetch_sub(1, Ordering::Relaxed);
                dropped += 1;
                continue;
            }
            match inner.current(&mut shard, id) {
                Ok(Some(rec)) => {
                    inner.put(&mut shard, id, Some(rec));
                    resealed += 1;
                }
                Ok(None) => {}
                Err(Error::Corrupt { id }) => tracing::warn!(id, "sweep skipped a damaged record"),
                Err(err) => return Err(err),
            }
        }
    }
    Ok((resealed, dropped))
}
