//! Crash tests of the master process: the real `crudjt serve` runs under a
//! mixed load from several client threads and is killed with SIGKILL at a
//! random moment, many times over one store directory and key. Each round
//! restarts the master on the store the previous kill left behind, so every
//! reopen continues the history of the one before.
//!
//! `crates/crudjt/tests/crash.rs` kills a writer that holds the store in
//! process and checks that the store keeps a whole prefix of one ordered
//! sequence of writes. These tests go through the gRPC master instead, with
//! concurrent connections, read budgets and limits, and check each call the
//! way a client sees it.
//!
//! Each client thread (a *lane*) owns its tokens, and its calls on them are
//! sequential, so the model can follow every token alone: for each token it
//! keeps the set of states the store may hold it in. An acknowledged call
//! (one that returned `Ok`) keeps only the states whose result agrees with
//! what the call returned, and moves each to its next state; a call that
//! failed because the master died may or may not have happened, so it adds
//! the next states to the old ones. Reads are calls like any other: a read
//! of a token with a read budget spends one, in the load and in the checks
//! after a restart alike, and the model accounts for both. A token whose
//! set of states becomes empty is a call the store got wrong: an
//! acknowledged change that was lost or torn, a deleted token that came
//! back, or a read beyond the budget.
//!
//! The kill delays come from a seeded SplitMix64; the seed is printed and
//! can be set with `CRUDJT_MASTER_CRASH_SEED`. The interleaving of the lanes
//! and the moment each kill lands are up to the scheduler, so a seed
//! repeats the schedule of kills, not every call. Run with `--nocapture` to
//! see each round.

mod common;

use std::fmt::Write as _;
use std::ops::Range;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use common::{KEY, Master};
use crudjt::Limits;
use crudjt_grpc::{BlockingClient, ClientError, Target};
use serde_json::json;

/// Overrides each test's fixed seed.
const ENV_SEED: &str = "CRUDJT_MASTER_CRASH_SEED";
/// Kills with `always` durability; the round after the last kill only
/// checks.
const ALWAYS_ROUNDS: u64 = 50;
/// Kills with the default `interval` durability.
const INTERVAL_ROUNDS: u64 = 20;
/// Client threads of the `always` test, each with its own connection.
const ALWAYS_LANES: usize = 3;
/// Client threads that churn the store in the `interval` test.
const INTERVAL_LANES: usize = 2;
/// A short interval, so that many commits happen before each kill.
const FLUSH_INTERVAL: &str = "20ms";
/// Kills land this long after the lanes start their load.
const KILL_DELAY_MS: Range<u64> = 20..200;
/// How long starting, stopping or a call of the checks may take.
const PATIENCE: Duration = Duration::from_secs(20);
/// A lane stops its load by itself after this long; the kill comes long
/// before, so reaching it fails the test.
const LOAD_LIMIT: Duration = Duration::from_secs(10);
/// A lane holds at most about this many live tokens: beyond it, it deletes
/// instead of creating, so the checks after each restart stay short.
const LIVE_CAP: usize = 40;
/// A token seen gone this many times after a restart moves to the lane's
/// graveyard, which is checked by sample each round and in full at the end.
const RETIRE_AFTER: u32 = 2;
/// Graveyard tokens checked per lane and round.
const GRAVEYARD_SAMPLE: u64 = 16;
/// The lifetime of tokens with one: far beyond the test, so none expires.
const TTL: u64 = 86_400;

