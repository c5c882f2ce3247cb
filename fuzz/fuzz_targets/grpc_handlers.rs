#![no_main]

use std::sync::LazyLock;

use crudjt_grpc::fuzzing::Handlers;

/// One store for the whole run, in a directory left behind at exit:
/// libFuzzer ends the process without running destructors.
static HANDLERS: LazyLock<Handlers> = LazyLock::new(|| {
    let dir = tempfile::Builder::new()
        .prefix("crudjt-fuzz-")
        .tempdir()
        .expect("a temporary directory");
    Handlers::open(&dir.keep())
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| HANDLERS.run(data));
