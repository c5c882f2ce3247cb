//! The store against a model of DESIGN.md's Semantics: random sequences of
//! creates, reads, updates and deletes, with clock jumps, flushes, sweeps
//! and reopens, run on a real store and on an in-memory reference, which
//! must agree on every result.
//!
//! The test clock (`crudjt::testing`, behind the `testing` feature) stands
//! still between calls and jumps when told, so the model knows the store's
//! time to the millisecond and can land reads exactly on an expiry. It is
//! process-wide: every test in this binary must hold [`CLOCK`].
//!
//! `PROPTEST_CASES` sets the number of sequences (default [`CASES`]);
//! failures are shrunk and kept in `model.proptest-regressions` beside this
//! file, which reruns them first.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crudjt::testing::advance_clock;
use crudjt::{Config, Durability, Error, Limits, SecretKey, Store};
use proptest::prelude::*;
use proptest::sample::Index;
use rmpv::Value;
use tempfile::TempDir;

/// Sequences per run when `PROPTEST_CASES` is not set: a few seconds in a
/// debug build on two cores.
const CASES: u32 = 128;

/// Taken by every test that reads or moves the process-wide test clock.
static CLOCK: Mutex<()> = Mutex::new(());

/// A well-formed token that the store never handed out, for targets that
/// need a token before any was made.
const NEVER_ISSUED: &str = "AAAAAAAAAAAAAAAAAAAAAA";

const BASE64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Clock jumps that land this many milliseconds from a token's expiry:
/// either side of the second before it, of its last millisecond, and of
/// the instant itself.
const EXPIRY_OFFSETS: [i64; 6] = [-1001, -1000, -999, -1, 0, 1];

// ---------------------------------------------------------------------------
// Operations

/// How each sequence's store is opened, and reopened. None of it may
/// change a result.
#[derive(Clone, Copy, Debug)]
struct Setup {
    /// 0 sends every read of a committed record to the disk; 64 is one
    /// record a shard.
    cache_capacity: usize,
    durability: Durability,
    /// 1 ms has the flusher commit between most calls.
    flush_interval_ms: u64,
}

impl Setup {
    /// Opens with the last of `keys` as the current key and the others as
    /// previous keys.
    fn open(&self, dir: &Path, keys: &[SecretKey]) -> Store {
        let (current, previous) = keys.split_last().expect("at least one key");
        let config = previous
            .iter()
            .rev()
            .cloned()
            .fold(Config::new(current.clone()), Config::previous_key)
            .path(dir)
            .cache_capacity(self.cache_capacity)
            .durability(self.durability)
            .flush_interval(Duration::from_millis(self.flush_interval_ms));
        Store::open(config).expect("the store opens")
    }
}

fn setup() -> impl Strategy<Value = Setup> {
    let cache = prop::sample::select(vec![0, 64, Config::DEFAULT_CACHE_CAPACITY]);
    let durability = prop_oneof![3 => Just(Durability::Interval), 1 => Just(Durability::Always)];
    let flush = prop::sample::select(vec![1, 50]);
    (cache, durability, flush).prop_map(|(cache_capacity, durability, flush_interval_ms)| Setup {
        cache_capacity,
        durability,
        flush_interval_ms,
    })
}

/// Data as generated, with its MessagePack encoding.
#[derive(Clone)]
struct Data {
    value: Value,
    packed: Vec<u8>,
}

impl Data {
    fn new(value: Value) -> Data {
        let mut packed = Vec::new();
        rmpv::encode::write_value(&mut packed, &value).expect("writing to a Vec cannot fail");
        Data { value, packed }
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} bytes)", self.value, self.packed.len())
    }
}

