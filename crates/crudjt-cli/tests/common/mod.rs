//! Helpers for tests that run the real `crudjt` binary: a master on a free
//! port with its own store, client commands against it, and their output.
//!
//! Every child runs without the caller's `CRUDJT_*` and `RUST_LOG`
//! variables, so a developer's environment cannot change what a test sees.

// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A valid key: base64 of the 48 bytes 0, 1, ..., 47.
pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v";
/// Another valid key: base64 of the 48 bytes 100, 101, ..., 147.
pub const OTHER_KEY: &str = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoOEhYaHiImKi4yNjo+QkZKT";

/// How long a master may take to start or stop before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// The `crudjt` binary with a clean environment.
pub fn crudjt() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crudjt"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CRUDJT_") || name == "RUST_LOG" {
            command.env_remove(&*name);
        }
    }
    command
}

/// What a finished command printed, and how it exited.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The exit code; panics if a signal ended the command.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }

    /// Stdout without its trailing newline.
    pub fn out(&self) -> &str {
        self.stdout.trim_end()
    }

    /// Panics unless the command exited with `code`.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(self.code(), code, "unexpected exit: {self:?}");
        self
    }
}

/// Runs `crudjt ARGS` with `env` added, and waits for it.
pub fn run_with(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = crudjt()
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the crudjt binary runs");
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `crudjt ARGS` and waits for it.
pub fn run(args: &[&str]) -> Run {
    run_with(args, &[])
}

/// Runs `crudjt ARGS` with `input` on stdin.
pub fn run_with_stdin(args: &[&str], input: &str) -> Run {
    let mut child = crudjt()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the crudjt binary runs");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(input.as_bytes())
        .expect("stdin takes the input");
    drop(stdin);
    let output = child
        .wait_with_output()
        .expect("the crudjt binary finishes");
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A TCP port that nothing listened on a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A master that failed to start: how it exited and what it logged.
#[derive(Debug)]
pub struct Failed {
    pub status: ExitStatus,
    pub logs: Vec<String>,
}

impl Failed {
    /// Every log line, joined.
    pub fn stderr(&self) -> String {
        self.logs.join("\n")
    }
}

/// What the reader of the master's stderr saw.
enum Event {
    Listening {
        tcp: Option<String>,
        socket: Option<String>,
    },
    Closed,
}

/// A running `crudjt serve`. Dropping it kills the process.
pub struct Master {
    child: Option<Child>,
    /// The store directory.
    pub store: PathBuf,
    /// The bound TCP port, unless it serves only on a socket.
    pub port: Option<u16>,
    /// The Unix socket, if it serves on one.
    pub socket: Option<PathBuf>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Master {
    /// Starts `crudjt serve --store-path STORE --log-format json ARGS` with
    /// `env` added, on a port of its own choosing (`--port 0`) unless
    /// `args` name a port or `--no-tcp`, and waits until it listens.
    ///
    /// Panics, showing the master's logs, if it does not start.
    pub fn start(store: &Path, args: &[&str], env: &[(&str, &str)]) -> Master {
        Master::try_start(store, args, env)
            .unwrap_or_else(|failed| panic!("the master did not start: {failed:#?}"))
    }

    /// A master with the store at `store` and [`KEY`].
    pub fn with_key(store: &Path) -> Master {
        Master::start(store, &[], &[("CRUDJT_SECRET_KEY", KEY)])
    }

    /// As [`Master::start`], but a master that exits before it listens is
    /// returned as [`Failed`].
    pub fn try_start(store: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Master, Failed> {
        let mut command = crudjt();
        command
            .arg("serve")
            .arg("--store-path")
            .arg(store)
            .args(["--log-format", "json"]);
        if !args.iter().any(|a| *a == "--port" || *a == "--no-tcp") {
            command.args(["--port", "0"]);
        }
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the crudjt binary runs");
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (events, ready) = mpsc::channel();
        let lines = logs.clone();
        // The reader keeps draining after the master is ready, so that a
        // chatty master never blocks on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let event = listening(&line);
                lines.lock().unwrap().push(line);
                if let Some(event) = event {
                    let _ = events.send(event);
                }
            }
            let _ = events.send(Event::Closed);
        });
        let logs_now = |logs: &Arc<Mutex<Vec<String>>>| logs.lock().unwrap().clone();
        match ready.recv_timeout(PATIENCE) {
            Ok(Event::Listening { tcp, socket }) => Ok(Master {
                child: Some(child),
                store: store.to_owned(),
                port: tcp.map(|addr| {
                    let port = addr.rsplit(':').next().expect("an address has a port");
                    port.parse().expect("the port is a number")
                }),
                socket: socket.map(PathBuf::from),
                logs,
            }),
            Ok(Event::Closed) => {
                let status = child.wait().expect("the master is reaped");
                // The reader has sent Closed, so every line is in.
                Err(Failed {
                    status,
                    logs: logs_now(&logs),
                })
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the master did not listen within {PATIENCE:?}: {:#?}",
                    logs_now(&logs)
                );
            }
        }
    }

    /// The arguments that point a client command at this master.
    pub fn connect_args(&self) -> Vec<String> {
        match (self.port, &self.socket) {
            (Some(port), _) => vec!["--port".into(), port.to_string()],
            (None, Some(socket)) => vec!["--unix-socket".into(), socket.display().to_string()],
            (None, None) => unreachable!("a master listens somewhere"),
        }
    }

    /// Runs a client command (`create`, `read`, ...) against this master.
    pub fn client(&self, args: &[&str]) -> Run {
        let connect = self.connect_args();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(connect.iter().map(String::as_str));
        run(&all)
    }

    /// Every line the master has logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The master's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the master runs").id()
    }

    /// Sends `signal` (`libc::SIGTERM`, ...) and waits for the master to
    /// exit.
    pub fn stop_with(mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("the master runs");
        let pid = i32::try_from(child.id()).expect("a pid fits an i32");
        // SAFETY: kill(2) takes no pointers; the pid is our own child, not
        // yet reaped, so it cannot name another process.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "the signal is delivered");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("the master is reaped") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the master did not stop within {PATIENCE:?}: {:#?}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the master with SIGTERM and asserts that it exits 0.
    pub fn stop(self) {
        let logs = self.logs.clone();
        let status = self.stop_with(libc::SIGTERM);
        assert!(
            status.success(),
            "the master exited with {status}: {:#?}",
            logs.lock().unwrap()
        );
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The addresses in a JSON "listening" log line.
fn listening(line: &str) -> Option<Event> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = event.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    let text = |name: &str| fields.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    Some(Event::Listening {
        tcp: text("tcp"),
        socket: text("unix_socket"),
    })
}
