"""The crudjt 1.0.x API: one store or one connection per process.

``crudjt.CRUDJT`` is this module. A process either starts the master, which
opens the store and serves it over gRPC to the others, or connects to one::

    CRUDJT.Config.start_master(secret_key=key)       # in one process
    CRUDJT.Config.connect_to_master()                # in every other
    token = CRUDJT.create({"user_id": 42}, ttl=3600)

The functions forward to a :class:`crudjt.Store` in the master and to a
:class:`crudjt.Client` elsewhere, so both give the same results and raise
the same errors.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any

from ._native import Client, Store

__all__ = ["Config", "create", "read", "update", "delete"]

DEFAULT_GRPC_HOST = "127.0.0.1"
DEFAULT_GRPC_PORT = 50051


class _NotStarted:
    """The backend before a start: every call says what to do."""

    def _refuse(self, *_args: object, **_kwargs: object) -> Any:
        raise ValueError(
            "crudjt has not started: call CRUDJT.Config.start_master(secret_key=...) "
            "or CRUDJT.Config.connect_to_master() first"
        )

    create = read = update = delete = _refuse


_NOT_STARTED = _NotStarted()

# The store (in the master) or the client (elsewhere) the functions below
# forward to. Swapped only under Config._lock.
_backend: Store | Client | _NotStarted = _NOT_STARTED


def create(data: dict[Any, Any], ttl: int | None = None, silence_read: int | None = None) -> str:
    """Creates a token for ``data``, valid for ``ttl`` seconds and
    ``silence_read`` reads (``None``: no limit)."""
    return _backend.create(data, ttl, silence_read)


def read(token: str) -> dict[str, Any] | None:
    """Returns ``{'metadata': {...}, 'data': {...}}``, or ``None`` when the
    token is missing, expired or out of reads."""
    return _backend.read(token)


def update(
    token: str,
    data: dict[Any, Any],
    ttl: int | None = None,
    silence_read: int | None = None,
) -> bool:
    """Replaces the token's data and both limits; ``False`` when it is gone."""
    return _backend.update(token, data, ttl, silence_read)


def delete(token: str) -> bool:
    """Deletes the token; ``False`` when it is gone."""
    return _backend.delete(token)


