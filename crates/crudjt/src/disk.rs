//! The B-tree file: three redb tables and the transactions on them.
//!
//! - `records`: record id (u64) to the sealed record (see [`crate::record`]).
//!   Ids ascend, so inserts land at the right edge of the tree.
//! - `expiry`: `(expiry ms, record id)` to nothing, one entry per record
//!   with a lifetime, kept in step with `records` by the same commit. The
//!   sweep reads it in key order, so its work grows with the number expired.
//! - `meta`: the store's own state, values as 8-byte little-endian
//!   integers except the fingerprint:
//!   `format`, `fingerprint` (32 bytes), `epoch` (bumped at every open, the
//!   high half of record nonces), `id_floor` (no id at or above it was ever
//!   handed out), `records` (number of rows in `records`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use aes_gcm_siv::Aes256GcmSiv;
use parking_lot::{MappedRwLockReadGuard, RwLock, RwLockReadGuard};
use redb::{
    CompactionMode, Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};

use crate::error::{Error, OpenError};
use crate::key::Keys;
use crate::record::{self, Rec};

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
const EXPIRY: TableDefinition<(u64, u64), ()> = TableDefinition::new("expiry");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Version of the table layout and meta keys above.
const STORE_FORMAT: u64 = 1;
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

/// Inside the open's transaction: creates the tables of a new store, checks
/// the format and key of an existing one, and moves the epoch and the id
/// floor forward. Returns `(epoch, first id, rows in records)`.
#[allow(clippy::type_complexity)]
fn claim_epoch(
    txn: &WriteTransaction,
    keys: &Keys,
) -> Result<Result<(u32, u64, u64), Refusal>, redb::Error> {
    let mut meta = txn.open_table(META)?;
    txn.open_table(RECORDS)?;
    txn.open_table(EXPIRY)?;
    match meta_u64(&meta, "format")? {
        None => {
            set_meta_u64(&mut meta, "format", STORE_FORMAT)?;
            meta.insert("fingerprint", keys.fingerprint.as_slice())?;
        }
        Some(Some(STORE_FORMAT)) => {}
        Some(_) => {
            return Ok(Err(Refusal::Incompatible(
                "its format is newer than this build",
            )));
        }
    }
    let matches = meta
        .get("fingerprint")?
        .is_some_and(|f| keys.matches(f.value()));
    if !matches {
        return Ok(Err(Refusal::KeyMismatch));
    }
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
    Ok(Ok((epoch, next_id, records)))
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

impl Disk {
    /// Opens or creates the file, checks the key and claims a new epoch.
    pub(crate) fn open(file: &Path, dir: &Path, keys: &Keys) -> Result<Opened, OpenError> {
        let storage = |source: redb::Error| OpenError::Storage {
            path: file.into(),
            source,
        };
        let db = open_file(file).map_err(|err| match err {
            DatabaseError::DatabaseAlreadyOpen => OpenError::AlreadyOpen { path: file.into() },
            other => storage(other.into()),
        })?;
        let txn = begin(&db).map_err(|e| storage(e.into()))?;
        let claimed = claim_epoch(&txn, keys).map_err(storage)?;
        let (epoch, next_id, records) = claimed.map_err(|refusal| match refusal {
            Refusal::KeyMismatch => OpenError::KeyMismatch { path: dir.into() },
            Refusal::Incompatible(reason) => OpenError::Incompatible {
                path: file.into(),
                reason: reason.into(),
            },
        })?;
        txn.commit().map_err(|e| storage(e.into()))?;
        let disk = Disk {
            db: RwLock::new(Some(db)),
            failed_io: AtomicBool::new(false),
            file: file.into(),
        };
        Ok(Opened {
            disk,
            epoch,
            next_id,
            records,
        })
    }

    /// Fetches and opens record `id`, if it is on disk.
    pub(crate) fn load(&self, cipher: &Aes256GcmSiv, id: u64) -> Result<Option<Rec>, Error> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(Error::storage)?;
        let table = txn.open_table(RECORDS).map_err(Error::storage)?;
        match table.get(id).map_err(Error::storage)? {
            Some(bytes) => record::open(cipher, id, bytes.value()).map(Some),
            None => Ok(None),
        }
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
        {
            let mut records = txn.open_table(RECORDS).map_err(Error::storage)?;
            let mut expiry = txn.open_table(EXPIRY).map_err(Error::storage)?;
            let mut meta = txn.open_table(META).map_err(Error::storage)?;
            for write in writes {
                let (id, new_expiry) = (write.id, write.expires_at);
                let old = match &write.sealed {
                    Some(sealed) => {
                        let old = records.insert(id, sealed.as_slice());
                        old.map_err(Error::storage)?
                            .map(|b| record::expiry_of(b.value()))
                    }
                    None => {
                        let old = records.remove(id).map_err(Error::storage)?;
                        old.map(|bytes| record::expiry_of(bytes.value()))
                    }
                };
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
        }
        txn.commit().map_err(Error::storage)?;
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
