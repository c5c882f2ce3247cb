//! Store counters as a Python dict, the same from a store and a client.

use crudjt_grpc::proto::admin::StatsResponse;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// `{'tokens': ..., 'file_bytes': ..., ..., 'last_flush': {...} | None,
/// 'last_sweep': {...} | None, 'keys': [{...}, ...]}`; times are Unix
/// seconds and durations seconds, as floats.
pub fn to_dict<'py>(py: Python<'py>, stats: &StatsResponse) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("tokens", stats.tokens)?;
    dict.set_item("file_bytes", stats.file_bytes)?;
    dict.set_item("pending_writes", stats.pending_writes)?;
    dict.set_item("pending_bytes", stats.pending_bytes)?;
    dict.set_item("cached_records", stats.cached_records)?;
    dict.set_item("durability", &stats.durability)?;
    dict.set_item("max_data_size", stats.max_data_size)?;
    dict.set_item("flushes", stats.flushes)?;
    dict.set_item("flush_failures", stats.flush_failures)?;
    let last_flush = (stats.last_flush_unix_ms != 0)
        .then(|| -> PyResult<_> {
            let flush = PyDict::new(py);
            flush.set_item("at", stats.last_flush_unix_ms as f64 / 1e3)?;
            flush.set_item("seconds", stats.last_flush_micros as f64 / 1e6)?;
            flush.set_item("records", stats.last_flush_records)?;
            Ok(flush)
        })
        .transpose()?;
    dict.set_item("last_flush", last_flush)?;
    let last_sweep = (stats.last_sweep_unix_ms != 0)
        .then(|| -> PyResult<_> {
            let sweep = PyDict::new(py);
            sweep.set_item("at", stats.last_sweep_unix_ms as f64 / 1e3)?;
            sweep.set_item("seconds", stats.last_sweep_micros as f64 / 1e6)?;
            sweep.set_item("removed", stats.last_sweep_removed)?;
            sweep.set_item("resealed", stats.last_sweep_resealed)?;
            sweep.set_item("dropped", stats.last_sweep_dropped)?;
            Ok(sweep)
        })
        .transpose()?;
    dict.set_item("last_sweep", last_sweep)?;
    let keys = PyList::empty(py);
    for key in &stats.keys {
        let usage = PyDict::new(py);
        usage.set_item("number", key.number)?;
        usage.set_item("current", key.current)?;
        usage.set_item("given", key.given)?;
        usage.set_item("tokens", key.tokens)?;
        usage.set_item("sealed", key.sealed)?;
        keys.append(usage)?;
    }
    dict.set_item("keys", keys)?;
    Ok(dict)
}
