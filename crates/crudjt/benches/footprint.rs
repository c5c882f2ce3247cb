//! Disk and memory footprint, printed as tables:
//!
//! - (a) the file size of 40,000 tokens of 256-byte data;
//! - (b) the file size while 40,000 live tokens churn through 800,000 more
//!   operations (400,000 creates and 400,000 deletes, oldest first), and
//!   after `compact()`;
//! - (c) a store of 1,000,000 tokens: how long it takes to reopen and serve
//!   a read from disk, and how much memory the process holds afterwards
//!   and after 200,000 random reads. This part runs in a child process of
//!   this binary so that the memory it reports is not the build's.
//!
//! Run with `cargo bench -p crudjt --bench footprint`. For a quick run,
//! scale (c) down with `-- --tokens N` or `CRUDJT_BENCH_TOKENS=N`, and pick
//! parts with `-- --parts ac`.

mod common;

use std::collections::VecDeque;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crudjt::{Config, Limits, SecretKey, Store, TOKEN_LEN};

/// Tokens in parts (a) and (b).
const LIVE: usize = 40_000;
/// Creates in part (b), each followed by the delete of the oldest token.
const CHURN_CREATES: usize = 400_000;
/// Operations between two reports of the file size in part (b).
const REPORT_EVERY: usize = 100_000;
/// Random reads in part (c).
const READS: usize = 200_000;
/// Marks a run of this binary as the child of part (c).
const CHILD_FLAG: &str = "--reopen-child";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == CHILD_FLAG) {
        let (dir, list, label) = (&args[at + 1], &args[at + 2], &args[at + 3]);
        reopen_and_read(Path::new(dir), Path::new(list), label);
        return;
    }
    let parts = option(&args, "--parts", "CRUDJT_BENCH_PARTS").unwrap_or_else(|| "abc".into());
    let tokens = option(&args, "--tokens", "CRUDJT_BENCH_TOKENS")
        .map(|text| text.parse().expect("--tokens takes a whole number"))
        .unwrap_or(1_000_000);
    let data = common::session_data();
    if parts.contains('a') {
        fixed_size(&data);
    }
    if parts.contains('b') {
        churn(&data);
    }
    if parts.contains('c') {
        large_store(&data, tokens);
    }
}

/// A `--name value` argument, else the environment variable. Cargo adds
/// `--bench` to the arguments, so unknown ones are ignored.
fn option(args: &[String], name: &str, var: &str) -> Option<String> {
    let from_arg = args.windows(2).find(|pair| pair[0] == name);
    from_arg
        .map(|pair| pair[1].clone())
        .or_else(|| std::env::var(var).ok())
}

fn open(dir: &Path, key: SecretKey) -> Store {
    Store::open(Config::new(key).path(dir)).expect("cannot open the benchmark store")
}

