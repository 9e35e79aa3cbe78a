"""The local cache of S3 versions: one folder per version, replaced only as a whole.

Layout under the cache directory:

- `<bucket>/<prefix>/<version>/` holds the version's files and `.rayship-manifest.json`, the
  relative key, ETag and size of every object. A version folder only ever appears by an atomic
  rename of a fully downloaded staging folder, so one that exists with a manifest whose files
  are all present at their sizes is a complete copy; a crash mid-download leaves only staging
  leftovers, which the next fetch removes.
- `.rayship/<hash of bucket/prefix/version>/` holds that version's lock file (so processes
  sharing a cache, such as replicas on one node, fetch a version one at a time) and its staging
  and retired folders. Keeping them out of the version tree means no version or prefix name can
  collide with them; buckets never start with a dot, so `.rayship` is never a bucket.

Refreshing a version downloads only the objects whose ETag or size changed, handing them all to
the downloader at once so it can fetch them concurrently; unchanged files are hard-linked from
the current copy into the staging folder, which is why staging lives in the cache directory
(one filesystem) rather than in the system's temporary directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from rayship.storage.errors import StorageError
from rayship.storage.uris import S3Location
from rayship.storage.versions import ObjectEntry

MANIFEST_NAME = ".rayship-manifest.json"
_WORK_DIR = ".rayship"
_LOCK_NAME = "lock"

_log = logging.getLogger(__name__)

Download = Callable[[Sequence[tuple[ObjectEntry, Path]]], None]
"""Fetches objects of a version, each to its target file (see `S3Prefix.download`)."""


@dataclass(frozen=True)
class CacheSlot:
    """Where one version of one S3 prefix lives in the cache."""

    folder: Path
    work: Path
    uri: str

    @classmethod
    def of(cls, cache_dir: Path, location: S3Location, version: str) -> CacheSlot:
        """The slot of `version` under the prefix `location`."""
        parts = (*location.parts, version)
        key = hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]
        return cls(
            folder=cache_dir.joinpath(*parts),
            work=cache_dir / _WORK_DIR / key,
            uri=f"{location.uri}{version}/",
        )

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this version's lock, excluding other threads and processes using the cache."""
        self.work.mkdir(parents=True, exist_ok=True)
        with (self.work / _LOCK_NAME).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def complete_entries(self) -> dict[str, ObjectEntry] | None:
        """The manifest of a complete cached copy, or None when there is no such copy."""
        try:
            manifest = json.loads((self.folder / MANIFEST_NAME).read_text(encoding="utf-8"))
            entries = {
                row["key"]: ObjectEntry(row["key"], row["etag"], row["size"])
                for row in manifest["objects"]
            }
            sizes_match = all(
                (self.folder / key).stat().st_size == entry.size for key, entry in entries.items()
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return entries if sizes_match else None

    def sync(self, entries: list[ObjectEntry], download: Download) -> None:
        """Make the cached copy match `entries`, downloading only what changed (lock held).

        `download(wanted)` fetches every `(entry, target file)` it is given, in one call so it
        can fetch them all at once. When anything fails, the previous copy (if any) stays as it
        was.
        """
        if any(entry.key == MANIFEST_NAME for entry in entries):
            raise StorageError(
                self.uri, f"{self.uri}{MANIFEST_NAME} clashes with the cache manifest"
            )
        self._remove_leftovers()
        cached = self.complete_entries() or {}
        wanted = {entry.key: entry for entry in entries}
        if cached == wanted:
            _log.debug("%s is cached and unchanged at %s", self.uri, self.folder)
            return
        staging = Path(tempfile.mkdtemp(prefix="staging-", dir=self.work))
        try:
            missing = self._link_unchanged(staging, entries, cached)
            download(missing)
            manifest = {"uri": self.uri, "objects": [asdict(entry) for entry in entries]}
            (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            self._install(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _log.info(
            "fetched %s into %s: %d objects downloaded, %d unchanged",
            self.uri,
            self.folder,
            len(missing),
            len(entries) - len(missing),
        )

    def _link_unchanged(
        self, staging: Path, entries: list[ObjectEntry], cached: dict[str, ObjectEntry]
    ) -> list[tuple[ObjectEntry, Path]]:
        """Hard-link the unchanged files of the current copy into `staging` and make the
        folders of the others; return those others with their targets, to be downloaded."""
        missing = []
        for entry in entries:
            target = staging / entry.key
            target.parent.mkdir(parents=True, exist_ok=True)
            if cached.get(entry.key) == entry:
                os.link(self.folder / entry.key, target)
            else:
                missing.append((entry, target))
        return missing

    def _install(self, staging: Path) -> None:
        """Put `staging` in place of the version folder, with a rename for each step."""
        if self.folder.exists():
            retired = Path(tempfile.mkdtemp(prefix="retired-", dir=self.work))
            self.folder.rename(retired / "version")
            staging.rename(self.folder)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(self.folder)

    def _remove_leftovers(self) -> None:
        """Remove staging and retired folders an interrupted fetch left behind (lock held)."""
        for leftover in self.work.iterdir():
            if leftover.name != _LOCK_NAME:
                shutil.rmtree(leftover, ignore_errors=True)
