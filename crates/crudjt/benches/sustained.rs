//! Sustained create rate with the flusher in the loop: two threads create
//! 256-byte tokens without pause for a while (10 s by default) on a store
//! with the default options (500 ms flush interval, 64 MiB pending bound),
//! then one `flush()` commits the rest. The rate counts that final flush,
//! so it is what the disk path sustains, not how fast memory fills up.
//!
//! Prints a table. Run with
//! `cargo bench -p crudjt --bench sustained [-- --seconds N]`, or set
//! `CRUDJT_BENCH_SECONDS`. `--max-pending-mib N` changes the pending
//! bound, to see how batch size affects the flusher.

mod common;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crudjt::{Config, Limits, SecretKey, Store};

const THREADS: usize = 2;
/// How often the main thread looks at the store's stats. Each look takes
/// every shard lock once, which is cheap at this rate.
const POLL: Duration = Duration::from_millis(5);

/// One creating thread's count, on a cache line of its own so the two
/// threads do not slow each other down by bumping neighbours.
#[repr(align(128))]
#[derive(Default)]
struct Counter {
    created: AtomicU64,
    /// Longest single create, in nanoseconds: how long back-pressure can
    /// hold a caller.
    slowest_ns: AtomicU64,
    /// The thread's time on a CPU, in nanoseconds.
    cpu_ns: AtomicU64,
}

/// A thread's time on a CPU and time spent runnable but waiting for one,
/// from the kernel's scheduler statistics. The wait shows how much other
/// work on the machine (or the other threads) held the thread back, which
/// matters on a shared two-core machine.
#[derive(Clone, Copy, Default)]
struct Sched {
    on_cpu: Duration,
    waiting: Duration,
}

fn sched(task: &Path) -> Sched {
    let text = fs::read_to_string(task.join("schedstat")).unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(0));
    let mut next = || Duration::from_nanos(fields.next().unwrap_or(0));
    Sched {
        on_cpu: next(),
        waiting: next(),
    }
}

/// The store's flusher thread, found by the name the store gives it.
fn flusher_sched() -> Option<Sched> {
    let tasks = fs::read_dir("/proc/self/task").ok()?;
    tasks.flatten().map(|task| task.path()).find_map(|task| {
        let name = fs::read_to_string(task.join("comm")).ok()?;
        (name.trim() == "crudjt-flusher").then(|| sched(&task))
    })
}

/// What the main thread saw while the creators ran.
#[derive(Default)]
struct Watch {
    max_pending_writes: u64,
    max_pending_bytes: u64,
    /// `(records, duration)` of every commit seen, told apart by finish time.
    flushes: Vec<(u64, Duration)>,
    last_flush_at: Option<SystemTime>,
    /// Creates in each whole second of the run.
    per_second: Vec<u64>,
}

impl Watch {
    fn look(&mut self, store: &Store) {
        let stats = store.stats();
        self.max_pending_writes = self.max_pending_writes.max(stats.pending_writes);
        self.max_pending_bytes = self.max_pending_bytes.max(stats.pending_bytes);
        if let Some(flush) = stats.last_flush
            && self.last_flush_at != Some(flush.at)
        {
            self.last_flush_at = Some(flush.at);
            self.flushes.push((flush.records, flush.duration));
        }
    }
}

/// A `--name value` argument, else the environment variable. Cargo adds
/// `--bench` to the arguments, so unknown ones are ignored.
fn option(name: &str, var: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    let from_arg = args.windows(2).find(|pair| pair[0] == name);
    let text = from_arg
        .map(|pair| pair[1].clone())
        .or_else(|| std::env::var(var).ok())?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{name} takes a whole number")),
    )
}

fn total(counters: &[Counter]) -> u64 {
    counters
        .iter()
        .map(|c| c.created.load(Ordering::Relaxed))
        .sum()
}

fn create_until(store: &Store, data: &[u8], stop: &AtomicBool, counter: &Counter) {
    let mut slowest = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        store.create_packed(data, Limits::NONE).unwrap();
        slowest = slowest.max(started.elapsed().as_nanos() as u64);
        counter.created.fetch_add(1, Ordering::Relaxed);
    }
    counter.slowest_ns.store(slowest, Ordering::Relaxed);
    let cpu = sched(Path::new("/proc/thread-self")).on_cpu;
    counter
        .cpu_ns
        .store(cpu.as_nanos() as u64, Ordering::Relaxed);
}

/// Everything the report needs from one run.
struct Run {
    watch: Watch,
    created: u64,
    creating: Duration,
    final_flush: Duration,
    elapsed: Duration,
    slowest: Duration,
    file_bytes: u64,
    /// Commits the store made, the final one included.
    commits: u64,
    /// On-CPU time of each creating thread.
    creators_cpu: Vec<Duration>,
    flusher: Sched,
}

