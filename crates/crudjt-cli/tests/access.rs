//! Who may reach the master: the Unix socket's file mode and its peer
//! credential rules, and the cap on connections, through the real
//! `crudjt serve`.

mod common;

use std::io::{ErrorKind, Read};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crudjt::Limits;
use crudjt_grpc::{Client, ClientError, Target};

/// `{"a": 1}` as MessagePack.
const DATA: &[u8] = &[0x81, 0xa1, b'a', 0x01];

fn serve_on_socket(dir: &std::path::Path, extra: &[&str]) -> (common::Master, std::path::PathBuf) {
    let path = dir.join("crudjt.sock");
    let mut args = vec!["--no-tcp", "--unix-socket", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let env = [("CRUDJT_SECRET_KEY", common::KEY)];
    (common::Master::start(&dir.join("store"), &args, &env), path)
}

/// This process's user and group ids, as the owner of a file it made.
fn my_ids(dir: &std::path::Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.join("probe");
    std::fs::write(&probe, b"").unwrap();
    let meta = std::fs::metadata(&probe).unwrap();
    (meta.uid(), meta.gid())
}

#[test]
fn the_socket_mode_is_the_one_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (master, path) = serve_on_socket(dir.path(), &["--unix-socket-mode", "660"]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    master.stop();

    let run = common::run(&[
        "serve",
        "--unix-socket",
        "x.sock",
        "--unix-socket-mode",
        "999",
    ]);
    assert_eq!(run.code(), 2, "{}", run.out());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_peer_is_served_and_any_other_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (uid, gid) = my_ids(dir.path());

    // Allowed by user id.
    let allowed = uid.to_string();
    let (master, path) = serve_on_socket(dir.path(), &["--unix-socket-allow-uid", &allowed]);
    let client = Client::connect(Target::Unix(path.clone())).await.unwrap();
    let token = client.create(DATA, Limits::NONE).await.unwrap();
    assert_eq!(client.read(&token).await.unwrap().unwrap().data, DATA);
    drop(client);
    master.stop();

    // Allowed by group id, with a user list that does not match.
    let others = (uid + 1).to_string();
    let group = gid.to_string();
    let extra = [
        "--unix-socket-allow-uid",
        &others,
        "--unix-socket-allow-gid",
        &group,
    ];
    let (master, path) = serve_on_socket(dir.path(), &extra);
    let client = Client::connect(Target::Unix(path.clone())).await.unwrap();
    assert!(client.read(&token).await.unwrap().is_some());
    drop(client);
    master.stop();

    // Neither matches: the connection is closed before any call, and the
    // master logs who tried.
    let extra = ["--unix-socket-allow-uid", &others];
    let (master, path) = serve_on_socket(dir.path(), &extra);
    let refused = match Client::connect(Target::Unix(path.clone())).await {
        Ok(client) => client.read(&token).await.err(),
        Err(err) => Some(err),
    };
    let err = refused.expect("a peer that is not allowed was served");
    assert!(matches!(err, ClientError::NotConnected { .. }), "{err:?}");
    let who = format!("\"uid\":{uid}");
    let logged = || {
        master
            .logs()
            .iter()
            .any(|line| line.contains("refused a unix socket peer") && line.contains(&who))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !logged() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(logged(), "the refusal was not logged: {:?}", master.logs());
    master.stop();
}

#[test]
fn a_network_address_needs_an_explicit_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store_arg = store.to_str().unwrap();
    let env = [("CRUDJT_SECRET_KEY", common::KEY)];
    let args = [
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--store-path",
        store_arg,
    ];
    let refused = common::run_with(&args, &env);
    assert_eq!(refused.code(), 2, "{refused:?}");
    assert!(
        refused.stderr.contains("--allow-insecure-remote"),
        "{refused:?}"
    );
    assert!(!store.exists(), "a refused start touched the store");

    let args = ["--host", "0.0.0.0", "--allow-insecure-remote"];
    let master = common::Master::start(&store, &args, &env);
    let warned = master
        .logs()
        .iter()
        .any(|line| line.contains("serving to the network without TLS"));
    assert!(warned, "no warning logged: {:?}", master.logs());
    master.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("CRUDJT_SECRET_KEY", common::KEY)];
    let args = ["--max-connections", "2"];
    let master = common::Master::start(&dir.path().join("store"), &args, &env);
    let target = Target::Tcp {
        host: "127.0.0.1".into(),
        port: master.port.unwrap(),
    };

    let first = Client::connect(target.clone()).await.unwrap();
    let second = Client::connect(target.clone()).await.unwrap();
    let token = first.create(DATA, Limits::NONE).await.unwrap();
    assert!(second.read(&token).await.unwrap().is_some());

    let third = Client::connect(target.clone()).await.unwrap();
    let err = third.read(&token).await.unwrap_err();
    assert!(matches!(err, ClientError::Busy { .. }), "{err:?}");
    // The two admitted clients are unaffected.
    assert!(first.read(&token).await.unwrap().is_some());
    assert!(second.read(&token).await.unwrap().is_some());

    // Once a slot is free, the refused client gets it by itself: the
    // master soon closes the refused connection, and the client connects
    // again.
    drop(second);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match third.read(&token).await {
            Ok(found) => {
                assert!(found.is_some());
                break;
            }
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(err) => panic!("the refused client never got the free slot: {err}"),
        }
    }
    let logged = master
        .logs()
        .iter()
        .any(|line| line.contains("refused a connection"));
    assert!(logged, "the refusal was not logged");
    master.stop();
}

