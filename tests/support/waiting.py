"""Waiting for something the system does in the background, with a bound and a clear failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(probe: Callable[[], T], *, timeout_s: float = 30, what: str = "") -> T:
    """Poll `probe` until it returns a truthy value, and return that; fail with its last
    result after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    result = probe()
    while not result and time.monotonic() < deadline:
        time.sleep(0.2)
        result = probe()
    assert result, f"not within {timeout_s}s: {what} (last: {result!r})"
    return result
