//! Every rule of DESIGN.md's Semantics, on a real store in a temp dir.

mod common;

use std::collections::HashMap;
use std::thread::sleep;
use std::time::Duration;

use common::{Map, config, map, open, packed_of_size};
use crudjt::{Error, Limits, MAX_DATA_SIZE_LIMIT, OpenError, Store};
use serde::{Deserialize, Serialize};

fn limits(ttl: Option<u64>, silence_read: Option<u64>) -> Limits {
    Limits::new(ttl, silence_read).unwrap()
}

#[test]
fn create_then_read_returns_exactly_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = Map::from([
        ("user_id".into(), 42.into()),
        ("name".into(), "ada".into()),
        (
            "roles".into(),
            rmpv::Value::Array(vec!["admin".into(), rmpv::Value::Nil]),
        ),
        ("pi".into(), 3.25.into()),
        ("raw".into(), rmpv::Value::Binary(vec![0, 255])),
        (
            "nested".into(),
            rmpv::Value::Map(vec![("ok".into(), true.into())]),
        ),
    ]);
    let token = store.create(&data, Limits::NONE).unwrap();
    assert_eq!(token.as_str().len(), 22);
    let entry = store.read::<Map>(token.as_str()).unwrap().unwrap();
    assert_eq!(entry.data, data);
    assert_eq!((entry.ttl, entry.silence_read), (None, None));

    let packed = rmp_serde::to_vec_named(&data).unwrap();
    let token = store.create_packed(&packed, Limits::NONE).unwrap();
    assert_eq!(
        store.read_packed(token.as_str()).unwrap().unwrap().data,
        packed
    );
}

#[test]
fn reads_into_structs_and_reports_mismatched_types() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Session {
        user_id: u64,
        admin: bool,
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let session = Session {
        user_id: 7,
        admin: true,
    };
    let token = store.create(&session, Limits::NONE).unwrap();
    assert_eq!(
        store.read::<Session>(token.as_str()).unwrap().unwrap().data,
        session
    );
    let wrong = store.read::<HashMap<String, String>>(token.as_str());
    assert!(matches!(wrong, Err(Error::Decode(_))));
}

#[test]
fn ttl_reads_whole_seconds_rounded_up_then_expires() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let hour = store
        .create(&map("a", 1), limits(Some(3600), None))
        .unwrap();
    assert_eq!(
        store.read::<Map>(hour.as_str()).unwrap().unwrap().ttl,
        Some(3600)
    );

    let short = store.create(&map("a", 1), limits(Some(2), None)).unwrap();
    assert_eq!(
        store.read::<Map>(short.as_str()).unwrap().unwrap().ttl,
        Some(2)
    );
    sleep(Duration::from_millis(1100));
    assert_eq!(
        store.read::<Map>(short.as_str()).unwrap().unwrap().ttl,
        Some(1)
    );
    sleep(Duration::from_millis(1000));
    assert!(store.read::<Map>(short.as_str()).unwrap().is_none());
    assert!(
        !store
            .update(short.as_str(), &map("a", 2), Limits::NONE)
            .unwrap()
    );
    assert!(!store.delete(short.as_str()).unwrap());
}

#[test]
fn read_budget_counts_down_and_the_last_read_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let token = store.create(&map("a", 1), limits(None, Some(3))).unwrap();
    for left in [2, 1, 0] {
        let entry = store.read::<Map>(token.as_str()).unwrap().unwrap();
        assert_eq!(entry.silence_read, Some(left));
        assert_eq!(entry.ttl, None);
        assert_eq!(entry.data, map("a", 1));
    }
    assert!(store.read::<Map>(token.as_str()).unwrap().is_none());
    assert!(!store.delete(token.as_str()).unwrap());

    let once = store
        .create(&map("a", 1), limits(Some(60), Some(1)))
        .unwrap();
    let entry = store.read::<Map>(once.as_str()).unwrap().unwrap();
    assert_eq!((entry.ttl, entry.silence_read), (Some(60), Some(0)));
    assert!(store.read::<Map>(once.as_str()).unwrap().is_none());
    assert_eq!(store.stats().tokens, 0);
}

#[test]
fn read_result_map_holds_only_the_limits_that_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let cases = [
        (None, None),
        (Some(10), None),
        (None, Some(5)),
        (Some(10), Some(5)),
    ];
    for (ttl, reads) in cases {
        let token = store.create(&map("k", "v"), limits(ttl, reads)).unwrap();
        let entry = store.read_packed(token.as_str()).unwrap().unwrap();
        let result = rmpv::decode::read_value(&mut &entry.to_packed_result()[..]).unwrap();
        let keys: Vec<_> = result
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.clone())
            .collect();
        let metadata = result
            .as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k == &"metadata".into());
        match metadata {
            None => {
                assert_eq!((ttl, reads), (None, None));
                assert_eq!(keys, vec![rmpv::Value::from("data")]);
            }
            Some((_, meta)) => {
                let has = |name: &str| {
                    meta.as_map()
                        .unwrap()
                        .iter()
                        .any(|(k, _)| k == &name.into())
                };
                assert_eq!(has("ttl"), ttl.is_some());
                assert_eq!(has("silence_read"), reads.is_some());
            }
        }
        assert_eq!(result["data"]["k"], rmpv::Value::from("v"));
    }
}

