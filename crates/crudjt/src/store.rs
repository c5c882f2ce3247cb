//! The public [`Store`] and the token operations.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, MutexGuard};
use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::config::{self, Config, Durability, MAX_DATA_SIZE_LIMIT};
use crate::disk::Disk;
use crate::error::{Error, OpenError};
use crate::flusher::{self, Control, shard_of};
use crate::key::{Keyring, Keys};
use crate::limits::Limits;
use crate::msgpack;
use crate::record::Rec;
use crate::shard::{Lookup, SHARDS, Shard};
use crate::stats::{KeyStats, Stats, SweepReport};
use crate::sweep;
use crate::token::{self, Token};

/// What a read returns: the data and what is left of the token's limits.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry<T> {
    /// The data as stored.
    pub data: T,
    /// Remaining lifetime in whole seconds, rounded up; `None` without one.
    pub ttl: Option<u64>,
    /// Reads left after this one; `None` without a budget.
    pub silence_read: Option<u64>,
}

impl Entry<Vec<u8>> {
    /// The MessagePack result map of the wire contract:
    /// `{"metadata": {...}, "data": {...}}`, `metadata` only when a limit is
    /// set.
    pub fn to_packed_result(&self) -> Vec<u8> {
        msgpack::pack_read_result(&self.data, self.ttl, self.silence_read)
    }
}

