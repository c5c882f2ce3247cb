"""Helpers for the crudjt Python suite: masters in subprocesses, scripts
run as a user would run them, polling with a deadline.

A master always runs in a process of its own (``Master``), from
``MASTER_SCRIPT``: it opens a store (with ``crudjt.Store`` or with the
``CRUDJT`` facade), serves it on port 0, prints where it listens, and then
obeys one command per line on stdin until stdin is closed, when it shuts
down cleanly.
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import crudjt

#: How long any subprocess may take to start, answer or exit before the
#: test fails instead of hanging.
PROCESS_TIMEOUT = 30.0

MASTER_SCRIPT = r"""
import json, os, sys
import crudjt

opts = json.loads(sys.argv[1])
store_options = opts["store_options"]
if opts["facade"]:
    from crudjt import CRUDJT
    CRUDJT.Config.start_master(
        secret_key=opts["key"], store_jt_path=opts["path"], grpc_host=opts["host"],
        grpc_port=opts["port"], unix_socket=opts["unix_socket"], **store_options)
    store = crudjt.facade._backend
    port = CRUDJT.Config.settings["grpc_port"]
else:
    store = crudjt.Store(opts["key"], opts["path"], **store_options)
    bound = store.serve(opts["host"], opts["port"], opts["unix_socket"])
    port = bound[1] if bound else None
print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)

for line in sys.stdin:
    command = line.strip()
    if command == "flush":
        store.flush()
        print("ok", flush=True)
    elif command.startswith("create "):
        args = json.loads(command[len("create "):])
        print(json.dumps(store.create(*args)), flush=True)
    else:
        print("unknown command " + command, flush=True)

if opts["close"]:
    if opts["facade"]:
        CRUDJT.Config.stop()
    else:
        store.close()
"""


def new_key(nbytes: int = 48) -> str:
    """A secret key as the docs make one."""
    return base64.b64encode(os.urandom(nbytes)).decode()


def read_line(proc: subprocess.Popen[str], timeout: float = PROCESS_TIMEOUT) -> str:
    """The next line ``proc`` prints, or an error when it prints none in
    time or exits."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"process {proc.pid} printed nothing in {timeout} s")
    assert proc.stdout is not None
    return proc.stdout.readline()


class Master:
    """A crudjt master in a subprocess."""

    def __init__(
        self,
        key: str,
        path: Path,
        log: Path,
        *,
        host: str | None = "127.0.0.1",
        port: int = 0,
        unix_socket: Path | None = None,
        facade: bool = False,
        close: bool = True,
        **store_options: Any,
    ) -> None:
        self.key = key
        self.path = path
        self.log = log
        opts = {
            "key": key,
            "path": str(path),
            "host": host,
            "port": port,
            "unix_socket": None if unix_socket is None else str(unix_socket),
            "facade": facade,
            "close": close,
            "store_options": store_options,
        }
        with open(log, "a") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", MASTER_SCRIPT, json.dumps(opts)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        try:
            line = read_line(self.proc)
            if not line:
                self.proc.wait(PROCESS_TIMEOUT)
                raise RuntimeError(f"the master did not start:\n{self.log.read_text()}")
        except BaseException:
            self.cleanup()
            raise
        #: The bound TCP port (``None`` when serving only a Unix socket).
        self.port: int | None = json.loads(line)["port"]

    def command(self, command: str) -> str:
        """Sends one command line and returns the master's answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = read_line(self.proc)
        if not answer:
            raise RuntimeError(f"the master died:\n{self.log.read_text()}")
        return answer.strip()

    def flush(self) -> None:
        """Makes the master commit everything to disk."""
        assert self.command("flush") == "ok"

    def create(self, data: dict[str, Any], ttl: int | None = None,
               silence_read: int | None = None) -> str:
        """Creates a token in the master's own process."""
        return json.loads(self.command("create " + json.dumps([data, ttl, silence_read])))

    def stop(self) -> None:
        """A clean shutdown: closes stdin, so the master closes its store."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        returncode = self.proc.wait(PROCESS_TIMEOUT)
        assert returncode == 0, f"the master failed:\n{self.log.read_text()}"

    def kill(self) -> None:
        """kill -9."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(PROCESS_TIMEOUT)

    def cleanup(self) -> None:
        """Kills the master if it still runs and closes its pipes."""
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()


class Reopenable:
    """A store that can be closed and opened again with the same key, in
    this process or behind a master in another process."""

    def __init__(self, mode: str, key: str, path: Path,
                 start_master: Callable[..., Master]) -> None:
        self.mode = mode
        self.key = key
        self.path = path
        self.start_master = start_master
        self.master: Master | None = None
        self.api: crudjt.Store | crudjt.Client = self._open()

    def _open(self) -> crudjt.Store | crudjt.Client:
        if self.mode == "store":
            return crudjt.Store(self.key, self.path)
        self.master = self.start_master(self.key, self.path)
        return crudjt.Client(port=self.master.port)

    def close(self) -> None:
        # The client goes first: a master waits for open connections when
        # it shuts down.
        self.api.close()
        if self.master is not None:
            self.master.stop()
            self.master = None

    def reopen(self) -> crudjt.Store | crudjt.Client:
        self.close()
        self.api = self._open()
        return self.api


def run_python(
    source: str,
    *args: str,
    cwd: Path | None = None,
    timeout: float = PROCESS_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Runs ``source`` (dedented) in a fresh interpreter, as a user would
    run a script, and returns what it printed. Fails the test with the
    script's stderr when it exits non-zero (unless ``check`` is false)."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"script exited with {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def json_lines(output: str) -> list[Any]:
    """Each line of ``output`` parsed as JSON."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0,
               interval: float = 0.02) -> Any:
    """Polls ``predicate`` until it returns something true; returns that,
    or fails when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port nothing listens on (at the moment of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
