//! Where the master's secret key comes from, and `crudjt keygen`.
//!
//! A key file holds the key as base64 and a newline, mode 0600. It is
//! created with `O_EXCL`, so a key is never overwritten: losing the key of
//! a store loses every session in it.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use crudjt::SecretKey;

use crate::exit::Invalid;

/// The environment variable that holds the key itself. It is read
/// directly, not through clap, so that `--help` never shows its value.
pub const KEY_VAR: &str = "CRUDJT_SECRET_KEY";

/// The environment variable that holds previous keys themselves, as
/// comma-separated base64. Read directly, like [`KEY_VAR`].
pub const PREVIOUS_KEYS_VAR: &str = "CRUDJT_PREVIOUS_SECRET_KEYS";

/// Arguments of `crudjt keygen`.
#[derive(Args, Debug)]
#[command(after_help = "\
A key is 48 random bytes from the operating system, as standard base64: what
`crudjt serve` takes in --secret-key-file or CRUDJT_SECRET_KEY.

Exit status: 0 success; 1 the file exists or cannot be written; 2 invalid arguments.")]
pub struct KeygenArgs {
    /// Write the key to FILE, created with mode 0600, instead of printing
    /// it; an existing FILE is never overwritten.
    #[arg(long, env = "CRUDJT_OUT", value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs `crudjt keygen`.
///
/// # Errors
///
/// When FILE exists or cannot be written, or stdout is closed.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let key = SecretKey::generate();
    match &args.out {
        Some(path) => {
            write_new(path, &key)?;
            eprintln!("wrote a new secret key to {}", path.display());
        }
        None => writeln!(io::stdout().lock(), "{}", key.to_base64())?,
    }
    Ok(())
}

/// What errors call the master's key file.
const KEY_FILE: &str = "secret key file";

/// Where the master's key came from, for the start-up log.
#[derive(Debug)]
pub enum Source {
    /// `--secret-key-file`.
    File(PathBuf),
    /// [`KEY_VAR`].
    Environment,
    /// The key file beside the store, made by an earlier start.
    Beside(PathBuf),
    /// The key file beside the store, made by this start.
    Generated(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) | Source::Beside(path) => write!(f, "file {}", path.display()),
            Source::Environment => write!(f, "environment variable {KEY_VAR}"),
            Source::Generated(path) => write!(f, "new file {}", path.display()),
        }
    }
}

/// Finds the master's key: the file given, else [`KEY_VAR`], else the key
/// file beside the store directory (`<dir>.key`), made on first start.
///
/// # Errors
///
/// [`Invalid`] when both a file and the variable are given, or the key is
/// not a valid key; I/O errors naming the file; and a refusal to make a new
/// key for a store that already exists, since it could never open it.
pub fn resolve(file: Option<&Path>, store_dir: &Path) -> anyhow::Result<(SecretKey, Source)> {
    let from_env = std::env::var_os(KEY_VAR);
    match (file, from_env) {
        (Some(_), Some(_)) => Err(Invalid(format!(
            "both --secret-key-file and {KEY_VAR} are set; give the key one way"
        ))
        .into()),
        (Some(path), None) => Ok((read(path, KEY_FILE)?, Source::File(path.to_owned()))),
        (None, Some(text)) => {
            let text = text
                .into_string()
                .map_err(|_| Invalid(format!("{KEY_VAR} is not valid UTF-8")))?;
            let key = SecretKey::from_base64(&text)
                .with_context(|| format!("{KEY_VAR} does not hold a valid key"))?;
            Ok((key, Source::Environment))
        }
        (None, None) => beside_store(store_dir),
    }
}

/// The previous keys, for a store whose key is being rotated: one from
/// each file given (`--previous-secret-key-file`), then each in
/// [`PREVIOUS_KEYS_VAR`]. Empty entries in the variable are skipped, so
/// that an empty variable gives none.
///
/// # Errors
///
/// A key that is not valid, naming its file or its place in the variable
/// (never the key); I/O errors naming the file.
pub fn previous(files: &[PathBuf]) -> anyhow::Result<Vec<SecretKey>> {
    let mut keys = files
        .iter()
        .map(|path| read(path, "previous secret key file"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let Some(text) = std::env::var_os(PREVIOUS_KEYS_VAR) else {
        return Ok(keys);
    };
    let text = text
        .into_string()
        .map_err(|_| Invalid(format!("{PREVIOUS_KEYS_VAR} is not valid UTF-8")))?;
    keys.extend(keys_in_list(&text)?);
    Ok(keys)
}

/// The keys in the text of [`PREVIOUS_KEYS_VAR`].
fn keys_in_list(text: &str) -> anyhow::Result<Vec<SecretKey>> {
    let entries: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    let count = entries.len();
    entries
        .into_iter()
        .zip(1..)
        .map(|(entry, place)| {
            SecretKey::from_base64(entry).with_context(|| {
                format!("key {place} of {count} in {PREVIOUS_KEYS_VAR} is not a valid key")
            })
        })
        .collect()
}

fn beside_store(store_dir: &Path) -> anyhow::Result<(SecretKey, Source)> {
    let path = key_path(store_dir)?;
    if path.exists() {
        return Ok((read(&path, KEY_FILE)?, Source::Beside(path)));
    }
    let store_file = store_dir.join(crudjt::FILE_NAME);
    if store_file.exists() {
        anyhow::bail!(
            "the store at {} exists but its key file {} does not; give its key with \
             --secret-key-file or {KEY_VAR}",
            store_dir.display(),
            path.display()
        );
    }
    let key = SecretKey::generate();
    match write_new(&path, &key) {
        Ok(()) => Ok((key, Source::Generated(path))),
        // Another master starting at the same moment made it first; its
        // key is the one to use. The store's own lock decides which of the
        // two then serves.
        Err(err) if is_already_exists(&err) => Ok((read(&path, KEY_FILE)?, Source::Beside(path))),
        Err(err) => Err(err),
    }
}

/// The key file beside a store directory: `/var/lib/store_jt` keeps its key
/// in `/var/lib/store_jt.key`, outside the directory, so that copying the
/// store alone does not copy its key.
fn key_path(store_dir: &Path) -> anyhow::Result<PathBuf> {
    // The directory exists by now; resolving it names `.` and `..` and
    // drops a trailing slash.
    let dir = fs::canonicalize(store_dir)
        .with_context(|| format!("cannot resolve store directory {}", store_dir.display()))?;
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        anyhow::bail!(
            "store directory {} has no parent for its key file",
            dir.display()
        );
    };
    let mut file_name = name.to_owned();
    file_name.push(".key");
    Ok(parent.join(file_name))
}

/// Reads the key in a key file; `what` names the file in errors, like
/// "secret key file".
fn read(path: &Path, what: &str) -> anyhow::Result<SecretKey> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let key = SecretKey::from_base64(&text)
        .with_context(|| format!("{what} {} does not hold a valid key", path.display()))?;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the secret key file can be read by other users; chmod 600 it"
        );
    }
    Ok(key)
}