/// A file-backed, encrypted token store.
///
/// All methods take `&self` and are safe to call from many threads; share a
/// store with `Arc`. Changes are visible to every caller at once and
/// committed by a background flusher (see [`Durability`]). Dropping the
/// store, or [`Store::close`], flushes everything.
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use crudjt::{Config, Limits, SecretKey, Store};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(Config::new(SecretKey::generate()).path(dir.path())).unwrap();
///
/// let token = store.create(&HashMap::from([("user_id", 42)]), Limits::new(Some(3600), Some(2))?)?;
/// let entry = store.read::<HashMap<String, u32>>(token.as_str())?.unwrap();
/// assert_eq!(entry.data["user_id"], 42);
/// assert_eq!((entry.ttl, entry.silence_read), (Some(3600), Some(1)));
///
/// assert!(store.update(token.as_str(), &HashMap::from([("user_id", 7)]), Limits::NONE)?);
/// assert!(store.delete(token.as_str())?);
/// assert!(store.read_packed(token.as_str())?.is_none());
/// store.close()?;
/// # Ok::<(), crudjt::Error>(())
/// ```
pub struct Store {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

/// State shared by the store's handle and its background threads.
pub(crate) struct Inner {
    pub(crate) keys: Keyring,
    pub(crate) disk: Disk,
    pub(crate) dir: PathBuf,
    pub(crate) shards: Box<[Mutex<Shard>]>,
    /// The next record id to hand out.
    pub(crate) next_id: AtomicU64,
    /// Tokens stored, including expired ones not yet removed.
    pub(crate) tokens: AtomicI64,
    /// The flush generation new changes are stamped with (see
    /// [`crate::flusher`]).
    pub(crate) generation: AtomicU64,
    /// Entries and bytes in every shard's pending changes.
    pub(crate) pending_count: AtomicUsize,
    pub(crate) pending_bytes: AtomicUsize,
    pub(crate) max_pending_bytes: usize,
    pub(crate) max_data_size: usize,
    pub(crate) durability: Durability,
    pub(crate) flush_interval: Duration,
    pub(crate) sweep_interval: Duration,
    pub(crate) control: Mutex<Control>,
    /// Wakes the flusher and the sweeper.
    pub(crate) wake: Condvar,
    /// Signals the end of a flush round.
    pub(crate) done: Condvar,
}

/// The store's one time source, in milliseconds since the Unix epoch. With
/// the `testing` feature a test may stop and move it (see `testing.rs`);
/// without it this is the wall clock and nothing more.
pub(crate) fn now_ms() -> u64 {
    #[cfg(feature = "testing")]
    if let Some(at) = crate::testing::stopped_at() {
        return at;
    }
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn check_options(config: &Config) -> Result<(), OpenError> {
    let invalid = |name, value: String, expected| OpenError::InvalidOption {
        name,
        value,
        expected,
    };
    if !(1..=MAX_DATA_SIZE_LIMIT).contains(&config.max_data_size) {
        let value = config.max_data_size.to_string();
        return Err(invalid(
            "max_data_size",
            value,
            "it must be from 1 to 65536 bytes",
        ));
    }
    if config.flush_interval.is_zero() {
        return Err(invalid(
            "flush_interval",
            "0".into(),
            "it must be longer than zero",
        ));
    }
    if config.sweep_interval.is_zero() {
        return Err(invalid(
            "sweep_interval",
            "0".into(),
            "it must be longer than zero",
        ));
    }
    // Two of the largest records, so that a full batch never blocks one.
    const MIN_PENDING_BYTES: usize = 2 * (MAX_DATA_SIZE_LIMIT + crate::record::OVERHEAD);
    const _: () = assert!(MIN_PENDING_BYTES == 131_188);
    if config.max_pending_bytes < MIN_PENDING_BYTES {
        let value = config.max_pending_bytes.to_string();
        return Err(invalid(
            "max_pending_bytes",
            value,
            "it must be at least 131188 bytes",
        ));
    }
    Ok(())
}

impl Store {
    /// Opens the store, creating it if needed, and starts its flusher and
    /// sweeper threads.
    ///
    /// # Errors
    ///
    /// [`OpenError`] when an option is out of range, the directory cannot
    /// be used, another handle or process has the store open, or the store
    /// was made with another key.
    pub fn open(config: Config) -> Result<Store, OpenError> {
        check_options(&config)?;
        let mut keys = vec![Keys::derive(&config.secret_key)];
        keys.extend(config.previous_keys.iter().map(Keys::derive));
        let dir = config::prepare_store_dir(config.path.as_deref())?;
        let file = dir.join(config::FILE_NAME);
        config::prepare_file(&file).map_err(|source| OpenError::Io {
            path: file.clone(),
            source,
        })?;
        let opened = Disk::open(&file, &dir, keys)?;
        if opened.unknown_keys > 0 {
            tracing::warn!(
                keys = opened.unknown_keys,
                "ignoring previous secret keys this store never used"
            );
        }
        let inner = Arc::new(Inner {
            keys: opened.keyring,
            disk: opened.disk,
            dir: dir.clone(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard::new(config.cache_capacity)))
                .collect(),
            next_id: AtomicU64::new(opened.next_id),
            tokens: AtomicI64::new(i64::try_from(opened.records).unwrap_or(i64::MAX)),
            generation: AtomicU64::new(1),
            pending_count: AtomicUsize::new(0),
            pending_bytes: AtomicUsize::new(0),
            max_pending_bytes: config.max_pending_bytes,
            max_data_size: config.max_data_size,
            durability: config.durability,
            flush_interval: config.flush_interval,
            sweep_interval: config.sweep_interval,
            control: Mutex::new(Control::default()),
            wake: Condvar::new(),
            done: Condvar::new(),
        });
        let stranded: u64 = inner
            .key_stats()
            .iter()
            .filter(|key| !key.given)
            .map(|key| key.tokens)
            .sum();
        if stranded > 0 {
            tracing::warn!(
                records = stranded,
                "records need a previous secret key that was not given: their tokens no longer \
                 work and the sweep removes them"
            );
        }
        let mut store = Store {
            inner: inner.clone(),
            threads: Vec::new(),
        };
        let epoch = opened.epoch;
        let flush_inner = inner.clone();
        store.spawn("crudjt-flusher", move || flusher::run(flush_inner, epoch))?;
        let sweep_inner = inner;
        store.spawn("crudjt-sweeper", move || sweep::run(sweep_inner))?;
        tracing::info!(
            path = %dir.display(),
            tokens = opened.records,
            durability = ?config.durability,
            "store opened"
        );
        Ok(store)
    }

    fn spawn(&mut self, name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), OpenError> {
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(body)
            .map_err(OpenError::Thread)?;
        self.threads.push(handle);
        Ok(())
    }

    /// Creates a token for `data`, any value that serializes to a map.
    ///
    /// # Errors
    ///
    /// [`Error::NotAMap`] or [`Error::DataTooLarge`] for unsuitable data;
    /// storage errors when back-pressure finds the disk failing, or, with
    /// [`Durability::Always`], when the commit fails.
    pub fn create<T: Serialize + ?Sized>(&self, data: &T, limits: Limits) -> Result<Token, Error> {
        self.create_packed(&encode(data)?, limits)
    }

    /// Creates a token for data already packed as a MessagePack map.
    ///
    /// # Errors
    ///
    /// As [`Store::create`], plus [`Error::InvalidData`] for malformed
    /// MessagePack.
    pub fn create_packed(&self, packed: &[u8], limits: Limits) -> Result<Token, Error> {
        msgpack::validate_map(packed, self.inner.max_data_size)?;
        self.create_valid(Arc::from(packed), limits)
    }

    /// [`Store::create_packed`] that keeps `packed` itself rather than a
    /// copy. A read of the token hands back this same allocation
    /// ([`Store::read_shared`]) until the record is changed or reloaded
    /// from disk, so a front end can recognise it with [`Arc::ptr_eq`] and
    /// reuse what it decoded from it.
    ///
    /// # Errors
    ///
    /// As [`Store::create_packed`].
    pub fn create_shared(&self, packed: Arc<[u8]>, limits: Limits) -> Result<Token, Error> {
        msgpack::validate_map(&packed, self.inner.max_data_size)?;
        self.create_valid(packed, limits)
    }

    fn create_valid(&self, packed: Arc<[u8]>, limits: Limits) -> Result<Token, Error> {
        let inner = &*self.inner;
        inner.admit()?;
        let id = inner.next_id.fetch_add(1, Ordering::SeqCst);
        // The id floor written at each commit runs one lease (2^32) ahead of
        // the ids handed out; stop well before it would saturate.
        if id >= u64::MAX - (1 << 33) {
            return Err(Error::IdsExhausted);
        }
        let random = rand::rng().next_u64();
        let (key_number, keys) = inner.keys.current();
        let rec = Rec {
            random,
            token_key: key_number,
            expires_at: limits.expires_at(now_ms()),
            reads_left: limits.silence_read(),
            data: packed,
        };
        let stamp = inner.put(&mut inner.shard(id), id, Some(rec));
        inner.tokens.fetch_add(1, Ordering::Relaxed);
        inner.settle(stamp)?;
        Ok(token::seal(&keys.token, id, random))
    }

    /// Reads a token's data into `T`, spending one read of its budget.
    ///
    /// Returns `None` when the token is unknown, expired, used up or not a
    /// token at all.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyToken`]; [`Error::Decode`] when the data does not fit
    /// `T` (the read still counts); [`Error::Corrupt`] when the record on
    /// disk fails authentication; storage errors.
    pub fn read<T: DeserializeOwned>(&self, token: &str) -> Result<Option<Entry<T>>, Error> {
        let Some(entry) = self.inner.read(token)? else {
            return Ok(None);
        };
        let data = rmp_serde::from_slice(&entry.data).map_err(|e| Error::Decode(Arc::new(e)))?;
        Ok(Some(Entry {
            data,
            ttl: entry.ttl,
            silence_read: entry.silence_read,
        }))
    }

    /// Reads a token's data as the MessagePack bytes it was stored as.
    ///
    /// # Errors
    ///
    /// As [`Store::read`], without the decoding.
    pub fn read_packed(&self, token: &str) -> Result<Option<Entry<Vec<u8>>>, Error> {
        Ok(self.read_shared(token)?.map(|entry| Entry {
            data: entry.data.to_vec(),
            ttl: entry.ttl,
            silence_read: entry.silence_read,
        }))
    }

    /// [`Store::read_packed`] without copying the data: the allocation is
    /// the store's own (see [`Store::create_shared`]).
    ///
    /// # Errors
    ///
    /// As [`Store::read_packed`].
    pub fn read_shared(&self, token: &str) -> Result<Option<Entry<Arc<[u8]>>>, Error> {
        Ok(self.inner.read(token)?.map(|entry| Entry {
            data: entry.data,
            ttl: entry.ttl,
            silence_read: entry.silence_read,
        }))
    }

    /// Replaces a token's data and both limits (a new `ttl` counts from
    /// now). Returns `false` when the token is missing or expired.
    ///
    /// # Errors
    ///
    /// As [`Store::create`], plus [`Error::EmptyToken`].
    pub fn update<T: Serialize + ?Sized>(
        &self,
        token: &str,
        data: &T,
        limits: Limits,
    ) -> Result<bool, Error> {
        self.update_packed(token, &encode(data)?, limits)
    }

    /// [`Store::update`] with data already packed as a MessagePack map.
    ///
    /// # Errors
    ///
    /// As [`Store::create_packed`], plus [`Error::EmptyToken`].
    pub fn update_packed(&self, token: &str, packed: &[u8], limits: Limits) -> Result<bool, Error> {
        check_token(token)?;
        msgpack::validate_map(packed, self.inner.max_data_size)?;
        self.update_valid(token, Arc::from(packed), limits)
    }

    /// [`Store::update_packed`] that keeps `packed` itself, as
    /// [`Store::create_shared`] does.
    ///
    /// # Errors
    ///
    /// As [`Store::update_packed`].
    pub fn update_shared(
        &self,
        token: &str,
        packed: Arc<[u8]>,
        limits: Limits,
    ) -> Result<bool, Error> {
        check_token(token)?;
        msgpack::validate_map(&packed, self.inner.max_data_size)?;
        self.update_valid(token, packed, limits)
    }

    fn update_valid(&self, token: &str, packed: Arc<[u8]>, limits: Limits) -> Result<bool, Error> {
        self.inner.change(token, move |rec, now| {
            Some(Rec {
                random: rec.random,
                token_key: rec.token_key,
                expires_at: limits.expires_at(now),
                reads_left: limits.silence_read(),
                data: packed,
            })
        })
    }

    /// Deletes a token. Returns `false` when it was missing or expired.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyToken`]; storage errors as for [`Store::create`].
    pub fn delete(&self, token: &str) -> Result<bool, Error> {
        check_token(token)?;
        self.inner.change(token, |_, _| None)
    }

    /// Commits every change made so far and waits for the commit.
    ///
    /// # Errors
    ///
    /// The commit's storage error.
    pub fn flush(&self) -> Result<(), Error> {
        let inner = &*self.inner;
        let stamp = inner.generation.load(Ordering::SeqCst);
        inner.wait_durable(stamp)
    }

    /// Removes expired records now, as the background sweep does, and
    /// reports how many. They leave the file at the next flush.
    ///
    /// # Errors
    ///
    /// Storage errors reading the expiry index.
    pub fn sweep(&self) -> Result<SweepReport, Error> {
        sweep::sweep_now(&self.inner)
    }

    /// Gives the space of deleted records back to the filesystem: flushes,
    /// then rewrites the file compactly. Calls that need the disk wait
    /// while it runs; calls served from memory do not.
    ///
    /// # Errors
    ///
    /// Storage errors from the flush or the compaction.
    pub fn compact(&self) -> Result<(), Error> {
        self.flush()?;
        let before = self.inner.disk.file_size();
        self.inner.disk.compact()?;
        let after = self.inner.disk.file_size();
        tracing::info!(before, after, "store compacted");
        Ok(())
    }

    /// A snapshot of the store's counters.
    pub fn stats(&self) -> Stats {
        let inner = &*self.inner;
        let cached = inner.shards.iter().map(|s| s.lock().cached() as u64).sum();
        let control = inner.control.lock();
        Stats {
            tokens: u64::try_from(inner.tokens.load(Ordering::Relaxed)).unwrap_or(0),
            file_bytes: inner.disk.file_size(),
            pending_writes: inner.pending_count.load(Ordering::Relaxed) as u64,
            pending_bytes: inner.pending_bytes.load(Ordering::Relaxed) as u64,
            cached_records: cached,
            durability: inner.durability,
            flushes: control.flushes,
            last_flush: control.last_flush,
            flush_failures: control.flush_failures,
            last_sweep: control.last_sweep,
            keys: inner.key_stats(),
        }
    }

    /// Whether pending writes are at their bound, so that a changing call
    /// made now waits for the flusher (back-pressure). Servers use it to
    /// move such calls off threads that must not block.
    pub fn is_backpressured(&self) -> bool {
        !self.inner.has_room()
    }

    /// When writes become durable.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Largest accepted MessagePack data, in bytes.
    pub fn max_data_size(&self) -> usize {
        self.inner.max_data_size
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// The store's B-tree file.
    pub fn file(&self) -> &Path {
        self.inner.disk.file()
    }

    /// Flushes everything, stops the background threads, and compacts the
    /// file when a quarter or more of it is free space. Dropping the store
    /// does the same but can only log a failure.
    ///
    /// # Errors
    ///
    /// The final commit's storage error; the changes it could not write
    /// are lost.
    pub fn close(mut self) -> Result<(), Error> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        if self.threads.is_empty() {
            return Ok(());
        }
        self.inner.control.lock().shutdown = true;
        self.inner.wake.notify_all();
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
        let left = self.inner.pending_count.load(Ordering::SeqCst);
        if let Some(err) = &self.inner.control.lock().last_error
            && left > 0
        {
            return Err(err.clone());
        }
        let before = self.inner.disk.file_size();
        match self.inner.disk.compact_if_sparse() {
            Ok(true) => {
                let after = self.inner.disk.file_size();
                tracing::info!(before, after, "store compacted at close");
            }
            Ok(false) => {}
            // Everything is committed; a compaction that failed only leaves
            // the file larger.
            Err(err) => tracing::warn!(error = %err, "compaction at close failed"),
        }
        tracing::info!(path = %self.inner.dir.display(), "store closed");
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(err) = self.shutdown() {
            tracing::error!(error = %err, "store closed with changes it could not commit");
        }
    }
}

fn encode<T: Serialize + ?Sized>(data: &T) -> Result<Vec<u8>, Error> {
    rmp_serde::to_vec_named(data).map_err(|e| Error::Encode(Arc::new(e)))
}

fn check_token(token: &str) -> Result<(), Error> {
    if token.is_empty() {
        return Err(Error::EmptyToken);
    }
    Ok(())
}

/// What a token's text decrypts to under one key.
#[derive(Clone, Copy)]
struct Candidate {
    id: u64,
    random: u64,
    /// The number of the key it was decrypted with.
    key: u16,
}

/// What a read found, before copying or decoding the data.
struct Found {
    data: Arc<[u8]>,
    ttl: Option<u64>,
    silence_read: Option<u64>,
}

impl Inner {
    fn key_stats(&self) -> Vec<KeyStats> {
        let (current, _) = self.keys.current();
        let usage = self.disk.usage();
        usage
            .iter()
            .zip(0u16..)
            .map(|(usage, number)| KeyStats {
                number,
                current: number == current,
                given: self.keys.get(number).is_some(),
                tokens: usage.tokens,
                sealed: usage.sealed,
            })
            .collect()
    }

