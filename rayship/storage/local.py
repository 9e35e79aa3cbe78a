"""`file://` model prefixes: versions are sub-folders of a local folder, served in place.

Nothing is copied: a local folder is already as close as a cache would be. The layout and the
`latest` pointer file follow the S3 layout exactly, so a model can move between the two.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from rayship.storage.errors import ModelNotFound, StorageError
from rayship.storage.names import LATEST, is_version_name
from rayship.storage.uris import file_uri
from rayship.storage.versions import ObjectEntry


@dataclass(frozen=True)
class LocalPrefix:
    """A model prefix on the local filesystem."""

    path: Path

    @property
    def uri(self) -> str:
        """The canonical URI of the prefix, with a trailing slash."""
        return file_uri(self.path)

    def version_uri(self, version: str) -> str:
        """The URI of one version folder, as error messages name it."""
        return file_uri(self.path / version)

    def version_names(self) -> list[str]:
        """Names of the sub-folders that can be versions, in no particular order."""
        if not self.path.is_dir():
            return []
        return [
            child.name
            for child in self.path.iterdir()
            if child.is_dir() and is_version_name(child.name)
        ]

    def pointer(self) -> str | None:
        """The stripped content of the `latest` pointer file, or None when there is none."""
        pointer = self.path / LATEST
        if not pointer.is_file():
            return None
        try:
            return pointer.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise StorageError(f"file://{pointer}", f"cannot read {pointer}: {exc}") from exc

    def objects(self, version: str) -> list[ObjectEntry]:
        """Every file of a version, its ETag being the MD5 S3 would give a single-part upload."""
        folder = self.path / version
        return [
            ObjectEntry(file.relative_to(folder).as_posix(), _md5(file), file.stat().st_size)
            for file in sorted(folder.rglob("*"))
            if file.is_file()
        ]

    def folder(self, version: str) -> Path:
        """The version folder itself, once it is known to hold at least one file."""
        folder = self.path / version
        if not folder.is_dir() or not any(file.is_file() for file in folder.rglob("*")):
            raise ModelNotFound(self.version_uri(version), f"{self.version_uri(version)} not found")
        return folder


def _md5(file: Path) -> str:
    with file.open("rb") as stream:
        return hashlib.file_digest(stream, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()
