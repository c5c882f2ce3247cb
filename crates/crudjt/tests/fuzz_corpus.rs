//! A smoke run of the `token`, `record` and `msgpack` fuzz targets: every
//! input kept in `fuzz/corpus/` goes through the same entry point the
//! fuzzer calls, so an input that once failed stays fixed. `write_seeds`,
//! run by hand, makes the real inputs the corpus started from.

use std::fs;
use std::path::{Path, PathBuf};

use crudjt::fuzzing::{self, RECORD_ID};
use crudjt::{Config, Error, Limits, Store};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Feeds every file of `target`'s corpus to `run`, which says whether it
/// accepted the input. A corpus that is gone or empty fails, rather than
/// passing without running anything, and so does a seed that is refused:
/// the seeds are real tokens, records and maps.
fn replay(target: &str, run: fn(&[u8]) -> bool) {
    let dir = corpus(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let input = fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&input));
        let accepted = outcome.unwrap_or_else(|_| panic!("{target} fails on {}", path.display()));
        let seed = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("seed-");
        assert!(accepted || !seed, "{target} refuses {}", path.display());
        count += 1;
    }
    assert!(count > 0, "{} holds no inputs", dir.display());
}

#[test]
fn token_corpus() {
    replay("token", fuzzing::token);
}

#[test]
fn record_corpus() {
    replay("record", fuzzing::record);
}

#[test]
fn msgpack_corpus() {
    replay("msgpack", fuzzing::msgpack);
}

/// `fuzz/corpus/msgpack/regress-empty-array-past-max-depth`: an empty
/// array 129 levels deep passed validation, which counted only containers
/// with items against [`crudjt::MAX_DEPTH`], and the Python package then
/// failed to read the token back ("it nests too deeply").
#[test]
fn an_empty_container_past_the_depth_limit_is_refused() {
    let mut data = vec![0x81, 0x00];
    data.extend(std::iter::repeat_n(0x91, crudjt::MAX_DEPTH - 1));
    data.push(0x90);
    let refused = crudjt::validate_map(&data, usize::MAX);
    assert!(
        matches!(refused, Err(Error::InvalidData { .. })),
        "{refused:?}"
    );
    assert!(!fuzzing::msgpack(&data));
}

/// MessagePack maps of every supported kind, for the seeds.
fn maps() -> Vec<(&'static str, Vec<u8>)> {
    use rmpv::Value;
    let pack = |value: Value| {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        bytes
    };
    let mut deep = Value::Map(vec![("leaf".into(), Value::Nil)]);
    for _ in 0..20 {
        deep = Value::Map(vec![("k".into(), Value::Array(vec![deep]))]);
    }
    vec![
        ("empty", vec![0x80]),
        (
            "user",
            pack(Value::Map(vec![("user_id".into(), 42.into())])),
        ),
        (
            "every-kind",
            pack(Value::Map(vec![
                ("nil".into(), Value::Nil),
                ("bool".into(), true.into()),
                ("neg".into(), (-100_000i64).into()),
                ("u64".into(), u64::MAX.into()),
                ("f32".into(), Value::F32(0.5)),
                ("f64".into(), 1.25f64.into()),
                ("str".into(), "héllo".into()),
                ("bin".into(), Value::Binary(vec![0, 1, 2, 255])),
                (7.into(), Value::Array(vec![1.into(), "x".into()])),
            ])),
        ),
        (
            "wide",
            pack(Value::Map(
                (0..10)
                    .map(|i| (Value::from(i), Value::from("s".repeat(16))))
                    .collect(),
            )),
        ),
        ("deep", pack(deep)),
    ]
}

/// Writes real inputs to `fuzz/corpus/<target>/seed-*`: tokens and sealed
/// records made by a store under the fuzz key, and MessagePack maps.
#[test]
#[ignore = "writes the seed corpus; run by hand when the formats change"]
fn write_seeds() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };
    let limits = [
        ("plain", Limits::NONE),
        ("ttl", Limits::new(Some(3600), None).unwrap()),
        ("budget", Limits::new(None, Some(3)).unwrap()),
        ("both", Limits::new(Some(u64::MAX), Some(1)).unwrap()),
    ];
    let records: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
    for (data_name, data) in maps() {
        write("msgpack", data_name, &data);
        for (limits_name, limits) in limits {
            // A fresh store, so that the record has the id the target opens.
            let dir = tempfile::tempdir().unwrap();
            let config = Config::new(fuzzing::secret_key()).path(dir.path());
            let store = Store::open(config).unwrap();
            let token = store.create_packed(&data, limits).unwrap();
            let file = store.file().to_path_buf();
            store.close().unwrap();
            let name = format!("{data_name}-{limits_name}");
            write("token", &name, token.as_str().as_bytes());
            let db = redb::Database::open(file).unwrap();
            let txn = db.begin_read().unwrap();
            let table = txn.open_table(records).unwrap();
            let sealed = table.get(RECORD_ID).unwrap().unwrap();
            write("record", &name, sealed.value());
        }
    }
}
