//! The B-tree file: three redb tables and the transactions on them.
//!
//! - `records`: record id (u64) to the sealed record (see [`crate::record`]).
//!   Ids ascend, so inserts land at the right edge of the tree.
//! - `expiry`: `(expiry ms, record id)` to nothing, one entry per record
//!   with a lifetime, kept in step with `records` by the same commit. The
//!   sweep reads it in key order, so its work grows with the number expired.
//! - `meta`: the store's own state, integers as 8-byte little-endian:
//!   `format`; `keys`, the fingerprints of every secret key the store has
//!   used, 32 bytes each, a key's number being its place in the list;
//!   `current_key`, the number of the key that makes tokens and seals
//!   writes; `key_records`, two integers per key number: committed records
//!   whose token that key made, and committed records sealed under it;
//!   `epoch` (bumped at every open, the high half of record nonces);
//!   `id_floor` (no id at or above it was ever handed out); `records`
//!   (number of rows in `records`).
//!
//! Format 1 kept one `fingerprint` instead of the key table and had no
//! `current_key` or `key_records`; the first open by this build turns it
//! into format 2, its key becoming key 0.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{MappedRwLockReadGuard, RwLock, RwLockReadGuard};
use redb::{
    CompactionMode, Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};

use crate::error::{Error, OpenError};
use crate::key::{FINGERPRINT_LEN, Keyring, Keys};
use crate::record::{self, KeyNumbers, Rec};

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
const EXPIRY: TableDefinition<(u64, u64), ()> = TableDefinition::new("expiry");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Version of the table layout and meta keys above.
const STORE_FORMAT: u64 = 2;
/// Most secret keys one store can have used: key numbers are 16 bits.
const MAX_KEYS: usize = 1 << 16;
/// How far past the last handed-out id each commit moves `id_floor`. Fewer
/// ids than this are created between two commits because pending writes
/// are bounded, so ids handed out before a crash are all below the floor
/// the next open starts from, and none is ever reused.
const ID_LEASE: u64 = 1 << 32;
/// redb's page cache, which also buffers a commit's dirty pages. Our own
/// record cache serves hot reads; this size lets a full batch of pending
/// writes (16 MiB of records, more as pages) be written without evicting
/// and re-reading pages mid-commit: sustained creates measured 211k/s with
/// 32 MiB and 248k/s with 96 MiB.
const PAGE_CACHE_BYTES: usize = 96 << 20;

/// The open B-tree file.
pub(crate) struct Disk {
    /// Shared by readers and the flusher; taken exclusively only to compact,
    /// which redb allows with no transaction open, and to reopen. `None`
    /// only between a failed reopen and the next try.
    db: RwLock<Option<Database>>,
    /// Set when a commit failed on I/O: redb then refuses every later
    /// transaction (`PreviousIo`) until the file is opened again, so the
    /// next commit reopens it first.
    failed_io: AtomicBool,
    file: PathBuf,
    /// Per key number, as committed: records whose token it made and
    /// records sealed under it. Updated with each commit.
    usage: parking_lot::Mutex<Vec<Usage>>,
}

/// How many committed records depend on one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Records whose token the key made: they need it for as long as
    /// they live.
    pub(crate) tokens: u64,
    /// Records sealed under the key: they need it until re-sealed.
    pub(crate) sealed: u64,
}

/// One record's new state, ready for the B-tree.
pub(crate) struct Write {
    pub(crate) id: u64,
    /// The sealed record; `None` when it was deleted.
    pub(crate) sealed: Option<Vec<u8>>,
    /// Its expiry, for the expiry index.
    pub(crate) expires_at: Option<u64>,
}

/// What [`Disk::open`] learned from the file.
pub(crate) struct Opened {
    pub(crate) disk: Disk,
    /// The keys given, numbered; previous keys the store never used are
    /// left out.
    pub(crate) keyring: Keyring,
    /// How many previous keys were left out.
    pub(crate) unknown_keys: usize,
    /// This open's epoch, unique among all opens of the store.
    pub(crate) epoch: u32,
    /// The first id this open may hand out.
    pub(crate) next_id: u64,
    /// Rows in `records`.
    pub(crate) records: u64,
}

type Meta<'txn> = redb::Table<'txn, &'static str, &'static [u8]>;

/// A meta integer; `Some(None)` when its value has the wrong length.
fn meta_u64(meta: &Meta<'_>, name: &str) -> Result<Option<Option<u64>>, redb::Error> {
    let Some(value) = meta.get(name)? else {
        return Ok(None);
    };
    let bytes: Option<[u8; 8]> = value.value().try_into().ok();
    Ok(Some(bytes.map(u64::from_le_bytes)))
}

