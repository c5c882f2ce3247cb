"""Fixtures for the crudjt Python suite (helpers live in ``helpers.py``).

Every master runs in a subprocess and listens on port 0; every store lives
in the test's own ``tmp_path``, so tests can run side by side.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import crudjt
from helpers import Master, Reopenable, new_key


@pytest.fixture
def secret_key() -> str:
    return new_key()


@pytest.fixture
def start_master(tmp_path: Path) -> Iterator[Callable[..., Master]]:
    """Starts masters in subprocesses: ``start_master(key, path, **options)``
    (options as for ``Master``). Any still running at the end of the test
    is killed."""
    masters: list[Master] = []

    def start(key: str, path: Path, **options: Any) -> Master:
        master = Master(key, path, tmp_path / f"master-{len(masters)}.log", **options)
        masters.append(master)
        return master

    yield start
    for master in masters:
        master.cleanup()


@pytest.fixture(scope="session")
def shared_master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    """One master for the tests that only need some master to talk to."""
    root = tmp_path_factory.mktemp("shared-master")
    master = Master(new_key(), root / "store", root / "master.log")
    yield master
    try:
        master.stop()
    finally:
        master.cleanup()


@pytest.fixture(params=["store", "client"])
def api(
    request: pytest.FixtureRequest, tmp_path: Path, secret_key: str
) -> Iterator[crudjt.Store | crudjt.Client]:
    """The same API in both modes: a ``Store`` opened in this process, or a
    ``Client`` of a master in another process."""
    if request.param == "store":
        with crudjt.Store(secret_key, tmp_path / "store") as store:
            yield store
    else:
        master = request.getfixturevalue("shared_master")
        # Closed before the session ends: a master waits for open
        # connections when it shuts down.
        with crudjt.Client(port=master.port) as client:
            yield client


@pytest.fixture
def store(tmp_path: Path, secret_key: str) -> Iterator[crudjt.Store]:
    """A store opened in this process."""
    with crudjt.Store(secret_key, tmp_path / "store") as store:
        yield store


@pytest.fixture
def client(shared_master: Master) -> Iterator[crudjt.Client]:
    """A client of the shared master."""
    with crudjt.Client(port=shared_master.port) as client:
        yield client


@pytest.fixture(params=["store", "client"])
def reopenable(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    secret_key: str,
    start_master: Callable[..., Master],
) -> Iterator[Reopenable]:
    """``reopenable.api`` in either mode; ``reopenable.reopen()`` closes the
    store and opens it again with the same key."""
    store = Reopenable(request.param, secret_key, tmp_path / "store", start_master)
    yield store
    store.close()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short path, for Unix sockets (whose paths are
    limited to about 100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="cj-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
