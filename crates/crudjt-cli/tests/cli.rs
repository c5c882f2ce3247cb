//! The `crudjt` command as scripts and operators meet it: output, exit
//! statuses, key handling, clean stops and `--help`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{KEY, Master, OTHER_KEY, free_port, run, run_with, run_with_stdin};
use serde_json::{Value, json};

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("not JSON ({err}): {text:?}"))
}

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn every_subcommand_has_complete_help() {
    let commands: &[(&str, &[&str])] = &[
        (
            "serve",
            &[
                "--store-path",
                "--host",
                "--port",
                "--unix-socket",
                "--unix-socket-mode",
                "--unix-socket-allow-uid",
                "--unix-socket-allow-gid",
                "--allow-insecure-remote",
                "--max-connections",
                "--max-concurrent-calls",
                "--busy-poll",
                "--no-tcp",
                "--secret-key-file",
                "CRUDJT_SECRET_KEY",
                "--previous-secret-key-file",
                "CRUDJT_PREVIOUS_SECRET_KEYS",
                "--flush-interval",
                "--durability",
                "--cache-capacity",
                "--max-data-size",
                "--sweep-interval",
                "--log-format",
                "--log-level",
                "Exit status",
            ],
        ),
        ("keygen", &["--out", "CRUDJT_OUT"]),
        (
            "create",
            &[
                "DATA_JSON",
                "--ttl",
                "--silence-read",
                "--host",
                "--port",
                "--unix-socket",
            ],
        ),
        (
            "read",
            &["TOKEN", "metadata", "null", "--unix-socket", "Exit status"],
        ),
        (
            "update",
            &["TOKEN", "DATA_JSON", "--ttl", "--silence-read", "--port"],
        ),
        ("delete", &["TOKEN", "--host", "Exit status"]),
        (
            "stats",
            &["--port", "tokens", "keys", "last_sweep_resealed"],
        ),
        (
            "bench",
            &[
                "--connections",
                "--duration",
                "--mix",
                "--data-size",
                "--warmup",
                "--busy-poll",
                "--port",
            ],
        ),
    ];
    for (command, mentions) in commands {
        let help = run(&[command, "--help"]).expect(0);
        for flag in *mentions {
            assert!(
                help.stdout.contains(flag),
                "`crudjt {command} --help` does not mention {flag}:\n{}",
                help.stdout
            );
        }
    }
    let top = run(&["--help"]).expect(0);
    for command in commands.iter().map(|(c, _)| c) {
        assert!(top.stdout.contains(command), "{}", top.stdout);
    }
    assert!(top.stdout.contains("Exit status"));
}

#[test]
fn keygen_prints_a_fresh_48_byte_key() {
    let first = run(&["keygen"]).expect(0);
    let bytes = STANDARD.decode(first.out()).expect("base64");
    assert_eq!(bytes.len(), 48);
    assert_ne!(run(&["keygen"]).expect(0).out(), first.out());
}

#[test]
fn keygen_out_writes_an_owner_only_file_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let path_arg = path.to_str().unwrap();
    let written = run(&["keygen", "--out", path_arg]).expect(0);
    assert_eq!(written.stdout, "", "the key goes to the file only");
    assert_eq!(mode(&path), 0o600);
    let key = fs::read_to_string(&path).unwrap();
    assert_eq!(STANDARD.decode(key.trim()).unwrap().len(), 48);

    let again = run(&["keygen", "--out", path_arg]).expect(1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(fs::read_to_string(&path).unwrap(), key);
}