/// Which token string an operation is given.
#[derive(Clone, Debug)]
enum Target {
    /// A token the model still holds, live or expired but not yet looked
    /// up, by its place in the order of creation.
    Held(Index),
    /// A token the store made, by its place in the order of creation.
    Made(Index),
    /// A token the store made, with one character replaced.
    Altered(Index, Index, char),
    /// Any other string.
    Other(String),
    Empty,
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        data: Data,
        ttl: Option<u64>,
        silence_read: Option<u64>,
    },
    /// `typed` reads into an `rmpv::Value` through serde rather than as
    /// bytes.
    Read {
        token: Target,
        typed: bool,
    },
    Update {
        token: Target,
        data: Data,
        ttl: Option<u64>,
        silence_read: Option<u64>,
    },
    Delete(Target),
    /// Moves the clock forward by this many milliseconds.
    Advance(u64),
    /// Moves the clock to a live token's expiry plus an offset from
    /// [`EXPIRY_OFFSETS`], when that is ahead.
    AdvanceToExpiry {
        token: Index,
        offset: i64,
    },
    Flush,
    Sweep,
    /// Closes the store and opens it again.
    Reopen,
    /// Closes the store and opens it with a new secret key, every earlier
    /// key given as a previous one.
    Rotate,
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from)
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::from),
        (-40i64..300).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f32>().prop_map(Value::F32),
        any::<f64>().prop_map(Value::F64),
        "[a-z]{0,8}".prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..6).prop_map(Value::Binary),
    ]
}

fn map_of(entries: BTreeMap<String, Value>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

fn nested() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..3).prop_map(map_of),
        ]
    })
}

fn data() -> impl Strategy<Value = Data> {
    prop_oneof![
        12 => prop::collection::btree_map(key(), nested(), 0..4).prop_map(map_of),
        // `{"a": "xx..."}` of 253 to 266 bytes, around the 256-byte limit.
        1 => (248usize..=260).prop_map(|n| {
            map_of(BTreeMap::from([("a".to_string(), "x".repeat(n).into())]))
        }),
        1 => leaf(),
    ]
    .prop_map(Data::new)
}

fn ttl() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        2 => Just(None),
        6 => (1u64..=5).prop_map(Some),
        // Lifetimes past any clock jump, some saturating the expiry.
        1 => prop::sample::select(vec![1 << 40, u64::MAX / 1000, u64::MAX]).prop_map(Some),
    ]
}

fn silence_read() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        2 => Just(None),
        6 => (1u64..=4).prop_map(Some),
        1 => prop::sample::select(vec![1 << 40, u64::MAX]).prop_map(Some),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    let chars: Vec<char> = BASE64URL.chars().collect();
    prop_oneof![
        8 => any::<Index>().prop_map(Target::Held),
        4 => any::<Index>().prop_map(Target::Made),
        1 => (any::<Index>(), any::<Index>(), prop::sample::select(chars))
            .prop_map(|(token, at, c)| Target::Altered(token, at, c)),
        1 => prop_oneof!["[A-Za-z0-9_-]{22}", "[ -~]{1,30}"].prop_map(Target::Other),
        1 => Just(Target::Empty),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (data(), ttl(), silence_read())
            .prop_map(|(data, ttl, silence_read)| Op::Create { data, ttl, silence_read }),
        8 => (target(), prop::bool::weighted(0.2))
            .prop_map(|(token, typed)| Op::Read { token, typed }),
        3 => (target(), data(), ttl(), silence_read()).prop_map(
            |(token, data, ttl, silence_read)| Op::Update { token, data, ttl, silence_read }
        ),
        2 => target().prop_map(Op::Delete),
        2 => (0u64..=1500).prop_map(Op::Advance),
        1 => (0u64..=6000).prop_map(Op::Advance),
        2 => (any::<Index>(), prop::sample::select(EXPIRY_OFFSETS.to_vec()))
            .prop_map(|(token, offset)| Op::AdvanceToExpiry { token, offset }),
        1 => Just(Op::Flush),
        1 => Just(Op::Sweep),
        1 => Just(Op::Reopen),
        1 => Just(Op::Rotate),
    ]
}

// ---------------------------------------------------------------------------
// The model

