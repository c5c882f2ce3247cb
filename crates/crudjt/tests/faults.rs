//! Faults of the disk and the file: a full or read-only filesystem, a
//! truncated file, bytes flipped anywhere in it, an unusable directory.
//! Each must give a clear error, never a panic or wrong data, lose nothing
//! already flushed, and, where the fault can clear, let the store recover
//! by itself.
//!
//! The filesystem faults mount a small tmpfs, which needs root (CI and the
//! development machines run as root); without it those tests say so on
//! stderr and pass without checking anything.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{config, key, open, packed_of_size};
use crudjt::{Config, Error, Limits, OpenError, Store};

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct SmallFs {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> Option<SmallFs> {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("fs");
        std::fs::create_dir(&mount).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .output()
            .is_ok_and(|out| out.status.success());
        if !mounted {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        Some(SmallFs { mount, _dir: dir })
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.mount)
            .output()
            .unwrap();
        assert!(out.status.success(), "remount {options}: {out:?}");
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Creates 200-byte tokens until the store refuses one; returns the
/// tokens it acknowledged and the error.
fn fill(store: &Store, most: usize) -> (Vec<String>, Error) {
    let data = packed_of_size(200);
    let mut made = Vec::new();
    for _ in 0..most {
        match store.create_packed(&data, Limits::NONE) {
            Ok(token) => made.push(token.to_string()),
            Err(err) => return (made, err),
        }
    }
    panic!("{most} creates all succeeded: the filesystem never filled");
}

/// Retries `create` until it succeeds, for at most `within`.
fn wait_until_writable(store: &Store, within: Duration) -> String {
    let data = packed_of_size(200);
    let deadline = Instant::now() + within;
    loop {
        match store.create_packed(&data, Limits::NONE) {
            Ok(token) => return token.to_string(),
            Err(err) if Instant::now() < deadline => {
                assert!(matches!(err, Error::Storage(_)), "unexpected error: {err}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("the store did not recover: {err}"),
        }
    }
}

fn assert_all_readable(store: &Store, tokens: &[String]) {
    let data = packed_of_size(200);
    for (i, token) in tokens.iter().enumerate() {
        let entry = store.read_packed(token).unwrap();
        assert_eq!(
            entry.map(|e| e.data),
            Some(data.clone()),
            "token {i} of {}",
            tokens.len()
        );
    }
}

/// A small bound on pending writes, so that a failing disk reaches the
/// callers quickly.
fn tight(dir: &Path) -> Config {
    config(dir)
        .flush_interval(Duration::from_millis(20))
        .max_pending_bytes(256 << 10)
}

#[test]
fn a_full_disk_fails_calls_clearly_and_recovers_when_space_returns() {
    let Some(fs) = SmallFs::mount("1m") else {
        return;
    };
    let dir = fs.mount.join("store");
    let store = Store::open(tight(&dir)).unwrap();

    let (made, err) = fill(&store, 200_000);
    assert!(
        matches!(err, Error::Storage(_)),
        "expected a storage error, got {err}"
    );
    let chain = error_chain(&err);
    assert!(
        chain.contains("No space left"),
        "the cause is not named: {chain}"
    );
    assert!(store.stats().flush_failures > 0);

    fs.remount("size=64m");
    let after = wait_until_writable(&store, Duration::from_secs(10));
    store.flush().unwrap();
    assert_all_readable(&store, &made);
    store.close().unwrap();

    // Every acknowledged create survives a reopen.
    let store = open(&dir);
    assert_all_readable(&store, &made);
    assert!(store.read_packed(&after).unwrap().is_some());
}

#[test]
fn a_read_only_filesystem_is_refused_at_open_and_loses_nothing() {
    let Some(fs) = SmallFs::mount("64m") else {
        return;
    };
    let dir = fs.mount.join("store");
    let tokens = closed_store(&dir, 100);

    // A filesystem with files open for writing cannot turn read-only, so
    // this is the read-only case a master meets: at start.
    fs.remount("ro");
    let Err(err) = Store::open(config(&dir)) else {
        panic!("a store opened for writing on a read-only filesystem");
    };
    let text = error_chain(&err);
    assert!(text.contains("Read-only"), "the cause is not named: {text}");
    assert!(
        text.contains(&dir.display().to_string()),
        "the path is not named: {text}"
    );

    fs.remount("rw");
    let store = open(&dir);
    assert_all_readable(&store, &tokens);
}

/// A store of `n` tokens, closed; returns the tokens.
fn closed_store(dir: &Path, n: usize) -> Vec<String> {
    let store = open(dir);
    let data = packed_of_size(200);
    let tokens = (0..n)
        .map(|_| {
            store
                .create_packed(&data, Limits::NONE)
                .unwrap()
                .to_string()
        })
        .collect();
    store.close().unwrap();
    tokens
}

fn store_file(dir: &Path) -> PathBuf {
    dir.join(crudjt::FILE_NAME)
}

#[test]
fn a_truncated_file_is_refused_clearly() {
    let pristine = tempfile::tempdir().unwrap();
    closed_store(pristine.path(), 500);
    let full = std::fs::read(store_file(pristine.path())).unwrap();

    for keep in [0, 1, 100, 4096, full.len() / 2, full.len() - 1] {
        let dir = tempfile::tempdir().unwrap();
        copy_store(pristine.path(), dir.path());
        std::fs::write(store_file(dir.path()), &full[..keep]).unwrap();
        let opened = catch_unwind(AssertUnwindSafe(|| Store::open(config(dir.path()))));
        let opened = opened.unwrap_or_else(|_| panic!("open panicked on a file cut to {keep}"));
        match opened {
            Err(err) => {
                let text = error_chain(&err);
                assert!(
                    text.contains("store"),
                    "cut to {keep}: unclear error {text}"
                );
            }
            // An empty file is a new store: that is what an empty file
            // means, and nothing was there to lose.
            Ok(_) => assert_eq!(keep, 0, "a file cut to {keep} bytes opened"),
        }
    }
}

#[test]
fn flipped_bytes_anywhere_never_panic_or_return_wrong_data() {
    let pristine = tempfile::tempdir().unwrap();
    let tokens = closed_store(pristine.path(), 2_000);
    let data = packed_of_size(200);
    let len = std::fs::metadata(store_file(pristine.path()))
        .unwrap()
        .len();

    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut outcomes = [0_usize; 3];
    for round in 0..60 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let offset = (seed >> 11) % len;
        let dir = tempfile::tempdir().unwrap();
        copy_store(pristine.path(), dir.path());
        flip(&store_file(dir.path()), offset, (seed >> 3) as u8 | 1);

        let checked = catch_unwind(AssertUnwindSafe(|| {
            let store = match Store::open(config(dir.path())) {
                Ok(store) => store,
                Err(_) => return 0,
            };
            for token in &tokens {
                match store.read_packed(token) {
                    Ok(Some(entry)) => assert_eq!(entry.data, data, "wrong data returned"),
                    Ok(None) | Err(Error::Corrupt { .. } | Error::Storage(_)) => {}
                    Err(err) => panic!("unexpected error {err}"),
                }
            }
            drop(store);
            1
        }));
        match checked {
            Ok(kind) => outcomes[kind] += 1,
            Err(_) => panic!("round {round}: a byte flipped at {offset} of {len} caused a panic"),
        }
    }
    eprintln!("refused at open: {}, opened: {}", outcomes[0], outcomes[1]);
}

#[test]
fn an_unusable_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let Err(err) = Store::open(Config::new(key()).path(file.join("store"))) else {
        panic!("a store opened beneath a regular file");
    };
    assert!(matches!(err, OpenError::Io { .. }), "{err}");
    assert!(
        err.to_string().contains("a-file"),
        "the path is not named: {err}"
    );
}

fn copy_store(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn flip(file: &Path, offset: u64, mask: u8) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[offset as usize] ^= mask;
    std::fs::write(file, bytes).unwrap();
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
