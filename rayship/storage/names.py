"""Which names may become folders in the local cache, and the reserved name `latest`.

Bucket names, prefix segments, version names and the relative keys of a version's objects all
end up as path components under the cache directory, so each one is checked here before it
touches the filesystem: a hostile or sloppy name such as `..` must never escape the cache.
Names starting with a dot are refused as versions because the cache keeps its own bookkeeping
(locks, temporary downloads) in dot-names beside the version folders.
"""

from __future__ import annotations

from rayship.errors import InvalidSpec

LATEST = "latest"
"""The version that means "resolve it", and the name of the pointer object at a model prefix."""

_MAX_COMPONENT_BYTES = 255  # the usual filesystem limit on one path component


def is_safe_component(name: str) -> bool:
    """True when `name` is usable as exactly one path component on any POSIX filesystem."""
    return (
        name not in ("", ".", "..")
        and len(name.encode()) <= _MAX_COMPONENT_BYTES
        and not any(char in name for char in "/\\")
        and name.isprintable()
    )


def is_version_name(name: str) -> bool:
    """True when `name` can be a version folder: a safe component, not hidden, not `latest`."""
    return is_safe_component(name) and not name.startswith(".") and name != LATEST


def check_version_name(version: str, uri: str) -> None:
    """Refuse a version name that cannot be a version folder, naming the model URI."""
    if not is_version_name(version):
        raise InvalidSpec(
            f"invalid version {version!r} for {uri}: a version is one folder name "
            f"(not empty, '.', '..', hidden, '{LATEST}', nor containing '/')"
        )


def is_safe_relative_key(key: str) -> bool:
    """True when an object key relative to its version folder maps to a path inside it."""
    return all(is_safe_component(part) for part in key.split("/"))
