//! The native module of the `crudjt` Python package: the store, the
//! client, and the conversions between Python values and MessagePack.
//! The package's Python facade (`python/crudjt/`) is a thin layer on top.
//!
//! Every store call and network round trip runs with the GIL released.

#![forbid(unsafe_code)]

mod args;
mod client;
mod convert;
mod decoded;
mod errors;
mod fork;
mod server;
mod stats;
mod store;

use pyo3::prelude::*;

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add("MAX_DATA_SIZE_LIMIT", crudjt::MAX_DATA_SIZE_LIMIT)?;
    module.add_class::<store::PyStore>()?;
    module.add_class::<client::PyClient>()?;
    module.add_function(wrap_pyfunction!(store::close_all, module)?)?;
    module.add_function(wrap_pyfunction!(fork::after_fork, module)?)?;
    Ok(())
}