#[test]
fn always_durability_loses_no_acknowledged_call_across_50_kills() {
    let seed = seed(0xa13a_75c0);
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut lanes: Vec<Lane> = (0..ALWAYS_LANES).map(Lane::new).collect();
    let started = Instant::now();
    let (mut in_flight_kills, mut applied, mut undone) = (0, 0, 0);
    for round in 0..=ALWAYS_ROUNDS {
        let context = format!("always, seed {seed}, round {round}");
        let master = start_master(&store, &["--durability", "always"]);
        let last = round == ALWAYS_ROUNDS;
        let kill = (!last).then(|| delay(&mut rng));
        let reports = run_round(
            master,
            &mut lanes,
            round,
            seed,
            Check::Model,
            kill,
            &context,
        );
        let sum = |field: fn(&Report) -> usize| reports.iter().map(field).sum::<usize>();
        let in_flight = reports.iter().filter(|r| r.in_flight).count();
        in_flight_kills += usize::from(in_flight > 0);
        applied += sum(|r| r.applied);
        undone += sum(|r| r.undone);
        let tracked: usize = lanes.iter().map(|l| l.tokens.len()).sum();
        let retired: usize = lanes.iter().map(|l| l.graveyard.len()).sum();
        let end = kill.map_or("stopped cleanly".to_owned(), |d| {
            format!("killed after {d:?}")
        });
        eprintln!(
            "{context}: {} reads checked ({} calls failed at the last kill found done, {} \
             undone); {} calls acknowledged, {in_flight} in flight, {end}; {tracked} tokens \
             tracked, {retired} retired",
            sum(|r| r.checked),
            sum(|r| r.applied),
            sum(|r| r.undone),
            sum(|r| r.acked),
        );
    }
    eprintln!(
        "always, seed {seed}: {ALWAYS_ROUNDS} kills, {in_flight_kills} with calls in flight; \
         failed calls found done {applied}, undone {undone}; {:?}",
        started.elapsed()
    );
}

