//! The gRPC server a Python master runs beside its store, on its own
//! threads, so that other processes can connect.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crudjt::Store;
use crudjt_grpc::{ServeOptions, Served};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a stop waits for in-flight calls.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running server. Stop it with [`Server::stop`]; dropping it stops it
/// too.
pub struct Server {
    runtime: Option<Runtime>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
    served: Served,
}

impl Server {
    /// Binds the listeners and starts serving `store`.
    ///
    /// # Errors
    ///
    /// When the runtime cannot start or a listener cannot be bound.
    pub fn start(store: Arc<Store>, options: ServeOptions) -> io::Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            // Two workers serve several connected processes in parallel
            // while leaving the application's own threads room.
            .worker_threads(2)
            .thread_name("crudjt-master")
            .enable_all()
            .build()?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (bound_tx, bound_rx) = oneshot::channel();
        let on_bound = move |served: &Served| {
            let _ = bound_tx.send(served.clone());
        };
        let stopped = async move {
            let _ = stop_rx.await;
        };
        let mut task = runtime.spawn(crudjt_grpc::serve(store, options, on_bound, stopped));
        let bound = runtime.block_on(async {
            match bound_rx.await {
                Ok(served) => Ok(served),
                // The server ended before it bound: its result says why.
                Err(_) => match (&mut task).await {
                    Ok(Err(err)) => Err(err),
                    Ok(Ok(())) => Err(io::Error::other("the server stopped before it listened")),
                    Err(join) => Err(io::Error::other(format!("the server failed: {join}"))),
                },
            }
        });
        let served = match bound {
            Ok(served) => served,
            Err(err) => {
                runtime.shutdown_timeout(STOP_GRACE);
                return Err(err);
            }
        };
        Ok(Server {
            runtime: Some(runtime),
            stop: Some(stop_tx),
            task: Some(task),
            served,
        })
    }

    /// Where it listens.
    pub fn served(&self) -> &Served {
        &self.served
    }

    /// Stops accepting, lets in-flight calls finish, and releases the
    /// store. Blocks; call it without the GIL.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = runtime.block_on(async { tokio::time::timeout(STOP_GRACE, task).await });
            if let Ok(Ok(Err(err))) = result {
                tracing::error!(error = %err, "the crudjt server failed while stopping");
            }
        }
        // Dropping the runtime's tasks releases every handle they hold on
        // the store.
        runtime.shutdown_timeout(STOP_GRACE);
    }

    /// Forgets the server without touching its threads: for a forked
    /// child, where those threads do not exist.
    pub fn abandon(self) {
        std::mem::forget(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shut_down();
    }
}
