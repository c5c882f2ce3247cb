//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crudjt::{Config, SecretKey, Store};

/// A fixed test key, so that a store can be reopened with the same key.
pub fn key() -> SecretKey {
    SecretKey::from_bytes(vec![0x5a; 32]).unwrap()
}

pub fn other_key() -> SecretKey {
    SecretKey::from_bytes(vec![0xa5; 48]).unwrap()
}

/// Test defaults: the given directory and a short flush interval.
pub fn config(dir: &Path) -> Config {
    Config::new(key())
        .path(dir)
        .flush_interval(Duration::from_millis(50))
}

pub fn open(dir: &Path) -> Store {
    Store::open(config(dir)).unwrap()
}

pub type Map = BTreeMap<String, rmpv::Value>;

/// `{"k": v}` as a map of MessagePack values.
pub fn map(k: &str, v: impl Into<rmpv::Value>) -> Map {
    BTreeMap::from([(k.to_string(), v.into())])
}

/// A map `{"d": <binary>}` whose MessagePack encoding is exactly `size`
/// bytes (`size` from 5 to 65541).
pub fn packed_of_size(size: usize) -> Vec<u8> {
    // fixmap of one entry, fixstr "d", then a bin8 or bin16 header.
    let mut out = vec![0x81, 0xa1, b'd'];
    if size <= 5 + 255 {
        let payload = size - 5;
        out.extend([0xc4, payload as u8]);
        out.resize(size, 0x42);
    } else {
        let payload = size - 6;
        out.extend([0xc5, (payload >> 8) as u8, payload as u8]);
        out.resize(size, 0x42);
    }
    out
}
