//! A smoke run of the `grpc_handlers` fuzz target: every input kept in
//! `fuzz/corpus/grpc_handlers/` is served by a master over a real store,
//! through the same entry point the fuzzer calls. `write_seeds`, run by
//! hand, makes the encoded requests the corpus started from.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use crudjt_grpc::fuzzing::{Handlers, PLACEHOLDER_DATA};
use crudjt_grpc::proto::token::{
    CreateTokenRequest, DeleteTokenRequest, ReadTokenRequest, UpdateTokenRequest,
};
use prost::Message;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/grpc_handlers")
}

#[test]
fn grpc_handlers_corpus() {
    let store_dir = tempfile::tempdir().unwrap();
    let handlers = Handlers::open(store_dir.path());
    let mut count = 0;
    for entry in fs::read_dir(corpus()).unwrap() {
        let path = entry.unwrap().path();
        let input = fs::read(&path).unwrap();
        // The first failure ends the test, so no later input meets a store
        // that a panic left half-changed.
        let outcome = catch_unwind(AssertUnwindSafe(|| handlers.run(&input)));
        assert!(outcome.is_ok(), "grpc_handlers fails on {}", path.display());
        count += 1;
    }
    assert!(count > 0, "{} holds no inputs", corpus().display());
}

/// Writes encoded requests to `fuzz/corpus/grpc_handlers/seed-*`: each
/// RPC with valid and refused arguments, on placeholder tokens (see
/// `crudjt_grpc::fuzzing`) and on tokens that do not exist.
#[test]
#[ignore = "writes the seed corpus; run by hand when the contract changes"]
fn write_seeds() {
    let user = b"\x81\xa7user_id\x2a".to_vec();
    let create = |packed_data: &[u8], ttl, silence_read| CreateTokenRequest {
        packed_data: packed_data.to_vec(),
        ttl,
        silence_read,
    };
    let update = |token: &str, packed_data: &[u8], ttl, silence_read| UpdateTokenRequest {
        token: token.into(),
        packed_data: packed_data.to_vec(),
        ttl,
        silence_read,
    };
    let read = |token: &str| ReadTokenRequest {
        token: token.into(),
    };
    let delete = |token: &str| DeleteTokenRequest {
        token: token.into(),
    };
    let unknown = "AAAAAAAAAAAAAAAAAAAAAA";
    let seeds: [(&str, u8, Vec<u8>); 14] = [
        ("create", 0, create(&user, -1, -1).encode_to_vec()),
        ("create-limits", 0, create(&user, 3600, 2).encode_to_vec()),
        (
            "create-array",
            0,
            create(b"\x91\x01", -1, -1).encode_to_vec(),
        ),
        ("create-zero-ttl", 0, create(&user, 0, -1).encode_to_vec()),
        ("read", 1, read("@").encode_to_vec()),
        ("read-budget", 1, read("@\x02").encode_to_vec()),
        ("read-unknown", 1, read(unknown).encode_to_vec()),
        ("read-empty", 1, read("").encode_to_vec()),
        ("update", 2, update("@\x01", &user, 60, 1).encode_to_vec()),
        (
            "update-bad-data",
            2,
            update("@", b"\x81", -1, -1).encode_to_vec(),
        ),
        (
            "update-unknown",
            2,
            update(unknown, PLACEHOLDER_DATA, -1, -1).encode_to_vec(),
        ),
        ("delete", 3, delete("@\x03").encode_to_vec()),
        ("delete-unknown", 3, delete(unknown).encode_to_vec()),
        ("delete-empty", 3, delete("").encode_to_vec()),
    ];
    let dir = corpus();
    fs::create_dir_all(&dir).unwrap();
    for (name, rpc, body) in seeds {
        let mut input = vec![rpc];
        input.extend(body);
        fs::write(dir.join(format!("seed-{name}")), input).unwrap();
    }
}
