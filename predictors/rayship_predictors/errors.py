"""Errors the data plane turns into V2 error bodies (`{"error": "..."}`) with an HTTP status.

Raising one of these anywhere below the transport is how code says "the client gets this
status and this message"; anything else is an internal failure and becomes a 500 whose body
names the model but never carries a traceback.
"""

from __future__ import annotations


class InferenceError(Exception):
    """A failure with the HTTP status the V2 protocol assigns to it, and any headers that
    status calls for (`Allow` on a 405)."""

    status: int = 500

    def __init__(self, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers

    def __reduce__(self) -> tuple[type[InferenceError], tuple[str, tuple[tuple[str, str], ...]]]:
        """Pickled whole, headers included, when it crosses a DeploymentHandle."""
        return type(self), (self.message, self.headers)


class BadRequest(InferenceError):
    """The request is malformed or does not match the model's inputs (400)."""

    status = 400


class NotFound(InferenceError):
    """No such model, version or route (404)."""

    status = 404


class NotReady(InferenceError):
    """The model exists but cannot serve yet (503)."""

    status = 503


class ModelFailure(InferenceError):
    """The model itself raised while computing a prediction (500)."""

    status = 500


class TooManyRequests(InferenceError):
    """More work is queued than the model takes; the client should retry later (429)."""

    status = 429


class TimedOut(InferenceError):
    """The work did not finish within its time limit (504)."""

    status = 504
