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

/// One version of a record's pending state.
pub(crate) struct Version {
    /// The record's state; `None` when it was deleted.
    pub(crate) state: Option<Rec>,
    /// The flush generation current when the change was made. The flush
    /// round of generation `g` commits, for each record, its newest
    /// version stamped `g` or less.
    pub(crate) stamp: u64,
}

impl Version {
    fn weight(&self) -> usize {
        self.state.as_ref().map_or(TOMBSTONE_WEIGHT, Rec::weight)
    }
}

/// The changes to one record waiting for the flusher.
pub(crate) struct Pending {
    /// What readers see.
    pub(crate) newest: Version,
    /// The newest version from an older generation, kept when a newer one
    /// replaced it: the round of that generation may have started and not
    /// yet reached this shard, and it must commit this version, or a crash
    /// could keep later changes of the generation but lose this one.
    /// Invariant: when set, its stamp is below `newest.stamp`.
    pub(crate) older: Option<Version>,
    /// The record was in the cache when it changed: it is in use, so it
    /// goes back into the cache once committed even when the cache is
    /// full. A new record only takes a free place, so a burst of creates
    /// does not flush out the records being read.
    warm: bool,
}

impl Pending {
    fn weight(&self) -> usize {
        self.newest.weight() + self.older.as_ref().map_or(0, Version::weight)
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
            return Lookup::Memory(pending.newest.state.clone());
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
        let version = Version { state, stamp };
        let warm = self
            .cache
            .as_mut()
            .is_some_and(|cache| cache.remove(&id).is_some());
        let Some(pending) = self.dirty.get_mut(&id) else {
            let added = version.weight() as isize;
            let pending = Pending {
                newest: version,
                older: None,
                warm,
            };
            self.dirty.insert(id, pending);
            return (added, true);
        };
        let before = pending.weight() as isize;
        let replaced = std::mem::replace(&mut pending.newest, version);
        if replaced.stamp < stamp {
            pending.older = Some(replaced);
        }
        (pending.weight() as isize - before, false)
    }

    /// Collects, per record, the newest version stamped `generation` or
    /// earlier.
    pub(crate) fn collect(&self, generation: u64, into: &mut Vec<(u64, Option<Rec>)>) {
        for (&id, pending) in &self.dirty {
            let version = std::iter::once(&pending.newest)
                .chain(&pending.older)
                .find(|version| version.stamp <= generation);
            if let Some(version) = version {
                into.push((id, version.state.clone()));
            }
        }
    }

    /// After a commit of `generation`: drops what it made durable and
    /// caches a record that has no newer change. Returns the bytes released
    /// and whether the record left the pending changes.
    pub(crate) fn release(&mut self, id: u64, generation: u64) -> (usize, bool) {
        let Some(pending) = self.dirty.get_mut(&id) else {
            return (0, false);
        };
        if pending.newest.stamp > generation {
            let older = pending.older.take_if(|older| older.stamp <= generation);
            return (older.map_or(0, |older| older.weight()), false);
        }
        let pending = self.dirty.remove(&id).expect("present above");
        let weight = pending.weight();
        if let (Some(rec), Some(cache)) = (pending.newest.state, &mut self.cache)
            && (pending.warm || (cache.len() as u64) < cache.capacity())
        {
            cache.insert(id, rec);
        }
        (weight, true)
    }

    pub(crate) fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, Cache::len)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn rec(byte: u8) -> Option<Rec> {
        Some(Rec {
            random: 1,
            token_key: 0,
            expires_at: None,
            reads_left: None,
            data: Arc::from(&[byte][..]),
        })
    }

    fn collected(shard: &Shard, generation: u64) -> Vec<Option<u8>> {
        let mut batch = Vec::new();
        shard.collect(generation, &mut batch);
        batch
            .into_iter()
            .map(|(_, state)| state.map(|r| r.data[0]))
            .collect()
    }

    #[test]
    fn a_round_in_progress_still_commits_the_version_of_its_generation() {
        let mut shard = Shard::new(10);
        shard.put(7, rec(1), 1);
        // Round 1 has started (new changes are stamped 2) but has not
        // reached this shard when the record changes again.
        shard.put(7, rec(2), 2);
        shard.put(7, rec(3), 2);
        assert_eq!(collected(&shard, 1), vec![Some(1)]);
        assert_eq!(shard.release(7, 1), (OVERHEAD_OF_ONE, false));
        assert!(matches!(shard.lookup(7), Lookup::Memory(Some(r)) if r.data[0] == 3));
        assert_eq!(collected(&shard, 2), vec![Some(3)]);
        assert_eq!(shard.release(7, 2), (OVERHEAD_OF_ONE, true));
        assert!(matches!(shard.lookup(7), Lookup::Memory(Some(r)) if r.data[0] == 3));
        assert!(shard.dirty.is_empty());
    }

    #[test]
    fn changes_of_one_generation_replace_each_other() {
        let mut shard = Shard::new(0);
        let (bytes, new) = shard.put(1, rec(1), 5);
        assert!(new && bytes > 0);
        let (bytes, new) = shard.put(1, None, 5);
        assert!(!new);
        assert_eq!(bytes, TOMBSTONE_WEIGHT as isize - OVERHEAD_OF_ONE as isize);
        assert!(shard.dirty[&1].older.is_none());
        assert_eq!(collected(&shard, 4), Vec::<Option<u8>>::new());
        assert_eq!(collected(&shard, 5), vec![None]);
        assert!(matches!(shard.lookup(1), Lookup::Memory(None)));
    }

    const OVERHEAD_OF_ONE: usize = crate::record::OVERHEAD + 1;
}
