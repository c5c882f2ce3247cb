//! The in-memory layer: records are spread over shards by id, each shard
//! behind its own lock, holding the changes not yet committed and a bounded
//! cache of clean records.
//!
//! Every change to a record happens under its shard's lock, so each token
//! is atomic: a read that spends the last unit of a budget and deletes the
//! record cannot interleave with another read of the same token.

use std::collections::HashMap;

use quick_cache::unsync::Cache;

use crate::record::Rec;

/// Number of shards. A power of two, so that `id % SHARDS` is a mask; ids
/// are sequential, so consecutive tokens land on different shards.
pub(crate) const SHARDS: usize = 64;
/// Memory charged for a pending deletion.
const TOMBSTONE_WEIGHT: usize = 64;

/// A change waiting for the flusher.
pub(crate) struct Pending {
    /// The record's new state; `None` when it was deleted.
    pub(crate) state: Option<Rec>,
    /// The flush generation current when the change was made. The flush
    /// that takes generation `g` commits every change stamped `g` or less.
    pub(crate) stamp: u64,
}

impl Pending {
    pub(crate) fn weight(&self) -> usize {
        self.state.as_ref().map_or(TOMBSTONE_WEIGHT, Rec::weight)
    }
}

pub(crate) struct Shard {
    /// Changes not yet committed, newest state per id. Invariant: an id
    /// here is absent from `cache`, and what is here wins over the disk.
    pub(crate) dirty: HashMap<u64, Pending>,
    /// Clean records, identical to what is on disk. `None` when the store
    /// was opened with a cache capacity of zero.
    cache: Option<Cache<u64, Rec>>,
}

/// Where a record's current state was found.
pub(crate) enum Lookup {
    /// In the pending changes or the cache (`None`: pending deletion).
    Memory(Option<Rec>),
    /// Not in memory: the caller must read the disk.
    Disk,
}

impl Shard {
    pub(crate) fn new(cache_capacity: usize) -> Shard {
        let per_shard = cache_capacity.div_ceil(SHARDS);
        Shard {
            dirty: HashMap::new(),
            cache: (per_shard > 0).then(|| Cache::new(per_shard)),
        }
    }

    pub(crate) fn lookup(&self, id: u64) -> Lookup {
        if let Some(pending) = self.dirty.get(&id) {
            return Lookup::Memory(pending.state.clone());
        }
        match self.cache.as_ref().and_then(|cache| cache.get(&id)) {
            Some(rec) => Lookup::Memory(Some(rec.clone())),
            None => Lookup::Disk,
        }
    }

    /// Remembers a record just read from disk.
    pub(crate) fn cache(&mut self, id: u64, rec: Rec) {
        if let Some(cache) = &mut self.cache {
            cache.insert(id, rec);
        }
    }

    /// Records a change. Returns the change in pending bytes, and whether
    /// the id was not pending before.
    pub(crate) fn put(&mut self, id: u64, state: Option<Rec>, stamp: u64) -> (isize, bool) {
        let pending = Pending { state, stamp };
        let added = pending.weight() as isize;
        if let Some(cache) = &mut self.cache {
            cache.remove(&id);
        }
        match self.dirty.insert(id, pending) {
            Some(old) => (added - old.weight() as isize, false),
            None => (added, true),
        }
    }

    /// Collects the changes stamped `generation` or earlier.
    pub(crate) fn collect(&self, generation: u64, into: &mut Vec<(u64, Option<Rec>)>) {
        for (&id, pending) in &self.dirty {
            if pending.stamp <= generation {
                into.push((id, pending.state.clone()));
            }
        }
    }

    /// After a commit of `generation`: drops the changes it made durable,
    /// unless they were changed again since, and caches the live ones.
    /// Returns the bytes and entries released.
    pub(crate) fn release(&mut self, id: u64, generation: u64) -> Option<usize> {
        let committed = self.dirty.get(&id).is_some_and(|p| p.stamp <= generation);
        if !committed {
            return None;
        }
        let pending = self.dirty.remove(&id)?;
        let weight = pending.weight();
        if let Some(rec) = pending.state {
            self.cache(id, rec);
        }
        Some(weight)
    }

    pub(crate) fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, Cache::len)
    }
}