    pub(crate) fn shard(&self, id: u64) -> MutexGuard<'_, Shard> {
        self.shards[shard_of(id)].lock()
    }

    /// The record's current state: pending change, cache, then disk.
    pub(crate) fn current(&self, shard: &mut Shard, id: u64) -> Result<Option<Rec>, Error> {
        match shard.lookup(id) {
            Lookup::Memory(state) => Ok(state),
            Lookup::Disk => {
                let rec = self.disk.load(&self.keys, id)?;
                if let Some(rec) = &rec {
                    shard.cache(id, rec.clone());
                }
                Ok(rec)
            }
        }
    }

    /// Records a change under the shard lock the caller holds; returns its
    /// stamp.
    pub(crate) fn put(&self, shard: &mut Shard, id: u64, state: Option<Rec>) -> u64 {
        let stamp = self.generation.load(Ordering::SeqCst);
        let (bytes, new) = shard.put(id, state, stamp);
        if new {
            self.pending_count.fetch_add(1, Ordering::SeqCst);
        }
        let before = if bytes >= 0 {
            self.pending_bytes
                .fetch_add(bytes as usize, Ordering::SeqCst)
        } else {
            self.pending_bytes
                .fetch_sub(bytes.unsigned_abs(), Ordering::SeqCst)
        };
        let half = self.max_pending_bytes / 2;
        if before < half && before.saturating_add_signed(bytes) >= half {
            self.nudge();
        }
        stamp
    }

