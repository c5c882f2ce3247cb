"""Errors: bad arguments raise ``ValueError`` with the same message in the
master and in a connected process; store state problems raise
``InvalidState``; an unreachable master raises ``MasterUnavailable``."""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import pytest

import crudjt
from crudjt.errors import InternalError, InvalidState, MasterUnavailable
from helpers import free_port, new_key, run_python


class Custom:
    """A value MessagePack has no encoding for."""


def deeply_nested(levels: int) -> dict[str, Any]:
    """A dict with ``levels`` levels of containers, the dict included."""
    value: list[Any] = []
    for _ in range(levels - 2):
        value = [value]
    return {"a": value}


def self_referencing() -> dict[str, Any]:
    """A dict that holds itself."""
    data: dict[str, Any] = {}
    data["me"] = data
    return data


def value_error(call: Callable[[], Any]) -> str:
    """The message of the ValueError ``call`` raises."""
    with pytest.raises(ValueError) as raised:
        call()
    assert type(raised.value) is ValueError
    return str(raised.value)


@pytest.fixture
def both(store, client):
    """The same store API in the master's process and in a connected one."""
    token = store.create({"a": 1})
    remote_token = client.create({"a": 1})
    return [(store, token), (client, remote_token)]


def assert_same_value_error(both, call: Callable[[Any, str], Any], expected: str) -> None:
    """``call(api, live_token)`` raises ValueError matching ``expected`` in
    both modes, with the very same message."""
    messages = [value_error(lambda: call(api, token)) for api, token in both]
    assert messages[0] == messages[1]
    assert re.search(expected, messages[0]), messages[0]


BAD_DATA = {
    "list": ([1, 2], r"^token data must be a dict, got list$"),
    "str": ("data", r"^token data must be a dict, got str$"),
    "none": (None, r"^token data must be a dict, got NoneType$"),
    "int": (5, r"^token data must be a dict, got int$"),
    "tuple_of_pairs": ((("a", 1),), r"^token data must be a dict, got tuple$"),
    "object": ({"a": object()}, r"^token data cannot hold a value of type object$"),
    "set": ({"a": {1, 2}}, r"^token data cannot hold a value of type set$"),
    "frozenset": ({"a": frozenset()}, r"^token data cannot hold a value of type frozenset$"),
    "custom_class": ({"a": Custom()}, r"^token data cannot hold a value of type Custom$"),
    "nested_custom": ({"a": [{"b": Custom()}]}, r"cannot hold a value of type Custom"),
    "custom_key": ({Custom(): 1}, r"cannot hold a value of type Custom"),
    "complex": ({"a": 1j}, r"cannot hold a value of type complex"),
    "int_2_64": ({"a": 2**64}, r"int outside MessagePack's range"),
    "int_below_i64": ({"a": -(2**63) - 1}, r"int outside MessagePack's range"),
    "nesting_129": (deeply_nested(129), r"^token data nests deeper than 128 levels$"),
    "self_reference": (self_referencing(), r"^token data nests deeper than 128 levels$"),
    "lone_surrogate": ({"s": "\ud800"}, r"^token data holds a str that cannot be encoded"),
    "surrogate_key": ({"\ud800": 1}, r"^token data holds a str that cannot be encoded"),
    "over_256_bytes": ({"k": "x" * 252}, r"^token data is 257 bytes, the limit is 256$"),
    "far_over_256": ({"k": "x" * 1000}, r"^token data is 1006 bytes, the limit is 256$"),
}


@pytest.mark.parametrize(("data", "expected"), BAD_DATA.values(), ids=BAD_DATA.keys())
def test_bad_data_is_a_value_error_with_one_message_in_both_modes(both, data, expected):
    """create and update refuse data that is not a dict, holds a value
    MessagePack cannot carry, nests too deep or packs too big."""
    assert_same_value_error(both, lambda api, _: api.create(data), expected)
    assert_same_value_error(both, lambda api, token: api.update(token, data), expected)
    for api, token in both:
        assert api.read(token) == {"data": {"a": 1}}


