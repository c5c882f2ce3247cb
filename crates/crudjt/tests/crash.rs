//! Crash tests: a child process writes to a store under load and is killed
//! with SIGKILL at a random moment; the parent reopens the store and checks
//! what survived. Each test kills the writer several times in the same
//! directory, so every reopen continues the history of the one before.
//!
//! The child is this test binary run again with a filter that selects only
//! [`crash_child`] and environment variables that turn that otherwise empty
//! test into the writer. It performs a deterministic sequence of creates,
//! updates and deletes (see [`step`]) and reports each result on its stdout
//! pipe after the call returned, so the parent learns every token without
//! one reaching the terminal, and knows how far the child got. After a kill
//! the store must hold exactly the state after some prefix of that sequence
//! (a torn batch would show as a later change present while an earlier one
//! is missing), and the prefix must cover every change the child was told
//! was durable.
//!
//! Reopening after a kill takes 1 to 5 ms, measured in a debug build on 2
//! cores with up to 37,000 tokens written to the store, and up to 30 ms
//! when the other test's child is syncing the same disk at the moment:
//! the open's own commit waits for the disk, and quick repair spares it a
//! walk of the file. The tests print their times (`--nocapture`); nothing
//! asserts on them.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crudjt::{Config, Durability, Limits, Store};

/// Token data: `{"r": round, "l": lane, "i": op}` when created, with `"u"`
/// in place of `"i"` once updated, so every write leaves a unique value.
type Data = BTreeMap<String, u64>;

const CHILD_TEST: &str = "crash_child";
const ENV_DIR: &str = "CRUDJT_CRASH_DIR";
const ENV_DURABILITY: &str = "CRUDJT_CRASH_DURABILITY";
const ENV_ROUND: &str = "CRUDJT_CRASH_ROUND";
/// Overrides each test's fixed seed for the kill delays.
const ENV_SEED: &str = "CRUDJT_CRASH_SEED";
/// Starts every line of the child's protocol. libtest writes to the same
/// stdout, sometimes on the line where the child's first report begins.
const MARK: &str = "crash: ";

const ROUNDS: u64 = 5;
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// With `Interval`, the child calls `flush` after every this many ops.
const FLUSH_EVERY: u64 = 1000;
/// Kills land this long after the child reports it is writing: long
/// enough for many flushes, short enough to keep the file under 30 s.
const KILL_DELAY_MS: std::ops::Range<u64> = 20..400;
/// Stops a child whose parent never killed it. Far more ops than fit into
/// the longest kill delay.
const MAX_OPS: u64 = 2_000_000;
/// What `ExitStatusExt::signal` reports for a process killed by SIGKILL.
#[cfg(unix)]
const SIGKILL: i32 = 9;

#[test]
fn interval_crash_keeps_a_prefix_through_the_last_flush() {
    crash_test(Durability::Interval, 0x1d7e_55a1);
}

#[test]
fn always_crash_keeps_every_acknowledged_write() {
    crash_test(Durability::Always, 0xa1_3a75);
}

/// The writer, when run by [`crash_test`]; a no-op test otherwise.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let durability = match std::env::var(ENV_DURABILITY).as_deref() {
        Ok("Always") => Durability::Always,
        _ => Durability::Interval,
    };
    let round = std::env::var(ENV_ROUND).unwrap().parse().unwrap();
    run_child(Path::new(&dir), durability, round);
}

fn config(dir: &Path, durability: Durability) -> Config {
    common::config(dir)
        .flush_interval(FLUSH_INTERVAL)
        .durability(durability)
}

/// Independent writers in one child. The `Interval` child is one thread, so
/// its ops are totally ordered; the `Always` child runs two, so that their
/// calls share commits, each on tokens of its own.
fn lanes(durability: Durability) -> usize {
    match durability {
        Durability::Always => 2,
        _ => 1,
    }
}

/// One op of a lane's sequence.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    Create,
    /// Update the token in this slot of the lane's token list.
    Update(usize),
    Delete(usize),
}

