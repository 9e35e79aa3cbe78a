"""How versions are ordered and how a version's content is summed up in one digest.

Natural order (used by `list_versions` and to pick `latest` when no pointer object exists):
a name is split into runs of digits and runs of other characters; digit runs compare by their
numeric value and other runs compare case-insensitively, run by run, with a digit run ordering
before a text run at the same position and a name that is a prefix of another ordering first.
So `2 < 10`, `v1.9 < v1.10 < v2`, `1 < 1.1 < 1a`. Names that tie (`7` and `007`, `V1` and `v1`)
are ordered by their exact text, so the order is total and the same on every machine.

Digest (recorded by the operator beside a resolved version): `sha256:` followed by the hex
SHA-256 of the compact JSON array of `[relative key, ETag, size]` for every object in the
version folder, sorted by relative key, where the ETag has its quotes removed and is lower-case
(see `version_digest`). It changes whenever any object is added, removed or rewritten, costs
one listing to compute, and never reads object content from S3. For `file://` versions the ETag
is the hex MD5 of the file's content, which is what S3 gives a single-part upload, so a folder
and its single-part upload to S3 have the same digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

_DIGIT_RUNS = re.compile(r"([0-9]+)")


@dataclass(frozen=True)
class ObjectEntry:
    """One object of a version: key relative to the version folder, ETag as listed (unquoted),
    size."""

    key: str
    etag: str
    size: int


def normalize_etag(etag: str) -> str:
    """Remove the quotes S3 puts around an ETag and fold case, so equal ETags compare equal."""
    return etag.strip().strip('"').lower()


def natural_key(name: str) -> tuple[tuple[tuple[int, int, str], ...], str]:
    """Sort key for the natural order described in the module docstring."""
    # Splitting on a capturing group alternates text and digit runs: odd indexes are digits.
    parts = _DIGIT_RUNS.split(name)
    runs = tuple(
        (0, int(part), "") if index % 2 else (1, 0, part.casefold())
        for index, part in enumerate(parts)
        if part
    )
    return runs, name


def version_digest(entries: Iterable[ObjectEntry]) -> str:
    """The digest of a version as documented in the module docstring."""
    rows = sorted([entry.key, normalize_etag(entry.etag), entry.size] for entry in entries)
    payload = json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()
    return "sha256:" + hashlib.sha256(payload).hexdigest()
