//! The background flusher: commits pending changes to disk, one transaction
//! and one fsync per round, and the waits built on it (durable writes,
//! explicit flushes and back-pressure).
//!
//! Generations order changes and commits. Every change is stamped with the
//! current generation under its shard's lock. A flush round first bumps the
//! generation to `g + 1`, then collects, from every shard, each record's
//! newest version stamped `g` or less. A change stamped `g` was made under
//! its shard's lock before the round looked at that shard (otherwise it
//! would have read `g + 1`), so the round sees it, or, if a change stamped
//! `g + 1` replaced it since, finds it kept as the record's older version.
//! Once the round commits, every change stamped `g` or less is durable:
//! `durable` becomes `g`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::disk::Write;
use crate::error::Error;
use crate::record::{Rec, Sealer};
use crate::shard::SHARDS;
use crate::stats::{FlushReport, SweepReport};
use crate::store::Inner;

/// Batches at least this large are sealed on two threads when the flusher
/// is behind. A smaller batch seals in a few milliseconds, and a second
/// thread would only take a core from the callers: splitting batches of
/// 20,000 updates cut the update benchmark from 1.4M to 0.9M ops/s.
const PARALLEL_SEAL_MIN: usize = 32 * 1024;
const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// State shared by the flusher, the sweeper and waiting callers, under
/// [`Inner::control`].
#[derive(Default)]
pub(crate) struct Control {
    /// Every change stamped at or below this is committed.
    pub(crate) durable: u64,
    /// Highest stamp a caller is waiting to see committed.
    pub(crate) wanted: u64,
    /// Flush rounds finished, successful or not.
    pub(crate) rounds: u64,
    /// Why the last round failed, cleared by the next success.
    pub(crate) last_error: Option<Error>,
    /// A caller asked for a round now.
    pub(crate) requested: bool,
    /// The store is closing: flush what is left and stop.
    pub(crate) shutdown: bool,
    /// The flusher has stopped; nothing will be committed any more.
    pub(crate) flusher_done: bool,
    pub(crate) last_flush: Option<FlushReport>,
    pub(crate) flushes: u64,
    pub(crate) flush_failures: u64,
    pub(crate) last_sweep: Option<SweepReport>,
}

/// The flusher thread's body.
pub(crate) fn run(inner: Arc<Inner>, epoch: u32) {
    let mut sealer = Sealer::new(epoch);
    let mut next_due = Instant::now() + inner.flush_interval;
    loop {
        let closing = {
            let mut control = inner.control.lock();
            while !(control.shutdown || control.requested || control.wanted > control.durable) {
                if inner.wake.wait_until(&mut control, next_due).timed_out() {
                    break;
                }
            }
            control.requested = false;
            control.shutdown
        };
        let result = inner.flush_round(&mut sealer);
        next_due = Instant::now() + inner.flush_interval;
        let drained = inner.pending_count.load(Ordering::SeqCst) == 0;
        if closing && (result.is_err() || drained) {
            break;
        }
        if result.is_ok()
            && inner.pending_bytes.load(Ordering::Relaxed) >= inner.max_pending_bytes / 2
        {
            // Changes made during the round already fill half the bound:
            // start the next round now rather than at the next interval.
            inner.control.lock().requested = true;
        }
        if result.is_err() {
            // Waiting callers would otherwise retry a failing disk in a
            // tight loop.
            std::thread::sleep(inner.flush_interval.clamp(RETRY_MIN, RETRY_MAX));
        }
    }
    inner.control.lock().flusher_done = true;
    inner.done.notify_all();
}

