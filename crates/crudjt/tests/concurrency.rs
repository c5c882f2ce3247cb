//! Many threads on the same tokens: budgets are exact, creates unique.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use common::{Map, config, map};
use crudjt::{Limits, Store};

const THREADS: usize = 8;

/// Races `THREADS` threads, each reading every token `attempts` times, and
/// returns how many reads of each token succeeded.
fn race_reads(store: &Arc<Store>, tokens: &[String], attempts: usize) -> Vec<u64> {
    let hits: Arc<Vec<AtomicU64>> = Arc::new(tokens.iter().map(|_| AtomicU64::new(0)).collect());
    let barrier = Arc::new(Barrier::new(THREADS));
    let tokens = Arc::new(tokens.to_vec());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, hits, barrier, tokens) =
                (store.clone(), hits.clone(), barrier.clone(), tokens.clone());
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..attempts {
                    // Each thread walks the tokens from its own offset, so
                    // threads collide on the same token at different times.
                    for k in 0..tokens.len() {
                        let i = (k + t * 7) % tokens.len();
                        if store.read_packed(&tokens[i]).unwrap().is_some() {
                            hits[i].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    hits.iter().map(|h| h.load(Ordering::Relaxed)).collect()
}

fn check_budgets(store: Arc<Store>, flush_between: bool) {
    for round in 0..40 {
        let budgets: Vec<u64> = (0..32).map(|i| 1 + (i + round) % 5).collect();
        let tokens: Vec<String> = budgets
            .iter()
            .map(|&n| {
                let limits = Limits::new(None, Some(n)).unwrap();
                store.create(&map("n", n), limits).unwrap().to_string()
            })
            .collect();
        if flush_between {
            store.flush().unwrap();
        }
        let hits = race_reads(&store, &tokens, 6);
        assert_eq!(hits, budgets, "round {round}");
    }
    assert_eq!(store.stats().tokens, 0);
}

#[test]
fn budgets_are_exact_under_racing_readers() {
    let dir = tempfile::tempdir().unwrap();
    check_budgets(Arc::new(Store::open(config(dir.path())).unwrap()), false);
}

#[test]
fn budgets_are_exact_when_records_come_from_disk() {
    // No cache and a flush before each race: every first read goes to disk.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()).cache_capacity(0)).unwrap();
    check_budgets(Arc::new(store), true);
}

#[test]
fn one_time_tokens_are_read_once_while_the_flusher_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(config(dir.path()).cache_capacity(16)).unwrap());
    let tokens: Vec<String> = (0..2000)
        .map(|i| {
            store
                .create(&map("i", i), Limits::new(None, Some(1)).unwrap())
                .unwrap()
        })
        .map(String::from)
        .collect();
    let hits = race_reads(&store, &tokens, 3);
    assert!(hits.iter().all(|&h| h == 1));
}

#[test]
fn concurrent_creates_never_share_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(config(dir.path())).unwrap());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                (0..5000)
                    .map(|i| {
                        let data = map("who", format!("{t}-{i}"));
                        (store.create(&data, Limits::NONE).unwrap().to_string(), data)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let created: Vec<(String, Map)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let unique: HashSet<&String> = created.iter().map(|(token, _)| token).collect();
    assert_eq!(unique.len(), THREADS * 5000);
    for (token, data) in &created {
        assert_eq!(&store.read::<Map>(token).unwrap().unwrap().data, data);
    }
    assert_eq!(store.stats().tokens, (THREADS * 5000) as u64);
}

#[test]
fn updates_and_deletes_race_without_resurrection() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(config(dir.path())).unwrap());
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..500)
            .map(|i| store.create(&map("v", i), Limits::NONE).unwrap().into())
            .collect(),
    );
    let deleted = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, tokens, deleted) = (store.clone(), tokens.clone(), deleted.clone());
            thread::spawn(move || {
                for (i, token) in tokens.iter().enumerate() {
                    if (i + t) % 4 == 0 && store.delete(token).unwrap() {
                        deleted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        store.update(token, &map("v", t), Limits::NONE).unwrap();
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let live = tokens
        .iter()
        .filter(|t| store.read_packed(t).unwrap().is_some())
        .count();
    assert_eq!(live as u64 + deleted.load(Ordering::Relaxed), 500);
    assert_eq!(store.stats().tokens, live as u64);
    // Once deleted, a token stays deleted, in memory and on disk.
    store.flush().unwrap();
    let after = tokens
        .iter()
        .filter(|t| store.read_packed(t).unwrap().is_some())
        .count();
    assert_eq!(after, live);
}
