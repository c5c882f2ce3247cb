"""Exceptions raised by crudjt, beside ``ValueError`` for bad arguments.

The names match crudjt 1.0.x, so ``from crudjt.errors import
InternalError`` keeps working.
"""

__all__ = ["AccessDenied", "InternalError", "InvalidState", "MasterUnavailable"]


class InternalError(Exception):
    """The store or the master failed the call: storage trouble, damaged
    records, an unexpected reply."""


class InvalidState(Exception):
    """The store cannot serve the call in its present state: it is closed,
    open in another process, made with another secret key, or this process
    was forked from the master."""


class MasterUnavailable(InternalError, ConnectionError):
    """A connected process could not reach the master, or the master holds
    its limit of connections; the message says which."""


class AccessDenied(InternalError, PermissionError):
    """The master refused this client's credentials (auth token or client
    certificate)."""