fn main() {
    let run_for = Duration::from_secs(option("--seconds", "CRUDJT_BENCH_SECONDS").unwrap_or(10));
    let mut config = Config::new(SecretKey::generate());
    // Only for exploring how the pending bound shapes the flush batches;
    // the numbers to quote come from the defaults.
    if let Some(mib) = option("--max-pending-mib", "CRUDJT_BENCH_MAX_PENDING_MIB") {
        config = config.max_pending_bytes(mib as usize * (1 << 20));
    }
    let data = common::session_data();
    let dir = common::store_dir();
    let store = Store::open(config.path(dir.path())).unwrap();
    let stop = AtomicBool::new(false);
    let counters: Vec<Counter> = (0..THREADS).map(|_| Counter::default()).collect();
    let mut watch = Watch::default();

    let start = Instant::now();
    thread::scope(|scope| {
        for counter in &counters {
            let (store, data, stop) = (&store, &data, &stop);
            scope.spawn(move || create_until(store, data, stop, counter));
        }
        let mut second_ends = start + Duration::from_secs(1);
        let mut at_last_second = 0;
        while start.elapsed() < run_for {
            thread::sleep(POLL);
            watch.look(&store);
            if Instant::now() >= second_ends {
                let now_total = total(&counters);
                watch.per_second.push(now_total - at_last_second);
                at_last_second = now_total;
                second_ends += Duration::from_secs(1);
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let creating = start.elapsed();
    let flush_started = Instant::now();
    store.flush().unwrap();
    let final_flush = flush_started.elapsed();
    let elapsed = start.elapsed();
    watch.look(&store);
    let flusher = flusher_sched().unwrap_or_default();
    let last = store.stats();
    store.close().unwrap();

    let load = |field: fn(&Counter) -> &AtomicU64| {
        counters
            .iter()
            .map(move |c| field(c).load(Ordering::Relaxed))
    };
    print_report(&Run {
        watch,
        created: total(&counters),
        creating,
        final_flush,
        elapsed,
        slowest: Duration::from_nanos(load(|c| &c.slowest_ns).max().unwrap_or(0)),
        file_bytes: last.file_bytes,
        commits: last.flushes,
        creators_cpu: load(|c| &c.cpu_ns).map(Duration::from_nanos).collect(),
        flusher,
    });
}

fn print_report(run: &Run) {
    let rate = |count: u64, time: Duration| count as f64 / time.as_secs_f64();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    let us_per = |d: Duration, n: u64| format!("{:.2} us", d.as_secs_f64() * 1e6 / n as f64);
    let watch = &run.watch;
    let mut durations: Vec<Duration> = watch.flushes.iter().map(|f| f.1).collect();
    durations.sort();
    let records: u64 = watch.flushes.iter().map(|f| f.0).sum();

    println!("sustained create, {THREADS} threads, 256-byte data, default options");
    println!("{:-<64}", "");
    let row = |name: &str, value: String| println!("{name:<40} {value:>23}");
    row("creates", run.created.to_string());
    row("time creating", ms(run.creating));
    row("final flush", ms(run.final_flush));
    row(
        "creates/s incl. final flush",
        format!("{:.0}", rate(run.created, run.elapsed)),
    );
    row(
        "creates/s while creating",
        format!("{:.0}", rate(run.created, run.creating)),
    );
    row("max pending_writes", watch.max_pending_writes.to_string());
    row(
        "max pending_bytes (MiB)",
        format!("{:.1}", mib(watch.max_pending_bytes)),
    );
    row("slowest single create", ms(run.slowest));
    row("file size (MiB)", format!("{:.1}", mib(run.file_bytes)));
    if let (Some(first), Some(last)) = (durations.first(), durations.last()) {
        let median = durations[durations.len() / 2];
        let seen = format!("{} ({} seen)", run.commits, durations.len());
        row("commits (seen by polling)", seen);
        row(
            "records per commit (mean of seen)",
            (records / durations.len() as u64).to_string(),
        );
        row(
            "flush time (min / median / max)",
            format!("{} / {} / {}", ms(*first), ms(median), ms(*last)),
        );
        let busy: Duration = durations.iter().sum();
        row(
            "records/s while flushing",
            format!("{:.0}", rate(records, busy)),
        );
    }
    let creators_cpu: Duration = run.creators_cpu.iter().sum();
    row("creator CPU per create", us_per(creators_cpu, run.created));
    row(
        "flusher CPU per record",
        us_per(run.flusher.on_cpu, run.created),
    );
    let busy = run.flusher.on_cpu.as_secs_f64() / run.elapsed.as_secs_f64();
    row(
        "flusher on CPU (share of the run)",
        format!("{:.0}%", busy * 100.0),
    );
    let held = run.flusher.waiting.as_secs_f64() / run.elapsed.as_secs_f64();
    row(
        "flusher runnable, waiting for a CPU",
        format!("{:.0}%", held * 100.0),
    );
    let timeline: Vec<String> = watch
        .per_second
        .iter()
        .map(|n| format!("{}k", n / 1000))
        .collect();
    println!("creates per second: {}", timeline.join(" "));
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}