#[test]
fn update_replaces_data_and_both_limits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let token = store
        .create(&map("v", 1), limits(Some(100), Some(5)))
        .unwrap();
    assert!(
        store
            .update(token.as_str(), &map("v", 2), Limits::NONE)
            .unwrap()
    );
    let entry = store.read::<Map>(token.as_str()).unwrap().unwrap();
    assert_eq!(entry.data, map("v", 2));
    assert_eq!((entry.ttl, entry.silence_read), (None, None));

    assert!(
        store
            .update(token.as_str(), &map("v", 3), limits(Some(7), Some(2)))
            .unwrap()
    );
    let entry = store.read::<Map>(token.as_str()).unwrap().unwrap();
    assert_eq!((entry.ttl, entry.silence_read), (Some(7), Some(1)));
    // An update resets the budget to its new value.
    assert!(
        store
            .update(token.as_str(), &map("v", 4), limits(None, Some(1)))
            .unwrap()
    );
    assert_eq!(
        store
            .read::<Map>(token.as_str())
            .unwrap()
            .unwrap()
            .silence_read,
        Some(0)
    );
    assert!(
        !store
            .update(token.as_str(), &map("v", 5), Limits::NONE)
            .unwrap()
    );
}

#[test]
fn update_extends_a_lifetime_from_now() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let token = store.create(&map("v", 1), limits(Some(1), None)).unwrap();
    sleep(Duration::from_millis(600));
    assert!(
        store
            .update(token.as_str(), &map("v", 2), limits(Some(2), None))
            .unwrap()
    );
    sleep(Duration::from_millis(600));
    let entry = store.read::<Map>(token.as_str()).unwrap().unwrap();
    assert_eq!((entry.data, entry.ttl), (map("v", 2), Some(2)));
}

#[test]
fn delete_then_everything_misses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let token = store.create(&map("v", 1), Limits::NONE).unwrap();
    assert!(store.delete(token.as_str()).unwrap());
    assert!(!store.delete(token.as_str()).unwrap());
    assert!(store.read::<Map>(token.as_str()).unwrap().is_none());
    assert!(
        !store
            .update(token.as_str(), &map("v", 2), Limits::NONE)
            .unwrap()
    );
}

#[test]
fn garbage_tokens_are_not_found_and_empty_tokens_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let token = store
        .create(&map("v", 1), Limits::NONE)
        .unwrap()
        .to_string();
    let mut bent = token.clone().into_bytes();
    bent[0] = if bent[0] == b'A' { b'B' } else { b'A' };
    let bent = String::from_utf8(bent).unwrap();
    let garbage = [
        "garbage",
        "AAAAAAAAAAAAAAAAAAAAAA",
        "______________________",
        &token[..21],
        &format!("{token}A"),
        &bent,
        "ü",
        "a b c d e f g h i j k l",
        "AAAAAAAAAAAAAAAAAAAAA=",
    ];
    for text in garbage {
        assert!(store.read::<Map>(text).unwrap().is_none(), "{text:?}");
        assert!(
            !store.update(text, &map("v", 2), Limits::NONE).unwrap(),
            "{text:?}"
        );
        assert!(!store.delete(text).unwrap(), "{text:?}");
    }
    assert!(matches!(store.read::<Map>(""), Err(Error::EmptyToken)));
    assert!(matches!(
        store.update("", &map("v", 2), Limits::NONE),
        Err(Error::EmptyToken)
    ));
    assert!(matches!(store.delete(""), Err(Error::EmptyToken)));
    assert_eq!(
        store.read::<Map>(&token).unwrap().unwrap().data,
        map("v", 1)
    );
}

