"""Busy polling: the same results with ``busy_poll`` on the master's
``serve`` and on a ``Client``, and clear errors for bad windows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import crudjt


def test_a_busy_polling_master_and_client_give_the_same_results(
    tmp_path: Path, secret_key: str
) -> None:
    with crudjt.Store(secret_key, tmp_path / "store") as store:
        host, port = store.serve(port=0, busy_poll=0.0002)
        with crudjt.Client(host, port, busy_poll=0.0002) as client:
            token = client.create({"user_id": 42}, ttl=60, silence_read=2)
            assert client.read(token) == {
                "metadata": {"ttl": 60, "silence_read": 1},
                "data": {"user_id": 42},
            }
            assert client.update(token, {"user_id": 7})
            assert store.read(token) == {"data": {"user_id": 7}}
            assert client.delete(token)
            assert client.read(token) is None


@pytest.mark.parametrize("window", [-0.001, 1.5, float("nan"), float("inf")])
def test_a_bad_window_is_a_value_error_naming_it(
    tmp_path: Path, secret_key: str, window: float
) -> None:
    with pytest.raises(ValueError, match="busy_poll must be from 0 to 1 seconds"):
        crudjt.Client(port=1, busy_poll=window)
    with crudjt.Store(secret_key, tmp_path / "store") as store:
        with pytest.raises(ValueError, match="busy_poll must be from 0 to 1 seconds"):
            store.serve(port=0, busy_poll=window)


def test_a_busy_polling_client_serves_many_threads_at_once(
    tmp_path: Path, secret_key: str
) -> None:
    # Calls from several threads share the client's runtime; each must
    # still get its own answer while the others poll or wait.
    with crudjt.Store(secret_key, tmp_path / "store") as store:
        host, port = store.serve(port=0)
        with crudjt.Client(host, port, busy_poll=0.0005) as client:
            tokens = [client.create({"n": n}, silence_read=40) for n in range(8)]

            def read_own(n: int) -> list:
                return [client.read(tokens[n])["data"]["n"] for _ in range(39)]

            with ThreadPoolExecutor(max_workers=8) as pool:
                results = list(pool.map(read_own, range(8)))
            assert results == [[n] * 39 for n in range(8)]
            # Each budget of 40 reads was spent exactly: one read is left.
            assert [client.read(t)["metadata"] for t in tokens] == [{"silence_read": 0}] * 8
            assert [client.read(t) for t in tokens] == [None] * 8
