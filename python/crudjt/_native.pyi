"""Type stubs for crudjt's native module."""

import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypedDict

__version__: str
#: The largest ``max_data_size`` a store accepts, in bytes (64 KiB).
MAX_DATA_SIZE_LIMIT: int

class Metadata(TypedDict, total=False):
    ttl: int
    silence_read: int

class ReadResult(TypedDict, total=False):
    metadata: Metadata
    data: dict[Any, Any]

class FlushReport(TypedDict):
    at: float
    seconds: float
    records: int

class SweepReport(TypedDict):
    at: float
    seconds: float
    removed: int
    #: Records found sealed under a previous key and moved to the current.
    resealed: int
    #: Records removed because they need a key the store was not given.
    dropped: int

class KeyUsage(TypedDict):
    #: 0 for the store's first key, one more for each new key.
    number: int
    #: Whether it makes new tokens and seals every write.
    current: bool
    #: Whether the open store was given it (as current or previous key).
    given: bool
    #: Records whose token it made: dropping the key ends those sessions.
    tokens: int
    #: Records still sealed under it; the sweep moves them to the current.
    sealed: int

class Stats(TypedDict):
    tokens: int
    file_bytes: int
    pending_writes: int
    pending_bytes: int
    cached_records: int
    durability: str
    max_data_size: int
    flushes: int
    flush_failures: int
    last_flush: FlushReport | None
    last_sweep: SweepReport | None
    #: Every secret key the store has used, counted at the last flush.
    keys: list[KeyUsage]

class Store:
    """A crudjt store opened in this process.

    Raises ``ValueError`` for a bad key or option, ``InvalidState`` when
    the store is open elsewhere or was made with another key, and
    ``InternalError`` when it cannot be opened.

    ``previous_secret_keys`` (base64, like ``secret_key``) rotates the key:
    tokens made under them keep working while the store moves to
    ``secret_key``. A new key is refused unless the store's current key is
    among them.
    """

    def __init__(
        self,
        secret_key: str | None,
        path: str | os.PathLike[str] | None = None,
        *,
        durability: Literal["interval", "always"] = "interval",
        flush_interval: float = 0.5,
        cache_capacity: int = 40000,
        max_data_size: int = 256,
        sweep_interval: float = 86400.0,
        previous_secret_keys: Iterable[str] | None = None,
    ) -> None: ...
    def create(
        self, data: dict[Any, Any], ttl: int | None = None, silence_read: int | None = None
    ) -> str: ...
    def read(self, token: str) -> ReadResult | None: ...
    def update(
        self,
        token: str,
        data: dict[Any, Any],
        ttl: int | None = None,
        silence_read: int | None = None,
    ) -> bool: ...
    def delete(self, token: str) -> bool: ...
    def flush(self) -> None: ...
    def sweep(self) -> int: ...
    def compact(self) -> None: ...
    def stats(self) -> Stats: ...
    def serve(
        self,
        host: str | None = "127.0.0.1",
        port: int = 50051,
        unix_socket: str | os.PathLike[str] | None = None,
        *,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_client_ca: str | os.PathLike[str] | None = None,
        auth_token: str | None = None,
        busy_poll: float = 0.0,
    ) -> tuple[str, int] | None: ...
    def stop_serving(self) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def path(self) -> Path: ...
    @property
    def max_data_size(self) -> int: ...
    def __enter__(self) -> Store: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

class Client:
    """A connection to a crudjt master in another process."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 50051,
        *,
        unix_socket: str | os.PathLike[str] | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        tls_domain: str | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        auth_token: str | None = None,
        busy_poll: float = 0.0,
    ) -> None: ...
    def create(
        self, data: dict[Any, Any], ttl: int | None = None, silence_read: int | None = None
    ) -> str: ...
    def read(self, token: str) -> ReadResult | None: ...
    def update(
        self,
        token: str,
        data: dict[Any, Any],
        ttl: int | None = None,
        silence_read: int | None = None,
    ) -> bool: ...
    def delete(self, token: str) -> bool: ...
    def stats(self) -> Stats: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Client: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

def _close_all() -> None: ...
def _after_fork() -> None: ...