#[test]
fn data_must_be_a_map_within_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let exact = packed_of_size(256);
    assert_eq!(exact.len(), 256);
    let token = store.create_packed(&exact, Limits::NONE).unwrap();
    assert_eq!(
        store.read_packed(token.as_str()).unwrap().unwrap().data,
        exact
    );
    let err = store
        .create_packed(&packed_of_size(257), Limits::NONE)
        .unwrap_err();
    assert!(matches!(
        err,
        Error::DataTooLarge {
            size: 257,
            limit: 256
        }
    ));
    assert_eq!(err.to_string(), "token data is 257 bytes, the limit is 256");
    let err = store.update_packed(token.as_str(), &packed_of_size(257), Limits::NONE);
    assert!(matches!(err, Err(Error::DataTooLarge { .. })));

    assert!(matches!(
        store.create(&vec![1, 2], Limits::NONE),
        Err(Error::NotAMap { .. })
    ));
    assert!(matches!(
        store.create(&"text", Limits::NONE),
        Err(Error::NotAMap { .. })
    ));
    assert!(matches!(
        store.create_packed(&[0xc1], Limits::NONE),
        Err(Error::NotAMap { .. })
    ));
    let truncated = store.create_packed(&[0x82, 0xa1, b'a'], Limits::NONE);
    assert!(matches!(truncated, Err(Error::InvalidData { .. })));
    assert!(store.create_packed(&[0x80], Limits::NONE).is_ok());
    for err in [Error::DataTooLarge { size: 1, limit: 0 }, Error::EmptyToken] {
        assert!(err.is_invalid_argument());
    }
}

#[test]
fn larger_data_limit_up_to_64_kib() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()).max_data_size(MAX_DATA_SIZE_LIMIT)).unwrap();
    let big = packed_of_size(MAX_DATA_SIZE_LIMIT);
    let token = store.create_packed(&big, Limits::NONE).unwrap();
    store.flush().unwrap();
    assert_eq!(
        store.read_packed(token.as_str()).unwrap().unwrap().data,
        big
    );
    let over = store.create_packed(&packed_of_size(MAX_DATA_SIZE_LIMIT + 1), Limits::NONE);
    assert!(matches!(
        over,
        Err(Error::DataTooLarge { limit: 65536, .. })
    ));
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    for size in [0, MAX_DATA_SIZE_LIMIT + 1] {
        let err = Store::open(config(dir.path()).max_data_size(size))
            .err()
            .unwrap();
        assert!(matches!(
            err,
            OpenError::InvalidOption {
                name: "max_data_size",
                ..
            }
        ));
    }
}

#[test]
fn limits_of_zero_one_and_the_maximum() {
    assert!(matches!(
        Limits::new(Some(0), None),
        Err(Error::InvalidLimit { name: "ttl", .. })
    ));
    let err = Limits::new(None, Some(0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "silence_read must be at least 1 (or absent for no limit), got 0"
    );
    assert!(Limits::from_signed(-5, -1).is_err());

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let one = store
        .create(&map("v", 1), limits(Some(1), Some(1)))
        .unwrap();
    let entry = store.read::<Map>(one.as_str()).unwrap().unwrap();
    assert_eq!((entry.ttl, entry.silence_read), (Some(1), Some(0)));

    let max = store
        .create(&map("v", 1), limits(Some(u64::MAX), Some(u64::MAX)))
        .unwrap();
    let entry = store.read::<Map>(max.as_str()).unwrap().unwrap();
    assert_eq!(entry.silence_read, Some(u64::MAX - 1));
    // The expiry saturates at the end of the millisecond clock; what is
    // left of it is reported, far beyond any real lifetime.
    assert!(entry.ttl.unwrap() > 1 << 53);
    store.flush().unwrap();
    drop(store);
    let store = open(dir.path());
    let entry = store.read::<Map>(max.as_str()).unwrap().unwrap();
    assert_eq!(entry.silence_read, Some(u64::MAX - 2));
}

#[test]
fn tokens_limits_and_budgets_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let plain = store.create(&map("v", 1), Limits::NONE).unwrap();
    let budget = store
        .create(&map("v", 2), limits(Some(3600), Some(3)))
        .unwrap();
    let gone = store.create(&map("v", 3), Limits::NONE).unwrap();
    store.read::<Map>(budget.as_str()).unwrap().unwrap();
    store.delete(gone.as_str()).unwrap();
    // Close flushes: the flush interval never passes here.
    store.close().unwrap();

    let store = open(dir.path());
    assert_eq!(store.stats().tokens, 2);
    assert_eq!(
        store.read::<Map>(plain.as_str()).unwrap().unwrap().data,
        map("v", 1)
    );
    let entry = store.read::<Map>(budget.as_str()).unwrap().unwrap();
    assert_eq!(entry.silence_read, Some(1));
    assert!(entry.ttl.unwrap() >= 3599);
    assert!(store.read::<Map>(gone.as_str()).unwrap().is_none());
}

#[test]
fn a_long_flush_interval_still_loses_nothing_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()).flush_interval(Duration::from_secs(3600))).unwrap();
    let tokens: Vec<_> = (0..1000)
        .map(|i| store.create(&map("i", i), Limits::NONE).unwrap())
        .collect();
    assert_eq!(store.stats().pending_writes, 1000);
    drop(store);
    let store = open(dir.path());
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(
            store.read::<Map>(token.as_str()).unwrap().unwrap().data,
            map("i", i)
        );
    }
}