/// What a call returned, in a form both sides can produce.
#[derive(Debug, PartialEq)]
enum Outcome {
    Created,
    Found {
        data: Vec<u8>,
        ttl: Option<u64>,
        silence_read: Option<u64>,
    },
    NotFound,
    Bool(bool),
    Refused(Refusal),
    /// Anything the contract does not allow here; the model never
    /// predicts it.
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Refusal {
    EmptyToken,
    TooLarge,
    NotAMap,
    /// An empty token and bad data at once: the contract does not say
    /// which is reported.
    EmptyTokenOrData,
}

fn outcome_of(err: Error) -> Outcome {
    match err {
        Error::EmptyToken => Outcome::Refused(Refusal::EmptyToken),
        Error::DataTooLarge { .. } => Outcome::Refused(Refusal::TooLarge),
        Error::NotAMap { .. } => Outcome::Refused(Refusal::NotAMap),
        other => Outcome::Failed(other.to_string()),
    }
}

fn agrees(expected: &Outcome, actual: &Outcome) -> bool {
    match (expected, actual) {
        (Outcome::Refused(Refusal::EmptyTokenOrData), Outcome::Refused(refusal)) => {
            *refusal != Refusal::EmptyTokenOrData
        }
        _ => expected == actual,
    }
}

struct Record {
    packed: Vec<u8>,
    /// Milliseconds since the Unix epoch, as the store's clock reads them.
    expires_at: Option<u64>,
    reads_left: Option<u64>,
}

/// The Semantics section as a map from token to record.
struct Model {
    /// The store's clock, in milliseconds since the Unix epoch.
    now: u64,
    /// Every token the store may still know, including expired ones not
    /// yet looked up: the store keeps those until a call or a sweep finds
    /// them, which bounds its token count.
    records: HashMap<String, Record>,
    /// Every token made, in order.
    made: Vec<String>,
    made_set: HashSet<String>,
}

impl Model {
    fn new(now: u64) -> Model {
        Model {
            now,
            records: HashMap::new(),
            made: Vec::new(),
            made_set: HashSet::new(),
        }
    }

    /// Data over the default limit of 256 bytes or not a map is refused.
    fn refusal(data: &Data) -> Option<Refusal> {
        if data.packed.len() > Config::DEFAULT_MAX_DATA_SIZE {
            Some(Refusal::TooLarge)
        } else if !data.value.is_map() {
            Some(Refusal::NotAMap)
        } else {
            None
        }
    }

    /// A ttl counts from now, in whole seconds; an expiry past the end of
    /// the clock saturates (see `Limits`).
    fn record(&self, data: &Data, ttl: Option<u64>, silence_read: Option<u64>) -> Record {
        Record {
            packed: data.packed.clone(),
            expires_at: ttl.map(|s| self.now.saturating_add(s.saturating_mul(1000))),
            reads_left: silence_read,
        }
    }

    /// The live record of `token`; at or past its expiry it is gone.
    fn live(&mut self, token: &str) -> Option<&mut Record> {
        let now = self.now;
        if self
            .records
            .get(token)?
            .expires_at
            .is_some_and(|at| at <= now)
        {
            self.records.remove(token);
            return None;
        }
        self.records.get_mut(token)
    }

    fn created(&mut self, token: String, record: Record) {
        self.made.push(token.clone());
        self.made_set.insert(token.clone());
        self.records.insert(token, record);
    }

    fn read(&mut self, token: &str) -> Outcome {
        if token.is_empty() {
            return Outcome::Refused(Refusal::EmptyToken);
        }
        let now = self.now;
        let Some(record) = self.live(token) else {
            return Outcome::NotFound;
        };
        // Remaining lifetime in whole seconds, rounded up.
        let ttl = record.expires_at.map(|at| (at - now).div_ceil(1000));
        let silence_read = record.reads_left.map(|n| n - 1);
        let data = record.packed.clone();
        match silence_read {
            // The read that reaches 0 returns the data and deletes the token.
            Some(0) => drop(self.records.remove(token)),
            Some(left) => record.reads_left = Some(left),
            None => {}
        }
        Outcome::Found {
            data,
            ttl,
            silence_read,
        }
    }

