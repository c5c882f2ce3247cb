"""Several processes around one master: connecting, read budgets shared by
every process and thread, crashes (kill -9), interpreter exit, fork, the
Unix socket, and a master restarting under a client."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
import threading
from collections import defaultdict

import pytest

import crudjt
from crudjt.errors import InternalError, InvalidState, MasterUnavailable
from helpers import PROCESS_TIMEOUT, json_lines, read_line, run_python, wait_until


def test_second_process_uses_the_master_through_the_facade(tmp_path, secret_key, start_master):
    """A master started with CRUDJT.Config.start_master and a process that
    calls CRUDJT.Config.connect_to_master see the same tokens."""
    master = start_master(secret_key, tmp_path / "store", facade=True)
    from_master = master.create({"made_by": "master"}, None, 5)

    out = run_python(
        """
        import json, sys
        from crudjt import CRUDJT
        CRUDJT.Config.connect_to_master(grpc_host="127.0.0.1", grpc_port=int(sys.argv[1]))
        token = CRUDJT.create({"made_by": "client", "n": [1, 2]}, ttl=3600, silence_read=4)
        print(json.dumps({
            "was_started": CRUDJT.Config.was_started(),
            "master": CRUDJT.Config.master(),
            "read_master_token": CRUDJT.read(sys.argv[2]),
            "token": token,
            "read": CRUDJT.read(token),
            "update": CRUDJT.update(token, {"made_by": "client", "updated": True},
                                    silence_read=10),
            "missing": CRUDJT.read("A" * 22),
        }))
        """,
        str(master.port),
        from_master,
    ).stdout
    result = json.loads(out)
    assert result["was_started"] is True
    assert result["master"] is False
    assert result["read_master_token"] == {
        "metadata": {"silence_read": 4}, "data": {"made_by": "master"}
    }
    assert result["read"] == {
        "metadata": {"ttl": 3600, "silence_read": 3}, "data": {"made_by": "client", "n": [1, 2]}
    }
    assert result["update"] is True
    assert result["missing"] is None

    with crudjt.Client(port=master.port) as client:
        assert client.read(result["token"]) == {
            "metadata": {"silence_read": 9}, "data": {"made_by": "client", "updated": True}
        }
        assert client.read(from_master)["metadata"] == {"silence_read": 3}
    master.stop()


READER_SCRIPT = """
import json, random, sys, threading
from crudjt import CRUDJT

port, threads = int(sys.argv[1]), int(sys.argv[2])
tokens = json.loads(sys.stdin.readline())
CRUDJT.Config.connect_to_master(grpc_port=port)
CRUDJT.read("A" * 22)  # connected before the race starts
seen, lock = [], threading.Lock()
go = threading.Event()

def reader():
    order = list(tokens)
    random.shuffle(order)
    go.wait()
    for token in order:
        result = CRUDJT.read(token)
        if result is not None:
            with lock:
                seen.append([token, result["metadata"]["silence_read"]])

workers = [threading.Thread(target=reader) for _ in range(threads)]
for w in workers:
    w.start()
print("ready", flush=True)
sys.stdin.readline()
go.set()
for w in workers:
    w.join()
