"""What can go wrong when reading a model store, as exceptions that name the URI.

The operator turns these into status conditions (`Degraded`, reason `ModelNotFound`) and the CLI
prints them, so the message itself must say which object is at fault; callers never need the
traceback to understand it.
"""

from __future__ import annotations

from rayship.errors import RayshipError


class StorageError(RayshipError):
    """A model store refused or failed a request; the message names the URI."""

    def __init__(self, uri: str, message: str) -> None:
        super().__init__(message)
        self.uri = uri


class ModelNotFound(StorageError):
    """A model prefix, version or object does not exist (e.g. `s3://models/iris/7/ not found`)."""


class StorageUnavailable(StorageError):
    """The store cannot be reached and no complete cached copy can stand in for it."""