BAD_LIMITS = {
    "zero": (0, r"^{name} must be at least 1 \(or absent for no limit\), got 0$"),
    "minus_one": (-1, r"^{name} must be at least 1 \(or absent for no limit\), got -1$"),
    "minus_five": (-5, r"^{name} must be at least 1 \(or absent for no limit\), got -5$"),
    "huge_negative": (-(2**70), r"^{name} must be at least 1"),
    "2_64": (2**64, r"^{name} must be at most 2\*\*64-1, got 18446744073709551616$"),
    "str": ("3", r"^{name} must be an int or None, got str$"),
    "float": (1.5, r"^{name} must be an int or None, got float$"),
    "whole_float": (3.0, r"^{name} must be an int or None, got float$"),
}


@pytest.mark.parametrize("name", ["ttl", "silence_read"])
@pytest.mark.parametrize(("value", "expected"), BAD_LIMITS.values(), ids=BAD_LIMITS.keys())
def test_bad_limit_is_a_value_error_with_one_message_in_both_modes(both, name, value, expected):
    """ttl and silence_read must be ints from 1 to 2**64-1 (or None)."""
    expected = expected.format(name=name)
    assert_same_value_error(both, lambda api, _: api.create({"a": 1}, **{name: value}), expected)
    assert_same_value_error(
        both, lambda api, token: api.update(token, {"a": 2}, **{name: value}), expected
    )
    for api, token in both:
        assert api.read(token) == {"data": {"a": 1}}


@pytest.mark.parametrize(
    ("token", "type_name"),
    [(5, "int"), (None, "NoneType"), (b"abc", "bytes"), (1.5, "float"), (["t"], "list")],
)
def test_token_that_is_not_a_str_is_a_value_error(both, token, type_name):
    """read, update and delete take a str token."""
    expected = rf"^token must be a str, got {type_name}$"
    assert_same_value_error(both, lambda api, _: api.read(token), expected)
    assert_same_value_error(both, lambda api, _: api.update(token, {"a": 1}), expected)
    assert_same_value_error(both, lambda api, _: api.delete(token), expected)


def test_empty_token_is_a_value_error_in_both_modes(both):
    """An empty token is an error, not a missing token."""
    expected = r"^token must not be empty$"
    assert_same_value_error(both, lambda api, _: api.read(""), expected)
    assert_same_value_error(both, lambda api, _: api.update("", {"a": 1}), expected)
    assert_same_value_error(both, lambda api, _: api.delete(""), expected)


def test_client_refuses_bad_arguments_before_dialling():
    """A connected process gets the ValueError for its own mistakes even
    while the master is down, not MasterUnavailable."""
    with crudjt.Client(port=free_port()) as client:
        assert "must be a dict" in value_error(lambda: client.create([1]))
        assert "must be at least 1" in value_error(lambda: client.create({}, ttl=0))
        assert "nests deeper" in value_error(lambda: client.create(deeply_nested(129)))
        assert "must not be empty" in value_error(lambda: client.read(""))
        assert "must be a str" in value_error(lambda: client.delete(None))


def test_wrong_secret_key_on_reopen_is_invalid_state(tmp_path, secret_key):
    """Opening a store with another key fails instead of losing every
    session; the right key still opens it."""
    path = tmp_path / "store"
    with crudjt.Store(secret_key, path) as store:
        token = store.create({"a": 1})
    with pytest.raises(InvalidState, match="secret key does not match the store at") as raised:
        crudjt.Store(new_key(), path)
    assert str(path) in str(raised.value)
    assert secret_key not in str(raised.value)
    with pytest.raises(InvalidState, match="secret key does not match"):
        crudjt.Store(new_key(64), path)
    with crudjt.Store(secret_key, path) as store:
        assert store.read(token) == {"data": {"a": 1}}


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "abc",
        "not base64 at all!!",
        new_key(16),
        new_key(33),
        new_key(47),
        new_key(128),
    ],
    ids=["none", "empty", "short", "not_base64", "16_bytes", "33_bytes", "47_bytes",
         "128_bytes"],
)
def test_invalid_secret_key_is_a_value_error(tmp_path, key):
    """Only base64 of 32, 48 or 64 bytes is a key; the error never echoes
    the key."""
    message = value_error(lambda: crudjt.Store(key, tmp_path / "store"))
    assert "secret" in message
    if key:
        assert key not in message
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


