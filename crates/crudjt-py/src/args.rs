//! Arguments from Python, checked the same way in the master and in a
//! connected process so that both raise the same `ValueError`.

use std::time::Duration;

use crudjt::{Durability, Limits, SecretKey};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString};

use crate::errors;

/// `ttl` and `silence_read`: each `None` for no limit, or an int from 1 to
/// 2**64-1. crudjt 1.0.x accepts the same range.
pub fn limits(
    ttl: Option<&Bound<'_, PyAny>>,
    silence_read: Option<&Bound<'_, PyAny>>,
) -> PyResult<Limits> {
    Limits::new(limit("ttl", ttl)?, limit("silence_read", silence_read)?).map_err(errors::store)
}

fn limit(name: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let Ok(int) = value.cast::<PyInt>() else {
        return Err(PyValueError::new_err(format!(
            "{name} must be an int or None, got {}",
            type_name(value)
        )));
    };
    if let Ok(v) = int.extract::<u64>() {
        // Zero is refused by `Limits::new`, with the store's own message.
        return Ok(Some(v));
    }
    if int.lt(0)? {
        Err(PyValueError::new_err(format!(
            "{name} must be at least 1 (or absent for no limit), got {int}"
        )))
    } else {
        Err(PyValueError::new_err(format!(
            "{name} must be at most 2**64-1, got {int}"
        )))
    }
}

/// A token argument: a str. `None` for a str that is not valid UTF-8 (it
/// holds a lone surrogate): no token looks like that, so the call simply
/// finds nothing. Whether it is empty is left to the store and the client,
/// which give the same message.
pub fn token<'a>(value: &'a Bound<'_, PyAny>) -> PyResult<Option<&'a str>> {
    let text = value.cast::<PyString>().map_err(|_| {
        PyValueError::new_err(format!("token must be a str, got {}", type_name(value)))
    })?;
    Ok(text.to_str().ok())
}

/// A duration in seconds, as Python code writes them.
pub fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "{name} must be a positive number of seconds, got {value}"
            ))
        })
}

/// A busy-polling window in seconds: zero (never) up to
/// [`crudjt_grpc::MAX_BUSY_POLL`].
pub fn window(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| *d <= crudjt_grpc::MAX_BUSY_POLL)
        .ok_or_else(|| {
            PyValueError::new_err(format!("{name} must be from 0 to 1 seconds, got {value}"))
        })
}

/// `"interval"` or `"always"`.
pub fn durability(value: &str) -> PyResult<Durability> {
    match value {
        "interval" => Ok(Durability::Interval),
        "always" => Ok(Durability::Always),
        other => Err(PyValueError::new_err(format!(
            "durability must be 'interval' or 'always', got {other:?}"
        ))),
    }
}

/// `previous_secret_keys`: `None`, or an iterable of base64 keys (a list,
/// usually). A bad key is named by its position, never echoed.
pub fn previous_keys(value: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<SecretKey>> {
    const NAME: &str = "previous_secret_keys";
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(Vec::new());
    };
    // A str or bytes is iterable too, one character at a time: a lone key
    // passed without its list would otherwise read as many bad keys.
    if value.is_instance_of::<PyString>() || value.is_instance_of::<PyBytes>() {
        return Err(PyValueError::new_err(format!(
            "{NAME} must be a list of base64 keys, got one {}; pass [key]",
            type_name(value)
        )));
    }
    let items = value.try_iter().map_err(|_| {
        PyValueError::new_err(format!(
            "{NAME} must be a list of base64 keys or None, got {}",
            type_name(value)
        ))
    })?;
    items
        .enumerate()
        .map(|(place, item)| {
            let item = item?;
            let text = item.cast::<PyString>().map_err(|_| {
                PyValueError::new_err(format!(
                    "{NAME}[{place}] must be a str, got {}",
                    type_name(&item)
                ))
            })?;
            SecretKey::from_base64(&text.to_cow()?).map_err(|err| {
                PyValueError::new_err(format!("{NAME}[{place}] is not a valid key: {err}"))
            })
        })
        .collect()
}

pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "an unknown type".to_owned(), |n| n.to_string())
}

/// A PEM file named by the `name` argument.
pub fn pem(name: &str, path: &std::path::Path) -> PyResult<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| PyValueError::new_err(format!("cannot read {name} {}: {e}", path.display())))
}

/// An auth token argument. The token never appears in the error.
pub fn auth_token(text: &str) -> PyResult<crudjt_grpc::AuthToken> {
    crudjt_grpc::AuthToken::new(text).map_err(|e| PyValueError::new_err(e.to_string()))
}
