//! Options for opening a store, and where its directory is.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::OpenError;
use crate::key::SecretKey;

/// Largest `max_data_size` a store accepts: 64 KiB.
pub const MAX_DATA_SIZE_LIMIT: usize = 64 * 1024;
/// Name of the B-tree file inside the store directory.
pub const FILE_NAME: &str = "store.redb";

/// When a write becomes durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Calls return at once; the flusher commits every flush interval. A
    /// crash can undo the last interval's changes, read budget decrements
    /// included.
    #[default]
    Interval,
    /// Each changing call returns after the commit that holds it; calls
    /// made at the same time share one commit and one fsync.
    Always,
}

/// Everything [`Store::open`](crate::Store::open) needs.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use crudjt::{Config, Durability, SecretKey};
///
/// let key = SecretKey::from_base64(&std::env::var("CRUDJT_SECRET_KEY").unwrap()).unwrap();
/// let config = Config::new(key)
///     .path("/var/lib/myapp/sessions")
///     .durability(Durability::Always)
///     .flush_interval(Duration::from_millis(200));
/// let store = crudjt::Store::open(config).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) secret_key: SecretKey,
    pub(crate) previous_keys: Vec<SecretKey>,
    pub(crate) path: Option<PathBuf>,
    pub(crate) flush_interval: Duration,
    pub(crate) durability: Durability,
    pub(crate) cache_capacity: usize,
    pub(crate) max_data_size: usize,
    pub(crate) sweep_interval: Duration,
    pub(crate) max_pending_bytes: usize,
}

impl Config {
    /// Default flush interval.
    pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(500);
    /// Default number of cached records.
    pub const DEFAULT_CACHE_CAPACITY: usize = 40_000;
    /// Default largest data, in bytes of MessagePack.
    pub const DEFAULT_MAX_DATA_SIZE: usize = 256;
    /// Default sweep interval.
    pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
    /// Default bound on pending writes, in bytes.
    pub const DEFAULT_MAX_PENDING_BYTES: usize = 16 << 20;

    /// Defaults: the system store location, 500 ms flush interval,
    /// `Interval` durability, 40,000 cached records, 256-byte data, a sweep
    /// every 24 hours and 16 MiB of pending writes.
    pub fn new(secret_key: SecretKey) -> Config {
        Config {
            secret_key,
            previous_keys: Vec::new(),
            path: None,
            flush_interval: Config::DEFAULT_FLUSH_INTERVAL,
            durability: Durability::Interval,
            cache_capacity: Config::DEFAULT_CACHE_CAPACITY,
            max_data_size: Config::DEFAULT_MAX_DATA_SIZE,
            sweep_interval: Config::DEFAULT_SWEEP_INTERVAL,
            max_pending_bytes: Config::DEFAULT_MAX_PENDING_BYTES,
        }
    }

    /// Adds a previous secret key, for rotating the store's key without
    /// ending its sessions: give the new key to [`Config::new`] and the old
    /// one here. The store then makes tokens and seals every write under
    /// the new key, while tokens and records made under the old one keep
    /// working; records are re-sealed under the new key when next written
    /// and by the sweep. An old key's tokens need it for as long as they
    /// live: [`Stats::keys`](crate::Stats::keys) says how many records
    /// still depend on each key, so an operator knows when to drop it.
    ///
    /// Opening with a new key fails unless the store's current key is
    /// among the previous ones. A previous key the store never used is
    /// ignored. Once a key is no longer given, the tokens made under it
    /// read as not found and the sweep removes their records.
    pub fn previous_key(mut self, key: SecretKey) -> Config {
        self.previous_keys.push(key);
        self
    }

    /// The store directory. Without it the store uses the system location
    /// (`/var/lib/store_jt` on Linux, `/usr/local/var/store_jt` on macOS)
    /// if it can be used, else `store_jt` in the working directory.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Config {
        self.path = Some(path.into());
        self
    }

    /// How often the flusher commits pending writes (default 500 ms).
    pub fn flush_interval(mut self, interval: Duration) -> Config {
        self.flush_interval = interval;
        self
    }

    /// When writes become durable (default [`Durability::Interval`]).
    pub fn durability(mut self, durability: Durability) -> Config {
        self.durability = durability;
        self
    }

    /// How many clean records the read cache keeps (default 40,000).
    pub fn cache_capacity(mut self, records: usize) -> Config {
        self.cache_capacity = records;
        self
    }

    /// Largest accepted MessagePack data, in bytes (default 256, at most
    /// 64 KiB).
    pub fn max_data_size(mut self, bytes: usize) -> Config {
        self.max_data_size = bytes;
        self
    }

    /// How often expired records are swept from disk (default 24 hours);
    /// a sweep also runs at open.
    pub fn sweep_interval(mut self, interval: Duration) -> Config {
        self.sweep_interval = interval;
        self
    }

    /// How many bytes of changes may wait for the flusher before callers
    /// wait for it (default 16 MiB). Larger batches do not commit faster:
    /// past the B-tree's write buffer they cost more per record, and a
    /// caller that meets the bound waits for the whole commit.
    pub fn max_pending_bytes(mut self, bytes: usize) -> Config {
        self.max_pending_bytes = bytes;
        self
    }
}

/// The system location for stores without an explicit path.
fn system_dir() -> Option<PathBuf> {
    if cfg!(target_os = "linux") {
        Some(PathBuf::from("/var/lib/store_jt"))
    } else if cfg!(target_os = "macos") {
        Some(PathBuf::from("/usr/local/var/store_jt"))
    } else if cfg!(windows) {
        Some(PathBuf::from(r"C:\Program Files\store_jt"))
    } else {
        None
    }
}

/// Finds the store directory by the lookup order ([`Config::path`]) and
/// makes sure it exists with owner-only permissions; what
/// [`Store::open`](crate::Store::open) does first. Front ends use it to put
/// files beside the store before opening it.
///
/// # Errors
///
/// [`OpenError::Io`] naming the directory that could not be made.
pub fn prepare_store_dir(given: Option<&Path>) -> Result<PathBuf, OpenError> {
    prepare_dir(given).map_err(|(path, source)| OpenError::Io { path, source })
}

fn prepare_dir(given: Option<&Path>) -> Result<PathBuf, (PathBuf, io::Error)> {
    if let Some(path) = given {
        return make_private_dir(path)
            .map(|()| path.to_path_buf())
            .map_err(|e| (path.into(), e));
    }
    if let Some(system) = system_dir()
        && make_private_dir(&system).is_ok()
        && is_writable(&system)
    {
        return Ok(system);
    }
    let local = PathBuf::from("store_jt");
    make_private_dir(&local)
        .map(|()| local.clone())
        .map_err(|e| (local, e))
}

fn is_writable(dir: &Path) -> bool {
    let probe = dir.join(".crudjt-probe");
    let ok = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .is_ok();
    let _ = fs::remove_file(&probe);
    ok
}

fn make_private_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates the store file if needed, owner-only, before redb opens it.
pub(crate) fn prepare_file(path: &Path) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        options.open(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    options.open(path)?;
    Ok(())
}
