//! The expiry sweep: removes expired records found through the expiry
//! index, at open and every sweep interval.
//!
//! It never holds more than one shard lock, for one record at a time, so
//! other calls go on while it runs. Removals go through the pending layer
//! like any delete and leave the file with the next flush.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use crate::error::Error;
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
    let report = SweepReport {
        at: SystemTime::now(),
        duration: started.elapsed(),
        removed,
    };
    tracing::debug!(removed, duration = ?report.duration, "expiry sweep done");
    inner.control.lock().last_sweep = Some(report);
    Ok(report)
}
