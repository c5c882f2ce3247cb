//! Secret key rotation: a store given a new key and its previous ones keeps
//! every session, moves its records to the new key, says what still needs
//! an old key, and refuses keys that would strand its sessions.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Map, key, map, other_key};
use crudjt::{Config, KeyStats, Limits, OpenError, SecretKey, Store, Token};

fn third_key() -> SecretKey {
    SecretKey::from_bytes(vec![0x3c; 64]).unwrap()
}

fn config(dir: &Path, current: SecretKey, previous: Vec<SecretKey>) -> Config {
    previous.into_iter().fold(
        Config::new(current)
            .path(dir)
            .flush_interval(Duration::from_millis(50)),
        Config::previous_key,
    )
}

fn read_user(store: &Store, token: &Token) -> Option<u64> {
    let entry = store.read::<Map>(token.as_str()).unwrap()?;
    entry.data["user"].as_u64()
}

/// Flushes, then the store's view of key `number`.
fn key_stats(store: &Store, number: u16) -> KeyStats {
    store.flush().unwrap();
    store.stats().keys[usize::from(number)]
}

/// Creates `n` tokens with users `0..n`: some plain, some with a lifetime,
/// some with a read budget.
fn create_users(store: &Store, n: u64) -> Vec<Token> {
    (0..n)
        .map(|user| {
            let limits = match user % 3 {
                0 => Limits::NONE,
                1 => Limits::new(Some(3600), None).unwrap(),
                _ => Limits::new(None, Some(1000)).unwrap(),
            };
            store.create(&map("user", user), limits).unwrap()
        })
        .collect()
}

#[test]
fn a_new_key_keeps_old_sessions_and_reseals_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path(), key(), vec![])).unwrap();
    let old = create_users(&store, 300);
    let stats = key_stats(&store, 0);
    assert!(stats.current && stats.given);
    assert_eq!((stats.tokens, stats.sealed), (300, 300));
    store.close().unwrap();

    // Without the old key the store refuses, naming the mismatch.
    let refused = Store::open(config(dir.path(), other_key(), vec![]));
    assert!(matches!(refused, Err(OpenError::KeyMismatch { .. })));

    let store = Store::open(config(dir.path(), other_key(), vec![key()])).unwrap();
    let keys = store.stats().keys;
    assert_eq!(keys.len(), 2);
    assert!(!keys[0].current && keys[0].given && keys[1].current);
    for (user, token) in old.iter().enumerate() {
        assert_eq!(read_user(&store, token), Some(user as u64), "token {user}");
    }
    let new = create_users(&store, 30);
    for (user, token) in new.iter().enumerate() {
        assert_eq!(read_user(&store, token), Some(user as u64));
    }

    // Writes seal under the new key; the token of an updated record stays.
    assert!(
        store
            .update(old[0].as_str(), &map("user", 1000u64), Limits::NONE)
            .unwrap()
    );
    assert!(store.delete(old[3].as_str()).unwrap());

    // The sweep (at open, and this one) moves the rest; the old key is
    // still needed for the tokens it made.
    let report = store.sweep().unwrap();
    assert_eq!(report.dropped, 0);
    let stats = key_stats(&store, 0);
    assert_eq!((stats.tokens, stats.sealed), (299, 0));
    assert!(stats.in_use());
    let stats = key_stats(&store, 1);
    assert_eq!((stats.tokens, stats.sealed), (30, 329));
    assert_eq!(read_user(&store, &old[0]), Some(1000));
    assert_eq!(read_user(&store, &old[299]), Some(299));
    store.close().unwrap();

    // Reopened, everything is still there under the same keys.
    let store = Store::open(config(dir.path(), other_key(), vec![key()])).unwrap();
    assert_eq!(read_user(&store, &old[1]), Some(1));
    assert_eq!(read_user(&store, &old[3]), None);
    assert_eq!(read_user(&store, &new[29]), Some(29));
    store.close().unwrap();
}