print(json.dumps(seen), flush=True)
"""


def test_read_budget_holds_across_processes_and_threads(shared_master):
    """One-time tokens (silence_read=1) and tokens with 3 reads, read at
    once by 3 processes with 4 threads each and 4 threads here: exactly
    the budget's number of reads succeed, each seeing a different count."""
    budgets = {}
    with crudjt.Client(port=shared_master.port) as client:
        for budget in (1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3):
            budgets[client.create({"budget": budget}, silence_read=budget)] = budget
        tokens = list(budgets)

        procs = [
            subprocess.Popen(
                [sys.executable, "-c", READER_SCRIPT, str(shared_master.port), "4"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            for _ in range(3)
        ]
        try:
            for proc in procs:
                proc.stdin.write(json.dumps(tokens) + "\n")
                proc.stdin.flush()
            for proc in procs:
                assert read_line(proc).strip() == "ready"

            seen: list[tuple[str, int]] = []
            errors: list[BaseException] = []
            lock = threading.Lock()
            go = threading.Event()

            def reader() -> None:
                order = random.sample(tokens, len(tokens))
                go.wait()
                try:
                    for token in order:
                        result = client.read(token)
                        if result is not None:
                            with lock:
                                seen.append((token, result["metadata"]["silence_read"]))
                except BaseException as e:  # reported below
                    errors.append(e)

            local = [threading.Thread(target=reader) for _ in range(4)]
            for thread in local:
                thread.start()
            for proc in procs:
                proc.stdin.write("go\n")
                proc.stdin.flush()
            go.set()
            for thread in local:
                thread.join(PROCESS_TIMEOUT)
                assert not thread.is_alive()
            assert not errors
            for proc in procs:
                seen.extend(tuple(pair) for pair in json.loads(read_line(proc)))
                assert proc.wait(PROCESS_TIMEOUT) == 0
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdin.close()
                proc.stdout.close()

        reads = defaultdict(list)
        for token, left in seen:
            reads[token].append(left)
        for token, budget in budgets.items():
            assert sorted(reads[token]) == list(range(budget)), (token, budget)
            assert client.read(token) is None
        assert len(seen) == sum(budgets.values())


@pytest.mark.parametrize("how", ["flush", "flusher"])
def test_flushed_tokens_survive_kill_9(tmp_path, secret_key, start_master, how):
    """Tokens created, read and deleted before a flush (an explicit
    ``flush()``, or the background flusher's interval passing) are intact
    after kill -9 and a restart with the same key."""
    path = tmp_path / "store"
    # With an explicit flush the flusher is set never to run by itself.
    master = start_master(secret_key, path, flush_interval=3600 if how == "flush" else 0.2)
    with crudjt.Client(port=master.port) as client:
        plain = [client.create({"i": i, "s": "é" * i}) for i in range(50)]
        budget = client.create({"b": 1}, ttl=3600, silence_read=3)
        assert client.read(budget)["metadata"]["silence_read"] == 2
        updated = client.create({"v": 1})
        assert client.update(updated, {"v": 2}) is True
        deleted = client.create({"d": 1})
        assert client.delete(deleted) is True
        if how == "flush":
            master.flush()
        else:
            wait_until(lambda: client.stats()["pending_writes"] == 0, timeout=10)
        master.kill()

    master = start_master(secret_key, path)
    with crudjt.Client(port=master.port) as client:
        for i, token in enumerate(plain):
            assert client.read(token) == {"data": {"i": i, "s": "é" * i}}
        result = client.read(budget)
        assert result["data"] == {"b": 1}
        assert result["metadata"]["silence_read"] == 1
        assert client.read(updated) == {"data": {"v": 2}}
        assert client.read(deleted) is None
    master.stop()


def test_always_durability_keeps_every_acknowledged_write_after_kill_9(
    tmp_path, secret_key, start_master
):
    """With durability="always" (and a flusher that would never run),
    every create, read and delete that returned is on disk: kill -9 right
    after the last one loses nothing."""
    path = tmp_path / "store"
    master = start_master(secret_key, path, durability="always", flush_interval=3600)
    created: dict[str, dict[str, int]] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []
    with crudjt.Client(port=master.port) as client:

        def writer(n: int) -> None:
            try:
                for i in range(25):
                    data = {"writer": n, "i": i}
                    token = client.create(data)
                    with lock:
                        created[token] = data
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PROCESS_TIMEOUT)
        assert not errors
        spent = client.create({"spent": 1}, silence_read=2)
        assert client.read(spent)["metadata"]["silence_read"] == 1
        deleted = client.create({"deleted": 1})
        assert client.delete(deleted) is True
        last = client.create({"last": 1})
        master.kill()

    master = start_master(secret_key, path)
    with crudjt.Client(port=master.port) as client:
        assert len(created) == 100
        for token, data in created.items():
            assert client.read(token) == {"data": data}
        assert client.read(spent) == {"metadata": {"silence_read": 0}, "data": {"spent": 1}}
        assert client.read(spent) is None
        assert client.read(deleted) is None
        assert client.read(last) == {"data": {"last": 1}}
    master.stop()


EXIT_SCRIPTS = {
    "facade": """
        import json, sys
        import crudjt
        CRUDJT.Config.start_master(secret_key=sys.argv[1], store_jt_path=sys.argv[2],
                                   grpc_port=0, flush_interval=3600)
        tokens = [CRUDJT.create({"i": i}, ttl=3600) for i in range(20)]
        gone = CRUDJT.create({"gone": 1})
        CRUDJT.delete(gone)
        print(json.dumps({"tokens": tokens, "gone": gone}))
        """,
    "store": """
        import json, sys
        import crudjt
        store = crudjt.Store(sys.argv[1], sys.argv[2], flush_interval=3600)
        store.serve(port=0)
        tokens = [store.create({"i": i}, ttl=3600) for i in range(20)]
        gone = store.create({"gone": 1})
        store.delete(gone)
        print(json.dumps({"tokens": tokens, "gone": gone}))
        """,
    "sys_exit": """
        import json, sys
        import crudjt
        CRUDJT.Config.start_master(secret_key=sys.argv[1], store_jt_path=sys.argv[2],
                                   grpc_port=0, flush_interval=3600)
        tokens = [CRUDJT.create({"i": i}, ttl=3600) for i in range(20)]
        gone = CRUDJT.create({"gone": 1})
        CRUDJT.delete(gone)
        print(json.dumps({"tokens": tokens, "gone": gone}))
        sys.exit(3)
        """,
}


@pytest.mark.parametrize("script", EXIT_SCRIPTS.values(), ids=EXIT_SCRIPTS.keys())
def test_interpreter_exit_flushes_the_store(tmp_path, secret_key, script):
    """A script that ends without stop() or close() (its flusher set to
    run only hourly) leaves every token on disk for the next process."""
    path = tmp_path / "store"
    proc = run_python(script, secret_key, str(path), check=False)
    assert proc.returncode == (3 if "sys.exit(3)" in script else 0), proc.stderr
    assert proc.stderr == ""
    written = json.loads(proc.stdout)
    with crudjt.Store(secret_key, path) as store:
        for i, token in enumerate(written["tokens"]):
            result = store.read(token)
            assert result["data"] == {"i": i}
            assert 3590 <= result["metadata"]["ttl"] <= 3600
        assert store.read(written["gone"]) is None


def test_forked_child_of_the_master_must_connect(tmp_path, secret_key):
    """A child forked from the master gets InvalidState (with a hint to
    connect) from the parent's store, may then connect_to_master and use
    it; the child's exit leaves the parent's store working."""
    out = run_python(
        """
        import json, os, sys
        import crudjt
        from crudjt.errors import InvalidState
        CRUDJT.Config.start_master(secret_key=sys.argv[1], store_jt_path=sys.argv[2],
                                   grpc_port=0)
        port = CRUDJT.Config.settings["grpc_port"]
        token = CRUDJT.create({"from": "parent"}, silence_read=10)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            child = {"was_started": CRUDJT.Config.was_started(),
                     "master": CRUDJT.Config.master(), "errors": []}
            for call in (lambda: CRUDJT.read(token),
                         lambda: CRUDJT.create({"a": 1}),
                         lambda: CRUDJT.update(token, {"a": 1}),
                         lambda: CRUDJT.delete(token)):
                try:
                    call()
                    child["errors"].append(None)
                except InvalidState as e:
                    child["errors"].append(str(e))
            CRUDJT.Config.connect_to_master(grpc_port=port)
            child["connected"] = CRUDJT.Config.was_started()
            child["read"] = CRUDJT.read(token)
            child["token"] = CRUDJT.create({"from": "child"})
            print(json.dumps(child), flush=True)
            sys.exit(0)  # a normal exit, atexit handlers included
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": os.waitstatus_to_exitcode(status),
                          "parent_read": CRUDJT.read(token),
                          "master": CRUDJT.Config.master()}))
        """,
        secret_key,
        str(tmp_path / "store"),
    ).stdout
    child, parent = json_lines(out)
    assert child["was_started"] is False
    assert child["master"] is False
    assert len(child["errors"]) == 4
    for message in child["errors"]:
        assert message is not None and "forked" in message and "connect_to_master" in message
    assert child["connected"] is True
    assert child["read"] == {"metadata": {"silence_read": 9}, "data": {"from": "parent"}}
    assert parent == {
        "status": 0,
        "parent_read": {"metadata": {"silence_read": 8}, "data": {"from": "parent"}},
        "master": True,
    }
    with crudjt.Store(secret_key, tmp_path / "store") as store:
        assert store.read(child["token"]) == {"data": {"from": "child"}}


def test_forked_child_of_a_connected_process_keeps_its_connection(
    secret_key, shared_master
):
    """A connected process that forks: the child's calls go to the master
    over a connection of its own, and the parent's keeps working."""
    out = run_python(
        """
        import json, os, sys
        from crudjt import CRUDJT
        CRUDJT.Config.connect_to_master(grpc_port=int(sys.argv[1]))
        token = CRUDJT.create({"a": 1}, silence_read=5)
        CRUDJT.read(token)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            print(json.dumps(["child", CRUDJT.Config.was_started(), CRUDJT.read(token)]),
                  flush=True)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(json.dumps(["parent", os.waitstatus_to_exitcode(status), CRUDJT.read(token)]))
        """,
        str(shared_master.port),
    ).stdout
    assert json_lines(out) == [
        ["child", True, {"metadata": {"silence_read": 3}, "data": {"a": 1}}],
        ["parent", 0, {"metadata": {"silence_read": 2}, "data": {"a": 1}}],
    ]


def test_unix_socket_serves_with_mode_0600(short_tmp, secret_key, start_master):
    """start_master(unix_socket=...) serves on a socket file only its owner
    can use (mode 0600), reachable with Client(unix_socket=...) and with
    connect_to_master(unix_socket=...); a clean stop removes it."""
    sock = short_tmp / "m.sock"
    master = start_master(secret_key, short_tmp / "store", facade=True, unix_socket=sock)
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

    with crudjt.Client(unix_socket=sock) as client:
        token = client.create({"over": "unix"}, silence_read=3)
        assert client.read(token) == {"metadata": {"silence_read": 2}, "data": {"over": "unix"}}
    with crudjt.Client(port=master.port) as client:
        assert client.read(token)["metadata"] == {"silence_read": 1}

    out = run_python(
        """
        import sys
        from crudjt import CRUDJT
        CRUDJT.Config.connect_to_master(unix_socket=sys.argv[1])
        print(CRUDJT.read(sys.argv[2]))
        """,
        str(sock),
        token,
    ).stdout
    assert out.strip() == "{'metadata': {'silence_read': 0}, 'data': {'over': 'unix'}}"

    master.stop()
    assert not sock.exists()


def test_unix_socket_only_master(short_tmp, secret_key, start_master):
    """grpc_host=None serves no TCP at all, only the Unix socket."""
    sock = short_tmp / "only.sock"
    master = start_master(secret_key, short_tmp / "store", facade=True, host=None,
                          unix_socket=sock)
    assert master.port is None
    with crudjt.Client(unix_socket=sock) as client:
        token = client.create({"a": 1})
        assert client.read(token) == {"data": {"a": 1}}
    master.stop()


def test_client_keeps_working_after_the_master_restarts_on_the_same_port(
    tmp_path, secret_key, start_master
):
    """While the master is down calls fail with MasterUnavailable; once it
    is back on the same port the same Client object works again, with no
    reconnect by hand."""
    path = tmp_path / "store"
    master = start_master(secret_key, path)
    port = master.port
    with crudjt.Client(port=port) as client:
        token = client.create({"a": 1})
        master.flush()
        master.kill()

        for _ in range(3):
            with pytest.raises(MasterUnavailable):
                client.read(token)

        master = start_master(secret_key, path, port=port)

        def read_back():
            try:
                return client.read(token)
            except MasterUnavailable:
                return None

        assert wait_until(read_back, timeout=15) == {"data": {"a": 1}}
        fresh = client.create({"b": 2})
        assert client.read(fresh) == {"data": {"b": 2}}
    master.stop()


def test_first_call_after_the_master_died_raises_master_unavailable(
    tmp_path, secret_key, start_master
):
    """The master's death is an unreachable master from the first call on."""
    master = start_master(secret_key, tmp_path / "store")
    with crudjt.Client(port=master.port) as client:
        client.read("A" * 22)
        master.kill()
        with pytest.raises(MasterUnavailable):
            client.read("A" * 22)


def test_master_stops_promptly_while_a_client_is_connected(tmp_path, secret_key, start_master):
    """A clean stop does not wait for idle client connections to go away."""
    master = start_master(secret_key, tmp_path / "store")
    with crudjt.Client(port=master.port) as client:
        client.read("A" * 22)
        master.proc.stdin.close()
        try:
            master.proc.wait(timeout=4)
        except subprocess.TimeoutExpired:
            pytest.fail("the master took over 4 s to stop")
        finally:
            master.kill()


def test_store_can_stop_serving_and_serve_again(tmp_path, secret_key):
    """Store.serve binds port 0 to a free port and returns it; serving twice
    is InvalidState; after stop_serving the store stays open and can serve
    again."""
    with crudjt.Store(secret_key, tmp_path / "store") as store:
        host, port = store.serve(port=0)
        assert host == "127.0.0.1" and port > 0
        with pytest.raises(InvalidState, match="already serving"):
            store.serve(port=0)
        with crudjt.Client(host, port) as client:
            token = client.create({"a": 1})
        store.stop_serving()
        assert store.read(token) == {"data": {"a": 1}}
        with crudjt.Client(host, port) as client:
            with pytest.raises(MasterUnavailable):
                client.read(token)
        host, port = store.serve("localhost", 0)
        with crudjt.Client("localhost", port) as client:
            assert client.read(token) == {"data": {"a": 1}}