    /// With [`Durability::Always`], waits for the commit holding `stamp`.
    fn settle(&self, stamp: u64) -> Result<(), Error> {
        match self.durability {
            Durability::Always => self.wait_durable(stamp),
            _ => Ok(()),
        }
    }

    /// The readings of a token's text under each key the store was given,
    /// the current key first, keeping only ids that have been handed out.
    /// Under a wrong key the id is 64 random bits, so almost always one
    /// reading is left, and its record decides.
    fn candidates<'a>(&'a self, token: &'a str) -> impl Iterator<Item = Candidate> + 'a {
        let next_id = self.next_id.load(Ordering::SeqCst);
        self.keys.iter().filter_map(move |(key, keys)| {
            let (id, random) = token::open(&keys.token, token)?;
            (id < next_id).then_some(Candidate { id, random, key })
        })
    }

    /// The live record `at` names, under its shard lock, or `None`. An
    /// expired record found on the way is deleted.
    fn live(&self, shard: &mut Shard, at: Candidate, now: u64) -> Result<Option<Rec>, Error> {
        let Some(rec) = self.current(shard, at.id)? else {
            return Ok(None);
        };
        if !bool::from(rec.random.ct_eq(&at.random)) || rec.token_key != at.key {
            return Ok(None);
        }
        if rec.expired(now) {
            if self.has_room() {
                self.put(shard, at.id, None);
                self.tokens.fetch_sub(1, Ordering::Relaxed);
            }
            return Ok(None);
        }
        Ok(Some(rec))
    }