class Config:
    """Starts this process as the master or connects it to one."""

    #: Where the master listens, once started (``grpc_port`` is the bound
    #: port, also when 0 asked for any free one).
    settings: dict[str, Any] = {}

    _lock = threading.Lock()
    _master = False

    @classmethod
    def start_master(
        cls,
        secret_key: str | None = None,
        store_jt_path: str | os.PathLike[str] | None = None,
        grpc_host: str | None = DEFAULT_GRPC_HOST,
        grpc_port: int | None = DEFAULT_GRPC_PORT,
        *,
        unix_socket: str | os.PathLike[str] | None = None,
        durability: str = "interval",
        flush_interval: float = 0.5,
        cache_capacity: int = 40_000,
        max_data_size: int = 256,
        sweep_interval: float = 86_400.0,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_client_ca: str | os.PathLike[str] | None = None,
        auth_token: str | None = None,
        previous_secret_keys: Iterable[str] | None = None,
        busy_poll: float = 0.0,
    ) -> None:
        """Opens the store and serves it over gRPC from background threads.

        ``grpc_host=None`` serves no TCP (only ``unix_socket``, if given).
        The keyword-only options are this package's own; their defaults are
        crudjt's behaviour. ``tls_cert``/``tls_key`` (PEM files) serve TCP
        over TLS, ``tls_client_ca`` requires client certificates from that
        CA, and ``auth_token`` requires that secret on every call.

        ``previous_secret_keys`` rotates the key: pass the new key as
        ``secret_key`` and the old ones here (base64, like ``secret_key``).
        Tokens made under an old key keep working, and its records move to
        the new key; the ``keys`` in ``Client.stats()`` (or ``crudjt stats``)
        say how many tokens still need each key. Once an old key is left
        out, its tokens are not found.

        ``busy_poll`` (seconds, up to 1) keeps the master polling its
        sockets for that long after each call instead of sleeping, which
        makes sequential calls from other processes faster at the price of
        up to one core while they come that often; 0 never busy-polls.
        """
        global _backend
        with cls._lock:
            cls._refuse_second_start()
            store = Store(
                secret_key,
                store_jt_path,
                durability=durability,
                flush_interval=flush_interval,
                cache_capacity=cache_capacity,
                max_data_size=max_data_size,
                sweep_interval=sweep_interval,
                previous_secret_keys=previous_secret_keys,
            )
            try:
                bound = store.serve(
                    grpc_host,
                    DEFAULT_GRPC_PORT if grpc_port is None else grpc_port,
                    unix_socket,
                    tls_cert=tls_cert,
                    tls_key=tls_key,
                    tls_client_ca=tls_client_ca,
                    auth_token=auth_token,
                    busy_poll=busy_poll,
                )
            except BaseException:
                store.close()
                raise
            cls.settings = {
                "store_jt_path": str(store.path),
                "grpc_host": bound[0] if bound else None,
                "grpc_port": bound[1] if bound else None,
                "unix_socket": os.fspath(unix_socket) if unix_socket is not None else None,
            }
            cls._master = True
            _backend = store

    @classmethod
    def connect_to_master(
        cls,
        grpc_host: str = DEFAULT_GRPC_HOST,
        grpc_port: int = DEFAULT_GRPC_PORT,
        *,
        unix_socket: str | os.PathLike[str] | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        tls_domain: str | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        auth_token: str | None = None,
        busy_poll: float = 0.0,
    ) -> None:
        """Sends every call to the master at ``grpc_host:grpc_port`` (or
        ``unix_socket``). Nothing is dialled until the first call, so the
        master may start later; a call while it is down, or while it holds
        its limit of connections, raises
        :class:`crudjt.errors.MasterUnavailable`. ``tls_ca`` (a PEM file)
        connects with TLS, trusting that CA; ``tls_cert``/``tls_key`` present
        a client certificate; ``auth_token`` is sent with every call.
        ``busy_poll`` (seconds, up to 1) makes each call poll for its reply
        for that long before sleeping until it comes: faster round trips
        for the calling thread's time while it waits; 0 never polls. Only
        a call with no other in flight from this process polls."""
        global _backend
        with cls._lock:
            cls._refuse_second_start()
            client = Client(
                grpc_host,
                grpc_port,
                unix_socket=unix_socket,
                tls_ca=tls_ca,
                tls_domain=tls_domain,
                tls_cert=tls_cert,
                tls_key=tls_key,
                auth_token=auth_token,
                busy_poll=busy_poll,
            )
            cls.settings = {
                "grpc_host": grpc_host,
                "grpc_port": grpc_port,
                "unix_socket": os.fspath(unix_socket) if unix_socket is not None else None,
            }
            cls._master = False
            _backend = client

    @classmethod
    def was_started(cls) -> bool:
        """Whether this process started a master or connected to one."""
        return not isinstance(_backend, (_NotStarted, _ForkedFromMaster))

    @classmethod
    def master(cls) -> bool:
        """Whether this process is the master."""
        return cls._master and cls.was_started()

    @classmethod
    def stop(cls) -> None:
        """Closes the store (flushing it) or the connection, so that the
        process can start again. Interpreter exit does this by itself."""
        global _backend
        with cls._lock:
            backend, _backend = _backend, _NOT_STARTED
            cls._master = False
            cls.settings = {}
            if isinstance(backend, (Store, Client)):
                backend.close()

    @classmethod
    def _refuse_second_start(cls) -> None:
        if cls.was_started():
            raise ValueError("crudjt already started")


def _after_fork_in_child() -> None:
    """A child forked from the master must not use the parent's store:
    calls on it raise ``InvalidState``, and the child may connect instead.
    A connected child keeps its setting; its client reconnects by itself."""
    global _backend
    Config._lock = threading.Lock()
    if Config._master:
        Config._master = False
        Config.settings = {}
        _backend = _ForkedFromMaster(_backend)


class _ForkedFromMaster:
    """The backend of a child forked from the master: the parent's store,
    whose calls raise ``InvalidState`` with a hint, until the child
    connects."""

    def __init__(self, store: Any) -> None:
        self.create = store.create
        self.read = store.read
        self.update = store.update
        self.delete = store.delete
