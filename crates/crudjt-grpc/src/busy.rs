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
//!   polling for `window` after the last call, then sleeps until the next.
//! - [`eagerly`] on a client: a call polls for its reply for at most
//!   `window`, then waits for it as usual.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

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
            window,
        });
        tokio::spawn(poll_while_busy(polling.clone()));
        Activity { polling }
    }

    /// Records a call, waking the polling task if it sleeps.
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

/// Keeps a worker polling while calls come within the window of each
/// other. Each `yield_now` hands the worker back to the runtime, which
/// then polls its sockets without sleeping before running this task again,
/// so other tasks and incoming messages are never held up by the loop.
async fn poll_while_busy(polling: Arc<Polling>) {
    while !polling.stopped.load(Ordering::Acquire) {
        if polling.busy() {
            tokio::task::yield_now().await;
            continue;
        }
        polling.asleep.store(true, Ordering::Release);
        // A call that came just before the flag was set did not wake the
        // task: look again, and keep polling if one did.
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
/// sockets without sleeping, so a reply is read as soon as it lands.
pub async fn eagerly<F: Future>(call: F, window: Duration) -> F::Output {
    let mut call = pin!(call);
    if !window.is_zero() {
        let until = Instant::now() + window;
        loop {
            let polled = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
            if let Poll::Ready(out) = polled {
                return out;
            }
            if Instant::now() >= until {
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
    async fn the_polling_task_sleeps_when_calls_stop() {
        let activity = Activity::start(Duration::from_millis(2));
        activity.call();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let polling = activity.polling.clone();
        assert!(
            polling.asleep.load(Ordering::Acquire),
            "still polling after the window"
        );
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