    fn update(
        &mut self,
        token: &str,
        data: &Data,
        ttl: Option<u64>,
        silence_read: Option<u64>,
    ) -> Outcome {
        match (token.is_empty(), Model::refusal(data)) {
            (true, None) => return Outcome::Refused(Refusal::EmptyToken),
            (true, Some(_)) => return Outcome::Refused(Refusal::EmptyTokenOrData),
            (false, Some(refusal)) => return Outcome::Refused(refusal),
            (false, None) => {}
        }
        let new = self.record(data, ttl, silence_read);
        match self.live(token) {
            Some(record) => {
                *record = new;
                Outcome::Bool(true)
            }
            None => Outcome::Bool(false),
        }
    }

    fn delete(&mut self, token: &str) -> Outcome {
        if token.is_empty() {
            return Outcome::Refused(Refusal::EmptyToken);
        }
        let found = self.live(token).is_some();
        self.records.remove(token);
        Outcome::Bool(found)
    }

    fn resolve(&self, target: &Target) -> String {
        let made = |index: &Index| match self.made.len() {
            0 => NEVER_ISSUED.to_string(),
            n => self.made[index.index(n)].clone(),
        };
        match target {
            Target::Held(index) => {
                let held: Vec<&String> = self
                    .made
                    .iter()
                    .filter(|t| self.records.contains_key(*t))
                    .collect();
                match held.len() {
                    0 => made(index),
                    n => held[index.index(n)].clone(),
                }
            }
            Target::Made(index) => made(index),
            Target::Altered(index, at, c) => {
                let mut chars: Vec<char> = made(index).chars().collect();
                let at = at.index(chars.len());
                chars[at] = *c;
                chars.into_iter().collect()
            }
            Target::Other(text) => text.clone(),
            Target::Empty => String::new(),
        }
    }

    /// How far to move the clock for [`Op::AdvanceToExpiry`]: to the
    /// expiry, plus `offset`, of a live token that expires within a day.
    fn to_expiry(&self, token: &Index, offset: i64) -> u64 {
        let horizon = self.now.saturating_add(86_400_000);
        let expiries: Vec<u64> = self
            .made
            .iter()
            .filter_map(|t| self.records.get(t)?.expires_at)
            .filter(|&at| at > self.now && at <= horizon)
            .collect();
        if expiries.is_empty() {
            return 0;
        }
        let target = expiries[token.index(expiries.len())].saturating_add_signed(offset);
        target.saturating_sub(self.now)
    }

    /// Bounds on the store's token count: every live record, at most every
    /// record not yet found expired.
    fn token_bounds(&self) -> (u64, u64) {
        let live = self
            .records
            .values()
            .filter(|r| r.expires_at.is_none_or(|at| at > self.now))
            .count();
        (live as u64, self.records.len() as u64)
    }
}

// ---------------------------------------------------------------------------
// Running a sequence

fn limits(ttl: Option<u64>, silence_read: Option<u64>) -> Limits {
    Limits::new(ttl, silence_read).expect("generated limits are at least 1")
}

fn is_token_text(token: &str) -> bool {
    token.len() == 22 && token.chars().all(|c| BASE64URL.contains(c))
}

/// A temp dir in memory where there is one. This test checks semantics,
/// not durability, and on a busy disk the fsyncs of a close and an open
/// take a tenth of a second, fifty times what the rest of a sequence does.
fn scratch_dir() -> TempDir {
    let shm = Path::new("/dev/shm");
    shm.is_dir()
        .then(|| tempfile::tempdir_in(shm).ok())
        .flatten()
        .unwrap_or_else(|| tempfile::tempdir().expect("a temp dir"))
}

/// A store and the model, going through a sequence together.
struct Run {
    setup: Setup,
    /// `None` only inside [`Run::reopen`]. Declared before `dir`, so that
    /// a failed run closes the store before removing its directory.
    store: Option<Store>,
    dir: TempDir,
    /// The store's keys, the current one last.
    keys: Vec<SecretKey>,
    model: Model,
}

/// What went wrong, said once with the step that showed it.
type Failure = String;

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), Failure> {
    if ok { Ok(()) } else { Err(why()) }
}