#[test]
fn interval_durability_reopens_after_every_kill() {
    let seed = seed(0x1d7e_55a1);
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // Tokens changed only before a round's commit point: each with the
    // data it must read back, or `None` once deleted.
    let mut anchors: Vec<(String, String, Option<Vec<u8>>)> = Vec::new();
    let started = Instant::now();
    for round in 0..=INTERVAL_ROUNDS {
        let context = format!("interval, seed {seed}, round {round}");
        let master = start_master(&store, &[]);
        let client = connect(master.port.expect("the master listens on TCP"))
            .unwrap_or_else(|err| panic!("{context}: cannot connect: {err}"));
        for (token, origin, expected) in &anchors {
            let found = client
                .read(token)
                .unwrap_or_else(|err| panic!("{context}: reading {origin} failed: {err}"));
            let found = found.map(|entry| {
                assert_eq!(
                    (entry.ttl, entry.silence_read),
                    (None, None),
                    "{context}: {origin} has limits it was never given"
                );
                entry.data
            });
            assert_eq!(
                &found, expected,
                "{context}: {origin} does not read back as it was before a completed commit"
            );
        }
        if round == INTERVAL_ROUNDS {
            drop(client);
            master.stop();
            break;
        }

        // Change some anchors, then wait until every change is committed.
        for i in 0..3 {
            let data = pack(&json!({"anchor": round, "i": i}));
            let token = client
                .create(&data, Limits::NONE)
                .expect("create an anchor");
            anchors.push((token, format!("anchor {i} of round {round}"), Some(data)));
        }
        let live: Vec<usize> = (0..anchors.len())
            .filter(|&i| anchors[i].2.is_some())
            .collect();
        let target = live[rng.below(live.len() as u64) as usize];
        let data = pack(&json!({"anchor": round, "updated": true}));
        assert!(
            client
                .update(&anchors[target].0, &data, Limits::NONE)
                .unwrap()
        );
        anchors[target].2 = Some(data);
        if live.len() > 6 {
            let target = live[rng.below(live.len() as u64) as usize];
            assert!(client.delete(&anchors[target].0).unwrap());
            anchors[target].2 = None;
        }
        let deadline = Instant::now() + PATIENCE;
        while client.stats().expect("stats").pending_writes > 0 {
            assert!(
                Instant::now() < deadline,
                "{context}: the anchors were not committed within {PATIENCE:?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
        drop(client);

        // Then churn other tokens until the kill.
        let mut lanes: Vec<Lane> = (0..INTERVAL_LANES).map(Lane::new).collect();
        let kill = delay(&mut rng);
        let reports = run_round(
            master,
            &mut lanes,
            round,
            seed,
            Check::Skip,
            Some(kill),
            &context,
        );
        eprintln!(
            "{context}: {} anchors, killed after {kill:?}, {} calls acknowledged, {} in flight",
            anchors.len(),
            reports.iter().map(|r| r.acked).sum::<usize>(),
            reports.iter().filter(|r| r.in_flight).count(),
        );
    }
    eprintln!(
        "interval, seed {seed}: {INTERVAL_ROUNDS} kills in {:?}",
        started.elapsed()
    );
}

// Rounds.

/// The seed from [`ENV_SEED`], else `default`; printed either way.
fn seed(default: u64) -> u64 {
    let seed = match std::env::var(ENV_SEED) {
        Ok(text) => text.parse().expect("the seed is an integer"),
        Err(_) => default,
    };
    eprintln!("seed {seed} (set {ENV_SEED} to repeat it)");
    seed
}

fn delay(rng: &mut Rng) -> Duration {
    let span = KILL_DELAY_MS.end - KILL_DELAY_MS.start;
    Duration::from_millis(KILL_DELAY_MS.start + rng.below(span))
}

/// Starts `crudjt serve` on `store` with a short flush interval and `args`.
fn start_master(store: &Path, args: &[&str]) -> Master {
    let mut all = vec!["--flush-interval", FLUSH_INTERVAL];
    all.extend_from_slice(args);
    Master::start(store, &all, &[("CRUDJT_SECRET_KEY", KEY)])
}

fn connect(port: u16) -> Result<BlockingClient, ClientError> {
    BlockingClient::connect(Target::Tcp {
        host: "127.0.0.1".into(),
        port,
    })
}

/// Whether a round first checks the lanes' tokens against the model.
#[derive(Clone, Copy, PartialEq)]
enum Check {
    Model,
    Skip,
}

/// What one lane did in one round.
#[derive(Default)]
struct Report {
    /// Reads of the checks after the restart.
    checked: usize,
    /// Calls of the load that returned.
    acked: usize,
    /// Whether the load's last call was sent before the kill and failed.
    in_flight: bool,
    /// Calls in flight at the previous kill that the checks found done.
    applied: usize,
    /// Calls in flight at the previous kill that the checks found undone.
    undone: usize,
}

/// One round on a running `master`: every lane checks its tokens (unless
/// `check` skips that), then all of them load the master together until
/// the kill `kill` after they started. Without `kill`, the master is
/// stopped cleanly after the checks. Panics with every lane's failures.
fn run_round(
    master: Master,
    lanes: &mut [Lane],
    round: u64,
    seed: u64,
    check: Check,
    kill: Option<Duration>,
    context: &str,
) -> Vec<Report> {
    let port = master.port.expect("the master listens on TCP");
    let killed = AtomicBool::new(false);
    let last = kill.is_none();
    let reports = thread::scope(|scope| {
        let (ready_send, ready) = mpsc::channel();
        let mut starts = Vec::new();
        let mut threads = Vec::new();
        for lane in lanes.iter_mut() {
            let (start, started) = mpsc::channel();
            starts.push(start);
            let ready = ready_send.clone();
            let killed = &killed;
            let mut rng = Rng(seed ^ round.wrapping_mul(0x9e37_79b9) ^ (lane.index as u64 + 1));
            threads.push(scope.spawn(move || {
                lane.round(port, round, &mut rng, check, last, ready, started, killed)
            }));
        }
        drop(ready_send);
        for _ in 0..threads.len() {
            ready
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|err| panic!("{context}: a lane did not finish its checks: {err}"));
        }
        match kill {
            Some(delay) => {
                for start in &starts {
                    start.send(()).expect("the lane waits for the start");
                }
                thread::sleep(delay);
                killed.store(true, Ordering::SeqCst);
                let status = master.stop_with(libc::SIGKILL);
                assert_eq!(
                    status.signal(),
                    Some(libc::SIGKILL),
                    "{context}: the master ended before the kill: {status}"
                );
            }
            None => {
                // The lanes see their start channel close and end.
                drop(starts);
                master.stop();
            }
        }
        threads
            .into_iter()
            .map(|t| t.join().expect("a lane panicked"))
            .collect::<Vec<Report>>()
    });
    let failures: Vec<String> = lanes
        .iter_mut()
        .flat_map(|lane| std::mem::take(&mut lane.failures))
        .collect();
    assert!(
        failures.is_empty(),
        "{context}: {} failures, the first {}:\n{}",
        failures.len(),
        failures.len().min(5),
        failures[..failures.len().min(5)].join("\n")
    );
    reports
}

// The model.

/// A token's state in the store, when it is live.
#[derive(Clone, PartialEq, Eq)]
struct Rec {
    data: Vec<u8>,
    /// The lifetime it was given, in seconds.
    ttl: Option<u64>,
    /// Reads left, at least 1.
    reads_left: Option<u64>,
}

impl Rec {
    fn limits(&self) -> Limits {
        Limits::new(self.ttl, self.reads_left).expect("valid limits")
    }
}

/// The states a token may be in; `None` is gone.
type States = Vec<Option<Rec>>;

/// A call on an existing token.
#[derive(Clone, Debug)]
enum Op {
    Update(Rec),
    Delete,
    Read,
}

/// What a call returned.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    /// An update's or delete's `bool`.
    Found(bool),
    /// A read: `None` when not found.
    Read(Option<Seen>),
}