#[test]
fn client_commands_print_results_with_scriptable_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let master = Master::with_key(&dir.path().join("store"));

    let limited = master
        .client(&["create", r#"{"user": 42, "roles": ["a"]}"#, "--ttl", "3600"])
        .expect(0);
    let token = limited.out().to_owned();
    assert_eq!(token.len(), 22, "a token is 22 characters: {token:?}");
    let read = json_of(master.client(&["read", &token]).expect(0).out());
    let ttl = read["metadata"]["ttl"].as_u64().unwrap();
    assert!((3599..=3600).contains(&ttl), "{read}");
    assert_eq!(read["metadata"].as_object().unwrap().len(), 1);
    assert_eq!(read["data"], json!({"user": 42, "roles": ["a"]}));

    // Without limits there is no metadata at all.
    let plain = master.client(&["create", r#"{"a": 1}"#]).expect(0);
    let read = master.client(&["read", plain.out()]).expect(0);
    assert_eq!(read.out(), r#"{"data":{"a":1}}"#);

    let update = master.client(&["update", &token, r#"{"b": [1.5, null, true]}"#]);
    assert_eq!(update.expect(0).out(), "true");
    let read = master.client(&["read", &token]).expect(0);
    assert_eq!(read.out(), r#"{"data":{"b":[1.5,null,true]}}"#);

    assert_eq!(master.client(&["delete", &token]).expect(0).out(), "true");
    assert_eq!(master.client(&["read", &token]).expect(1).out(), "null");
    assert_eq!(master.client(&["delete", &token]).expect(1).out(), "false");
    let missing = master.client(&["update", &token, "{}"]).expect(1);
    assert_eq!(missing.out(), "false");
    assert_eq!(
        master.client(&["read", "not-a-token"]).expect(1).out(),
        "null"
    );
    // Tokens are base64url, so one in 64 starts with a hyphen; it is still
    // a token, not a flag.
    let hyphen = "-AAAAAAAAAAAAAAAAAAAAA";
    master.client(&["read", hyphen]).expect(1);
    master.client(&["update", hyphen, "{}"]).expect(1);
    master.client(&["delete", hyphen]).expect(1);

    // A one-time token: the read that spends the budget still returns it.
    let once = master
        .client(&["create", "{}", "--silence-read", "1"])
        .expect(0);
    let read = master.client(&["read", once.out()]).expect(0);
    assert_eq!(read.out(), r#"{"metadata":{"silence_read":0},"data":{}}"#);
    master.client(&["read", once.out()]).expect(1);

    // Data from stdin, and the port from the environment.
    let port = master.port.unwrap().to_string();
    let piped = run_with_stdin(&["create", "-", "--port", &port], r#"{"via": "stdin"}"#);
    let read = run_with(&["read", piped.expect(0).out()], &[("CRUDJT_PORT", &port)]);
    assert_eq!(read.expect(0).out(), r#"{"data":{"via":"stdin"}}"#);
    assert!(
        !master.logs().join("\n").contains(KEY),
        "the key is never logged"
    );
}

#[test]
fn invalid_arguments_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let master = Master::with_key(&dir.path().join("store"));
    let too_large = format!(r#"{{"a": "{}"}}"#, "x".repeat(300));
    let cases: &[(&[&str], &str)] = &[
        (&["create", "{not json"], "not valid JSON"),
        (&["create", "[1, 2]"], "must be a JSON object"),
        (&["create", "{}", "--ttl", "0"], "ttl must be at least 1"),
        (
            &["create", "{}", "--silence-read", "0"],
            "silence_read must be at least 1",
        ),
        (&["create", "{}", "--ttl", "-5"], "unexpected argument"),
        (&["create", &too_large], "the limit is 256"),
        (&["update", "some-token", "7"], "must be a JSON object"),
        (&["read", ""], "token must not be empty"),
        (&["delete", ""], "token must not be empty"),
        (&["read"], "required"),
    ];
    for (args, says) in cases {
        let run = master.client(args).expect(2);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{args:?}");
    }
    let run = master.client(&["create", "{}", "--ttl", "0"]);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[test]
fn an_unreachable_master_exits_3() {
    let port = free_port().to_string();
    for args in [
        &["read", "token", "--port", &port][..],
        &["create", "{}", "--port", &port],
        &["stats", "--port", &port],
        &["bench", "--duration", "1s", "--port", &port],
    ] {
        let run = run(args).expect(3);
        assert!(run.stderr.contains("cannot reach"), "{}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }
    let socket = run(&["read", "token", "--unix-socket", "/nonexistent/crudjt.sock"]);
    socket.expect(3);
}

#[test]
fn stats_prints_the_counters_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let master = Master::start(
        &dir.path().join("store"),
        &["--durability", "always", "--max-data-size", "1024"],
        &[("CRUDJT_SECRET_KEY", KEY)],
    );
    master.client(&["create", "{}"]).expect(0);
    master.client(&["create", "{}"]).expect(0);
    let stats = json_of(master.client(&["stats"]).expect(0).out());
    assert_eq!(stats["tokens"], 2, "{stats}");
    assert_eq!(stats["durability"], "always");
    assert_eq!(stats["max_data_size"], 1024);
    assert!(stats["flushes"].as_u64().unwrap() >= 1, "{stats}");
    for field in [
        "file_bytes",
        "pending_writes",
        "cached_records",
        "last_sweep_unix_ms",
    ] {
        assert!(stats[field].is_u64(), "{field} in {stats}");
    }
}

#[test]
fn serve_without_a_key_makes_one_beside_the_store_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store_jt");
    let key_file = dir.path().join("store_jt.key");

    let first = Master::start(&store, &[], &[]);
    assert_eq!(mode(&key_file), 0o600);
    let key = fs::read_to_string(&key_file).unwrap();
    let logs = first.logs().join("\n");
    assert!(logs.contains("store_jt.key"), "the log says where: {logs}");
    assert!(!logs.contains(key.trim()), "the key is never logged");
    let token = first.client(&["create", r#"{"n": 1}"#]).expect(0);
    // SIGINT stops as cleanly as SIGTERM.
    assert!(first.stop_with(libc::SIGINT).success());

    let second = Master::start(&store, &[], &[]);
    assert_eq!(fs::read_to_string(&key_file).unwrap(), key);
    let read = second.client(&["read", token.out()]).expect(0);
    assert_eq!(read.out(), r#"{"data":{"n":1}}"#);
    second.stop();

    // A store whose key file is gone is not handed a new key it could
    // never open.
    fs::remove_file(&key_file).unwrap();
    let failed = Master::try_start(&store, &[], &[]).err().expect("refused");
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        failed.stderr().contains("exists but its key file"),
        "{}",
        failed.stderr()
    );
    assert!(!key_file.exists());
}

#[test]
fn a_key_file_or_the_environment_gives_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let key_file = dir.path().join("given.key");
    fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let key_arg = key_file.to_str().unwrap();

    let master = Master::start(&store, &["--secret-key-file", key_arg], &[]);
    let token = master.client(&["create", "{}"]).expect(0);
    master.stop();
    let master = Master::start(&store, &[], &[("CRUDJT_SECRET_KEY", KEY)]);
    master.client(&["read", token.out()]).expect(0);
    master.stop();

    let both = Master::try_start(
        &store,
        &["--secret-key-file", key_arg],
        &[("CRUDJT_SECRET_KEY", KEY)],
    );
    let both = both.err().expect("refused");
    assert_eq!(both.status.code(), Some(2));
    assert!(
        both.stderr().contains("give the key one way"),
        "{}",
        both.stderr()
    );

    let bad = Master::try_start(&store, &[], &[("CRUDJT_SECRET_KEY", "c2hvcnQ=")]);
    let bad = bad.err().expect("refused");
    assert_eq!(bad.status.code(), Some(2));
    assert!(bad.stderr().contains("32, 48 or 64"), "{}", bad.stderr());
}

#[test]
fn a_wrong_key_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    Master::with_key(&store).stop();
    let failed = Master::try_start(&store, &[], &[("CRUDJT_SECRET_KEY", OTHER_KEY)])
        .err()
        .expect("refused");
    assert_eq!(failed.status.code(), Some(1));
    let last = failed.logs.last().unwrap();
    assert!(last.starts_with("error: "), "{last}");
    assert!(last.contains("secret key does not match"), "{last}");
    assert!(!failed.stderr().contains(OTHER_KEY) && !failed.stderr().contains(KEY));
}

/// Polls `crudjt stats` until `done` holds for its JSON, which it returns;
/// panics with the last stats after 20 seconds.
fn stats_until(master: &Master, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = json_of(master.client(&["stats"]).expect(0).out());
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "stats never settled: {stats}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The `keys` entry of `stats` for key `number`, without its number.
fn key_usage(stats: &Value, number: usize) -> (bool, bool, u64, u64) {
    let key = &stats["keys"][number];
    assert_eq!(key["number"], number, "{stats}");
    let flag = |name: &str| key[name].as_bool().unwrap();
    let count = |name: &str| key[name].as_u64().unwrap();
    (
        flag("current"),
        flag("given"),
        count("tokens"),
        count("sealed"),
    )
}

#[test]
fn rotating_the_key_keeps_sessions_until_the_old_key_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let old_key_file = dir.path().join("old.key");
    fs::write(&old_key_file, format!("{KEY}\n")).unwrap();
    fs::set_permissions(&old_key_file, fs::Permissions::from_mode(0o600)).unwrap();
    let old_key_arg = old_key_file.to_str().unwrap();

    // Sessions of every kind under the first key.
    let master = Master::with_key(&store);
    let create = |master: &Master, data: &str, limits: &[&str]| {
        let mut args = vec!["create", data];
        args.extend(limits);
        master.client(&args).expect(0).out().to_owned()
    };
    let plain = create(&master, r#"{"n": 1}"#, &[]);
    let lived = create(&master, r#"{"n": 2}"#, &["--ttl", "3600"]);
    let budget = create(&master, r#"{"n": 3}"#, &["--silence-read", "5"]);
    master.stop();

    // The new key alone would strand them, so the master refuses it.
    let new_only = [("CRUDJT_SECRET_KEY", OTHER_KEY)];
    let refused = Master::try_start(&store, &[], &new_only)
        .err()
        .expect("refused");
    assert_eq!(refused.status.code(), Some(1));
    let last = refused.logs.last().unwrap();
    assert!(last.contains("secret key does not match"), "{last}");

    // With the old key beside it, every old token reads as before.
    let rotating = ["--previous-secret-key-file", old_key_arg];
    let master = Master::start(&store, &rotating, &new_only);
    let logs = master.logs().join("\n");
    assert!(logs.contains(r#""previous_keys":1"#), "{logs}");
    assert!(!logs.contains(KEY) && !logs.contains(OTHER_KEY));

    // The sweep at start re-seals the old records under the new key; their
    // tokens still need the old one.
    let stats = stats_until(&master, |stats| {
        stats["last_sweep_unix_ms"] != 0 && key_usage(stats, 0).3 == 0
    });
    assert_eq!(stats["keys"].as_array().unwrap().len(), 2, "{stats}");
    assert_eq!(key_usage(&stats, 0), (false, true, 3, 0), "{stats}");
    assert_eq!(key_usage(&stats, 1), (true, true, 0, 3), "{stats}");
    assert_eq!(stats["last_sweep_resealed"], 3, "{stats}");
    assert_eq!(stats["last_sweep_dropped"], 0, "{stats}");

    let read =
        |master: &Master, token: &str| json_of(master.client(&["read", token]).expect(0).out());
    assert_eq!(read(&master, &plain), json!({"data": {"n": 1}}));
    let ttl = read(&master, &lived)["metadata"]["ttl"].as_u64().unwrap();
    assert!((3500..=3600).contains(&ttl), "{ttl}");
    let spent = read(&master, &budget);
    assert_eq!(
        spent,
        json!({"metadata": {"silence_read": 4}, "data": {"n": 3}})
    );
    let fresh = create(&master, r#"{"n": 4}"#, &[]);
    assert_eq!(read(&master, &fresh), json!({"data": {"n": 4}}));
    let stats = stats_until(&master, |stats| key_usage(stats, 1).2 == 1);
    assert_eq!(key_usage(&stats, 0), (false, true, 3, 0), "{stats}");
    assert_eq!(key_usage(&stats, 1), (true, true, 1, 4), "{stats}");
    master.stop();

    // The previous key can come from the environment too.
    let env = [
        ("CRUDJT_SECRET_KEY", OTHER_KEY),
        ("CRUDJT_PREVIOUS_SECRET_KEYS", KEY),
    ];
    let master = Master::start(&store, &[], &env);
    assert_eq!(read(&master, &plain), json!({"data": {"n": 1}}));
    master.stop();

    // Dropping the old key ends its sessions, and only those.
    let master = Master::start(&store, &[], &new_only);
    for token in [&plain, &lived, &budget] {
        assert_eq!(master.client(&["read", token]).expect(1).out(), "null");
    }
    assert_eq!(read(&master, &fresh), json!({"data": {"n": 4}}));
    let stats = stats_until(&master, |stats| key_usage(stats, 0).2 == 0);
    assert_eq!(key_usage(&stats, 0), (false, false, 0, 0), "{stats}");
    assert_eq!(key_usage(&stats, 1), (true, true, 1, 1), "{stats}");
    assert_eq!(stats["last_sweep_dropped"], 3, "{stats}");
    assert_eq!(stats["tokens"], 1, "{stats}");
    master.stop();
}

#[test]
fn bad_previous_keys_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let good = dir.path().join("good.key");
    fs::write(&good, format!("{OTHER_KEY}\n")).unwrap();
    let not_a_key = dir.path().join("bad.key");
    let secret_looking = "c2hvcnQgYW5kIHNlY3JldA==";
    fs::write(&not_a_key, secret_looking).unwrap();
    let files = format!("{},{}", good.display(), not_a_key.display());
    let key = ("CRUDJT_SECRET_KEY", KEY);

    let in_file = Master::try_start(
        &store,
        &["--previous-secret-key-file", not_a_key.to_str().unwrap()],
        &[key],
    );
    let in_files = Master::try_start(
        &store,
        &[],
        &[key, ("CRUDJT_PREVIOUS_SECRET_KEY_FILES", &files)],
    );
    for failed in [in_file, in_files] {
        let failed = failed.err().expect("refused");
        assert_eq!(failed.status.code(), Some(2));
        let last = failed.logs.last().unwrap();
        let names = format!("previous secret key file {}", not_a_key.display());
        assert!(last.contains(&names) && last.contains("16 bytes"), "{last}");
        assert!(!failed.stderr().contains(secret_looking));
    }

    let listed = format!("{OTHER_KEY},{secret_looking}");
    let in_var = Master::try_start(
        &store,
        &[],
        &[key, ("CRUDJT_PREVIOUS_SECRET_KEYS", &listed)],
    );
    let in_var = in_var.err().expect("refused");
    assert_eq!(in_var.status.code(), Some(2));
    let last = in_var.logs.last().unwrap();
    assert!(
        last.contains("key 2 of 2 in CRUDJT_PREVIOUS_SECRET_KEYS"),
        "{last}"
    );
    let logs = in_var.stderr();
    assert!(!logs.contains(secret_looking) && !logs.contains(OTHER_KEY) && !logs.contains(KEY));

    let missing = dir.path().join("missing.key");
    let gone = Master::try_start(
        &store,
        &["--previous-secret-key-file", missing.to_str().unwrap()],
        &[key],
    );
    let gone = gone.err().expect("refused");
    assert_eq!(gone.status.code(), Some(1), "as for --secret-key-file");
    assert!(
        gone.stderr()
            .contains("cannot read previous secret key file"),
        "{}",
        gone.stderr()
    );
}

#[test]
fn sigterm_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // With an hour between flushes, only the stop itself can save the
    // writes below.
    let slow = ["--flush-interval", "1h"];
    let env = [("CRUDJT_SECRET_KEY", KEY)];
    let master = Master::start(&store, &slow, &env);
    let tokens: Vec<String> = (0..10)
        .map(|i| {
            let data = format!(r#"{{"i": {i}}}"#);
            master.client(&["create", &data]).expect(0).out().to_owned()
        })
        .collect();
    master
        .client(&["update", &tokens[0], r#"{"i": "updated"}"#])
        .expect(0);
    master.client(&["delete", &tokens[1]]).expect(0);
    let status = master.stop_with(libc::SIGTERM);
    assert_eq!(status.code(), Some(0));

    let master = Master::start(&store, &slow, &env);
    let read = master.client(&["read", &tokens[0]]).expect(0);
    assert_eq!(read.out(), r#"{"data":{"i":"updated"}}"#);
    master.client(&["read", &tokens[1]]).expect(1);
    for (i, token) in tokens.iter().enumerate().skip(2) {
        let read = master.client(&["read", token]).expect(0);
        assert_eq!(read.out(), format!(r#"{{"data":{{"i":{i}}}}}"#));
    }
}

#[test]
fn a_busy_store_or_address_fails_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let master = Master::with_key(&store);

    let port = master.port.unwrap().to_string();
    let other = dir.path().join("other");
    let in_use = Master::try_start(&other, &["--port", &port], &[("CRUDJT_SECRET_KEY", KEY)]);
    let in_use = in_use.err().expect("refused");
    assert_eq!(in_use.status.code(), Some(1));
    let last = in_use.logs.last().unwrap();
    assert!(
        last.contains("cannot listen on") && last.contains(&port),
        "{last}"
    );

    let twice = Master::try_start(&store, &[], &[("CRUDJT_SECRET_KEY", KEY)]);
    let twice = twice.err().expect("refused");
    assert_eq!(twice.status.code(), Some(1));
    assert!(
        twice.stderr().contains("already open"),
        "{}",
        twice.stderr()
    );

    let bad = Master::try_start(
        &other,
        &["--max-data-size", "0"],
        &[("CRUDJT_SECRET_KEY", KEY)],
    );
    assert_eq!(bad.err().expect("refused").status.code(), Some(2));
    let bad = Master::try_start(&other, &["--flush-interval", "500"], &[]);
    assert_eq!(bad.err().expect("refused").status.code(), Some(2));
}

#[test]
fn serves_on_a_unix_socket_alone() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("crudjt.sock");
    let socket_arg = socket.to_str().unwrap();
    let master = Master::start(
        &dir.path().join("store"),
        &["--unix-socket", socket_arg, "--no-tcp"],
        &[("CRUDJT_SECRET_KEY", KEY)],
    );
    assert_eq!(master.port, None);
    assert_eq!(mode(&socket), 0o600);
    let token = master.client(&["create", r#"{"s": 1}"#]).expect(0);
    let read = run_with(
        &["read", token.out()],
        &[("CRUDJT_UNIX_SOCKET", socket_arg)],
    );
    assert_eq!(read.expect(0).out(), r#"{"data":{"s":1}}"#);
    master.stop();
    assert!(!socket.exists(), "the socket is removed at stop");

    let no_socket = run(&["serve", "--no-tcp"]).expect(2);
    assert!(
        no_socket.stderr.contains("--unix-socket"),
        "{}",
        no_socket.stderr
    );
}

#[test]
fn bench_reports_throughput_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let master = Master::with_key(&dir.path().join("store"));
    let connect = master.connect_args();
    let mut args = vec![
        "bench",
        "--duration",
        "1500ms",
        "--warmup",
        "0s",
        "--connections",
        "2",
        "--pool",
        "16",
        "--mix",
        "create=1,read=4,update=1,delete=1",
        "--data-size",
        "100",
    ];
    args.extend(connect.iter().map(String::as_str));
    let bench = run(&args).expect(0);
    assert!(bench.stdout.contains("ops/s") && bench.stdout.contains("p99"));
    for row in ["create", "read", "update", "delete", "all"] {
        let line = bench
            .stdout
            .lines()
            .find(|line| line.starts_with(row))
            .unwrap_or_else(|| panic!("no {row} row: {}", bench.stdout));
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns.len(), 8, "{line}");
        assert!(columns[1].parse::<u64>().unwrap() > 0, "{line}");
        assert_eq!(columns[3], "0", "no errors: {line}");
    }
    assert!(
        bench.stderr.contains("ops/s"),
        "a progress line: {}",
        bench.stderr
    );

    let too_big = ["bench", "--data-size", "300", "--duration", "1s"];
    let mut args = too_big.to_vec();
    args.extend(connect.iter().map(String::as_str));
    let refused = run(&args).expect(2);
    assert!(refused.stderr.contains("at most 256"), "{}", refused.stderr);
}

/// CPU time (user and system) the process has used so far.
#[cfg(target_os = "linux")]
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system setting.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
    Duration::from_millis(ticks * 1000 / per_second)
}

#[test]
#[cfg(target_os = "linux")]
fn a_busy_polling_master_serves_and_goes_quiet_when_calls_stop() {
    let dir = tempfile::tempdir().unwrap();
    let master = Master::start(
        &dir.path().join("store"),
        &["--busy-poll", "200us"],
        &[("CRUDJT_SECRET_KEY", KEY)],
    );
    assert!(
        master
            .logs()
            .iter()
            .any(|line| line.contains(r#""busy_poll":"200us""#)),
        "the start-up log names the setting"
    );
    let connect = master.connect_args();
    let mut args = vec![
        "bench",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--connections",
        "1",
        "--pool",
        "8",
        "--mix",
        "create=1,read=4,update=1,delete=1",
        "--busy-poll",
        "200us",
    ];
    args.extend(connect.iter().map(String::as_str));
    let bench = run(&args).expect(0);
    assert!(bench.stdout.contains("busy poll 200us"), "{}", bench.stdout);
    let token = master.client(&["create", r#"{"user_id": 42}"#]).expect(0);
    let read = master.client(&["read", token.out()]).expect(0);
    assert_eq!(json_of(read.out()), json!({"data": {"user_id": 42}}));

    // Idle, it sleeps again: a second without calls costs a few
    // milliseconds of CPU, not the second a spinning thread would burn.
    std::thread::sleep(Duration::from_millis(100));
    let before = cpu_time(master.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_time(master.pid()) - before;
    assert!(
        spent < Duration::from_millis(300),
        "an idle master used {spent:?} of CPU"
    );
    master.stop();
}

#[test]
fn a_busy_polling_window_over_a_second_is_refused() {
    for command in ["serve", "bench"] {
        let refused = run(&[command, "--busy-poll", "2s"]).expect(2);
        assert!(
            refused.stderr.contains("too long: at most 1s"),
            "{}",
            refused.stderr
        );
    }
}
