//! Busy polling: trading CPU time for round-trip latency.
//!
//! A master or client that waits for the next message by sleeping in the
//! kernel pays for a wake-up on every message. On small virtual machines
//! that wake-up (an inter-processor interrupt, a context switch) costs more
//! than the call itself: a sequential round trip there takes about 80 us
//! of which the store is 1 us. Polling the sockets without sleeping for a
//! short window keeps the thread awake for the next message instead.
//!
//! Both halves are bounded, so that an idle process costs nothing:
//! - [`Activity`] on the master: a task that keeps one runtime worker
//!   busy for `window` after the last call, then sleeps until the next.
//! - [`eagerly`] on a client: a call polls for its reply for at most
//!   `window`, then waits for it as usual.
//!
//! A window is at most [`MAX_BUSY_POLL`]; longer ones are cut to it.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The longest busy-polling window: past it a caller would spend a core
/// to save a wake-up that costs microseconds.
pub const MAX_BUSY_POLL: Duration = Duration::from_secs(1);

/// The master's side: tells its polling task of every call. Dropping it
/// (with the last clone of the master) ends the task.
pub(crate) struct Activity {
    polling: Arc<Polling>,
}

/// What a call and the polling task share.
struct Polling {
    /// The time every stamp counts from.
    epoch: Instant,
    /// Nanoseconds from `epoch` to the start of the latest call.
    last_call: AtomicU64,
    /// Whether the task sleeps and needs waking by the next call.
    asleep: AtomicBool,
    stopped: AtomicBool,
    wake: Notify,
    window: Duration,
}

impl Activity {
    /// Starts the polling task on the current runtime.
    pub(crate) fn start(window: Duration) -> Activity {
        let polling = Arc::new(Polling {
            epoch: Instant::now(),
            last_call: AtomicU64::new(0),
            asleep: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            wake: Notify::new(),
            window: window.min(MAX_BUSY_POLL),
        });
        tokio::spawn(poll_while_busy(polling.clone()));
        Activity { polling }
    }

    /// Records a call (at its start, and again when it ends so that the
    /// window counts from the reply), waking the polling task if it sleeps.
    pub(crate) fn call(&self) {
        let polling = &self.polling;
        let now = polling.epoch.elapsed().as_nanos() as u64;
        polling.last_call.store(now, Ordering::Relaxed);
        if polling.asleep.swap(false, Ordering::AcqRel) {
            polling.wake.notify_one();
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.polling.stopped.store(true, Ordering::Release);
        self.polling.wake.notify_one();
    }
}

impl Polling {
    fn busy(&self) -> bool {
        let last = Duration::from_nanos(self.last_call.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last) < self.window
    }
}

/// Keeps a worker busy while calls come within the window of each other.
/// Each `yield_now` hands the worker back to the runtime, which runs any
/// other ready task and polls the sockets without sleeping (when no other
/// worker is already waiting on them) before running this task again, so
/// nothing is held up by the loop. Either way the worker's CPU stays
/// awake, and a message that lands wakes no sleeping CPU.
async fn poll_while_busy(polling: Arc<Polling>) {
    while !polling.stopped.load(Ordering::Acquire) {
        if polling.busy() {
            tokio::task::yield_now().await;
            continue;
        }
        // A swap, not a store: with the call's own swap it orders the two
        // sides, so that either the call sees the flag and wakes the task,
        // or the look below sees the call's stamp.
        polling.asleep.swap(true, Ordering::AcqRel);
        if polling.busy() && polling.asleep.swap(false, Ordering::AcqRel) {
            continue;
        }
        // A call after the flag was set leaves a permit, so this returns
        // at once for it.
        polling.wake.notified().await;
    }
}

/// Runs `call`, polling it without sleeping for at most `window` before
/// waiting for it as usual. The caller's thread spins only while its own
/// call is in flight, and only for as long as `window`.
///
/// On a current-thread runtime each `yield_now` makes the runtime poll its
/// sockets without sleeping, so a reply is read as soon as it lands. A
/// window is cut to [`MAX_BUSY_POLL`].
///
/// # Example
///
/// ```
/// # use std::time::Duration;
/// # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # runtime.block_on(async {
/// let reply = async { 42 }; // a client call, in real use
/// assert_eq!(crudjt_grpc::eagerly(reply, Duration::from_micros(200)).await, 42);
/// # });
/// ```
pub async fn eagerly<F: Future>(call: F, window: Duration) -> F::Output {
    eagerly_while(call, window, || true).await
}

/// [`eagerly`], polling only while `alone()` holds: a caller that shares
/// its runtime with other threads' calls stops polling as soon as another
/// call comes, since its spinning would hold the runtime from them.
pub(crate) async fn eagerly_while<F: Future>(
    call: F,
    window: Duration,
    alone: impl Fn() -> bool,
) -> F::Output {
    let mut call = pin!(call);
    if !window.is_zero() {
        let until = Instant::now() + window.min(MAX_BUSY_POLL);
        loop {
            let polled = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
            if let Poll::Ready(out) = polled {
                return out;
            }
            if Instant::now() >= until || !alone() {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    call.await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn eagerly_returns_what_the_call_returns() {
        assert_eq!(eagerly(async { 7 }, Duration::from_micros(50)).await, 7);
        let slow = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            8
        };
        assert_eq!(eagerly(slow, Duration::from_micros(50)).await, 8);
        assert_eq!(eagerly(async { 9 }, Duration::ZERO).await, 9);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_that_is_not_alone_stops_polling_at_once() {
        // Ready on its third poll, waking itself each time.
        let mut polls = 0;
        let call = std::future::poll_fn(|cx| {
            polls += 1;
            if polls == 3 {
                return Poll::Ready(polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        let asked = std::cell::Cell::new(0);
        let alone = || {
            asked.set(asked.get() + 1);
            false
        };
        assert_eq!(eagerly_while(call, Duration::from_secs(1), alone).await, 3);
        assert_eq!(asked.get(), 1, "it asked again after another call came");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_polling_task_sleeps_when_calls_stop() {
        let activity = Activity::start(Duration::from_millis(2));
        activity.call();
        let polling = activity.polling.clone();
        // However slowly this machine runs the task, it goes to sleep
        // once calls stop.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !polling.asleep.load(Ordering::Acquire) {
            assert!(
                Instant::now() < deadline,
                "still polling long after the window"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        activity.call();
        assert!(!polling.asleep.load(Ordering::Acquire));
        drop(activity);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            Arc::strong_count(&polling),
            1,
            "the task outlived its master"
        );
    }
}
