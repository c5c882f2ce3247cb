"""crudjt: a fast, file-backed, encrypted token store for user sessions.

A drop-in for the crudjt 1.0.x package, on a Rust engine::

    from crudjt import CRUDJT

    CRUDJT.Config.start_master(secret_key=key)
    token = CRUDJT.create({"user_id": 42}, ttl=3600, silence_read=10)
    CRUDJT.read(token)   # {'metadata': {'ttl': 3600, 'silence_read': 9}, 'data': {'user_id': 42}}

Beneath the ``CRUDJT`` facade are :class:`Store`, a store opened in this
process (and optionally served over gRPC), and :class:`Client`, a
connection to a master in another process.
"""

import atexit
import builtins
import os

from . import errors
from . import facade as CRUDJT
from ._native import MAX_DATA_SIZE_LIMIT, Client, Store, __version__, _after_fork, _close_all

__all__ = ["CRUDJT", "Client", "Store", "errors", "MAX_DATA_SIZE_LIMIT", "__version__"]

# crudjt 1.0.x documents `import crudjt` followed by bare `CRUDJT...`, which
# works because it puts the name into builtins; code written for it relies
# on that.
builtins.CRUDJT = CRUDJT  # type: ignore[attr-defined]

# Interpreter exit is a clean shutdown: every store still open is flushed
# and closed (in a forked child, the parent's stores are left alone).
atexit.register(_close_all)


def _after_fork_in_child() -> None:
    _after_fork()
    CRUDJT._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