fn set_meta_u64(meta: &mut Meta<'_>, name: &str, value: u64) -> Result<(), redb::Error> {
    meta.insert(name, value.to_le_bytes().as_slice())?;
    Ok(())
}

/// Why an intact file cannot be opened.
enum Refusal {
    KeyMismatch,
    Incompatible(&'static str),
}

/// What an open claimed and found, inside its transaction.
struct Claimed {
    epoch: u32,
    next_id: u64,
    records: u64,
    /// Per given key, the store's number for it; `None` for a previous key
    /// the store never used. The current key always has one.
    numbers: Vec<Option<u16>>,
    usage: Vec<Usage>,
}

fn read_usage(meta: &Meta<'_>, keys: usize) -> Result<Vec<Usage>, redb::Error> {
    let mut usage = vec![Usage::default(); keys];
    if let Some(value) = meta.get("key_records")? {
        // The counts only feed stats and the sweep's re-sealing; damaged
        // ones restart from zero.
        let bytes = value.value();
        if bytes.len() == keys * 16 {
            for (entry, chunk) in usage.iter_mut().zip(bytes.chunks_exact(16)) {
                entry.tokens = u64::from_le_bytes(chunk[..8].try_into().expect("8 bytes"));
                entry.sealed = u64::from_le_bytes(chunk[8..].try_into().expect("8 bytes"));
            }
        }
    }
    Ok(usage)
}

fn write_usage(meta: &mut Meta<'_>, usage: &[Usage]) -> Result<(), redb::Error> {
    let mut bytes = Vec::with_capacity(usage.len() * 16);
    for entry in usage {
        bytes.extend_from_slice(&entry.tokens.to_le_bytes());
        bytes.extend_from_slice(&entry.sealed.to_le_bytes());
    }
    meta.insert("key_records", bytes.as_slice())?;
    Ok(())
}

/// Per given key, the store's number for it (see [`Claimed::numbers`]),
/// and the records that depend on each key the store knows.
type KeyClaim = (Vec<Option<u16>>, Vec<Usage>);

/// Turns a format 1 store into format 2: its one key becomes key 0, which
/// made and sealed every record.
fn upgrade_from_v1(meta: &mut Meta<'_>) -> Result<Result<(), Refusal>, redb::Error> {
    let Some(fingerprint) = meta.remove("fingerprint")?.map(|f| f.value().to_vec()) else {
        return Ok(Err(Refusal::Incompatible("its key fingerprint is missing")));
    };
    let records = meta_u64(meta, "records")?.flatten().unwrap_or(0);
    meta.insert("keys", fingerprint.as_slice())?;
    set_meta_u64(meta, "current_key", 0)?;
    let usage = Usage {
        tokens: records,
        sealed: records,
    };
    write_usage(meta, &[usage])?;
    set_meta_u64(meta, "format", STORE_FORMAT)?;
    tracing::info!("store upgraded from format 1 to 2");
    Ok(Ok(()))
}

/// Finds the store's number for each given key (the current one first) and
/// makes the current key the store's current key, adding it to the key
/// table when the store's current key is among the previous keys given: a
/// rotation. Any other unknown current key is refused.
fn claim_keys(
    meta: &mut Meta<'_>,
    given: &[Keys],
) -> Result<Result<KeyClaim, Refusal>, redb::Error> {
    let mut table = match meta.get("keys")? {
        Some(value) => value.value().to_vec(),
        None => Vec::new(),
    };
    if table.len() % FINGERPRINT_LEN != 0 {
        return Ok(Err(Refusal::Incompatible("its key table is damaged")));
    }
    let known = table.len() / FINGERPRINT_LEN;
    let number_of = |keys: &Keys| {
        table
            .chunks_exact(FINGERPRINT_LEN)
            .position(|stored| keys.matches(stored))
            .map(|n| u16::try_from(n).expect("at most 2^16 keys are stored"))
    };
    let mut numbers: Vec<Option<u16>> = given.iter().map(number_of).collect();
    let mut usage = read_usage(meta, known)?;
    if known > 0 {
        let stored = meta_u64(meta, "current_key")?.flatten();
        let Some(stored) = stored.and_then(|n| u16::try_from(n).ok()) else {
            return Ok(Err(Refusal::Incompatible(
                "its current key number is damaged",
            )));
        };
        // Moving to another key, new or earlier, needs the store's current
        // key among the previous ones: a key given by mistake must not
        // strand the tokens made under the current one.
        if numbers[0] != Some(stored) && !numbers[1..].contains(&Some(stored)) {
            return Ok(Err(Refusal::KeyMismatch));
        }
    }
    if numbers[0].is_none() {
        if known == MAX_KEYS {
            return Ok(Err(Refusal::Incompatible("it has used 65536 secret keys")));
        }
        table.extend_from_slice(&given[0].fingerprint);
        numbers[0] = Some(u16::try_from(known).expect("fewer than 2^16 keys"));
        usage.push(Usage::default());
        meta.insert("keys", table.as_slice())?;
        write_usage(meta, &usage)?;
        if known > 0 {
            tracing::info!(
                key = known,
                "store given a new secret key; previous keys still open older tokens"
            );
        }
    }
    let current = numbers[0].expect("the current key has a number");
    set_meta_u64(meta, "current_key", u64::from(current))?;
    Ok(Ok((numbers, usage)))
}

/// Inside the open's transaction: creates the tables of a new store,
/// upgrades an older format, checks and numbers the keys, and moves the
/// epoch and the id floor forward.
fn claim_epoch(
    txn: &WriteTransaction,
    given: &[Keys],
) -> Result<Result<Claimed, Refusal>, redb::Error> {
    let mut meta = txn.open_table(META)?;
    txn.open_table(RECORDS)?;
    txn.open_table(EXPIRY)?;
    match meta_u64(&meta, "format")? {
        None => set_meta_u64(&mut meta, "format", STORE_FORMAT)?,
        Some(Some(1)) => {
            if let Err(refusal) = upgrade_from_v1(&mut meta)? {
                return Ok(Err(refusal));
            }
        }
        Some(Some(STORE_FORMAT)) => {}
        Some(_) => {
            return Ok(Err(Refusal::Incompatible(
                "its format is newer than this build",
            )));
        }
    }
    let (numbers, usage) = match claim_keys(&mut meta, given)? {
        Ok(claimed) => claimed,
        Err(refusal) => return Ok(Err(refusal)),
    };
    // A damaged epoch or id floor could make nonces or ids repeat: refuse.
    let (Some(epoch), Some(next_id)) = (
        meta_u64(&meta, "epoch")?.unwrap_or(Some(0)),
        meta_u64(&meta, "id_floor")?.unwrap_or(Some(0)),
    ) else {
        return Ok(Err(Refusal::Incompatible(
            "its epoch or id floor is damaged",
        )));
    };
    let Ok(epoch) = u32::try_from(epoch + 1) else {
        return Ok(Err(Refusal::Incompatible("it has been opened 2^32 times")));
    };
    let Some(floor) = next_id.checked_add(ID_LEASE) else {
        return Ok(Err(Refusal::Incompatible("it has used up its record ids")));
    };
    set_meta_u64(&mut meta, "epoch", u64::from(epoch))?;
    set_meta_u64(&mut meta, "id_floor", floor)?;
    // The row count only feeds stats; a damaged one restarts from zero.
    let records = meta_u64(&meta, "records")?.flatten().unwrap_or(0);
    Ok(Ok(Claimed {
        epoch,
        next_id,
        records,
        numbers,
        usage,
    }))
}

fn open_file(file: &Path) -> Result<Database, DatabaseError> {
    redb::Builder::new()
        .set_cache_size(PAGE_CACHE_BYTES)
        .set_repair_callback(|_| tracing::warn!("store file was not closed cleanly, repairing"))
        .create(file)
}

fn begin(db: &Database) -> Result<WriteTransaction, redb::TransactionError> {
    let mut txn = db.begin_write()?;
    // Quick repair saves the allocator state with each commit, so a store
    // reopens at once after a crash instead of walking the whole file.
    txn.set_quick_repair(true);
    Ok(txn)
}

/// Adds (`added`) or takes away one record's dependence on its keys.
/// Numbers outside the key table come only from damaged headers and are
/// not counted.
fn count(usage: &mut [Usage], numbers: Option<KeyNumbers>, added: bool) {
    let Some(numbers) = numbers else {
        return;
    };
    let step = |n: &mut u64| {
        *n = if added {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        }
    };
    if let Some(entry) = usage.get_mut(usize::from(numbers.token)) {
        step(&mut entry.tokens);
    }
    if let Some(entry) = usage.get_mut(usize::from(numbers.seal)) {
        step(&mut entry.sealed);
    }
}

impl Disk {
    /// Opens or creates the file, checks and numbers the keys (`given`
    /// holds the current key first, then previous ones) and claims a new
    /// epoch.
    pub(crate) fn open(file: &Path, dir: &Path, given: Vec<Keys>) -> Result<Opened, OpenError> {
        let storage = |source: redb::Error| OpenError::Storage {
            path: file.into(),
            source,
        };
        let db = open_file(file).map_err(|err| match err {
            DatabaseError::DatabaseAlreadyOpen => OpenError::AlreadyOpen { path: file.into() },
            other => storage(other.into()),
        })?;
        let txn = begin(&db).map_err(|e| storage(e.into()))?;
        let claimed = claim_epoch(&txn, &given).map_err(storage)?;
        let claimed = claimed.map_err(|refusal| match refusal {
            Refusal::KeyMismatch => OpenError::KeyMismatch { path: dir.into() },
            Refusal::Incompatible(reason) => OpenError::Incompatible {
                path: file.into(),
                reason: reason.into(),
            },
        })?;
        txn.commit().map_err(|e| storage(e.into()))?;
        let mut numbered = Vec::with_capacity(given.len());
        let mut unknown_keys = 0;
        for (keys, number) in given.into_iter().zip(&claimed.numbers) {
            match number {
                // The same key given twice counts once.
                Some(n) if numbered.iter().any(|(m, _)| m == n) => {}
                Some(n) => numbered.push((*n, keys)),
                None => unknown_keys += 1,
            }
        }
        let disk = Disk {
            db: RwLock::new(Some(db)),
            failed_io: AtomicBool::new(false),
            file: file.into(),
            usage: parking_lot::Mutex::new(claimed.usage),
        };
        Ok(Opened {
            disk,
            keyring: Keyring::new(numbered),
            unknown_keys,
            epoch: claimed.epoch,
            next_id: claimed.next_id,
            records: claimed.records,
        })
    }

