"""Secret key rotation from Python: a master restarted with a new key and
the old one as a previous key keeps every session, moves its records to the
new key and says what still needs the old one; dropping the old key ends
its sessions. Bad previous keys raise ``ValueError`` without echoing them."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import crudjt
from crudjt import CRUDJT
from crudjt.errors import InvalidState
from helpers import Master, new_key, wait_until

#: Base64 of 16 bytes: looks like a key, is too short to be one.
NOT_A_KEY = base64.b64encode(b"short and secret").decode()


def key_usage(stats: dict[str, Any], number: int) -> dict[str, Any]:
    """The ``keys`` entry of ``stats`` for key ``number``."""
    usage = stats["keys"][number]
    assert usage["number"] == number, stats
    return usage


def stats_until(
    api: crudjt.Store | crudjt.Client, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Polls ``api.stats()`` until ``done`` holds for them, and returns
    them. Key usage is counted at each flush, so a store is flushed first."""

    def settled() -> dict[str, Any] | None:
        if isinstance(api, crudjt.Store):
            api.flush()
        stats = api.stats()
        return stats if done(stats) else None

    return wait_until(settled)


def test_rotating_through_the_facade_keeps_sessions_until_the_key_is_dropped(
    tmp_path: Path, start_master: Callable[..., Master]
) -> None:
    """The master is restarted for each key change, as an application
    would be; a connected client sees the sessions through all of it."""
    old, new = new_key(), new_key()
    path = tmp_path / "store"
    master = start_master(old, path, facade=True)
    with crudjt.Client(port=master.port) as client:
        plain = client.create({"n": 1})
        lived = client.create({"n": 2}, ttl=3600)
        budget = client.create({"n": 3}, silence_read=5)
    master.stop()

    # The new key alone would strand those sessions: refused.
    with pytest.raises(RuntimeError, match="secret key does not match") as refused:
        start_master(new, path, facade=True)
    assert old not in str(refused.value) and new not in str(refused.value)

    master = start_master(new, path, facade=True, previous_secret_keys=[old])
    with crudjt.Client(port=master.port) as client:
        # The sweep at start re-seals the old records under the new key;
        # their tokens still need the old one.
        stats = stats_until(
            client, lambda s: s["last_sweep"] is not None and key_usage(s, 0)["sealed"] == 0
        )
        assert stats["last_sweep"]["resealed"] == 3
        assert stats["last_sweep"]["dropped"] == 0
        assert key_usage(stats, 0) == {
            "number": 0,
            "current": False,
            "given": True,
            "tokens": 3,
            "sealed": 0,
        }

        assert client.read(plain) == {"data": {"n": 1}}
        assert 3500 <= client.read(lived)["metadata"]["ttl"] <= 3600
        assert client.read(budget) == {"metadata": {"silence_read": 4}, "data": {"n": 3}}
        fresh = client.create({"n": 4})
        assert client.read(fresh) == {"data": {"n": 4}}
        stats = stats_until(client, lambda s: key_usage(s, 1)["tokens"] == 1)
        assert key_usage(stats, 1) == {
            "number": 1,
            "current": True,
            "given": True,
            "tokens": 1,
            "sealed": 4,
        }
    master.stop()

    # Dropping the old key ends its sessions, and only those.
    master = start_master(new, path, facade=True)
    with crudjt.Client(port=master.port) as client:
        for token in (plain, lived, budget):
            assert client.read(token) is None
        assert client.read(fresh) == {"data": {"n": 4}}
        stats = stats_until(client, lambda s: key_usage(s, 0)["tokens"] == 0)
        assert key_usage(stats, 0)["given"] is False
        assert stats["last_sweep"]["dropped"] == 3
        assert stats["tokens"] == 1
    master.stop()


def test_the_object_api_takes_previous_keys(tmp_path: Path) -> None:
    """``Store`` takes any iterable of keys; a store that never used a
    previous key ignores it."""
    old, new = new_key(32), new_key(64)
    path = tmp_path / "store"
    with crudjt.Store(old, path, previous_secret_keys=[new_key()]) as store:
        token = store.create({"user": 1}, ttl=60)
        assert [usage["number"] for usage in store.stats()["keys"]] == [0]
    with pytest.raises(InvalidState, match="secret key does not match"):
        crudjt.Store(new, path)

    with crudjt.Store(new, path, previous_secret_keys=(k for k in [old])) as store:
        assert store.read(token)["data"] == {"user": 1}
        stats = stats_until(store, lambda s: key_usage(s, 0)["sealed"] == 0)
        assert key_usage(stats, 0)["tokens"] == 1
        assert key_usage(stats, 1)["current"] is True

    with crudjt.Store(new, path, previous_secret_keys=None) as store:
        assert store.read(token) is None


def test_bad_previous_keys_raise_value_error_by_position(tmp_path: Path, secret_key: str) -> None:
    """The error says which key is wrong and why, never what it is; nothing
    is opened or started."""
    good = new_key()
    cases: list[tuple[Any, str]] = [
        ([good, NOT_A_KEY], r"previous_secret_keys\[1\] is not a valid key: .*16 bytes"),
        ([NOT_A_KEY], r"previous_secret_keys\[0\] is not a valid key"),
        (["not base64!"], r"previous_secret_keys\[0\] is not a valid key: .*base64"),
        ([good, 42], r"previous_secret_keys\[1\] must be a str, got int"),
        (good, r"must be a list of base64 keys, got one str; pass \[key\]"),
        (7, r"must be a list of base64 keys or None, got int"),
    ]
    for bad, says in cases:
        with pytest.raises(ValueError, match=says) as err:
            crudjt.Store(secret_key, tmp_path / "store", previous_secret_keys=bad)
        message = str(err.value)
        assert NOT_A_KEY not in message and good not in message and secret_key not in message
    assert not (tmp_path / "store").exists()

    with pytest.raises(ValueError, match=r"previous_secret_keys\[0\]"):
        CRUDJT.Config.start_master(
            secret_key=secret_key,
            store_jt_path=tmp_path / "facade",
            grpc_port=0,
            previous_secret_keys=[NOT_A_KEY],
        )
    assert not CRUDJT.Config.was_started()
