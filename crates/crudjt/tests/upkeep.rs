//! The expiry sweep, compaction, back-pressure, durability modes and stats.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use common::{Map, config, map, open, packed_of_size};
use crudjt::{Durability, Limits, Store};
use redb::{ReadableDatabase, ReadableTableMetadata};

/// Rows in the records and expiry tables, read with redb from a closed
/// store's file.
fn rows_on_disk(dir: &Path) -> (u64, u64) {
    let db = redb::ReadOnlyDatabase::open(dir.join(crudjt::FILE_NAME)).unwrap();
    let txn = db.begin_read().unwrap();
    let records: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("records");
    let expiry: redb::TableDefinition<(u64, u64), ()> = redb::TableDefinition::new("expiry");
    let records = txn.open_table(records).unwrap().len().unwrap();
    let expiry = txn.open_table(expiry).unwrap().len().unwrap();
    (records, expiry)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_sweep_removes_expired_records_from_disk_and_keeps_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let short = Limits::new(Some(1), None).unwrap();
    let long = Limits::new(Some(3600), None).unwrap();
    let expiring: Vec<_> = (0..300)
        .map(|i| store.create(&map("i", i), short).unwrap())
        .collect();
    let keep: Vec<_> = (0..200)
        .map(|i| store.create(&map("i", i), long).unwrap())
        .collect();
    let forever: Vec<_> = (0..100)
        .map(|i| store.create(&map("i", i), Limits::NONE).unwrap())
        .collect();
    store.flush().unwrap();
    sleep(Duration::from_millis(1100));

    let report = store.sweep().unwrap();
    assert_eq!(report.removed, 300);
    assert_eq!(store.stats().tokens, 300);
    assert_eq!(store.stats().last_sweep.unwrap().removed, 300);
    store.close().unwrap();
    assert_eq!(rows_on_disk(dir.path()), (300, 200));

    let store = open(dir.path());
    for token in &expiring {
        assert!(store.read_packed(token.as_str()).unwrap().is_none());
    }
    for token in keep.iter().chain(&forever) {
        assert!(store.read_packed(token.as_str()).unwrap().is_some());
    }
}

#[test]
fn the_sweep_at_open_removes_what_expired_while_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let short = Limits::new(Some(1), None).unwrap();
    for i in 0..100 {
        store.create(&map("i", i), short).unwrap();
    }
    store.create(&map("live", true), Limits::NONE).unwrap();
    store.close().unwrap();
    sleep(Duration::from_millis(1100));

    let store = open(dir.path());
    wait_for("the sweep at open", || store.stats().last_sweep.is_some());
    assert_eq!(store.stats().last_sweep.unwrap().removed, 100);
    store.close().unwrap();
    assert_eq!(rows_on_disk(dir.path()), (1, 0));
}

#[test]
fn the_sweep_spares_records_updated_after_they_were_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let token = store
        .create(&map("v", 1), Limits::new(Some(1), None).unwrap())
        .unwrap();
    store.flush().unwrap();
    // The update moves the expiry an hour out; the sweep must look at the
    // record, not only at the old index entry.
    assert!(
        store
            .update(
                token.as_str(),
                &map("v", 2),
                Limits::new(Some(3600), None).unwrap()
            )
            .unwrap()
    );
    sleep(Duration::from_millis(1100));
    assert_eq!(store.sweep().unwrap().removed, 0);
    store.flush().unwrap();
    assert_eq!(store.sweep().unwrap().removed, 0);
    assert_eq!(
        store.read::<Map>(token.as_str()).unwrap().unwrap().data,
        map("v", 2)
    );
    store.close().unwrap();
    assert_eq!(rows_on_disk(dir.path()), (1, 1));
}