    /// Fetches and opens record `id`, if it is on disk. A record sealed
    /// under a key the store was not given reads as absent: nothing can
    /// open it, and the sweep removes it.
    pub(crate) fn load(&self, keyring: &Keyring, id: u64) -> Result<Option<Rec>, Error> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(Error::storage)?;
        let table = txn.open_table(RECORDS).map_err(Error::storage)?;
        let Some(bytes) = table.get(id).map_err(Error::storage)? else {
            return Ok(None);
        };
        let bytes = bytes.value();
        let Some(numbers) = record::key_numbers(bytes) else {
            return Err(Error::Corrupt { id });
        };
        match keyring.get(numbers.seal) {
            Some(keys) => record::open(&keys.record, id, bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Up to `limit` records after id `after` (from the first when `None`),
    /// in id order, with the key numbers of their clear headers; `None`
    /// for a header too damaged to read.
    pub(crate) fn key_numbers(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Option<KeyNumbers>)>, Error> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(Error::storage)?;
        let table = txn.open_table(RECORDS).map_err(Error::storage)?;
        let range = match after {
            Some(id) => table.range((std::ops::Bound::Excluded(id), std::ops::Bound::Unbounded)),
            None => table.range(0u64..),
        };
        let mut out = Vec::new();
        for entry in range.map_err(Error::storage)?.take(limit) {
            let (id, bytes) = entry.map_err(Error::storage)?;
            out.push((id.value(), record::key_numbers(bytes.value())));
        }
        Ok(out)
    }

    /// Per key number, the committed records that depend on it.
    pub(crate) fn usage(&self) -> Vec<Usage> {
        self.usage.lock().clone()
    }

    /// Writes one batch, in id order, in one transaction with one fsync:
    /// each entry is a record's sealed state, `None` for deleted. Moves
    /// `id_floor` to `next_id + ID_LEASE`. Returns the change in the number
    /// of rows.
    pub(crate) fn commit(&self, writes: &[Write], next_id: u64) -> Result<i64, Error> {
        if self.failed_io.load(Ordering::SeqCst) {
            self.reopen()?;
        }
        let committed = self.commit_once(writes, next_id);
        if let Err(Error::Storage(err)) = &committed
            && matches!(**err, redb::Error::Io(_) | redb::Error::PreviousIo)
        {
            self.failed_io.store(true, Ordering::SeqCst);
        }
        committed
    }

    /// Drops the database handle and opens the file again, as redb
    /// requires after an I/O error. The file holds the last good commit;
    /// the failed batch is still pending in memory and is committed again.
    fn reopen(&self) -> Result<(), Error> {
        let mut db = self.db.write();
        // The old handle holds the file's lock: it must go first.
        *db = None;
        *db = Some(open_file(&self.file).map_err(Error::storage)?);
        self.failed_io.store(false, Ordering::SeqCst);
        tracing::info!(file = %self.file.display(), "store file reopened after an I/O error");
        Ok(())
    }

    fn db(&self) -> Result<MappedRwLockReadGuard<'_, Database>, Error> {
        RwLockReadGuard::try_map(self.db.read(), Option::as_ref)
            .map_err(|_| Error::storage(redb::StorageError::PreviousIo))
    }