impl Run {
    fn new(setup: Setup) -> Run {
        let dir = scratch_dir();
        let keys = vec![common::key()];
        let store = Some(setup.open(dir.path(), &keys));
        Run {
            setup,
            store,
            dir,
            keys,
            model: Model::new(advance_clock(0)),
        }
    }

    fn store(&self) -> &Store {
        self.store
            .as_ref()
            .expect("the store is open between steps")
    }

    /// Applies `op` to the store and the model; returns what each said,
    /// model first, for the calls that answer.
    fn apply(&mut self, op: &Op) -> Result<Option<(Outcome, Outcome)>, Failure> {
        let said = match op {
            Op::Create {
                data,
                ttl,
                silence_read,
            } => self.create(data, *ttl, *silence_read)?,
            Op::Read { token, typed } => {
                let token = self.model.resolve(token);
                let actual = if *typed {
                    read_typed(self.store(), &token)
                } else {
                    read_packed(self.store(), &token)
                };
                (self.model.read(&token), actual)
            }
            Op::Update {
                token,
                data,
                ttl,
                silence_read,
            } => {
                let token = self.model.resolve(token);
                let limits = limits(*ttl, *silence_read);
                let result = self.store().update_packed(&token, &data.packed, limits);
                let actual = result.map_or_else(outcome_of, Outcome::Bool);
                (self.model.update(&token, data, *ttl, *silence_read), actual)
            }
            Op::Delete(token) => {
                let token = self.model.resolve(token);
                let actual = self
                    .store()
                    .delete(&token)
                    .map_or_else(outcome_of, Outcome::Bool);
                (self.model.delete(&token), actual)
            }
            Op::Advance(ms) => return self.advance(*ms).map(|()| None),
            Op::AdvanceToExpiry { token, offset } => {
                let ms = self.model.to_expiry(token, *offset);
                return self.advance(ms).map(|()| None);
            }
            Op::Flush => {
                let flushed = self.store().flush();
                return ensure(flushed.is_ok(), || format!("flush failed: {flushed:?}"))
                    .map(|()| None);
            }
            Op::Sweep => return self.sweep().map(|()| None),
            Op::Reopen => return self.reopen().map(|()| None),
            Op::Rotate => {
                self.keys.push(SecretKey::generate());
                return self.reopen().map(|()| None);
            }
        };
        Ok(Some(said))
    }

    fn create(
        &mut self,
        data: &Data,
        ttl: Option<u64>,
        silence_read: Option<u64>,
    ) -> Result<(Outcome, Outcome), Failure> {
        let expected = Model::refusal(data).map_or(Outcome::Created, Outcome::Refused);
        let token = match self
            .store()
            .create_packed(&data.packed, limits(ttl, silence_read))
        {
            Ok(token) => token.as_str().to_string(),
            Err(err) => return Ok((expected, outcome_of(err))),
        };
        ensure(is_token_text(&token), || {
            format!("token {token:?} is not 22 base64url characters")
        })?;
        // Never a token that was live, nor one that was and is gone.
        ensure(!self.model.made_set.contains(&token), || {
            format!("token {token} was made before")
        })?;
        let record = self.model.record(data, ttl, silence_read);
        self.model.created(token, record);
        Ok((expected, Outcome::Created))
    }

    fn advance(&mut self, ms: u64) -> Result<(), Failure> {
        self.model.now += ms;
        let now = advance_clock(ms);
        ensure(now == self.model.now, || {
            format!("the clock reads {now}, the model {}", self.model.now)
        })
    }

    /// A sweep removes only records that are expired, which the model still
    /// holds until a call finds them.
    fn sweep(&mut self) -> Result<(), Failure> {
        let removed = self
            .store()
            .sweep()
            .map_err(|err| format!("sweep failed: {err}"))?
            .removed;
        let (live, held) = self.model.token_bounds();
        ensure(removed <= held - live, || {
            format!(
                "the sweep removed {removed} records, the model holds {} expired",
                held - live
            )
        })
    }

