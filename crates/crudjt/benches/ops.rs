//! Throughput of create, cached read, update and delete, each summed over
//! two threads sharing one store, with 256-byte data and no limits.
//!
//! These measure the in-memory path a call takes before the flusher gets
//! involved, which is what a caller waits for under `Durability::Interval`:
//!
//! - `create` times at most 50,000 creates on one fresh store, then
//!   closes it untimed and goes on with another, so no early flush or
//!   back-pressure wait (which start at 32 and 64 MiB pending) ever falls
//!   in the measured time. That is the cost a caller sees while the
//!   flusher keeps up; how fast it can keep up, flush time included, is
//!   `benches/sustained.rs`.
//! - `read` reads 20,000 flushed tokens that all sit in the record cache.
//! - `update` rewrites those same 20,000 tokens over and over, so the
//!   flusher commits up to 20,000 records every 500 ms and takes its share
//!   of the two cores.
//! - `delete` deletes tokens that were created, flushed and so cached
//!   beforehand, untimed, 20,000 at a time, so none of them needs the
//!   disk.
//!
//! Run with `cargo bench -p crudjt --bench ops`.

mod common;

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use crudjt::{Config, Limits, SecretKey, Store};
use tempfile::TempDir;

const THREADS: u64 = 2;
/// Creates timed on one store before the next sample part gets a fresh
/// one: 50,000 records hold about 15 MiB, under the 32 MiB of pending
/// writes at which the store starts an early flush.
const CREATES_PER_STORE: u64 = 50_000;
/// Tokens read and updated: comfortably inside the default 40,000-record
/// cache, which is split evenly over the store's shards.
const POOL: usize = 20_000;

fn open(config: impl FnOnce(Config) -> Config) -> (Store, TempDir) {
    let dir = common::store_dir();
    let store = Store::open(config(Config::new(SecretKey::generate()).path(dir.path())))
        .expect("cannot open the benchmark store");
    (store, dir)
}

/// Runs calls `0..iters` of `op(call)` split evenly over [`THREADS`]
/// threads, and times them from the first thread's start to the last
/// one's end. Each thread reads the clock itself once all are ready, so
/// neither thread start-up nor a late wake-up of this thread is counted.
fn run_split(iters: u64, op: impl Fn(u64) + Sync) -> Duration {
    let ready = Barrier::new(THREADS as usize);
    let spans: Vec<(Instant, Instant)> = thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (ready, op) = (&ready, &op);
                scope.spawn(move || {
                    ready.wait();
                    let start = Instant::now();
                    for call in iters * t / THREADS..iters * (t + 1) / THREADS {
                        op(call);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("two threads");
    let end = spans.iter().map(|s| s.1).max().expect("two threads");
    end - start
}

/// Spreads successive calls over the pool the way random traffic would, so
/// that the two threads do not walk the shards in lockstep.
fn pick(call: u64, len: usize) -> usize {
    ((call.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16) % len as u64) as usize
}

/// Creates `count` tokens without limits and commits them, which also puts
/// them in the record cache.
fn fill(store: &Store, data: &[u8], count: usize) -> Vec<String> {
    let tokens = (0..count)
        .map(|_| store.create_packed(data, Limits::NONE).unwrap().to_string())
        .collect();
    store.flush().unwrap();
    tokens
}

fn create(group: &mut BenchmarkGroup<'_, WallTime>, data: &[u8]) {
    group.bench_function("create", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let chunk = left.min(CREATES_PER_STORE);
                let (store, _dir) = open(|c| c);
                elapsed += run_split(chunk, |_| {
                    black_box(store.create_packed(data, Limits::NONE).unwrap());
                });
                store.close().unwrap();
                left -= chunk;
            }
            elapsed
        });
    });
}

fn read(group: &mut BenchmarkGroup<'_, WallTime>, data: &[u8]) {
    let (store, _dir) = open(|c| c);
    let tokens = fill(&store, data, POOL);
    let stats = store.stats();
    assert_eq!(stats.pending_writes, 0);
    assert_eq!(
        stats.cached_records, POOL as u64,
        "every token must be cached"
    );
    group.bench_function("read_cached", |b| {
        b.iter_custom(|iters| {
            run_split(iters, |call| {
                let token = &tokens[pick(call, tokens.len())];
                black_box(store.read_packed(token).unwrap().expect("a live token"));
            })
        });
    });
    assert_eq!(
        store.stats().cached_records,
        POOL as u64,
        "reads must not evict"
    );
    store.close().unwrap();
}

fn update(group: &mut BenchmarkGroup<'_, WallTime>, data: &[u8]) {
    let (store, _dir) = open(|c| c);
    let tokens = fill(&store, data, POOL);
    group.bench_function("update", |b| {
        b.iter_custom(|iters| {
            run_split(iters, |call| {
                let token = &tokens[pick(call, tokens.len())];
                assert!(store.update_packed(token, data, Limits::NONE).unwrap());
            })
        });
    });
    store.close().unwrap();
}

fn delete(group: &mut BenchmarkGroup<'_, WallTime>, data: &[u8]) {
    let (store, _dir) = open(|c| c);
    group.bench_function("delete", |b| {
        b.iter_custom(|iters| {
            // In pool-sized rounds, so that every token deleted was cached
            // by the flush before it, as in `read`.
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let round = left.min(POOL as u64);
                let tokens = fill(&store, data, round as usize);
                assert_eq!(store.stats().cached_records, round);
                elapsed += run_split(round, |call| {
                    assert!(store.delete(&tokens[call as usize]).unwrap());
                });
                left -= round;
            }
            elapsed
        });
    });
    store.close().unwrap();
}

fn ops(c: &mut Criterion) {
    let data = common::session_data();
    let mut group = c.benchmark_group("ops");
    // One element per call: criterion then reports calls per second,
    // summed over both threads because the time is wall-clock time.
    group.throughput(Throughput::Elements(1));
    create(&mut group, &data);
    read(&mut group, &data);
    update(&mut group, &data);
    delete(&mut group, &data);
    group.finish();
}

criterion_group! {
    name = benches;
    // Two seconds of samples per benchmark keep the whole run, setup
    // included, to about a minute.
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = ops
}
criterion_main!(benches);
