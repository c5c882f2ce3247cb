//! Store and client errors as Python exceptions: the one place they are
//! mapped.
//!
//! - The caller's mistakes (bad data, limits, token, options, key) raise
//!   `ValueError`, with the same message in the master and in a connected
//!   process.
//! - A store that is closed, used from a forked child, locked by another
//!   process or made with another key raises `crudjt.errors.InvalidState`.
//! - A master that cannot be reached, or that holds its limit of
//!   connections, raises `crudjt.errors.MasterUnavailable`, a
//!   `ConnectionError`, with the master's reason.
//! - A master that refuses the client's credentials raises
//!   `crudjt.errors.AccessDenied`, a `PermissionError`.
//! - Everything else the store or the master fails raises
//!   `crudjt.errors.InternalError`.

use crudjt::{Error, OpenError};
use crudjt_grpc::{ClientError, Code};
use pyo3::PyErr;
use pyo3::exceptions::PyValueError;

pyo3::import_exception!(crudjt.errors, InternalError);
pyo3::import_exception!(crudjt.errors, InvalidState);
pyo3::import_exception!(crudjt.errors, MasterUnavailable);
pyo3::import_exception!(crudjt.errors, AccessDenied);

/// A failed call on an open store.
pub fn store(err: Error) -> PyErr {
    if err.is_invalid_argument() {
        return PyValueError::new_err(err.to_string());
    }
    match err {
        Error::Closed => InvalidState::new_err(err.to_string()),
        err => InternalError::new_err(with_sources(&err)),
    }
}

/// A store that could not be opened.
pub fn open(err: OpenError) -> PyErr {
    match err {
        OpenError::InvalidKey(_) | OpenError::InvalidOption { .. } => {
            PyValueError::new_err(err.to_string())
        }
        OpenError::AlreadyOpen { .. }
        | OpenError::KeyMismatch { .. }
        | OpenError::Incompatible { .. } => InvalidState::new_err(err.to_string()),
        err => InternalError::new_err(with_sources(&err)),
    }
}

/// A failed call through the client.
pub fn client(err: ClientError) -> PyErr {
    match err {
        ClientError::InvalidArgument(message) => PyValueError::new_err(message),
        ClientError::NotConnected { .. } | ClientError::Busy { .. } => {
            MasterUnavailable::new_err(err.to_string())
        }
        ClientError::Server {
            code: Code::Unavailable,
            ..
        } => MasterUnavailable::new_err(err.to_string()),
        ClientError::Server {
            code: Code::FailedPrecondition,
            ..
        } => InvalidState::new_err(err.to_string()),
        ClientError::Server {
            code: Code::Unauthenticated | Code::PermissionDenied,
            ..
        } => AccessDenied::new_err(err.to_string()),
        err => InternalError::new_err(err.to_string()),
    }
}

/// The error's message followed by its causes, so that an I/O failure says
/// which call failed and why. Messages never hold a key, token or payload.
pub fn with_sources(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