/// Writes `key` to a new file, mode 0600, and makes it durable before the
/// store can hold data under it.
fn write_new(path: &Path, key: &SecretKey) -> anyhow::Result<()> {
    let context = || format!("cannot create secret key file {}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| {
            if err.kind() == io::ErrorKind::AlreadyExists {
                anyhow::Error::new(err).context(format!(
                    "{} already exists; it is never overwritten",
                    path.display()
                ))
            } else {
                anyhow::Error::new(err).context(context())
            }
        })?;
    let written = file
        .write_all(format!("{}\n", key.to_base64()).as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(err) = written {
        // A partial key file would be taken for a key on the next start.
        let _ = fs::remove_file(path);
        return Err(anyhow::Error::new(err).context(context()));
    }
    // The umask may have narrowed the mode, never widened it; set it anyway
    // so the file is exactly owner read-write.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).with_context(context)?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Best effort: without it a power cut could lose the new name.
    let _ = File::open(parent).and_then(|dir| dir.sync_all());
    Ok(())
}

fn is_already_exists(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::AlreadyExists)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_sits_beside_the_store_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store_jt");
        fs::create_dir(&store).unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        assert_eq!(key_path(&store).unwrap(), root.join("store_jt.key"));
        let trailing = PathBuf::from(format!("{}/", store.display()));
        assert_eq!(key_path(&trailing).unwrap(), root.join("store_jt.key"));
        assert_eq!(
            key_path(&store.join("..").join("store_jt")).unwrap(),
            root.join("store_jt.key")
        );
    }

    #[test]
    fn generates_once_then_reuses() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("s");
        fs::create_dir(&store).unwrap();
        let (first, source) = beside_store(&store).unwrap();
        assert!(matches!(source, Source::Generated(_)));
        let path = key_path(&store).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, source) = beside_store(&store).unwrap();
        assert!(matches!(source, Source::Beside(_)));
        assert_eq!(first.to_base64(), again.to_base64());
    }

    #[test]
    fn refuses_a_new_key_for_an_existing_store() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("s");
        fs::create_dir(&store).unwrap();
        fs::write(store.join(crudjt::FILE_NAME), b"").unwrap();
        let err = beside_store(&store).unwrap_err().to_string();
        assert!(err.contains("exists but its key file"), "{err}");
        assert!(!key_path(&store).unwrap().exists());
    }

    #[test]
    fn a_list_of_keys_skips_blanks_and_names_a_bad_one_by_place() {
        let (first, second) = (SecretKey::generate(), SecretKey::generate());
        let text = format!(" {}, ,{} ,", first.to_base64(), second.to_base64());
        let keys = keys_in_list(&text).unwrap();
        let parsed: Vec<String> = keys.iter().map(SecretKey::to_base64).collect();
        assert_eq!(parsed, [first.to_base64(), second.to_base64()]);
        assert!(keys_in_list("").unwrap().is_empty());

        let bad = "c2hvcnQgYW5kIHNlY3JldA";
        let err = keys_in_list(&format!("{},{bad}", first.to_base64())).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.starts_with("key 2 of 2 in CRUDJT_PREVIOUS_SECRET_KEYS"));
        assert!(message.contains("must be 32, 48 or 64"), "{message}");
        assert!(!message.contains(bad) && !message.contains(&first.to_base64()));
        assert!(err.chain().any(|cause| cause.is::<crudjt::KeyError>()));
    }

    #[test]
    fn never_overwrites_a_key_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("k");
        write_new(&path, &SecretKey::generate()).unwrap();
        let before = fs::read(&path).unwrap();
        let err = write_new(&path, &SecretKey::generate()).unwrap_err();
        assert!(is_already_exists(&err));
        assert_eq!(fs::read(&path).unwrap(), before);
    }
}