/// Op `k` of a round, for a lane whose token list has `slots` entries: the
/// tokens of earlier rounds, then the ones this round created before `k`.
fn step(k: u64, slots: usize) -> Step {
    // Half the ops create, so that the list always has a token to target.
    // Most updates and deletes hit a token created a few ops earlier,
    // usually still waiting for its first commit; the rest hit tokens
    // spread over the whole history, most of them already on disk.
    let recent = |back: u64| slots - 1 - (back as usize).min(slots - 1);
    let spread = || (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize % slots;
    match k % 4 {
        0 | 1 => Step::Create,
        2 if k.is_multiple_of(3) => Step::Update(spread()),
        2 => Step::Update(recent(k / 4 % 6)),
        _ if k.is_multiple_of(5) => Step::Delete(spread()),
        _ => Step::Delete(recent(k / 4 % 6 + 2)),
    }
}

fn created(round: u64, lane: usize, k: u64) -> Data {
    Data::from([
        ("r".into(), round),
        ("l".into(), lane as u64),
        ("i".into(), k),
    ])
}

fn updated(round: u64, lane: usize, k: u64) -> Data {
    Data::from([
        ("r".into(), round),
        ("l".into(), lane as u64),
        ("u".into(), k),
    ])
}

// The child.

fn run_child(dir: &Path, durability: Durability, round: u64) {
    let store = Store::open(config(dir, durability)).expect("the child opens the store");
    let mut tokens = vec![Vec::new(); lanes(durability)];
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("the parent sends the known tokens");
        let (lane, token) = line.split_once(' ').expect("a lane and a token");
        tokens[lane.parse::<usize>().unwrap()].push(token.to_owned());
    }
    report(format_args!("ready"));
    std::thread::scope(|scope| {
        for (lane, tokens) in tokens.into_iter().enumerate() {
            let store = &store;
            scope.spawn(move || write_lane(store, durability, round, lane, tokens));
        }
    });
}

fn write_lane(
    store: &Store,
    durability: Durability,
    round: u64,
    lane: usize,
    mut tokens: Vec<String>,
) {
    for k in 0..MAX_OPS {
        let result = match step(k, tokens.len()) {
            Step::Create => {
                let token = store.create(&created(round, lane, k), Limits::NONE);
                tokens.push(token.expect("create").to_string());
                tokens[tokens.len() - 1].clone()
            }
            Step::Update(slot) => {
                let data = updated(round, lane, k);
                let done = store.update(&tokens[slot], &data, Limits::NONE);
                done.expect("update").to_string()
            }
            Step::Delete(slot) => store.delete(&tokens[slot]).expect("delete").to_string(),
        };
        report(format_args!("{lane} {k} {result}"));
        if durability == Durability::Interval && k % FLUSH_EVERY == FLUSH_EVERY - 1 {
            store.flush().expect("flush");
            report(format_args!("{lane} flushed {k}"));
        }
    }
}

/// Sends one protocol line to the parent, at once, as a single write.
fn report(message: std::fmt::Arguments<'_>) {
    let line = format!("{MARK}{message}\n");
    let mut out = std::io::stdout().lock();
    // A failed write means the parent is gone and nobody will kill this
    // process, so it must end itself.
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .expect("the parent reads the reports");
}

// The parent.

/// What the parent knows about one lane's tokens, in the slot order the
/// child's [`step`] targets.
#[derive(Default)]
struct Lane {
    tokens: Vec<String>,
    /// Each token's data when the store was last reopened, `None` when it
    /// was absent (deleted, or its create was lost in a crash).
    state: Vec<Option<Data>>,
    /// The round and op that created each token, for failure messages.
    origin: Vec<(u64, u64)>,
}

/// What the child reported for one lane in one round.
#[derive(Default)]
struct Reports {
    /// Each op's result, in op order: the token for a create, `true` or
    /// `false` for an update or delete.
    results: Vec<String>,
    /// How many ops the store must keep: through the last reported flush
    /// with `Interval`, every reported op with `Always`.
    durable: usize,
}

/// Kills the child if the parent panics before doing so.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A small seeded generator (SplitMix64), enough for kill delays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % bound
    }
}

fn crash_test(durability: Durability, default_seed: u64) {
    let seed = match std::env::var(ENV_SEED) {
        Ok(text) => text.parse().expect("the seed is an integer"),
        Err(_) => default_seed,
    };
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut lanes: Vec<Lane> = (0..lanes(durability)).map(|_| Lane::default()).collect();
    let mut reopen_times = Vec::new();
    for round in 0..ROUNDS {
        let context = format!("{durability:?}, seed {seed}, round {round}");
        let span = KILL_DELAY_MS.end - KILL_DELAY_MS.start;
        let delay = Duration::from_millis(KILL_DELAY_MS.start + rng.below(span));
        let reports = run_and_kill(dir.path(), durability, round, &lanes, delay, &context);

        let started = Instant::now();
        let store = Store::open(config(dir.path(), durability))
            .unwrap_or_else(|err| panic!("{context}: reopening after the kill failed: {err}"));
        reopen_times.push(started.elapsed());

        for (index, (lane, reports)) in lanes.iter_mut().zip(&reports).enumerate() {
            let context = format!("{context}, lane {index}");
            let kept = check_lane(&store, round, index, lane, reports, &context);
            eprintln!(
                "{context}: killed after {delay:?}, {} ops reported, {} durable, {kept} kept",
                reports.results.len(),
                reports.durable,
            );
        }
        store.close().expect("the parent closes the store");
    }
    let ops: usize = lanes.iter().map(|lane| lane.tokens.len()).sum();
    eprintln!("{durability:?}: {ops} tokens in {ROUNDS} rounds, reopen took {reopen_times:?}");
}

