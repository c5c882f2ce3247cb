//! [`BlockingClient`]: the client for code without an async runtime.
//!
//! Each call runs the connection on the calling thread (a current-thread
//! runtime), so a round trip costs no hand-off to another thread: on a
//! small machine those wake-ups cost as much as the call. Between calls a
//! helper thread briefly drives the connection now and then, so that an
//! idle client still answers the master's pings and GOAWAY and never holds
//! up the master's shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crudjt::{Entry, Limits};
use tokio::runtime::Runtime;

use crate::busy::eagerly_while;
use crate::client::{Client, ClientError, Target, not_connected};
use crate::proto::admin::StatsResponse;
use crate::security::Security;

/// How often an idle connection is looked after.
const IDLE_TICK: Duration = Duration::from_millis(50);
/// How long each look lasts; a call that starts meanwhile waits for it.
const IDLE_DRIVE: Duration = Duration::from_millis(1);

/// A blocking client. Calls from many threads at once are fine.
pub struct BlockingClient {
    // Fields drop in order: the connection before the runtime it runs on.
    client: Client,
    shared: Arc<Shared>,
    /// How long a call polls for its reply before sleeping until it comes.
    busy_poll: Duration,
    idle_driver: Option<JoinHandle<()>>,
}

struct Shared {
    runtime: Runtime,
    /// Calls in progress; the idle driver stays away while any is.
    calls: AtomicUsize,
    stop: AtomicBool,
}

impl BlockingClient {
    /// Connects to the master.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`], or when the runtime cannot start.
    pub fn connect(target: Target) -> Result<BlockingClient, ClientError> {
        BlockingClient::connect_with(target, &Security::none())
    }

    /// Like [`Client::connect_with`].
    ///
    /// # Errors
    ///
    /// As [`Client::connect_with`], or when the runtime cannot start.
    pub fn connect_with(
        target: Target,
        security: &Security,
    ) -> Result<BlockingClient, ClientError> {
        let shared = Shared::new(&target)?;
        let client = shared
            .runtime
            .block_on(Client::connect_with(target.clone(), security))?;
        BlockingClient::start(shared, client, &target)
    }

    /// Like [`Client::connect_lazy`]: connects on the first call.
    ///
    /// # Errors
    ///
    /// As [`Client::connect_lazy`], or when the runtime cannot start.
    pub fn connect_lazy(target: Target) -> Result<BlockingClient, ClientError> {
        BlockingClient::connect_lazy_with(target, &Security::none())
    }

    /// Like [`Client::connect_lazy_with`]: connects on the first call.
    ///
    /// # Errors
    ///
    /// As [`Client::connect_lazy_with`], or when the runtime cannot start.
    pub fn connect_lazy_with(
        target: Target,
        security: &Security,
    ) -> Result<BlockingClient, ClientError> {
        let shared = Shared::new(&target)?;
        let client = {
            let _entered = shared.runtime.enter();
            Client::connect_lazy_with(target.clone(), security)?
        };
        BlockingClient::start(shared, client, &target)
    }

    fn start(
        shared: Shared,
        client: Client,
        target: &Target,
    ) -> Result<BlockingClient, ClientError> {
        let shared = Arc::new(shared);
        let idle = shared.clone();
        let idle_driver = std::thread::Builder::new()
            .name("crudjt-client".into())
            .spawn(move || idle.drive_while_idle())
            .map_err(|e| not_connected(target, format!("cannot start the client thread: {e}")))?;
        Ok(BlockingClient {
            shared,
            client,
            busy_poll: Duration::ZERO,
            idle_driver: Some(idle_driver),
        })
    }

    /// Makes each call poll for its reply, without sleeping, for up to
    /// `window` (see [`eagerly`](crate::eagerly)): a round trip gets faster
    /// by a wake-up, for at most `window` of the calling thread's time.
    /// Only a call that is the client's only one in flight polls: calls
    /// from several threads at once share one runtime, and a spinning one
    /// would hold it from the rest. Zero, the default, sleeps until the
    /// reply.
    pub fn busy_poll(mut self, window: Duration) -> BlockingClient {
        self.busy_poll = window;
        self
    }

    fn call<F: Future>(&self, call: F) -> F::Output {
        self.shared.calls.fetch_add(1, Ordering::SeqCst);
        let alone = || self.shared.calls.load(Ordering::SeqCst) == 1;
        let out = self
            .shared
            .runtime
            .block_on(eagerly_while(call, self.busy_poll, alone));
        self.shared.calls.fetch_sub(1, Ordering::SeqCst);
        out
    }

    /// See [`Client::create`].
    ///
    /// # Errors
    ///
    /// As [`Client::create`].
    pub fn create(&self, packed: &[u8], limits: Limits) -> Result<String, ClientError> {
        self.call(self.client.create(packed, limits))
    }

    /// See [`Client::read`].
    ///
    /// # Errors
    ///
    /// As [`Client::read`].
    pub fn read(&self, token: &str) -> Result<Option<Entry<Vec<u8>>>, ClientError> {
        self.call(self.client.read(token))
    }

    /// See [`Client::update`].
    ///
    /// # Errors
    ///
    /// As [`Client::update`].
    pub fn update(&self, token: &str, packed: &[u8], limits: Limits) -> Result<bool, ClientError> {
        self.call(self.client.update(token, packed, limits))
    }

    /// See [`Client::delete`].
    ///
    /// # Errors
    ///
    /// As [`Client::delete`].
    pub fn delete(&self, token: &str) -> Result<bool, ClientError> {
        self.call(self.client.delete(token))
    }

    /// See [`Client::stats`].
    ///
    /// # Errors
    ///
    /// As [`Client::stats`].
    pub fn stats(&self) -> Result<StatsResponse, ClientError> {
        self.call(self.client.stats())
    }
}

impl Shared {
    fn new(target: &Target) -> Result<Shared, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| not_connected(target, format!("cannot start the client runtime: {e}")))?;
        Ok(Shared {
            runtime,
            calls: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        })
    }

    fn drive_while_idle(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::park_timeout(IDLE_TICK);
            if self.calls.load(Ordering::SeqCst) == 0 && !self.stop.load(Ordering::SeqCst) {
                self.runtime
                    .block_on(async { tokio::time::sleep(IDLE_DRIVE).await });
            }
        }
    }
}

impl Drop for BlockingClient {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(driver) = self.idle_driver.take() {
            driver.thread().unpark();
            let _ = driver.join();
        }
    }
}