/// The answer a client over `--max-connections 1` gets.
const BUSY: &str = "the master holds its limit of 1 connection; try again later";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_the_limit_is_told_why() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("CRUDJT_SECRET_KEY", common::KEY)];
    let args = ["--max-connections", "1"];
    let master = common::Master::start(&dir.path().join("store"), &args, &env);
    let port = master.port.unwrap();
    let target = Target::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    let held = Client::connect(target.clone()).await.unwrap();
    let token = held.create(DATA, Limits::NONE).await.unwrap();

    // The Rust client: a call fails as `Busy`, with the master's reason.
    let refused = Client::connect(target.clone()).await.unwrap();
    let err = refused.read(&token).await.unwrap_err();
    assert!(matches!(err, ClientError::Busy { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("the crudjt master at 127.0.0.1:{port} is busy: {BUSY}")
    );

    // The CLI: the same words, and the exit status of an unreachable master.
    let run = master.client(&["read", &token]);
    assert_eq!(run.code(), 3, "{run:?}");
    assert!(run.stderr.contains(BUSY), "{run:?}");

    // The held connection keeps working.
    assert_eq!(held.read(&token).await.unwrap().unwrap().data, DATA);
    let changed = [0x81, 0xa1, b'a', 0x02];
    assert!(held.update(&token, &changed, Limits::NONE).await.unwrap());
    master.stop();
}

#[test]
fn refused_connections_are_capped_and_closed_soon() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("CRUDJT_SECRET_KEY", common::KEY)];
    let args = ["--max-connections", "1"];
    let master = common::Master::start(&dir.path().join("store"), &args, &env);
    let address = ("127.0.0.1", master.port.unwrap());

    // Silent connections: the first takes the slot, the master answers
    // the next 32 for a short while, and closes the rest at once.
    let slot = std::net::TcpStream::connect(address).unwrap();
    let mut silent: Vec<_> = (0..100)
        .map(|_| std::net::TcpStream::connect(address).unwrap())
        .collect();
    let unanswered = || {
        master
            .logs()
            .iter()
            .any(|line| line.contains("closed a connection unanswered"))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !unanswered() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(unanswered(), "refused connections are not capped");

    // Even a refused client that never says a word is closed, long before
    // this read gives up.
    let mut refused = silent.swap_remove(0);
    refused
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut sent = Vec::new();
    if let Err(err) = refused.read_to_end(&mut sent) {
        let open = matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
        assert!(!open, "a refused connection stayed open");
    }
    drop(silent);

    // Once the slot is free again, the master serves as before.
    drop(slot);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = master.client(&["create", "{}"]);
        if run.code() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot never came free: {run:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    master.stop();
}
