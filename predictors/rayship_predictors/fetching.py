"""Fetch a version as a replica starts, patient with an S3 that is briefly away.

Serve gives a replica whose constructor fails only a few more tries before it marks the
version failed, and the operator then rolls the rollout back: an S3 outage of a few seconds as
a new version's replicas start would undo the rollout of a good version. A starting replica
that finds S3 unreachable (and no cached copy) waits for it instead, with back-off, for a
bounded time; a version that is really missing or unreadable still fails at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from rayship.storage import ModelStore, StorageUnavailable

logger = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 0.5
LONGEST_DELAY_SECONDS = 8.0


def fetch_patiently(
    store: ModelStore,
    uri: str,
    version: str,
    patience_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """`store.fetch(uri, version)`, tried again while S3 cannot be reached, for at most
    `patience_seconds`; then its `StorageUnavailable` is raised."""
    deadline = time.monotonic() + patience_seconds
    delay = FIRST_DELAY_SECONDS
    while True:
        try:
            return store.fetch(uri, version)
        except StorageUnavailable as error:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            pause = min(delay, left)
            logger.warning("%s; trying again in %.1f s", error, pause)
            sleep(pause)
            delay = min(delay * 2, LONGEST_DELAY_SECONDS)