/// A read's result, with the limits as the store reports them.
#[derive(Clone, PartialEq)]
struct Seen {
    data: Vec<u8>,
    ttl: Option<u64>,
    silence_read: Option<u64>,
}

impl std::fmt::Debug for Rec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ttl, reads) = (self.ttl, self.reads_left);
        write!(
            f,
            "{{ttl {ttl:?}, reads left {reads:?}, {}}}",
            show(&self.data)
        )
    }
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ttl, reads) = (self.ttl, self.silence_read);
        write!(
            f,
            "{{ttl {ttl:?}, silence_read {reads:?}, {}}}",
            show(&self.data)
        )
    }
}

/// Data as JSON, for messages.
fn show(data: &[u8]) -> String {
    match rmp_serde::from_slice::<serde_json::Value>(data) {
        Ok(value) => value.to_string(),
        Err(_) => format!("{data:02x?}"),
    }
}

/// What `op` does to a token in `state`: its next state and what the call
/// returns, with a read's `ttl` as the lifetime given.
fn apply(state: &Option<Rec>, op: &Op) -> (Option<Rec>, Outcome) {
    match (state, op) {
        (None, Op::Read) => (None, Outcome::Read(None)),
        (None, _) => (None, Outcome::Found(false)),
        (Some(_), Op::Update(next)) => (Some(next.clone()), Outcome::Found(true)),
        (Some(_), Op::Delete) => (None, Outcome::Found(true)),
        (Some(rec), Op::Read) => {
            let left = rec.reads_left.map(|n| n - 1);
            let next = match left {
                Some(0) => None,
                _ => Some(Rec {
                    reads_left: left,
                    ..rec.clone()
                }),
            };
            let seen = Seen {
                data: rec.data.clone(),
                ttl: rec.ttl,
                silence_read: left,
            };
            (next, Outcome::Read(Some(seen)))
        }
    }
}

/// Whether `observed` is what the model's `expected` allows: the same,
/// except that a remaining lifetime may be anything from 1 to the one given.
fn agrees(expected: &Outcome, observed: &Outcome) -> bool {
    match (expected, observed) {
        (Outcome::Read(Some(e)), Outcome::Read(Some(o))) => {
            let ttl = match (e.ttl, o.ttl) {
                (None, None) => true,
                (Some(given), Some(left)) => (1..=given).contains(&left),
                _ => false,
            };
            ttl && e.data == o.data && e.silence_read == o.silence_read
        }
        _ => expected == observed,
    }
}