    /// A clean close and an open must keep everything; the clock keeps
    /// its time.
    fn reopen(&mut self) -> Result<(), Failure> {
        let closed = self.store.take().expect("the store is open").close();
        ensure(closed.is_ok(), || format!("close failed: {closed:?}"))?;
        self.store = Some(self.setup.open(self.dir.path(), &self.keys));
        Ok(())
    }

    /// The store counts every live token, and no token the model has seen
    /// removed.
    fn check_count(&self) -> Result<(), Failure> {
        let tokens = self.store().stats().tokens;
        let (live, held) = self.model.token_bounds();
        ensure((live..=held).contains(&tokens), || {
            format!("the store counts {tokens} tokens, the model {live} to {held}")
        })
    }
}

/// Runs `ops` on a new store and on the model, comparing each result.
fn run(setup: Setup, ops: &[Op]) -> Result<(), TestCaseError> {
    let _clock = CLOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let mut run = Run::new(setup);
    for (step, op) in ops.iter().enumerate() {
        let checked = run.apply(op).and_then(|said| {
            if let Some((expected, actual)) = said {
                ensure(agrees(&expected, &actual), || {
                    format!("\n  model: {expected:?}\n  store: {actual:?}")
                })?;
            }
            run.check_count()
        });
        if let Err(why) = checked {
            return Err(TestCaseError::fail(format!("step {step}: {op:?}: {why}")));
        }
    }
    let closed = run.store.take().expect("the store is open").close();
    prop_assert!(closed.is_ok(), "close failed: {closed:?}");
    Ok(())
}

/// A read as bytes, whose wire result map must say the same.
fn read_packed(store: &Store, token: &str) -> Outcome {
    let entry = match store.read_packed(token) {
        Ok(Some(entry)) => entry,
        Ok(None) => return Outcome::NotFound,
        Err(err) => return outcome_of(err),
    };
    let wire = outcome_of_result_map(&entry.to_packed_result());
    let found = Outcome::Found {
        data: entry.data,
        ttl: entry.ttl,
        silence_read: entry.silence_read,
    };
    if wire == found {
        found
    } else {
        Outcome::Failed(format!("read {found:?}, its result map {wire:?}"))
    }
}

/// Reads back a result map, `{"metadata": {...}, "data": {...}}`, in
/// which `metadata` holds only the limits that are set and is absent when
/// none is.
fn outcome_of_result_map(packed: &[u8]) -> Outcome {
    let fail = |why: &str| Outcome::Failed(format!("the result map {why}"));
    let Ok(Value::Map(entries)) = rmpv::decode::read_value(&mut &packed[..]) else {
        return fail("is not a map");
    };
    let (mut data, mut ttl, mut silence_read) = (None, None, None);
    for (key, value) in entries {
        match (key.as_str(), value) {
            (Some("data"), value) => data = Some(Data::new(value).packed),
            (Some("metadata"), Value::Map(limits)) if !limits.is_empty() => {
                for (key, value) in limits {
                    match (key.as_str(), value.as_u64()) {
                        (Some("ttl"), Some(n)) => ttl = Some(n),
                        (Some("silence_read"), Some(n)) => silence_read = Some(n),
                        _ => return fail(&format!("has metadata {key}: {value}")),
                    }
                }
            }
            (_, value) => return fail(&format!("has {key}: {value}")),
        }
    }
    match data {
        Some(data) => Outcome::Found {
            data,
            ttl,
            silence_read,
        },
        None => fail("has no data"),
    }
}

/// A read through serde into an `rmpv::Value`, packed again for comparing.
fn read_typed(store: &Store, token: &str) -> Outcome {
    match store.read::<Value>(token) {
        Ok(Some(entry)) => Outcome::Found {
            data: Data::new(entry.data).packed,
            ttl: entry.ttl,
            silence_read: entry.silence_read,
        },
        Ok(None) => Outcome::NotFound,
        Err(err) => outcome_of(err),
    }
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_store_agrees_with_the_model(
        setup in setup(),
        ops in prop::collection::vec(op(), 20..=200),
    ) {
        run(setup, &ops)?;
    }
}