#[test]
fn dropping_a_key_ends_its_sessions_and_the_sweep_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path(), key(), vec![])).unwrap();
    let old = create_users(&store, 50);
    store.close().unwrap();
    let store = Store::open(config(dir.path(), other_key(), vec![key()])).unwrap();
    let new = create_users(&store, 5);
    store.close().unwrap();

    // The operator drops the old key: its tokens are not found, the sweep
    // at open removes their records, and the new key's sessions live on.
    let store = Store::open(config(dir.path(), other_key(), vec![])).unwrap();
    for token in &old {
        assert_eq!(read_user(&store, token), None);
        assert!(!store.delete(token.as_str()).unwrap());
    }
    for (user, token) in new.iter().enumerate() {
        assert_eq!(read_user(&store, token), Some(user as u64));
    }
    let dropped = store.sweep().unwrap().dropped;
    let stats = key_stats(&store, 0);
    assert!(!stats.given && !stats.current);
    assert_eq!((stats.tokens, stats.sealed), (0, 0));
    // The sweep at open may have removed them before the one above.
    assert!(dropped <= 50);
    assert_eq!(store.stats().tokens, 5);
    store.close().unwrap();
}

#[test]
fn keys_that_would_strand_sessions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(config(dir.path(), key(), vec![]))
        .unwrap()
        .close()
        .unwrap();
    Store::open(config(dir.path(), other_key(), vec![key()]))
        .unwrap()
        .close()
        .unwrap();

    // Going back to the first key without the current one would strand
    // the current key's tokens.
    let back = Store::open(config(dir.path(), key(), vec![]));
    assert!(matches!(back, Err(OpenError::KeyMismatch { .. })));
    // A third key needs the current one, not only an older one, beside it.
    let skipped = Store::open(config(dir.path(), third_key(), vec![key()]));
    assert!(matches!(skipped, Err(OpenError::KeyMismatch { .. })));

    // Going back with the current key beside it is a rotation like any
    // other; so is a third key after it.
    let store = Store::open(config(dir.path(), key(), vec![other_key()])).unwrap();
    let token = store.create(&map("user", 7u64), Limits::NONE).unwrap();
    let stats = store.stats().keys;
    assert!(stats[0].current && !stats[1].current);
    store.close().unwrap();
    let store = Store::open(config(
        dir.path(),
        third_key(),
        vec![other_key(), key(), key()],
    ))
    .unwrap();
    assert_eq!(store.stats().keys.len(), 3);
    assert_eq!(read_user(&store, &token), Some(7));
    store.close().unwrap();
}

#[test]
fn previous_keys_a_new_store_never_used_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path(), key(), vec![other_key()])).unwrap();
    let keys = store.stats().keys;
    assert_eq!(keys.len(), 1);
    assert!(keys[0].current);
    let token = store.create(&map("user", 1u64), Limits::NONE).unwrap();
    store.close().unwrap();
    let store = Store::open(config(dir.path(), key(), vec![])).unwrap();
    assert_eq!(read_user(&store, &token), Some(1));
    store.close().unwrap();
}

/// A store written by the build before key rotation (store format 1,
/// record format 1) with the test key: three live tokens and one deleted.
const FORMAT_1_STORE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/store-format-1/store.redb"
);
const FORMAT_1_TOKENS: [&str; 4] = [
    "DkR4My2WUYaGD-7JOsUkcQ",
    "dnkwTDwxCgFVIEgwxQV4ew",
    "oObQzMUFJPKIuvelNH9tNw",
    "96zBB_mmnfZ0zFyc1EOzmQ",
];

#[test]
fn a_format_1_store_is_upgraded_and_can_rotate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(FORMAT_1_STORE, dir.path().join(crudjt::FILE_NAME)).unwrap();
    let read = |store: &Store, token: &str| {
        let entry = store.read::<Map>(token).unwrap()?;
        Some((
            entry.data["user"].as_u64().unwrap(),
            entry.ttl.is_some(),
            entry.silence_read,
        ))
    };

    let store = Store::open(config(dir.path(), key(), vec![])).unwrap();
    let stats = key_stats(&store, 0);
    assert_eq!((stats.tokens, stats.sealed), (3, 3));
    assert_eq!(read(&store, FORMAT_1_TOKENS[0]), Some((1, false, None)));
    assert_eq!(read(&store, FORMAT_1_TOKENS[1]), Some((2, false, Some(4))));
    assert_eq!(read(&store, FORMAT_1_TOKENS[2]), Some((3, true, None)));
    assert_eq!(read(&store, FORMAT_1_TOKENS[3]), None);
    store.close().unwrap();

    let store = Store::open(config(dir.path(), other_key(), vec![key()])).unwrap();
    store.sweep().unwrap();
    let stats = key_stats(&store, 0);
    assert_eq!((stats.tokens, stats.sealed), (3, 0));
    assert_eq!(read(&store, FORMAT_1_TOKENS[1]), Some((2, false, Some(3))));
    assert_eq!(read(&store, FORMAT_1_TOKENS[2]), Some((3, true, None)));
    store.close().unwrap();
}
