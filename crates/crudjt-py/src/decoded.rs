//! Dicts decoded from a store's data, kept so that reading a token again
//! costs a dict copy instead of a decode.
//!
//! Entries are keyed by the store's own allocation of the data (see
//! `crudjt::Store::create_shared`): a record that is changed, or reloaded
//! from disk, comes back in a new allocation and so misses. Each entry
//! holds that allocation, so its address cannot be reused for other data
//! while the entry lives. Only flat dicts are kept (see
//! [`convert::is_flat`]), and every hit hands out a fresh shallow copy, so
//! no caller can change what another reads.
//!
//! Used only while holding the GIL, which also serialises the lock.

use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use quick_cache::unsync::Cache;

use crate::convert;

pub struct Decoded {
    /// `None` when the store was opened with a cache capacity of 0.
    cache: Option<Mutex<Cache<usize, Kept>>>,
}

struct Kept {
    bytes: Arc<[u8]>,
    data: Py<PyDict>,
}

fn address(bytes: &Arc<[u8]>) -> usize {
    Arc::as_ptr(bytes).cast::<u8>() as usize
}

impl Decoded {
    /// Keeps up to `capacity` dicts.
    pub fn new(capacity: usize) -> Decoded {
        Decoded {
            cache: (capacity > 0).then(|| Mutex::new(Cache::new(capacity))),
        }
    }

    /// Remembers that `bytes` decode to `data`, when `data` is flat. Keeps
    /// a copy: the caller's dict stays the caller's.
    pub fn remember(&self, bytes: &Arc<[u8]>, data: &Bound<'_, PyDict>) -> PyResult<()> {
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        if !convert::is_flat(data) {
            return Ok(());
        }
        let kept = Kept {
            bytes: bytes.clone(),
            data: data.copy()?.unbind(),
        };
        cache.lock().insert(address(bytes), kept);
        Ok(())
    }

    /// The dict `bytes` decode to: a copy of the kept one, or a fresh
    /// decode (kept for next time when flat).
    pub fn data<'py>(&self, py: Python<'py>, bytes: &Arc<[u8]>) -> PyResult<Bound<'py, PyDict>> {
        let Some(cache) = &self.cache else {
            return Ok(convert::unpack_map(py, bytes)?.0);
        };
        if let Some(kept) = cache.lock().get(&address(bytes))
            && Arc::ptr_eq(&kept.bytes, bytes)
        {
            return kept.data.bind(py).copy();
        }
        let (data, flat) = convert::unpack_map(py, bytes)?;
        if flat {
            let kept = Kept {
                bytes: bytes.clone(),
                data: data.copy()?.unbind(),
            };
            cache.lock().insert(address(bytes), kept);
        }
        Ok(data)
    }
}
