//! What every benchmark shares: the session data they store and where
//! their stores live.
//!
//! Each bench target includes this file as its own module, so anything here
//! must be used by all of them or it warns as dead code.

use std::path::PathBuf;

use rmpv::Value;
use tempfile::TempDir;

/// The default `max_data_size`; benchmarks store data of exactly this size
/// so that every record is as large as the store allows by default.
pub const DATA_SIZE: usize = 256;

/// A plausible session map padded to pack to exactly [`DATA_SIZE`] bytes of
/// MessagePack.
pub fn session_data() -> Vec<u8> {
    // A string's header grows from 1 to 2 bytes at 32 bytes of text, so
    // rather than predict the header, try pad lengths until one fits.
    (0..DATA_SIZE)
        .map(pack_session)
        .find(|packed| packed.len() == DATA_SIZE)
        .expect("some pad length packs to exactly DATA_SIZE bytes")
}

fn pack_session(pad: usize) -> Vec<u8> {
    let entry = |key: &str, value: Value| (Value::from(key), value);
    let map = Value::Map(vec![
        entry("user_id", Value::from(1_234_567_890_u64)),
        entry("role", Value::from("admin")),
        entry("issued_at", Value::from(1_700_000_000_u64)),
        entry("scopes", Value::Array(vec!["read".into(), "write".into()])),
        entry("pad", Value::from("x".repeat(pad))),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &map).expect("writing to a Vec cannot fail");
    out
}

/// A fresh directory for one store, removed when dropped. It is made under
/// `CRUDJT_BENCH_DIR` when set, so the file system being measured can be
/// chosen; otherwise under the system temporary directory.
pub fn store_dir() -> TempDir {
    let made = match std::env::var_os("CRUDJT_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(PathBuf::from(base)),
        None => tempfile::tempdir(),
    };
    made.expect("cannot make a directory for the benchmark store")
}