@pytest.mark.parametrize("nbytes", [32, 48, 64])
def test_keys_of_32_48_and_64_bytes_are_accepted(tmp_path, nbytes):
    """The three documented key sizes open a store."""
    with crudjt.Store(new_key(nbytes), tmp_path / "store") as store:
        assert store.read(store.create({"n": nbytes})) == {"data": {"n": nbytes}}


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ({"durability": "sometimes"}, "durability must be 'interval' or 'always'"),
        ({"flush_interval": 0}, "flush_interval must be a positive number of seconds"),
        ({"flush_interval": -1.0}, "flush_interval must be a positive number of seconds"),
        ({"sweep_interval": 0}, "sweep_interval must be a positive number of seconds"),
        ({"max_data_size": 0}, "max_data_size is 0, it must be from 1 to 65536 bytes"),
        ({"max_data_size": 65537}, "max_data_size is 65537, it must be from 1 to 65536"),
    ],
)
def test_invalid_store_option_is_a_value_error(tmp_path, secret_key, option, expected):
    """Store options out of range are refused at open."""
    assert expected in value_error(lambda: crudjt.Store(secret_key, tmp_path / "s", **option))


def test_second_store_on_the_same_path_is_invalid_state(store, secret_key):
    """One opener per store: a second one in the same process fails at once,
    naming the path; the first keeps working."""
    token = store.create({"a": 1})
    with pytest.raises(InvalidState, match="already open") as raised:
        crudjt.Store(secret_key, store.path)
    assert str(store.path) in str(raised.value)
    assert store.read(token) == {"data": {"a": 1}}


def test_store_held_by_a_master_cannot_be_opened_by_another_process(shared_master):
    """While a master holds the store, another process cannot open it."""
    out = run_python(
        """
        import sys, crudjt
        from crudjt.errors import InvalidState
        try:
            crudjt.Store(sys.argv[1], sys.argv[2])
        except InvalidState as e:
            print("InvalidState:", e)
        """,
        shared_master.key,
        str(shared_master.path),
    ).stdout
    assert out.startswith("InvalidState:") and "already open" in out, out


def test_calls_on_a_closed_store_are_invalid_state(tmp_path, secret_key):
    """After close every call raises InvalidState; closing again is fine."""
    store = crudjt.Store(secret_key, tmp_path / "store")
    token = store.create({"a": 1})
    assert not store.closed
    store.close()
    assert store.closed
    store.close()
    calls = [
        lambda: store.create({"a": 1}),
        lambda: store.read(token),
        lambda: store.update(token, {"a": 2}),
        lambda: store.delete(token),
        store.flush,
        store.sweep,
        store.compact,
        store.stats,
        lambda: store.serve(port=0),
    ]
    for call in calls:
        with pytest.raises(InvalidState, match="closed"):
            call()


def test_leaving_the_with_block_closes_the_store(tmp_path, secret_key):
    """``with Store(...)`` closes (and so flushes) the store on exit."""
    with crudjt.Store(secret_key, tmp_path / "store") as store:
        store.create({"a": 1})
    assert store.closed
    with pytest.raises(InvalidState):
        store.read("A" * 22)


def test_calls_on_a_closed_client_are_invalid_state(shared_master):
    """A closed client refuses calls with InvalidState."""
    with crudjt.Client(port=shared_master.port) as client:
        token = client.create({"a": 1})
    assert client.closed
    for call in (
        lambda: client.create({"a": 1}),
        lambda: client.read(token),
        lambda: client.update(token, {"a": 2}),
        lambda: client.delete(token),
        client.stats,
    ):
        with pytest.raises(InvalidState, match="closed"):
            call()


def test_client_of_a_port_with_nothing_listening_raises_master_unavailable():
    """Nothing listening: every call raises MasterUnavailable, which is also
    an InternalError and a ConnectionError, and names the address."""
    port = free_port()
    with crudjt.Client(port=port) as client:
        for call in (
            lambda: client.create({"a": 1}),
            lambda: client.read("A" * 22),
            lambda: client.update("A" * 22, {"a": 1}),
            lambda: client.delete("A" * 22),
        ):
            with pytest.raises(MasterUnavailable, match=f"127.0.0.1:{port}") as raised:
                call()
            assert isinstance(raised.value, InternalError)
            assert isinstance(raised.value, ConnectionError)