#[test]
fn compaction_gives_deleted_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = packed_of_size(256);
    let tokens: Vec<_> = (0..20_000)
        .map(|_| store.create_packed(&data, Limits::NONE).unwrap())
        .collect();
    store.flush().unwrap();
    for token in &tokens[..19_000] {
        assert!(store.delete(token.as_str()).unwrap());
    }
    store.flush().unwrap();
    let before = store.stats().file_bytes;
    store.compact().unwrap();
    let after = store.stats().file_bytes;
    assert!(
        after * 2 < before,
        "compaction left {after} of {before} bytes"
    );
    for token in &tokens[19_000..] {
        assert_eq!(
            store.read_packed(token.as_str()).unwrap().unwrap().data,
            data
        );
    }
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(store.stats().tokens, 1000);
    assert!(
        store
            .read_packed(tokens[19_999].as_str())
            .unwrap()
            .is_some()
    );
}

#[test]
fn the_file_stops_growing_under_steady_churn() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = packed_of_size(256);
    let mut live = std::collections::VecDeque::new();
    for _ in 0..2000 {
        live.push_back(store.create_packed(&data, Limits::NONE).unwrap());
    }
    let mut sizes = Vec::new();
    for round in 0..30 {
        for _ in 0..2000 {
            let token = live.pop_front().unwrap();
            assert!(store.delete(token.as_str()).unwrap());
            live.push_back(store.create_packed(&data, Limits::NONE).unwrap());
        }
        store.flush().unwrap();
        if round >= 5 {
            sizes.push(store.stats().file_bytes);
        }
    }
    let (first, last) = (sizes[0], *sizes.last().unwrap());
    let peak = *sizes.iter().max().unwrap();
    assert!(
        peak <= first * 3 / 2,
        "file grew from {first} to a peak of {peak} (sizes {sizes:?})"
    );
    assert!(last <= first * 3 / 2, "file grew from {first} to {last}");
}

#[test]
fn back_pressure_bounds_pending_writes_when_the_flusher_is_slow_to_start() {
    let dir = tempfile::tempdir().unwrap();
    // The flush interval never passes: only back-pressure gets rounds run.
    let bound = 512 * 1024;
    let store = Store::open(
        config(dir.path())
            .flush_interval(Duration::from_secs(3600))
            .max_pending_bytes(bound),
    )
    .unwrap();
    let store = Arc::new(store);
    let data = packed_of_size(256);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (store, data) = (store.clone(), data.clone());
            thread::spawn(move || {
                let mut peak = 0;
                for _ in 0..10_000 {
                    store.create_packed(&data, Limits::NONE).unwrap();
                    peak = peak.max(store.stats().pending_bytes);
                }
                peak
            })
        })
        .collect();
    let peak = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap();
    // Each thread may add one record past the bound before it waits.
    assert!(
        peak <= (bound + 2 * 400) as u64,
        "pending peaked at {peak} bytes"
    );
    assert!(store.stats().flushes >= 5);
    assert_eq!(store.stats().tokens, 20_000);
}

#[test]
fn always_durability_shares_commits_between_concurrent_calls() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path())
        .durability(Durability::Always)
        .flush_interval(Duration::from_secs(3600));
    let store = Arc::new(Store::open(config).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                for i in 0..50 {
                    let token = store.create(&map("i", i), Limits::NONE).unwrap();
                    // Acknowledged means committed: nothing is left pending
                    // for this call.
                    assert!(store.read_packed(token.as_str()).unwrap().is_some(), "{t}");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.pending_writes, 0);
    assert!(
        stats.flushes < 400,
        "{} commits for 400 calls",
        stats.flushes
    );
    assert!(stats.flushes > 0);
}

#[test]
fn stats_report_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()).flush_interval(Duration::from_secs(3600))).unwrap();
    let first = store.stats();
    assert_eq!(
        (first.tokens, first.pending_writes, first.flushes),
        (0, 0, 0)
    );
    assert!(first.file_bytes > 0);
    assert!(!store.is_backpressured());
    for i in 0..10 {
        store.create(&map("i", i), Limits::NONE).unwrap();
    }
    let before = store.stats();
    assert_eq!((before.tokens, before.pending_writes), (10, 10));
    assert!(before.pending_bytes > 0);
    store.flush().unwrap();
    let after = store.stats();
    assert_eq!(
        (after.pending_writes, after.pending_bytes, after.flushes),
        (0, 0, 1)
    );
    assert_eq!(after.last_flush.unwrap().records, 10);
    assert_eq!(after.cached_records, 10);
    assert_eq!(after.flush_failures, 0);
}