/// Runs one child over the store, kills it `delay` after it started writing
/// and returns each lane's reports.
fn run_and_kill(
    dir: &Path,
    durability: Durability,
    round: u64,
    lanes: &[Lane],
    delay: Duration,
    context: &str,
) -> Vec<Reports> {
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(ENV_DIR, dir)
            .env(ENV_DURABILITY, format!("{durability:?}"))
            .env(ENV_ROUND, round.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // A failing child's panic shows on the terminal; it holds no
            // token.
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the child starts"),
    );
    let lines = read_lines(child.0.stdout.take().unwrap());
    let mut stdin = child.0.stdin.take().unwrap();
    for (index, lane) in lanes.iter().enumerate() {
        for token in &lane.tokens {
            writeln!(stdin, "{index} {token}").expect("the child reads its tokens");
        }
    }
    drop(stdin);

    let first = lines.recv_timeout(Duration::from_secs(60));
    assert_eq!(
        first.as_deref(),
        Ok("ready"),
        "{context}: the child did not start"
    );
    std::thread::sleep(delay);
    child.0.kill().expect("the child can be killed");
    let status = child.0.wait().unwrap();
    assert!(
        killed(status),
        "{context}: the child ended before the kill: {status}"
    );
    parse_reports(lines, durability, lanes.len(), context)
}

/// Forwards the protocol lines of `stdout` until it closes.
fn read_lines(stdout: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some((_, message)) = line.split_once(MARK)
                && send.send(message.to_owned()).is_err()
            {
                break;
            }
        }
    });
    receive
}

#[cfg(unix)]
fn killed(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(SIGKILL)
}

#[cfg(not(unix))]
fn killed(status: ExitStatus) -> bool {
    !status.success()
}

fn parse_reports(
    lines: Receiver<String>,
    durability: Durability,
    lanes: usize,
    context: &str,
) -> Vec<Reports> {
    let mut reports: Vec<Reports> = (0..lanes).map(|_| Reports::default()).collect();
    // The child's stdout closed when it died, so the iterator ends once the
    // reader has forwarded everything the child wrote.
    for line in lines {
        let mut words = line.split(' ');
        let (Some(lane), Some(what), Some(value)) = (words.next(), words.next(), words.next())
        else {
            panic!("{context}: a malformed report");
        };
        let lane = &mut reports[lane.parse::<usize>().unwrap()];
        if what == "flushed" {
            lane.durable = value.parse::<usize>().unwrap() + 1;
            continue;
        }
        let k: usize = what.parse().unwrap();
        assert_eq!(k, lane.results.len(), "{context}: reports out of order");
        lane.results.push(value.to_owned());
        if durability == Durability::Always {
            lane.durable = k + 1;
        }
    }
    reports
}

/// The model of a lane's tokens while replaying a round's ops, compared
/// with what the reopened store holds.
struct Replay<'a> {
    model: Vec<Option<Data>>,
    observed: &'a [Option<Data>],
    /// Slots where the model and the store differ.
    wrong: usize,
}

impl<'a> Replay<'a> {
    fn new(model: Vec<Option<Data>>, observed: &'a [Option<Data>]) -> Replay<'a> {
        let wrong = model.iter().zip(observed).filter(|(m, o)| m != o).count();
        Replay {
            model,
            observed,
            wrong,
        }
    }

    fn set(&mut self, slot: usize, value: Option<Data>) {
        let was_wrong = self.model[slot] != self.observed[slot];
        self.model[slot] = value;
        let is_wrong = self.model[slot] != self.observed[slot];
        self.wrong = self.wrong + usize::from(is_wrong) - usize::from(was_wrong);
    }

    /// Applies op `k`, whose step is `step` and, for a create, whose token
    /// is in `slot` if the child reported it. Returns whether an update or
    /// delete found its token.
    fn apply(&mut self, round: u64, lane: usize, k: u64, step: Step, slot: Option<usize>) -> bool {
        match step {
            Step::Create => {
                if let Some(slot) = slot {
                    self.set(slot, Some(created(round, lane, k)));
                }
                true
            }
            Step::Update(target) => {
                let live = self.model[target].is_some();
                if live {
                    self.set(target, Some(updated(round, lane, k)));
                }
                live
            }
            Step::Delete(target) => {
                let live = self.model[target].is_some();
                self.set(target, None);
                live
            }
        }
    }
}

/// One lane's ops in one round, rebuilt by the parent from the reports.
struct RoundOps {
    round: u64,
    lane: usize,
    /// Every reported op, then the one the child may have finished before
    /// the kill without reporting it; with each create, the slot of its
    /// token when the parent knows the token.
    steps: Vec<(Step, Option<usize>)>,
}

impl RoundOps {
    /// Rebuilds the round's ops and adds the tokens it created to `lane`.
    fn new(round: u64, index: usize, lane: &mut Lane, reports: &Reports) -> RoundOps {
        let mut steps = Vec::with_capacity(reports.results.len() + 1);
        for (k, result) in reports.results.iter().enumerate() {
            let step = step(k as u64, lane.tokens.len());
            let mut slot = None;
            if step == Step::Create {
                slot = Some(lane.tokens.len());
                lane.tokens.push(result.clone());
                lane.state.push(None);
                lane.origin.push((round, k as u64));
            }
            steps.push((step, slot));
        }
        // An unreported create's token is unknown, and so is its effect on
        // the store: replaying it changes no known slot.
        steps.push((step(steps.len() as u64, lane.tokens.len()), None));
        RoundOps {
            round,
            lane: index,
            steps,
        }
    }

