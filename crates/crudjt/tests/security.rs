//! What the store file reveals and how the store treats damage, other keys
//! and other openers.

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use common::{Map, config, key, map, open, other_key};
use crudjt::{Config, Error, Limits, OpenError, SecretKey, Store};
use redb::ReadableTable;

/// Every byte of every file in the store directory.
fn store_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        all.extend(fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

/// Every 8-byte window of a file, for quick substring checks.
struct Windows<'a> {
    bytes: &'a [u8],
    starts: HashSet<[u8; 8]>,
}

impl<'a> Windows<'a> {
    fn new(bytes: &'a [u8]) -> Windows<'a> {
        let starts = bytes.windows(8).map(|w| w.try_into().unwrap()).collect();
        Windows { bytes, starts }
    }

    /// Whether `needle` (8 bytes or more) occurs anywhere.
    fn contains(&self, needle: &[u8]) -> bool {
        let head: [u8; 8] = needle[..8].try_into().unwrap();
        self.starts.contains(&head) && self.bytes.windows(needle.len()).any(|w| w == needle)
    }
}

#[test]
fn the_file_holds_no_token_payload_or_key() {
    let dir = tempfile::tempdir().unwrap();
    let secret = SecretKey::generate();
    let secret_text = secret.to_base64();
    let secret_raw = STANDARD.decode(&secret_text).unwrap();
    let store = Store::open(Config::new(secret).path(dir.path())).unwrap();

    let mut payload = vec![0u8; 64];
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(151).wrapping_add(89);
    }
    let marker = "a very recognisable session payload string";
    let mut tokens = Vec::new();
    for i in 0..200u32 {
        let data = Map::from([
            ("bin".to_string(), rmpv::Value::Binary(payload.clone())),
            ("text".to_string(), marker.into()),
            ("i".to_string(), i.into()),
        ]);
        let limits = Limits::new(Some(3600), Some(1000)).unwrap();
        tokens.push(store.create(&data, limits).unwrap().to_string());
    }
    // Spend reads so records are rewritten too.
    for token in &tokens[..50] {
        store.read_packed(token).unwrap().unwrap();
    }
    store.close().unwrap();

    let bytes = store_bytes(dir.path());
    assert!(!bytes.is_empty());
    let file = Windows::new(&bytes);
    for token in &tokens {
        let raw = URL_SAFE_NO_PAD.decode(token).unwrap();
        assert!(!file.contains(token.as_bytes()));
        assert!(!file.contains(&raw));
        assert!(!file.contains(STANDARD_NO_PAD.encode(&raw).as_bytes()));
        assert!(!file.contains(&raw[..8]) && !file.contains(&raw[8..]));
    }
    for window in payload.windows(8) {
        assert!(!file.contains(window));
    }
    assert!(!file.contains(&marker.as_bytes()[..12]));
    assert!(!file.contains(&secret_raw[..16]));
    assert!(!file.contains(&secret_text.as_bytes()[..16]));
}

/// Rewrites record `id` of a closed store with redb itself, as damage or an
/// attacker with write access to the file would.
fn edit_record(dir: &Path, id: u64, edit: impl FnOnce(&mut Vec<u8>)) {
    let records: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("records");
    let db = redb::Database::create(dir.join(crudjt::FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(records).unwrap();
        let mut value = table.get(id).unwrap().unwrap().value().to_vec();
        edit(&mut value);
        table.insert(id, value.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn a_flipped_byte_in_a_record_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let victim = store.create(&map("v", "victim"), Limits::NONE).unwrap();
    let bystander = store.create(&map("v", "bystander"), Limits::NONE).unwrap();
    store.close().unwrap();

    // Flip one byte of the first record's ciphertext.
    edit_record(dir.path(), 0, |value| value[40] ^= 0x01);

    let store = Store::open(config(dir.path()).cache_capacity(0)).unwrap();
    let err = store.read_packed(victim.as_str()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { id: 0 }));
    assert!(!err.is_invalid_argument());
    assert!(
        store
            .update(victim.as_str(), &map("v", 1), Limits::NONE)
            .is_err()
    );
    assert_eq!(
        store.read::<Map>(bystander.as_str()).unwrap().unwrap().data,
        map("v", "bystander")
    );
    assert!(store.create(&map("v", "new"), Limits::NONE).is_ok());
}

#[test]
fn a_record_edited_to_raise_its_budget_fails_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let token = store
        .create(&map("v", 1), Limits::new(None, Some(1)).unwrap())
        .unwrap();
    store.close().unwrap();

    // Bytes 18..26 hold the reads left, in the clear but bound to the
    // ciphertext.
    edit_record(dir.path(), 0, |value| {
        value[18..26].copy_from_slice(&1000u64.to_le_bytes())
    });
    let store = open(dir.path());
    assert!(matches!(
        store.read_packed(token.as_str()),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn a_wrong_key_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let token = store.create(&map("v", 1), Limits::NONE).unwrap();
    store.close().unwrap();

    let err = Store::open(Config::new(other_key()).path(dir.path()))
        .err()
        .unwrap();
    assert!(matches!(err, OpenError::KeyMismatch { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "secret key does not match the store at {}",
            dir.path().display()
        )
    );
    // The refusal changed nothing.
    let store = open(dir.path());
    assert_eq!(
        store.read::<Map>(token.as_str()).unwrap().unwrap().data,
        map("v", 1)
    );
}

#[test]
fn tokens_of_one_store_are_not_found_in_another() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = open(a.path());
    let second = Store::open(Config::new(other_key()).path(b.path())).unwrap();
    let tokens: Vec<_> = (0..100)
        .map(|i| first.create(&map("i", i), Limits::NONE).unwrap())
        .collect();
    // The second store has records at the same ids.
    for i in 0..100 {
        second.create(&map("i", i), Limits::NONE).unwrap();
    }
    for token in &tokens {
        assert!(second.read_packed(token.as_str()).unwrap().is_none());
        assert!(!second.delete(token.as_str()).unwrap());
    }
    assert_eq!(second.stats().tokens, 100);
}

#[test]
fn a_bad_key_never_reaches_the_error_text() {
    let attempt = "c2VjcmV0LXRoYXQtaXMtdG9vLXNob3J0";
    let err = SecretKey::from_base64(attempt).unwrap_err();
    assert!(!err.to_string().contains(attempt));
    assert!(err.to_string().contains("32, 48 or 64"));
}

#[test]
fn a_second_open_in_this_process_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let err = Store::open(config(dir.path())).err().unwrap();
    assert!(matches!(err, OpenError::AlreadyOpen { .. }));
    assert!(err.to_string().contains(&dir.path().display().to_string()));
    drop(store);
    open(dir.path());
}

const CHILD_ENV: &str = "CRUDJT_TEST_OPEN_DIR";

/// Run as a child by the next test: tries to open the store and prints the
/// outcome.
#[test]
fn child_tries_to_open() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    match Store::open(Config::new(key()).path(&dir)) {
        Ok(_) => println!("OUTCOME opened"),
        Err(err) => println!("OUTCOME {err}"),
    }
}

#[test]
fn a_second_open_from_another_process_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_tries_to_open",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The harness may print the test's name on the same line.
    let outcome = stdout
        .split("OUTCOME ")
        .nth(1)
        .and_then(|s| s.lines().next())
        .unwrap();
    assert!(outcome.contains("already open"), "{outcome}");
    assert!(outcome.contains(&dir.path().display().to_string()));
}

#[cfg(unix)]
#[test]
fn the_directory_and_file_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("nested").join("store");
    let store = open(&dir);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(store.file()), 0o600);
}
