//! `crudjt bench`: a load generator against a running master.
//!
//! Each connection is its own client, making one call at a time, so the
//! connection count is the concurrency, as with `redis-benchmark -c` and no
//! pipelining. Every read, update and delete goes to a real token: each
//! connection first creates a pool of tokens without limits and draws from
//! it, adding the tokens it creates and dropping the ones it deletes.

mod mix;
mod report;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use crudjt::Limits;
use crudjt_grpc::Client;

use crate::client::Connect;
use crate::duration;
use crate::exit::Invalid;
use mix::{Mix, Op};
use report::Tally;

/// Arguments of `crudjt bench`.
#[derive(Args, Debug)]
#[command(after_help = "\
A progress line goes to stderr each second; the result table goes to stdout:
per op in the mix and for all ops, the successful calls, calls per second,
failed calls, and latency percentiles (p50, p99, p99.9, max) in microseconds.

Exit status: 0 every call succeeded; 2 invalid arguments; 3 cannot reach the
master; 4 some calls failed (the table is still printed).")]
pub struct BenchArgs {
    /// Connections, each its own client making one call at a time
    #[arg(long, env = "CRUDJT_CONNECTIONS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// How long to measure
    #[arg(long, env = "CRUDJT_DURATION", default_value = "10s",
          value_parser = duration::parse, value_name = "DURATION")]
    duration: Duration,
    /// Relative weights of the ops; ops left out weigh 0
    #[arg(long, env = "CRUDJT_MIX", default_value = "create=1,read=8,update=1,delete=0",
          value_parser = Mix::parse)]
    mix: Mix,
    /// Size of each token's data, in bytes of MessagePack
    #[arg(long, env = "CRUDJT_DATA_SIZE", default_value_t = 256, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(4..=65_536))]
    data_size: u32,
    /// How long to run before measuring, to warm connections and caches
    #[arg(long, env = "CRUDJT_WARMUP", default_value = "1s",
          value_parser = duration::parse, value_name = "DURATION")]
    warmup: Duration,
    /// Tokens each connection creates before the run, for reads, updates
    /// and deletes to use
    #[arg(long, env = "CRUDJT_POOL", default_value_t = 256, value_name = "TOKENS",
          value_parser = clap::value_parser!(u32).range(1..))]
    pool: u32,
    /// Poll for each reply without sleeping for up to this long, on one
    /// thread for all connections, as a latency-bound client would (see
    /// `crudjt serve --busy-poll`); 0 (the default) sleeps until the reply;
    /// at most 1s
    #[arg(long, env = "CRUDJT_BENCH_BUSY_POLL", default_value = "0s",
          value_parser = duration::parse_window, value_name = "DURATION")]
    busy_poll: Duration,
    #[command(flatten)]
    connect: Connect,
}

/// What every connection shares.
struct Plan {
    data: Vec<u8>,
    mix: Mix,
    pool: usize,
    measure_from: Instant,
    end: Instant,
    /// Calls finished since measuring began, for the progress line.
    measured: AtomicU64,
    failed: AtomicU64,
    busy_poll: Duration,
}

/// One connection's results.
struct Worker {
    tally: Tally,
    first_error: Option<anyhow::Error>,
}

/// Runs the benchmark and prints its table.
///
/// # Errors
///
/// Invalid arguments, a master that cannot be reached, or calls that
/// failed (after the table is printed).
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.duration.is_zero() {
        return Err(Invalid("--duration must be longer than zero".into()).into());
    }
    // A busy-polling client keeps every connection on one thread, so that
    // polling it finds each reply without a hand-off between threads.
    let mut builder = if args.busy_poll.is_zero() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the benchmark runtime")?
        .block_on(bench(args))
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let target = args.connect.target();
    let security = args.connect.security()?;
    let data_size = args.data_size as usize;
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        clients.push(Client::connect_with(target.clone(), &security).await?);
    }
    let limit = clients[0].stats().await?.max_data_size as usize;
    if data_size > limit {
        return Err(Invalid(format!(
            "--data-size is {data_size} bytes but the master accepts at most {limit}"
        ))
        .into());
    }
    let data = data_of_size(data_size);
    eprintln!(
        "filling a pool of {} tokens on each of {} connections",
        args.pool, args.connections
    );
    let mut fills = tokio::task::JoinSet::new();
    for client in clients {
        let data = data.clone();
        fills.spawn(async move {
            let mut pool = Vec::with_capacity(args.pool as usize);
            for _ in 0..args.pool {
                pool.push(client.create(&data, Limits::NONE).await?);
            }
            Ok::<_, crudjt_grpc::ClientError>((client, pool))
        });
    }
    let mut filled = Vec::new();
    while let Some(done) = fills.join_next().await {
        filled.push(done??);
    }

    let start = Instant::now();
    let plan = Arc::new(Plan {
        data,
        mix: args.mix.clone(),
        pool: args.pool as usize,
        measure_from: start + args.warmup,
        end: start + args.warmup + args.duration,
        measured: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        busy_poll: args.busy_poll,
    });
    let mut workers = tokio::task::JoinSet::new();
    for (seed, (client, pool)) in (1..).zip(filled) {
        workers.spawn(work(client, pool, plan.clone(), seed));
    }
    let progress = tokio::spawn(progress(plan.clone()));
    let mut tally = Tally::default();
    let mut first_error = None;
    while let Some(done) = workers.join_next().await {
        let worker = done?;
        tally.merge(worker.tally);
        first_error = first_error.or(worker.first_error);
    }
    let elapsed = plan.measure_from.elapsed();
    progress.abort();

    println!(
        "crudjt bench: {target}, connections {}, {} measured after {} warm-up, \
         data {data_size} bytes, mix {}, busy poll {}",
        args.connections,
        duration::show(args.duration),
        duration::show(args.warmup),
        args.mix,
        duration::show(args.busy_poll)
    );
    print!("{}", report::table(&mut tally, elapsed, &args.mix));
    match first_error {
        Some(err) => Err(err.context(format!("{} calls failed", tally.total_errors()))),
        None => Ok(()),
    }
}