    fn commit_once(&self, writes: &[Write], next_id: u64) -> Result<i64, Error> {
        let db = self.db()?;
        let txn = begin(&db).map_err(Error::storage)?;
        let mut delta = 0i64;
        let mut usage = self.usage();
        {
            let mut records = txn.open_table(RECORDS).map_err(Error::storage)?;
            let mut expiry = txn.open_table(EXPIRY).map_err(Error::storage)?;
            let mut meta = txn.open_table(META).map_err(Error::storage)?;
            for write in writes {
                let (id, new_expiry) = (write.id, write.expires_at);
                let old = match &write.sealed {
                    Some(sealed) => records.insert(id, sealed.as_slice()),
                    None => records.remove(id),
                };
                let old = old.map_err(Error::storage)?.map(|bytes| {
                    let bytes = bytes.value();
                    count(&mut usage, record::key_numbers(bytes), false);
                    record::expiry_of(bytes)
                });
                if let Some(sealed) = &write.sealed {
                    count(&mut usage, record::key_numbers(sealed), true);
                }
                delta += i64::from(write.sealed.is_some()) - i64::from(old.is_some());
                let old_expiry = old.flatten();
                if old_expiry != new_expiry {
                    if let Some(at) = old_expiry {
                        expiry.remove((at, id)).map_err(Error::storage)?;
                    }
                    if let Some(at) = new_expiry {
                        expiry.insert((at, id), ()).map_err(Error::storage)?;
                    }
                }
            }
            let rows = meta_u64(&meta, "records")
                .map_err(Error::storage)?
                .flatten();
            let rows = rows.unwrap_or(0).saturating_add_signed(delta);
            set_meta_u64(&mut meta, "records", rows).map_err(Error::storage)?;
            let floor = next_id.saturating_add(ID_LEASE);
            set_meta_u64(&mut meta, "id_floor", floor).map_err(Error::storage)?;
            write_usage(&mut meta, &usage).map_err(Error::storage)?;
        }
        txn.commit().map_err(Error::storage)?;
        *self.usage.lock() = usage;
        Ok(delta)
    }

