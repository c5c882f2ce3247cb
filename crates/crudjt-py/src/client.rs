//! `crudjt.Client`: a connection to a master in another process.

use std::path::PathBuf;
use std::time::Duration;

use crudjt_grpc::{BlockingClient, ClientError, Security, Target};
use parking_lot::RwLock;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::errors::{self, InvalidState};
use crate::{args, convert, fork, stats};

/// A client of a crudjt master. It connects on its first call and
/// reconnects after the master restarts; a process forked from one that
/// used it gets a connection of its own.
#[pyclass(module = "crudjt._native", name = "Client", frozen)]
pub struct PyClient {
    target: Target,
    security: Security,
    busy_poll: Duration,
    /// `None` once closed. As with the store, the lock is only taken while
    /// the GIL is released.
    conn: RwLock<Option<Connection>>,
}

struct Connection {
    /// The fork generation it was made in.
    born: u64,
    client: BlockingClient,
}

impl Connection {
    fn new(
        target: &Target,
        security: &Security,
        busy_poll: Duration,
    ) -> Result<Connection, ClientError> {
        let client = BlockingClient::connect_lazy_with(target.clone(), security)?;
        Ok(Connection {
            born: fork::generation(),
            client: client.busy_poll(busy_poll),
        })
    }
}

impl PyClient {
    /// Runs `f` on a connection made in this process. Call without the GIL.
    fn with<R>(&self, f: impl Fn(&BlockingClient) -> Result<R, ClientError>) -> PyResult<R> {
        {
            let conn = self.conn.read();
            match conn.as_ref() {
                None => return Err(InvalidState::new_err("the client is closed")),
                Some(conn) if conn.born == fork::generation() => {
                    return f(&conn.client).map_err(errors::client);
                }
                Some(_) => {}
            }
        }
        let mut conn = self.conn.write();
        if let Some(stale) = conn.take_if(|c| c.born != fork::generation()) {
            // Its runtime's threads stayed in the parent; dropping it here
            // would wait for them forever.
            std::mem::forget(stale);
            let fresh = Connection::new(&self.target, &self.security, self.busy_poll);
            *conn = Some(fresh.map_err(errors::client)?);
        }
        let conn = conn
            .as_ref()
            .ok_or_else(|| InvalidState::new_err("the client is closed"))?;
        f(&conn.client).map_err(errors::client)
    }
}

#[pymethods]
impl PyClient {
    /// A client of the master at `host:port`, or at `unix_socket` when
    /// given. Nothing is dialled until the first call. `busy_poll`
    /// (seconds, up to 1) makes each call poll for its reply for that long
    /// before sleeping until it comes, when no other call of this client is
    /// in flight; 0 never polls.
    #[new]
    #[pyo3(signature = (
        host = "127.0.0.1",
        port = 50051,
        *,
        unix_socket = None,
        tls_ca = None,
        tls_domain = None,
        tls_cert = None,
        tls_key = None,
        auth_token = None,
        busy_poll = 0.0,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        host: &str,
        port: u16,
        unix_socket: Option<PathBuf>,
        tls_ca: Option<PathBuf>,
        tls_domain: Option<String>,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
        auth_token: Option<&str>,
        busy_poll: f64,
    ) -> PyResult<PyClient> {
        let busy_poll = args::window("busy_poll", busy_poll)?;
        let target = match unix_socket {
            Some(path) => Target::Unix(path),
            None => Target::Tcp {
                host: host.to_owned(),
                port,
            },
        };
        let mut security = Security::none();
        security.tls_ca = tls_ca.map(|path| args::pem("tls_ca", &path)).transpose()?;
        security.tls_domain = tls_domain;
        security.tls_identity = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => {
                Some((args::pem("tls_cert", &cert)?, args::pem("tls_key", &key)?))
            }
            (None, None) => None,
            _ => return Err(PyValueError::new_err("tls_cert and tls_key go together")),
        };
        security.auth_token = auth_token.map(args::auth_token).transpose()?;
        let conn = Connection::new(&target, &security, busy_poll).map_err(errors::client)?;
        Ok(PyClient {
            target,
            security,
            busy_poll,
            conn: RwLock::new(Some(conn)),
        })
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
        let packed = convert::pack(data)?;
        let limits = args::limits(ttl, silence_read)?;
        py.detach(|| self.with(|c| c.create(&packed, limits)))
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
        let Some(found) = py.detach(|| self.with(|c| c.read(token)))? else {
            return Ok(None);
        };
        let (data, _) = convert::unpack_map(py, &found.data)?;
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
        let packed = convert::pack(data)?;
        let limits = args::limits(ttl, silence_read)?;
        let Some(token) = token else {
            return Ok(false);
        };
        py.detach(|| self.with(|c| c.update(token, &packed, limits)))
    }

    /// Deletes a token.
    fn delete(&self, py: Python<'_>, token: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Some(token) = args::token(token)? else {
            return Ok(false);
        };
        py.detach(|| self.with(|c| c.delete(token)))
    }

    /// The master's store counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let message = py.detach(|| self.with(BlockingClient::stats))?;
        stats::to_dict(py, &message)
    }

    /// Closes the connection. Later calls raise `InvalidState`.
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            let mut conn = self.conn.write();
            if let Some(stale) = conn.take_if(|c| c.born != fork::generation()) {
                std::mem::forget(stale);
            }
            conn.take();
        });
    }

    /// Whether the client was closed.
    #[getter]
    fn closed(&self) -> bool {
        self.conn.read().is_none()
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) {
        self.close(py);
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { "closed" } else { "open" };
        format!("<crudjt.Client {} ({state})>", self.target)
    }
}
