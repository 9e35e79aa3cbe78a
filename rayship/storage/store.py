"""`ModelStore`: list, resolve and fetch model versions from S3 or `file://` prefixes.

The operator calls `resolve` (which version does `latest` mean now, and what is its digest) and
records the answer; a predictor calls `fetch` with that recorded version and loads the folder
it gets back. S3 versions are fetched into a local cache (see `rayship.storage.cache`) that
also stands in for S3 while S3 cannot be reached; `file://` versions are served in place.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING

from rayship.spec import StorageSpec
from rayship.storage.cache import CacheSlot
from rayship.storage.errors import ModelNotFound, StorageError, StorageUnavailable
from rayship.storage.local import LocalPrefix
from rayship.storage.names import LATEST, check_version_name, is_version_name
from rayship.storage.s3 import Credentials, S3Prefix, errors_naming, make_client
from rayship.storage.uris import parse_model_uri
from rayship.storage.versions import ObjectEntry, natural_key, version_digest

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CACHE_DIR_ENV = "RAYSHIP_CACHE_DIR"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedVersion:
    """A concrete version and the digest of its content (see `rayship.storage.versions`)."""

    version: str
    digest: str


def default_cache_dir() -> Path:
    """`$RAYSHIP_CACHE_DIR`, else `~/.cache/rayship/models`."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "rayship" / "models"


class ModelStore:
    """Versioned models under `s3://bucket/prefix/` or `file:///path/`, one sub-folder a version.

    Safe to share between threads. The S3 client is made on first use, from `storage`'s
    endpoint and region and from `credentials` when given, else from boto3's standard chain
    (environment, shared config and credentials files, profile, instance or pod role).
    """

    def __init__(
        self,
        storage: StorageSpec | None = None,
        cache_dir: Path | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self._storage = storage or StorageSpec()
        self._credentials = credentials
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()

    @cached_property
    def _client(self) -> S3Client:
        return make_client(self._storage, self._credentials)

    def _prefix(self, uri: str) -> S3Prefix | LocalPrefix:
        location = parse_model_uri(uri)
        if isinstance(location, Path):
            return LocalPrefix(location)
        with errors_naming(uri):  # botocore refuses some settings here (a malformed region)
            client = self._client
        return S3Prefix(client, location)

    def list_versions(self, uri: str) -> list[str]:
        """The versions under a model prefix in natural order (`2` before `10`), oldest first."""
        return sorted(self._prefix(uri).version_names(), key=natural_key)

    def resolve(self, uri: str, version: str) -> ResolvedVersion:
        """The concrete version `version` means, with its digest.

        `latest` is the version named by the pointer object `latest` at the prefix when there is
        one, else the highest version in natural order. Any version must hold at least one
        object, else `ModelNotFound` names its URI.
        """
        prefix = self._prefix(uri)
        name = self._version_name(prefix, version)
        return ResolvedVersion(name, version_digest(self._objects(prefix, name, version)))

    def fetch(self, uri: str, version: str) -> Path:
        """A local folder holding the files of a version; `file://` versions are not copied.

        An S3 version is brought up to date in the cache, downloading only objects whose ETag
        or size changed. While S3 cannot be reached, a complete cached copy is returned with a
        warning; without one, `StorageUnavailable`. `latest` needs S3 to be resolved, so pass
        the version `resolve` recorded wherever the cache must serve offline.
        """
        prefix = self._prefix(uri)
        name = self._version_name(prefix, version)
        if isinstance(prefix, LocalPrefix):
            return prefix.folder(name)
        slot = CacheSlot.of(self.cache_dir, prefix.location, name)
        with slot.locked():
            try:
                entries = self._objects(prefix, name, version)
                slot.sync(entries, partial(prefix.download, name))
            except StorageUnavailable as exc:
                if slot.complete_entries() is None:
                    raise StorageUnavailable(
                        slot.uri, f"{slot.uri} cannot be fetched and is not cached: {exc}"
                    ) from exc
                _log.warning(
                    "S3 is unreachable for %s (%s); serving the cached copy at %s",
                    slot.uri,
                    exc,
                    slot.folder,
                )
        return slot.folder

    @staticmethod
    def _version_name(prefix: S3Prefix | LocalPrefix, version: str) -> str:
        """`version` itself once checked, or the version `latest` stands for."""
        if version != LATEST:
            check_version_name(version, prefix.uri)
            return version
        pointed = prefix.pointer()
        if pointed is None:
            names = prefix.version_names()
            if not names:
                raise ModelNotFound(prefix.uri, f"no versions under {prefix.uri}")
            return max(names, key=natural_key)
        if not is_version_name(pointed):
            pointer_uri = f"{prefix.uri}{LATEST}"
            raise StorageError(pointer_uri, f"{pointer_uri} holds {pointed!r}, not a version name")
        return pointed

    @staticmethod
    def _objects(prefix: S3Prefix | LocalPrefix, name: str, version: str) -> list[ObjectEntry]:
        """The objects of version `name` (which `version` asked for); none is `ModelNotFound`."""
        entries = prefix.objects(name)
        if not entries:
            version_uri = prefix.version_uri(name)
            via = f" ({LATEST} resolved to {name!r})" if version == LATEST else ""
            raise ModelNotFound(version_uri, f"{version_uri} not found{via}")
        return entries
