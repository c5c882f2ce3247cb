"""Threads: one Store or one Client shared by many threads, and the GIL
released while a call waits on the network."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

from helpers import PROCESS_TIMEOUT, read_line

THREADS = 8
ROUNDS = 40


def test_many_threads_share_one_store_or_client(api):
    """8 threads create, read, update and delete their own tokens through
    one object at once; every result is the thread's own and correct."""
    errors: list[BaseException] = []
    tokens: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(ROUNDS):
                data = {"thread": n, "round": i, "blob": b"\x00" * (i % 7)}
                token = api.create(data, ttl=3600, silence_read=5)
                result = api.read(token)
                assert result == {"metadata": {"ttl": 3600, "silence_read": 4}, "data": data}
                new = {"thread": n, "round": i, "updated": [n, i]}
                assert api.update(token, new, silence_read=2) is True
                assert api.read(token) == {"metadata": {"silence_read": 1}, "data": new}
                if i % 2:
                    assert api.delete(token) is True
                    assert api.read(token) is None
                    assert api.delete(token) is False
                else:
                    assert api.read(token) == {"metadata": {"silence_read": 0}, "data": new}
                    assert api.read(token) is None
                with lock:
                    tokens.append(token)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROCESS_TIMEOUT)
        assert not thread.is_alive(), "a worker thread hung"
    if errors:
        raise errors[0]
    assert len(tokens) == len(set(tokens)) == THREADS * ROUNDS


def test_many_threads_reading_one_token_share_its_budget(api):
    """Threads racing to read one token with silence_read=5: exactly 5
    reads succeed, seeing 4, 3, 2, 1, 0 once each."""
    token = api.create({"hot": True}, silence_read=5)
    seen: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def reader() -> None:
        start.wait()
        for _ in range(3):
            result = api.read(token)
            if result is not None:
                with lock:
                    seen.append(result["metadata"]["silence_read"])

    threads = [threading.Thread(target=reader) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROCESS_TIMEOUT)
        assert not thread.is_alive()
    assert sorted(seen) == [0, 1, 2, 3, 4]


BLOCKED_CLIENT_SCRIPT = """
import sys, threading, time
import crudjt

client = crudjt.Client("127.0.0.1", int(sys.argv[1]))
outcome = {}

def call():
    try:
        outcome["result"] = client.read("A" * 22)
    except BaseException as e:
        outcome["error"] = e

blocked = threading.Thread(target=call, daemon=True)
blocked.start()
sys.stdin.readline()  # the test saw the connection arrive

# Python keeps running here while the call waits on the network.
lock, event, count = threading.Lock(), threading.Event(), 0
deadline = time.monotonic() + 0.3
while time.monotonic() < deadline:
    with lock:
        count += 1
event.set()
print("counted", count, "blocked", blocked.is_alive(), flush=True)

sys.stdin.readline()  # the test closed the server
blocked.join(20)
if blocked.is_alive():
    print("still blocked", flush=True)
elif "error" in outcome:
    print("raised", type(outcome["error"]).__name__, flush=True)
else:
    print("returned", outcome["result"], flush=True)
"""


def close_server(server: socket.socket, connections: list[socket.socket]) -> None:
    """Closes a listening socket (waking a thread blocked in accept) and
    every connection it accepted."""
    try:
        server.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed
    server.close()
    for conn in connections:
        conn.close()


def test_gil_is_released_while_a_client_call_waits_on_the_network():
    """A call to a server that accepts and never answers blocks only its
    own thread: the process's other threads keep running Python. When the
    server goes away the call fails with MasterUnavailable or
    InternalError instead of hanging. (The client runs in a subprocess, so
    that a call holding the GIL fails this test instead of hanging it.)"""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    connections: list[socket.socket] = []
    accepted = threading.Event()

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            connections.append(conn)
            accepted.set()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCKED_CLIENT_SCRIPT, str(server.getsockname()[1])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert accepted.wait(PROCESS_TIMEOUT), "the client never connected"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        counted = read_line(proc, timeout=10).split()
        assert counted[:1] == ["counted"], counted
        assert int(counted[1]) > 0
        assert counted[2:] == ["blocked", "True"]

        close_server(server, connections)
        proc.stdin.write("closed\n")
        proc.stdin.flush()
        outcome = read_line(proc, timeout=PROCESS_TIMEOUT).split()
        assert outcome in (["raised", "MasterUnavailable"], ["raised", "InternalError"]), outcome
        assert proc.wait(PROCESS_TIMEOUT) == 0
    finally:
        close_server(server, connections)
        acceptor.join(5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()