impl Inner {
    /// One flush round: collect, commit, release.
    fn flush_round(&self, sealer: &mut Sealer) -> Result<(), Error> {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst);
        let mut batch: Vec<(u64, Option<Rec>)> = Vec::new();
        for shard in self.shards.iter() {
            shard.lock().collect(generation, &mut batch);
        }
        let started = Instant::now();
        let result = if batch.is_empty() {
            Ok(())
        } else {
            // Read after collecting: every id in the batch is below it.
            let next_id = self.next_id.load(Ordering::SeqCst);
            // A second sealing thread takes a core from the callers; use
            // it only when the flusher is falling behind them.
            let behind = self.pending_bytes.load(Ordering::Relaxed) >= self.max_pending_bytes / 2;
            let writes = self.seal(&batch, sealer, behind);
            self.disk.commit(&writes, next_id).map(|_| ())
        };
        if result.is_ok() {
            self.release(&batch, generation);
        }
        let mut control = self.control.lock();
        control.rounds += 1;
        match &result {
            Ok(()) => {
                control.durable = generation;
                control.last_error = None;
                if !batch.is_empty() {
                    control.flushes += 1;
                    let duration = started.elapsed();
                    tracing::debug!(records = batch.len(), ?duration, "flushed");
                    control.last_flush = Some(FlushReport {
                        at: SystemTime::now(),
                        duration,
                        records: batch.len() as u64,
                    });
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, source = ?std::error::Error::source(err), records = batch.len(), "flush failed, will retry");
                control.flush_failures += 1;
                control.last_error = Some(err.clone());
            }
        }
        drop(control);
        self.done.notify_all();
        result
    }

    /// Seals a batch into writes in id order: new ids then all land at the
    /// right edge of the B-tree and each page is written once, where the
    /// batch's own order (by shard, then hash) would hop across the whole
    /// range. When `split`, a large batch is sealed on two threads, each
    /// with its own range of nonces, to shorten the flusher's serial work.
    fn seal(&self, batch: &[(u64, Option<Rec>)], sealer: &mut Sealer, split: bool) -> Vec<Write> {
        let mut order: Vec<&(u64, Option<Rec>)> = batch.iter().collect();
        order.sort_unstable_by_key(|(id, _)| *id);
        let (key_number, keys) = self.keys.current();
        let cipher = &keys.record;
        let seal_part = |part: &[&(u64, Option<Rec>)], mut sealer: Sealer| -> Vec<Write> {
            let write = |(id, state): &&(u64, Option<Rec>)| Write {
                id: *id,
                sealed: state
                    .as_ref()
                    .map(|rec| sealer.seal(cipher, key_number, *id, rec)),
                expires_at: state.as_ref().and_then(|rec| rec.expires_at),
            };
            part.iter().map(write).collect()
        };
        if !split || order.len() < PARALLEL_SEAL_MIN {
            return seal_part(&order, sealer.split_off(order.len()));
        }
        let (head, tail) = order.split_at(order.len() / 2);
        let (head_sealer, tail_sealer) =
            (sealer.split_off(head.len()), sealer.split_off(tail.len()));
        std::thread::scope(|scope| {
            let helper = std::thread::Builder::new()
                .name("crudjt-sealer".into())
                .spawn_scoped(scope, || seal_part(tail, tail_sealer));
            match helper {
                Ok(helper) => {
                    let mut writes = seal_part(head, head_sealer);
                    writes.extend(helper.join().expect("sealing does not panic"));
                    writes
                }
                // Without a second thread, seal the rest here, with a
                // fresh share of nonces (the tail's went with the thread).
                Err(_) => {
                    let mut writes = seal_part(head, head_sealer);
                    writes.extend(seal_part(tail, sealer.split_off(tail.len())));
                    writes
                }
            }
        })
    }

    /// Drops committed changes from the pending layer, shard by shard.
    fn release(&self, batch: &[(u64, Option<Rec>)], generation: u64) {
        let mut bytes = 0usize;
        let mut count = 0usize;
        // The batch was collected shard by shard, so runs share a shard.
        for run in batch.chunk_by(|a, b| shard_of(a.0) == shard_of(b.0)) {
            let mut shard = self.shards[shard_of(run[0].0)].lock();
            for (id, _) in run {
                let (weight, left) = shard.release(*id, generation);
                bytes += weight;
                count += usize::from(left);
            }
        }
        self.pending_bytes.fetch_sub(bytes, Ordering::SeqCst);
        self.pending_count.fetch_sub(count, Ordering::SeqCst);
    }

    /// Whether pending changes are under their memory bound.
    pub(crate) fn has_room(&self) -> bool {
        self.pending_bytes.load(Ordering::Relaxed) < self.max_pending_bytes
    }

    /// Back-pressure: waits until pending changes are under their bound.
    ///
    /// # Errors
    ///
    /// The flusher's error when a round finished during the wait and the
    /// disk still could not take the changes, or [`Error::Closed`].
    pub(crate) fn admit(&self) -> Result<(), Error> {
        if self.has_room() {
            return Ok(());
        }
        let mut control = self.control.lock();
        let start = control.rounds;
        while !self.has_room() {
            if control.flusher_done {
                return Err(Error::Closed);
            }
            if control.rounds > start
                && let Some(err) = &control.last_error
            {
                return Err(err.clone());
            }
            control.requested = true;
            self.wake.notify_all();
            // The timeout only guards against a change of room that no
            // round reported.
            self.done.wait_for(&mut control, Duration::from_millis(50));
        }
        Ok(())
    }

    /// Waits until every change stamped `stamp` or earlier is committed.
    ///
    /// # Errors
    ///
    /// The commit's error if the round meant to hold it failed, or
    /// [`Error::Closed`] if the store closed before it could commit.
    pub(crate) fn wait_durable(&self, stamp: u64) -> Result<(), Error> {
        let mut control = self.control.lock();
        if control.durable >= stamp {
            return Ok(());
        }
        control.wanted = control.wanted.max(stamp);
        self.wake.notify_all();
        // A round that starts after this point bumps the generation past
        // `stamp`, so it either commits the change or fails.
        let start = control.rounds;
        loop {
            if control.durable >= stamp {
                return Ok(());
            }
            if control.rounds > start + 1
                && let Some(err) = &control.last_error
            {
                return Err(err.clone());
            }
            if control.flusher_done {
                return Err(control.last_error.clone().unwrap_or(Error::Closed));
            }
            self.done.wait(&mut control);
        }
    }

    /// Asks for a round soon because pending changes passed half their
    /// bound.
    pub(crate) fn nudge(&self) {
        let mut control = self.control.lock();
        control.requested = true;
        drop(control);
        self.wake.notify_all();
    }
}

pub(crate) fn shard_of(id: u64) -> usize {
    (id as usize) % SHARDS
}