    /// Applies op `k`; returns whether an update or delete found its token.
    fn apply(&self, replay: &mut Replay<'_>, k: usize) -> bool {
        let (step, slot) = self.steps[k];
        replay.apply(self.round, self.lane, k as u64, step, slot)
    }

    /// The model after the first `applied` ops.
    fn replayed<'a>(
        &self,
        start: &[Option<Data>],
        observed: &'a [Option<Data>],
        applied: usize,
    ) -> Replay<'a> {
        let mut replay = Replay::new(start.to_vec(), observed);
        for k in 0..applied {
            self.apply(&mut replay, k);
        }
        replay
    }
}

/// Checks that the reopened store holds a lane's state after some prefix
/// of the round's ops at least `reports.durable` long, then adopts that
/// state as the start of the next round. Returns the prefix's length.
fn check_lane(
    store: &Store,
    round: u64,
    index: usize,
    lane: &mut Lane,
    reports: &Reports,
    context: &str,
) -> usize {
    let ops = RoundOps::new(round, index, lane, reports);
    let observed: Vec<Option<Data>> = lane.tokens.iter().map(|token| read(store, token)).collect();

    // Try every prefix length in turn, from none of the round's ops to all
    // of them and the unreported one.
    let mut replay = Replay::new(lane.state.clone(), &observed);
    let mut closest = (usize::MAX, 0);
    for applied in 0..=ops.steps.len() {
        if applied >= reports.durable && replay.wrong < closest.0 {
            closest = (replay.wrong, applied);
        }
        if applied == ops.steps.len() {
            break;
        }
        let found = ops.apply(&mut replay, applied);
        if let (Some(result), (Step::Update(_) | Step::Delete(_), _)) =
            (reports.results.get(applied), ops.steps[applied])
        {
            // Before the crash the child saw every earlier op of its lane.
            let expected = found.to_string();
            assert_eq!(
                result, &expected,
                "{context}: op {applied} returned {result}"
            );
        }
    }
    // The first prefix that matches is as good as any other: they differ
    // only in ops with no visible effect.
    let (wrong, matched) = closest;
    if wrong > 0 {
        // The store must hold at least the ops through its newest create.
        let newest = ops
            .steps
            .iter()
            .rposition(|(_, slot)| slot.is_some_and(|slot| observed[slot].is_some()))
            .map_or(0, |k| k + 1)
            .max(reports.durable);
        let describe = |applied| {
            let replay = ops.replayed(&lane.state, &observed, applied);
            describe_mismatch(lane, &replay, applied)
        };
        panic!(
            "{context}: the store holds no prefix of the {} reported ops that keeps the first {} \
             (made durable){}{}",
            reports.results.len(),
            reports.durable,
            describe(closest.1),
            describe(newest),
        );
    }
    lane.state = observed;
    matched
}

/// The first few slots where the store differs from the model after
/// `applied` ops, with where each token came from. Tokens themselves stay
/// out of the message.
fn describe_mismatch(lane: &Lane, replay: &Replay<'_>, applied: usize) -> String {
    let mut out = format!("\nafter {applied} ops, {} tokens differ:", replay.wrong);
    let wrong = (0..replay.model.len()).filter(|&slot| replay.model[slot] != replay.observed[slot]);
    for slot in wrong.take(5) {
        let (round, op) = lane.origin[slot];
        out += &format!(
            "\n  slot {slot} (created by round {round} op {op}): expected {:?}, found {:?}",
            replay.model[slot], replay.observed[slot],
        );
    }
    out
}

/// Reads a token, which spends nothing: no token in these tests has a read
/// budget or a lifetime.
fn read(store: &Store, token: &str) -> Option<Data> {
    let entry = store.read::<Data>(token).expect("read after reopen")?;
    assert_eq!((entry.ttl, entry.silence_read), (None, None));
    Some(entry.data)
}