fn create(store: &Store, data: &[u8]) -> String {
    store.create_packed(data, Limits::NONE).unwrap().to_string()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn file_size(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn heading(title: &str) {
    println!();
    println!("{title}");
    println!("{:-<72}", "");
}

fn fixed_size(data: &[u8]) {
    heading("(a) 40,000 tokens of 256-byte data, flushed and closed");
    let dir = common::store_dir();
    let key = SecretKey::generate();
    let store = open(dir.path(), key.clone());
    for _ in 0..LIVE {
        create(&store, data);
    }
    store.flush().unwrap();
    let file = store.file().to_owned();
    store.close().unwrap();
    let closed = file_size(&file);
    // Compacting shows how much of the file is free space rather than
    // records, which tells a layout problem from an allocation one.
    let store = open(dir.path(), key);
    store.compact().unwrap();
    store.close().unwrap();
    let compacted = file_size(&file);
    println!(
        "{:<30} {:>10} {:>8} {:>8} {:>9}",
        "", "bytes", "MB", "MiB", "B/token"
    );
    for (name, bytes) in [
        ("file after close", closed),
        ("file after compact", compacted),
    ] {
        let per_token = bytes / LIVE as u64;
        let mb = bytes as f64 / 1e6;
        println!(
            "{name:<30} {bytes:>10} {mb:>8.2} {:>8.2} {per_token:>9}",
            mib(bytes)
        );
    }
}

fn churn(data: &[u8]) {
    heading("(b) churn: 40,000 live tokens, create one and delete the oldest");
    let dir = common::store_dir();
    let store = open(dir.path(), SecretKey::generate());
    let mut live: VecDeque<String> = (0..LIVE).map(|_| create(&store, data)).collect();
    store.flush().unwrap();
    println!(
        "{:>10} {:>10} {:>10} {:>12}",
        "ops", "live", "file MiB", "ops/s"
    );
    let report = |ops: usize, rate: f64| {
        // Flushing first makes the size that of every change so far.
        store.flush().unwrap();
        let stats = store.stats();
        println!(
            "{ops:>10} {:>10} {:>10.1} {rate:>12.0}",
            stats.tokens,
            mib(stats.file_bytes)
        );
    };
    report(0, 0.0);
    let mut since = Instant::now();
    for round in 1..=CHURN_CREATES {
        live.push_back(create(&store, data));
        let oldest = live.pop_front().expect("the queue is never empty");
        assert!(store.delete(&oldest).unwrap());
        let ops = 2 * round;
        if ops.is_multiple_of(REPORT_EVERY) {
            report(ops, REPORT_EVERY as f64 / since.elapsed().as_secs_f64());
            since = Instant::now();
        }
    }
    let started = Instant::now();
    store.compact().unwrap();
    let took = started.elapsed();
    println!(
        "{:>10} {:>10} {:>10.1}   (compact took {:.0} ms)",
        "compacted",
        store.stats().tokens,
        mib(store.stats().file_bytes),
        took.as_secs_f64() * 1e3
    );
    store.close().unwrap();
}

fn large_store(data: &[u8], count: usize) {
    heading(&format!(
        "(c) a store of {count} tokens: reopen, read, memory"
    ));
    let dir = common::store_dir();
    let key = SecretKey::generate();
    let store = open(dir.path(), key.clone());
    let started = Instant::now();
    let tokens: Vec<String> = (0..count).map(|_| create(&store, data)).collect();
    store.flush().unwrap();
    let built = started.elapsed();
    let file = store.file().to_owned();
    store.close().unwrap();
    println!(
        "built in {:.1} s ({:.0} creates/s incl. flush); file {:.1} MiB",
        built.as_secs_f64(),
        count as f64 / built.as_secs_f64(),
        mib(file_size(&file))
    );

    // The child gets the key, the first token created (so its first read
    // must go to disk) and the tokens to read at random, one per line.
    let list_dir = common::store_dir();
    let list = list_dir.path().join("tokens");
    let mut text = format!("{}\n{}\n", key.to_base64(), tokens[0]);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..READS {
        text.push_str(&tokens[xorshift(&mut state) as usize % count]);
        text.push('\n');
    }
    fs::write(&list, text).unwrap();
    drop(tokens);

    println!(
        "{:<6} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "pages", "open ms", "read1 ms", "reads/s", "cached", "RSS base", "RSS 1", "RSS 200k", "HWM"
    );
    let evicted = evict_from_page_cache(&file);
    if evicted {
        run_child(dir.path(), &list, "cold");
    } else {
        println!("(could not evict the file from the page cache; warm runs only)");
    }
    run_child(dir.path(), &list, "warm");
    println!("pages: the OS page cache emptied of the file (cold) or not (warm)");
    println!("read1: the first read, of the first token created, which only the disk has");
    println!("cached: records in the store's cache after the random reads");
    println!("RSS and HWM in MiB; base is after loading the token list, before opening");
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Drops the file's pages from the OS page cache, so that the next open
/// reads from the disk as after a reboot. GNU dd does this without root.
fn evict_from_page_cache(file: &Path) -> bool {
    let arg = format!("if={}", file.display());
    Command::new("dd")
        .args([arg.as_str(), "iflag=nocache", "count=0", "status=none"])
        .status()
        .is_ok_and(|status| status.success())
}

fn run_child(dir: &Path, list: &Path, label: &str) {
    let status = Command::new(std::env::current_exe().unwrap())
        .arg(CHILD_FLAG)
        .args([dir.as_os_str(), list.as_os_str()])
        .arg(label)
        .status()
        .expect("cannot start the reopening child");
    assert!(status.success(), "the reopening child failed");
}

/// `VmRSS` and `VmHWM` of this process, in bytes.
fn memory() -> (u64, u64) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The child of part (c): opens the store, reads the first token, then the
/// random ones, and prints one row.
fn reopen_and_read(dir: &Path, list: &Path, label: &str) {
    let text = fs::read_to_string(list).unwrap();
    let mut lines = text.lines();
    let key = SecretKey::from_base64(lines.next().unwrap()).unwrap();
    let first = lines.next().unwrap().to_owned();
    let random: Vec<[u8; TOKEN_LEN]> = lines
        .map(|line| line.as_bytes().try_into().expect("a token per line"))
        .collect();
    drop(text);
    let (base, _) = memory();

    let started = Instant::now();
    let store = open(dir, key);
    let opened = started.elapsed();
    let found = store.read_packed(&first).unwrap();
    let first_read = started.elapsed() - opened;
    assert!(found.is_some(), "the first token must be found");
    let (after_first, _) = memory();

    let started = Instant::now();
    for token in &random {
        let token = std::str::from_utf8(token).unwrap();
        assert!(store.read_packed(token).unwrap().is_some());
    }
    let reads_per_s = random.len() as f64 / started.elapsed().as_secs_f64();
    let (after_reads, peak) = memory();
    let cached = store.stats().cached_records;
    store.close().unwrap();

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label:<6} {:>8.1} {:>8.2} {reads_per_s:>9.0} {cached:>8} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
        ms(opened),
        ms(first_read),
        mib(base),
        mib(after_first),
        mib(after_reads),
        mib(peak)
    );
}