def test_client_of_a_missing_unix_socket_raises_master_unavailable(tmp_path):
    """A Unix socket path with no master behind it is unreachable too."""
    with crudjt.Client(unix_socket=tmp_path / "missing.sock") as client:
        with pytest.raises(MasterUnavailable):
            client.read("A" * 22)


def test_facade_call_before_start_is_a_value_error():
    """Every CRUDJT call before start_master or connect_to_master raises
    ValueError saying what to call."""
    out = run_python(
        """
        import json
        from crudjt import CRUDJT
        results = {"was_started": CRUDJT.Config.was_started(),
                   "master": CRUDJT.Config.master()}
        for name, call in [
            ("create", lambda: CRUDJT.create({"a": 1})),
            ("read", lambda: CRUDJT.read("A" * 22)),
            ("update", lambda: CRUDJT.update("A" * 22, {"a": 1})),
            ("delete", lambda: CRUDJT.delete("A" * 22)),
        ]:
            try:
                call()
                results[name] = "no error"
            except Exception as e:
                results[name] = [type(e).__name__, str(e)]
        print(json.dumps(results))
        """
    ).stdout
    results = json.loads(out)
    assert results.pop("was_started") is False
    assert results.pop("master") is False
    for name, (kind, message) in results.items():
        assert kind == "ValueError", name
        assert "start_master" in message and "connect_to_master" in message


def test_starting_twice_is_a_value_error(tmp_path, secret_key):
    """A second start_master, or connect_to_master after a start, raises
    ValueError and leaves the first start working; after stop() the
    process may start again."""
    out = run_python(
        """
        import json, sys
        from crudjt import CRUDJT
        key, path = sys.argv[1], sys.argv[2]
        results = []
        def attempt(call):
            try:
                call()
                results.append("started")
            except Exception as e:
                results.append([type(e).__name__, str(e)])
        attempt(lambda: CRUDJT.Config.start_master(
            secret_key=key, store_jt_path=path, grpc_port=0))
        token = CRUDJT.create({"a": 1})
        attempt(lambda: CRUDJT.Config.start_master(
            secret_key=key, store_jt_path=path + "2", grpc_port=0))
        attempt(lambda: CRUDJT.Config.connect_to_master(grpc_port=1))
        results.append(CRUDJT.read(token))
        CRUDJT.Config.stop()
        attempt(lambda: CRUDJT.Config.connect_to_master(grpc_port=1))
        attempt(lambda: CRUDJT.Config.connect_to_master(grpc_port=1))
        CRUDJT.Config.stop()
        attempt(lambda: CRUDJT.Config.start_master(
            secret_key=key, store_jt_path=path, grpc_port=0))
        results.append(CRUDJT.read(token))
        print(json.dumps(results))
        """,
        secret_key,
        str(tmp_path / "store"),
    ).stdout
    already = ["ValueError", "crudjt already started"]
    assert json.loads(out) == [
        "started", already, already, {"data": {"a": 1}},
        "started", already,
        "started", {"data": {"a": 1}},
    ]


def test_facade_start_master_with_bad_key_is_a_value_error_and_can_retry(tmp_path, secret_key):
    """A failed start_master leaves the process unstarted, so it may try
    again with the right key."""
    out = run_python(
        """
        import sys
        from crudjt import CRUDJT
        try:
            CRUDJT.Config.start_master(secret_key="short", store_jt_path=sys.argv[2],
                                       grpc_port=0)
        except ValueError as e:
            print("ValueError", CRUDJT.Config.was_started())
        CRUDJT.Config.start_master(secret_key=sys.argv[1], store_jt_path=sys.argv[2],
                                   grpc_port=0)
        print(CRUDJT.read(CRUDJT.create({"ok": 1})))
        """,
        secret_key,
        str(tmp_path / "store"),
    ).stdout
    assert out.splitlines() == ["ValueError False", "{'data': {'ok': 1}}"]