/// One connection's loop: pick an op, time it, until the plan ends.
async fn work(client: Client, mut pool: Vec<String>, plan: Arc<Plan>, seed: u64) -> Worker {
    let mut rng = SplitMix(seed);
    let mut worker = Worker {
        tally: Tally::default(),
        first_error: None,
    };
    while Instant::now() < plan.end {
        let op = plan.mix.pick(rng.next());
        if op != Op::Create && pool.is_empty() {
            // Deletes emptied the pool; refill it outside the timing so
            // that every op still goes to a real token.
            match client.create(&plan.data, Limits::NONE).await {
                Ok(token) => pool.push(token),
                Err(err) => worker.fail(op, &plan, false, err.into()),
            }
            continue;
        }
        let began = Instant::now();
        let pending = call(&client, op, &mut pool, &plan, &mut rng);
        let result = crudjt_grpc::eagerly(pending, plan.busy_poll).await;
        let micros = u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX);
        let measured = began >= plan.measure_from;
        match result {
            Ok(()) if measured => {
                worker.tally.latencies[op.index()].push(micros);
                plan.measured.fetch_add(1, Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(err) => worker.fail(op, &plan, measured, err),
        }
    }
    worker
}

impl Worker {
    fn fail(&mut self, op: Op, plan: &Plan, measured: bool, err: anyhow::Error) {
        if measured {
            self.tally.errors[op.index()] += 1;
            plan.measured.fetch_add(1, Ordering::Relaxed);
            plan.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.first_error.get_or_insert(err);
    }
}

async fn call(
    client: &Client,
    op: Op,
    pool: &mut Vec<String>,
    plan: &Plan,
    rng: &mut SplitMix,
) -> anyhow::Result<()> {
    let lost = || anyhow::anyhow!("a token from the benchmark's pool was not found");
    match op {
        Op::Create => {
            let token = client.create(&plan.data, Limits::NONE).await?;
            // The pool stays bounded: past twice its size a new token
            // takes a random slot, and the old one stays in the store.
            if pool.len() < 2 * plan.pool {
                pool.push(token);
            } else {
                let slot = rng.below(pool.len());
                pool[slot] = token;
            }
        }
        Op::Read => {
            let token = &pool[rng.below(pool.len())];
            client.read(token).await?.ok_or_else(lost)?;
        }
        Op::Update => {
            let token = &pool[rng.below(pool.len())];
            if !client.update(token, &plan.data, Limits::NONE).await? {
                return Err(lost());
            }
        }
        Op::Delete => {
            let token = pool.swap_remove(rng.below(pool.len()));
            if !client.delete(&token).await? {
                return Err(lost());
            }
        }
    }
    Ok(())
}

/// Prints calls so far and the current rate to stderr each second.
async fn progress(plan: Arc<Plan>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    loop {
        tick.tick().await;
        if Instant::now() < plan.measure_from {
            eprintln!("warming up");
            continue;
        }
        let calls = plan.measured.load(Ordering::Relaxed);
        let failed = plan.failed.load(Ordering::Relaxed);
        let seconds = plan.measure_from.elapsed().as_secs();
        eprintln!(
            "{seconds:>4}s {calls:>10} ops {:>9} ops/s {failed:>6} errors",
            calls - last
        );
        last = calls;
    }
}

/// A map `{"d": "xx…"}` whose MessagePack encoding is exactly `size` bytes
/// (at least 4). At the two sizes where the shortest string header would
/// miss by one byte, the next wider header is used, which MessagePack
/// allows.
fn data_of_size(size: usize) -> Vec<u8> {
    assert!(size >= 4, "the smallest map with a string value is 4 bytes");
    // A one-entry map and the key "d" take 3 bytes; the value takes the rest.
    let value = size - 3;
    let mut data = vec![0x81, 0xa1, b'd'];
    let len = match value {
        1..=32 => {
            data.push(0xa0 | (value - 1) as u8);
            value - 1
        }
        33..=257 => {
            data.extend([0xd9, (value - 2) as u8]);
            value - 2
        }
        _ => {
            let len = value - 3;
            data.push(0xda);
            data.extend((len as u16).to_be_bytes());
            len
        }
    };
    data.resize(data.len() + len, b'x');
    data
}

/// SplitMix64: a fast generator for choosing ops and pool slots, where
/// quality matters little and a cryptographic generator would cost more
/// than the work it steers.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n`, for `n` above 0.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_a_map_of_exactly_the_size_asked() {
        for size in [4, 5, 35, 36, 37, 256, 259, 260, 261, 4096, 65_536] {
            let data = data_of_size(size);
            assert_eq!(data.len(), size);
            crudjt::validate_map(&data, crudjt::MAX_DATA_SIZE_LIMIT).unwrap();
        }
    }
}