/// One token, as its lane knows it.
struct Token {
    token: String,
    /// Where it came from, for messages; tokens stay out of them.
    origin: String,
    /// Every state the store may hold it in.
    possible: States,
    /// While its budget is the one given by its last acknowledged create or
    /// update: that budget and the reads that returned its data since.
    budget: Option<(u64, u64)>,
    /// Restarts after which it was seen gone.
    seen_gone: u32,
    /// After a failed call: the states before it, and the states had it
    /// happened, until a call tells them apart.
    in_doubt: Option<(States, States)>,
    /// The calls on it, for messages.
    history: Vec<String>,
}

impl Token {
    fn created(token: String, origin: String, rec: Rec) -> Token {
        Token {
            token,
            history: vec![format!("{origin}: create {} acknowledged", brief(&rec))],
            origin,
            budget: rec.reads_left.map(|n| (n, 0)),
            possible: vec![Some(rec)],
            seen_gone: 0,
            in_doubt: None,
        }
    }

    fn may_be_live(&self) -> bool {
        self.possible.iter().any(Option::is_some)
    }

    fn may_have_budget(&self) -> bool {
        self.possible
            .iter()
            .any(|s| s.as_ref().is_some_and(|r| r.reads_left.is_some()))
    }

    /// `op` returned `observed`: keeps the states that agree, moved on.
    /// Returns whether a failed call before it turned out done, when the
    /// result tells.
    fn acked(&mut self, op: Op, observed: Outcome, when: &str) -> Result<Option<bool>, String> {
        let agree = |states: &[Option<Rec>]| {
            states
                .iter()
                .any(|state| agrees(&apply(state, &op).1, &observed))
        };
        let resolved = match self.in_doubt.take() {
            Some((before, after)) => match (agree(&before), agree(&after)) {
                (false, true) => Some(true),
                (true, false) => Some(false),
                _ => None,
            },
            None => None,
        };
        self.history.push(format!(
            "{when}: {} acknowledged: {observed:?}",
            describe(&op)
        ));
        let before = self.possible.clone();
        let mut next = Vec::new();
        for state in &before {
            let (after, expected) = apply(state, &op);
            if agrees(&expected, &observed) && !next.contains(&after) {
                next.push(after);
            }
        }
        if next.is_empty() {
            return Err(format!(
                "the token of {} returned what none of its possible states allows \
                 ({before:?}): {}",
                self.origin,
                self.story()
            ));
        }
        self.possible = next;
        match (&op, &observed) {
            (Op::Update(rec), Outcome::Found(true)) => {
                self.budget = rec.reads_left.map(|n| (n, 0));
            }
            (Op::Read, Outcome::Read(Some(_))) => {
                if let Some((budget, reads)) = self.budget.as_mut() {
                    *reads += 1;
                    let (budget, reads) = (*budget, *reads);
                    if reads > budget {
                        return Err(format!(
                            "the token of {} gave {reads} reads on a budget of {budget}: {}",
                            self.origin,
                            self.story()
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(resolved)
    }

    /// `op` failed: it may or may not have happened.
    fn maybe(&mut self, op: Op, when: &str, err: &ClientError) {
        self.history
            .push(format!("{when}: {} failed: {err}", describe(&op)));
        let before = self.possible.clone();
        let mut happened = Vec::new();
        for state in &before {
            let (after, _) = apply(state, &op);
            if !self.possible.contains(&after) {
                self.possible.push(after.clone());
            }
            happened.push(after);
        }
        self.in_doubt = Some((before, happened));
        if matches!(op, Op::Update(_)) {
            self.budget = None;
        }
    }

    fn story(&self) -> String {
        let mut out = String::new();
        for line in &self.history {
            write!(out, "\n    {line}").unwrap();
        }
        out
    }
}

fn brief(rec: &Rec) -> String {
    format!("{rec:?}")
}

fn describe(op: &Op) -> String {
    match op {
        Op::Update(rec) => format!("update {}", brief(rec)),
        Op::Delete => "delete".to_owned(),
        Op::Read => "read".to_owned(),
    }
}

/// A client thread's share of the model: the tokens it made, on which it
/// alone calls.
struct Lane {
    index: usize,
    tokens: Vec<Token>,
    /// Tokens seen gone after [`RETIRE_AFTER`] restarts.
    graveyard: Vec<Token>,
    /// What went wrong, for the round to report.
    failures: Vec<String>,
}

/// What a lane does next in its load.
enum Choice {
    Create,
    Call(usize, Op),
}

impl Lane {
    fn new(index: usize) -> Lane {
        Lane {
            index,
            tokens: Vec::new(),
            graveyard: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// The lane's part of a round: connect, check every token (and a
    /// sample of the graveyard, or all of it in the `last` round), report
    /// ready, then load the master once told to start, until a call fails.
    #[allow(clippy::too_many_arguments)]
    fn round(
        &mut self,
        port: u16,
        round: u64,
        rng: &mut Rng,
        check: Check,
        last: bool,
        ready: Sender<()>,
        start: Receiver<()>,
        killed: &AtomicBool,
    ) -> Report {
        let mut report = Report::default();
        let client = match connect(port) {
            Ok(client) => Some(client),
            Err(err) => {
                self.failures
                    .push(format!("lane {}: cannot connect: {err}", self.index));
                None
            }
        };
        if let (Some(client), Check::Model) = (&client, check) {
            self.check(client, round, rng, last, &mut report);
        }
        let _ = ready.send(());
        if start.recv().is_err() {
            return report;
        }
        if let Some(client) = &client {
            self.load(client, round, rng, killed, &mut report);
        }
        report
    }

    /// Reads every token after a restart and checks it against the model.
    fn check(
        &mut self,
        client: &BlockingClient,
        round: u64,
        rng: &mut Rng,
        all: bool,
        report: &mut Report,
    ) {
        let when = format!("round {round}, check after restart");
        let mut keep = Vec::with_capacity(self.tokens.len());
        for mut token in std::mem::take(&mut self.tokens) {
            self.read(client, &mut token, &when, report);
            if token.may_be_live() {
                keep.push(token);
                continue;
            }
            token.seen_gone += 1;
            if token.seen_gone >= RETIRE_AFTER {
                self.graveyard.push(token);
            } else {
                keep.push(token);
            }
        }
        self.tokens = keep;
        let graves = self.graveyard.len();
        let slots: Vec<usize> = if all {
            (0..graves).collect()
        } else {
            let sample = GRAVEYARD_SAMPLE.min(graves as u64);
            (0..sample)
                .map(|_| rng.below(graves as u64) as usize)
                .collect()
        };
        let mut graveyard = std::mem::take(&mut self.graveyard);
        for slot in slots {
            self.read(client, &mut graveyard[slot], &when, report);
        }
        self.graveyard = graveyard;
    }

    /// Reads `token` with the master up: any error is a failure.
    fn read(
        &mut self,
        client: &BlockingClient,
        token: &mut Token,
        when: &str,
        report: &mut Report,
    ) {
        let lane = self.index;
        report.checked += 1;
        let failure = match client.read(&token.token) {
            Ok(found) => match token.acked(Op::Read, Outcome::Read(found.map(seen)), when) {
                Ok(Some(true)) => return report.applied += 1,
                Ok(Some(false)) => return report.undone += 1,
                Ok(None) => return,
                Err(failure) => format!("lane {lane}: {failure}"),
            },
            Err(err) => format!(
                "lane {lane}: {when}: reading the token of {} failed: {err}",
                token.origin
            ),
        };
        self.failures.push(failure);
    }

    /// Calls the master until a call fails or [`LOAD_LIMIT`] passes. A
    /// failure before `killed` is set fails the test.
    fn load(
        &mut self,
        client: &BlockingClient,
        round: u64,
        rng: &mut Rng,
        killed: &AtomicBool,
        report: &mut Report,
    ) {
        let lane = self.index;
        let started = Instant::now();
        for k in 0.. {
            if started.elapsed() > LOAD_LIMIT {
                self.failures.push(format!(
                    "lane {lane}: the load ran {LOAD_LIMIT:?} without the kill"
                ));
                return;
            }
            let when = format!("round {round} op {k}");
            let before_kill = !killed.load(Ordering::SeqCst);
            let failed = match self.choose(rng, round, k) {
                Choice::Create => {
                    let rec = rec(rng, round, lane, k, "create");
                    match client.create(&rec.data, rec.limits()) {
                        Ok(token) => {
                            let origin = format!("lane {lane} {when}");
                            self.tokens.push(Token::created(token, origin, rec));
                            None
                        }
                        // The token of a create in flight is unknown: the
                        // store may hold it or not, and nobody can ask.
                        Err(err) => Some(err),
                    }
                }
                Choice::Call(slot, op) => {
                    let token = &mut self.tokens[slot];
                    let result = match &op {
                        Op::Update(rec) => client
                            .update(&token.token, &rec.data, rec.limits())
                            .map(Outcome::Found),
                        Op::Delete => client.delete(&token.token).map(Outcome::Found),
                        Op::Read => client
                            .read(&token.token)
                            .map(|found| Outcome::Read(found.map(seen))),
                    };
                    match result {
                        Ok(observed) => {
                            if let Err(failure) = token.acked(op, observed, &when).map(|_| ()) {
                                self.failures.push(format!("lane {lane}: {failure}"));
                                return;
                            }
                            None
                        }
                        Err(err) => {
                            token.maybe(op, &when, &err);
                            Some(err)
                        }
                    }
                }
            };
            let Some(err) = failed else {
                report.acked += 1;
                continue;
            };
            report.in_flight = before_kill;
            if !killed.load(Ordering::SeqCst) {
                self.failures
                    .push(format!("lane {lane}: {when} failed before the kill: {err}"));
            }
            return;
        }
    }

    /// The next call of the load: mostly calls on live tokens, reads
    /// favouring tokens with a read budget, now and then a token that is
    /// already gone.
    fn choose(&self, rng: &mut Rng, round: u64, k: u64) -> Choice {
        let live: Vec<usize> = (0..self.tokens.len())
            .filter(|&i| self.tokens[i].may_be_live())
            .collect();
        let roll = rng.below(100);
        if live.is_empty() || (roll < 30 && live.len() < LIVE_CAP) {
            return Choice::Create;
        }
        let pick = |rng: &mut Rng, from: &[usize]| from[rng.below(from.len() as u64) as usize];
        let slot = pick(rng, &live);
        let lane = self.index;
        match roll {
            0..30 => Choice::Call(slot, Op::Delete),
            30..50 => Choice::Call(slot, Op::Update(rec(rng, round, lane, k, "update"))),
            50..58 => Choice::Call(slot, Op::Delete),
            58..62 => {
                let any = rng.below(self.tokens.len() as u64) as usize;
                Choice::Call(any, Op::Read)
            }
            _ => {
                let budgeted: Vec<usize> = live
                    .iter()
                    .copied()
                    .filter(|&i| self.tokens[i].may_have_budget())
                    .collect();
                if !budgeted.is_empty() && rng.below(10) < 7 {
                    Choice::Call(pick(rng, &budgeted), Op::Read)
                } else {
                    Choice::Call(slot, Op::Read)
                }
            }
        }
    }
}

/// Fresh data and limits for a create or update: a small map, unique to
/// the call, sometimes with a lifetime, often with a read budget of 1 to 4.
fn rec(rng: &mut Rng, round: u64, lane: usize, k: u64, kind: &str) -> Rec {
    let data = pack(&json!({
        "round": round,
        "lane": lane,
        "op": k,
        "kind": kind,
        "tags": ["crash", k % 7],
        "ok": k.is_multiple_of(2),
    }));
    Rec {
        data,
        ttl: (rng.below(100) < 30).then_some(TTL),
        reads_left: (rng.below(100) < 40).then(|| 1 + rng.below(4)),
    }
}

fn pack(value: &serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec(value).expect("a map packs")
}

fn seen(entry: crudjt::Entry<Vec<u8>>) -> Seen {
    Seen {
        data: entry.data,
        ttl: entry.ttl,
        silence_read: entry.silence_read,
    }
}

/// A small seeded generator (SplitMix64).
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