    /// Up to `limit` entries of the expiry index with an expiry at or
    /// before `now_ms`, in order, after `after` when given.
    pub(crate) fn expired(
        &self,
        now_ms: u64,
        after: Option<(u64, u64)>,
        limit: usize,
    ) -> Result<Vec<(u64, u64)>, Error> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(Error::storage)?;
        let table = txn.open_table(EXPIRY).map_err(Error::storage)?;
        let upper = (now_ms, u64::MAX);
        let range = match after {
            Some(start) => table.range((
                std::ops::Bound::Excluded(start),
                std::ops::Bound::Included(upper),
            )),
            None => table.range(..=upper),
        };
        let mut out = Vec::new();
        for entry in range.map_err(Error::storage)?.take(limit) {
            let (key, _) = entry.map_err(Error::storage)?;
            out.push(key.value());
        }
        Ok(out)
    }

    /// Moves live pages to the front of the file and gives the free tail
    /// back to the filesystem. Waits for, and then holds off, every other
    /// disk access.
    pub(crate) fn compact(&self) -> Result<(), Error> {
        let mut db = self.db.write();
        let db = db
            .as_mut()
            .ok_or(Error::storage(redb::StorageError::PreviousIo))?;
        // Each pass relocates what it can; stop when one finds nothing more.
        for _ in 0..16 {
            if !db
                .compact(CompactionMode::Maximum)
                .map_err(Error::storage)?
            {
                break;
            }
        }
        Ok(())
    }

    /// Compacts when stored entries fill less than three quarters of the
    /// file, as churn, half-full pages and redb's growth by doubling leave
    /// it; called at close, when no one waits for the disk. Returns whether
    /// it compacted.
    pub(crate) fn compact_if_sparse(&self) -> Result<bool, Error> {
        let in_use = {
            let db = self.db()?;
            let txn = db.begin_write().map_err(Error::storage)?;
            let stats = txn.stats().map_err(Error::storage)?;
            txn.abort().map_err(Error::storage)?;
            stats.stored_bytes() + stats.metadata_bytes()
        };
        let size = self.file_size();
        if size == 0 || in_use * 4 > size * 3 {
            return Ok(false);
        }
        self.compact()?;
        Ok(true)
    }

    /// Size of the store file in bytes.
    pub(crate) fn file_size(&self) -> u64 {
        std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0)
    }

    pub(crate) fn file(&self) -> &Path {
        &self.file
    }
}