    /// Update or delete: `next` maps the live record to its new state.
    fn change(
        &self,
        token: &str,
        next: impl FnOnce(&Rec, u64) -> Option<Rec>,
    ) -> Result<bool, Error> {
        self.admit()?;
        let now = now_ms();
        for at in self.candidates(token) {
            let mut shard = self.shard(at.id);
            let Some(rec) = self.live(&mut shard, at, now)? else {
                continue;
            };
            let state = next(&rec, now);
            if state.is_none() {
                self.tokens.fetch_sub(1, Ordering::Relaxed);
            }
            let stamp = self.put(&mut shard, at.id, state);
            drop(shard);
            self.settle(stamp)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn read(&self, token: &str) -> Result<Option<Found>, Error> {
        check_token(token)?;
        for at in self.candidates(token) {
            if let Some(found) = self.read_at(at)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Reads the record `at` names, spending one read of its budget.
    fn read_at(&self, at: Candidate) -> Result<Option<Found>, Error> {
        loop {
            let now = now_ms();
            let mut shard = self.shard(at.id);
            let Some(rec) = self.live(&mut shard, at, now)? else {
                return Ok(None);
            };
            let Some(left) = rec.reads_left.map(|n| n - 1) else {
                drop(shard);
                return Ok(Some(Found {
                    ttl: rec.ttl_left(now),
                    silence_read: None,
                    data: rec.data,
                }));
            };
            // Spending a read is a change: it must respect back-pressure.
            if !self.has_room() {
                drop(shard);
                self.admit()?;
                continue;
            }
            let next = (left > 0).then(|| Rec {
                reads_left: Some(left),
                ..rec.clone()
            });
            if next.is_none() {
                self.tokens.fetch_sub(1, Ordering::Relaxed);
            }
            let stamp = self.put(&mut shard, at.id, next);
            drop(shard);
            self.settle(stamp)?;
            return Ok(Some(Found {
                ttl: rec.ttl_left(now),
                silence_read: Some(left),
                data: rec.data,
            }));
        }
    }
}
