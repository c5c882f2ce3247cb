//! Knowing when this process is a fork of the one that opened a store.
//!
//! A forked child has a copy of the parent's memory but none of its
//! threads: a store copied into it has no flusher, and its file is still
//! the parent's. The Python package calls [`after_fork`] in every child
//! (`os.register_at_fork`), and each store and client remembers the
//! generation it was made in.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current process's fork generation.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// Called in a child right after `fork`.
#[pyfunction]
#[pyo3(name = "_after_fork")]
pub fn after_fork() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}
