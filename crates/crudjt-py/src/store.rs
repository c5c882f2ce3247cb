//! `crudjt.Store`: the store opened in this process, optionally serving
//! gRPC to others.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crudjt::{Config, SecretKey, Store};
use crudjt_grpc::{ServeOptions, ServerTls};
use parking_lot::{Mutex, RwLock};
use pyo3::exceptions::{PyRuntimeWarning, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::decoded::Decoded;
use crate::errors::{self, InternalError, InvalidState};
use crate::server::Server;
use crate::{args, convert, fork, stats};

/// Every store opened in this process, so that interpreter exit can close
/// (and so flush) the ones still open.
static OPEN: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// How long `close` waits for calls still running on other threads.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// A crudjt store opened in this process.
#[pyclass(module = "crudjt._native", name = "Store", frozen)]
pub struct PyStore {
    shared: Arc<Shared>,
}

struct Shared {
    /// `None` once closed. Calls take the read lock only while the GIL is
    /// released, so that `close`, which takes the write lock without the
    /// GIL too, can never wait on a thread that waits for the GIL.
    store: RwLock<Option<Arc<Store>>>,
    server: Mutex<Option<Server>>,
    /// The fork generation the store was opened in.
    born: u64,
    path: PathBuf,
    max_data_size: usize,
    /// Dicts decoded from the data, for repeated reads; GIL only.
    decoded: Decoded,
}

impl Shared {
    /// Runs `f` on the open store. Call without the GIL.
    fn with<R>(&self, f: impl FnOnce(&Store) -> Result<R, crudjt::Error>) -> PyResult<R> {
        self.check_fork()?;
        let guard = self.store.read();
        let store = guard
            .as_ref()
            .ok_or_else(|| errors::store(crudjt::Error::Closed))?;
        f(store).map_err(errors::store)
    }

    fn check_fork(&self) -> PyResult<()> {
        if fork::generation() == self.born {
            return Ok(());
        }
        Err(InvalidState::new_err(format!(
            "this process was forked from the crudjt master that opened the store at {}; \
             the store belongs to that process: connect to it instead \
             (CRUDJT.Config.connect_to_master() or crudjt.Client)",
            self.path.display()
        )))
    }

    /// Stops the server and closes the store. Call without the GIL.
    fn close(&self) -> PyResult<()> {
        self.check_fork()?;
        if let Some(server) = self.server.lock().take() {
            server.stop();
        }
        let Some(mut store) = self.store.write().take() else {
            return Ok(());
        };
        // The server's tasks are gone, but a stop that timed out may leave
        // one holding the store for a moment.
        let deadline = Instant::now() + CLOSE_GRACE;
        loop {
            match Arc::try_unwrap(store) {
                Ok(store) => return store.close().map_err(errors::store),
                Err(shared) if Instant::now() < deadline => {
                    store = shared;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(shared) => return shared.flush().map_err(errors::store),
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if fork::generation() != self.born {
            // In a forked child the store's threads do not exist and its
            // file is the parent's: leave both alone.
            if let Some(server) = self.server.get_mut().take() {
                server.abandon();
            }
            std::mem::forget(self.store.get_mut().take());
            return;
        }
        // Dropping the store flushes it; the server goes first so that no
        // call lands after that.
        drop(self.server.get_mut().take());
    }
}

#[pymethods]
impl PyStore {
    /// Opens (or creates) the store at `path`.
    #[new]
    #[pyo3(signature = (
        secret_key,
        path = None,
        *,
        durability = "interval",
        flush_interval = 0.5,
        cache_capacity = Config::DEFAULT_CACHE_CAPACITY,
        max_data_size = Config::DEFAULT_MAX_DATA_SIZE,
        sweep_interval = 86_400.0,
        previous_secret_keys = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        secret_key: Option<&str>,
        path: Option<PathBuf>,
        durability: &str,
        flush_interval: f64,
        cache_capacity: usize,
        max_data_size: usize,
        sweep_interval: f64,
        previous_secret_keys: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyStore> {
        let secret_key = secret_key.filter(|k| !k.is_empty()).ok_or_else(|| {
            PyValueError::new_err(
                "secret_key is required: base64 of 32, 48 or 64 random bytes \
                 (openssl rand -base64 48)",
            )
        })?;
        let secret = SecretKey::from_base64(secret_key)
            .map_err(|e| errors::open(crudjt::OpenError::InvalidKey(e)))?;
        let mut config = Config::new(secret)
            .durability(args::durability(durability)?)
            .flush_interval(args::seconds("flush_interval", flush_interval)?)
            .cache_capacity(cache_capacity)
            .max_data_size(max_data_size)
            .sweep_interval(args::seconds("sweep_interval", sweep_interval)?);
        if let Some(path) = path {
            config = config.path(path);
        }
        for key in args::previous_keys(previous_secret_keys)? {
            config = config.previous_key(key);
        }
        let store = py.detach(|| Store::open(config)).map_err(errors::open)?;
        let shared = Arc::new(Shared {
            path: store.path().to_path_buf(),
            max_data_size: store.max_data_size(),
            store: RwLock::new(Some(Arc::new(store))),
            server: Mutex::new(None),
            born: fork::generation(),
            decoded: Decoded::new(cache_capacity),
        });
        let mut open = OPEN.lock();
        open.retain(|weak| weak.strong_count() > 0);
        open.push(Arc::downgrade(&shared));
        Ok(PyStore { shared })
    }

    /// Creates a token for `data`.
    #[pyo3(signature = (data, ttl = None, silence_read = None))]
    fn create(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
        silence_read: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let packed: Arc<[u8]> = convert::pack(data)?.into();
        let limits = args::limits(ttl, silence_read)?;
        let shared = packed.clone();
        let token = py.detach(|| self.shared.with(|s| s.create_shared(shared, limits)))?;
        self.shared.decoded.remember(&packed, data.cast()?)?;
        Ok(token.to_string())
    }

    /// Reads a token: its data and limits, or `None`.
    fn read<'py>(
        &self,
        py: Python<'py>,
        token: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(token) = args::token(token)? else {
            return Ok(None);
        };
        let Some(found) = py.detach(|| self.shared.with(|s| s.read_shared(token)))? else {
            return Ok(None);
        };
        let data = self.shared.decoded.data(py, &found.data)?;
        convert::read_result(py, found.ttl, found.silence_read, data).map(Some)
    }

    /// Replaces a token's data and both limits.
    #[pyo3(signature = (token, data, ttl = None, silence_read = None))]
    fn update(
        &self,
        py: Python<'_>,
        token: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
        silence_read: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let token = args::token(token)?;
        let packed: Arc<[u8]> = convert::pack(data)?.into();
        let limits = args::limits(ttl, silence_read)?;
        let Some(token) = token else {
            return Ok(false);
        };
        let shared = packed.clone();
        let updated = py.detach(|| self.shared.with(|s| s.update_shared(token, shared, limits)))?;
        if updated {
            self.shared.decoded.remember(&packed, data.cast()?)?;
        }
        Ok(updated)
    }

    /// Deletes a token.
    fn delete(&self, py: Python<'_>, token: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Some(token) = args::token(token)? else {
            return Ok(false);
        };
        py.detach(|| self.shared.with(|s| s.delete(token)))
    }

    /// Commits every change made so far to disk.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.shared.with(Store::flush))
    }

    /// Removes expired tokens from disk now; returns how many.
    fn sweep(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.shared.with(|s| s.sweep().map(|report| report.removed)))
    }

    /// Rewrites the file without free space.
    fn compact(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.shared.with(Store::compact))
    }

    /// A snapshot of the store's counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let message = py.detach(|| self.shared.with(|s| Ok(crudjt_grpc::stats_message(s))))?;
        stats::to_dict(py, &message)
    }

    /// Serves the store over gRPC on `host:port` (port 0 picks a free one)
    /// and optionally a Unix socket; returns the bound `(host, port)`.
    /// `busy_poll` (seconds, up to 1) keeps the server polling for that
    /// long after each call instead of sleeping, for quicker sequential
    /// calls at the price of up to a core; 0 never busy-polls.
    #[pyo3(signature = (
        host = "127.0.0.1",
        port = 50051,
        unix_socket = None,
        *,
        tls_cert = None,
        tls_key = None,
        tls_client_ca = None,
        auth_token = None,
        busy_poll = 0.0,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn serve<'py>(
        &self,
        py: Python<'py>,
        host: Option<&str>,
        port: u16,
        unix_socket: Option<PathBuf>,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
        tls_client_ca: Option<PathBuf>,
        auth_token: Option<&str>,
        busy_poll: f64,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let tcp = host.map(|host| resolve(host, port)).transpose()?;
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => {
                let tls =
                    ServerTls::new(args::pem("tls_cert", &cert)?, args::pem("tls_key", &key)?);
                Some(match tls_client_ca {
                    Some(ca) => tls.require_client_cert(args::pem("tls_client_ca", &ca)?),
                    None => tls,
                })
            }
            (None, None) if tls_client_ca.is_none() => None,
            _ => {
                return Err(PyValueError::new_err(
                    "tls_cert and tls_key go together, and tls_client_ca needs them",
                ));
            }
        };
        let options = ServeOptions::new()
            .tcp(tcp)
            .unix_socket(unix_socket)
            .tls(tls)
            .auth_token(auth_token.map(args::auth_token).transpose()?)
            .busy_poll(args::window("busy_poll", busy_poll)?);
        if let Some(addr) = options.tcp.filter(|addr| !addr.ip().is_loopback())
            && !(options.tls.is_some() && options.authenticates_clients())
        {
            // crudjt 1.0.x serves any address it is given, so code written
            // for it keeps working; but say what it risks.
            let message = format!(
                "crudjt serves {addr}, reachable from other machines, without TLS and client \
                 authentication: anyone who can reach it can read or forge sessions; pass \
                 tls_cert, tls_key and tls_client_ca or auth_token"
            );
            let category = py.get_type::<PyRuntimeWarning>();
            PyErr::warn(py, &category, &std::ffi::CString::new(message)?, 1)?;
        }
        let served = py.detach(|| -> PyResult<_> {
            self.shared.check_fork()?;
            let mut server = self.shared.server.lock();
            if server.is_some() {
                return Err(InvalidState::new_err("the store is already serving"));
            }
            let store = self.shared.store.read().clone();
            let store = store.ok_or_else(|| errors::store(crudjt::Error::Closed))?;
            let started = Server::start(store, options)
                .map_err(|e| InternalError::new_err(errors::with_sources(&e)))?;
            let served = started.served().clone();
            *server = Some(started);
            Ok(served)
        })?;
        served
            .tcp
            .map(|addr| {
                PyTuple::new(
                    py,
                    [
                        addr.ip().to_string().into_pyobject(py)?.into_any(),
                        addr.port().into_pyobject(py)?.into_any(),
                    ],
                )
            })
            .transpose()
    }

    /// Stops serving gRPC; the store stays open.
    fn stop_serving(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            self.shared.check_fork()?;
            if let Some(server) = self.shared.server.lock().take() {
                server.stop();
            }
            Ok(())
        })
    }

    /// Stops serving, flushes and closes the store. Later calls raise
    /// `InvalidState`; closing again does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.shared.close())
    }

    /// Whether the store was closed.
    #[getter]
    fn closed(&self) -> bool {
        self.shared.store.read().is_none()
    }

    /// The store's directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.shared.path.clone()
    }

    /// The largest data this store takes, in bytes of MessagePack.
    #[getter]
    fn max_data_size(&self) -> usize {
        self.shared.max_data_size
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.close(py)
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { "closed" } else { "open" };
        format!("<crudjt.Store {} ({state})>", self.shared.path.display())
    }
}

fn resolve(host: &str, port: u16) -> PyResult<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| PyValueError::new_err(format!("cannot resolve grpc host {host:?}")))
}

/// Closes every store of this process that is still open: the package
/// registers this to run at interpreter exit.
#[pyfunction]
#[pyo3(name = "_close_all")]
pub fn close_all(py: Python<'_>) -> PyResult<()> {
    let open: Vec<Arc<Shared>> = OPEN.lock().drain(..).filter_map(|w| w.upgrade()).collect();
    let mut first_error = None;
    for shared in open {
        if shared.born != fork::generation() {
            continue;
        }
        if let Err(err) = py.detach(|| shared.close()) {
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
}
