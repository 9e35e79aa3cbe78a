"""Parsing model URIs: `s3://bucket/prefix` (trailing slash optional) and `file:///abs/path`.

A model URI names the prefix (folder) whose sub-folders are the versions. Every part of an S3
URI becomes a folder of the local cache, so each part is checked to be a safe path component
here, and anything else is an `InvalidSpec` error that quotes the URI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rayship.errors import InvalidSpec
from rayship.storage.names import is_safe_component

_EXPECTED = "expected s3://bucket/prefix or file:///absolute/path"


@dataclass(frozen=True)
class S3Location:
    """A model prefix in a bucket; `prefix` is empty (bucket root) or ends with `/`."""

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        """The canonical URI of the prefix, always with a trailing slash."""
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def parts(self) -> tuple[str, ...]:
        """The bucket and the prefix's segments: the cache folders of this prefix."""
        return (self.bucket, *self.prefix.split("/")[:-1])


def file_uri(path: Path) -> str:
    """How messages name a local folder: readable, unlike a percent-encoded `Path.as_uri()`."""
    return f"file://{path}/"


def parse_model_uri(uri: str) -> S3Location | Path:
    """Split a model URI into an `S3Location` or, for `file://`, the local folder it names."""
    scheme, _, rest = uri.partition("://")
    if scheme.lower() == "s3":
        return _parse_s3(uri, rest)
    if scheme.lower() == "file":
        return _parse_file(uri)
    raise InvalidSpec(f"unsupported model URI {uri!r}: {_EXPECTED}")


def _parse_s3(uri: str, rest: str) -> S3Location:
    bucket, _, key = rest.partition("/")
    key = key.removesuffix("/")
    segments = key.split("/") if key else []
    bucket_ok = is_safe_component(bucket) and not bucket.startswith(".")
    if not bucket_ok or not all(map(is_safe_component, segments)):
        raise InvalidSpec(
            f"invalid S3 model URI {uri!r}: the bucket and each prefix segment must be "
            f"non-empty and neither '.' nor '..' ({_EXPECTED})"
        )
    return S3Location(bucket=bucket, prefix=f"{key}/" if key else "")


def _parse_file(uri: str) -> Path:
    parts = urlsplit(uri)
    path = unquote(parts.path)
    if parts.netloc not in ("", "localhost") or not path.startswith("/"):
        raise InvalidSpec(f"invalid file model URI {uri!r}: {_EXPECTED}")
    if parts.query or parts.fragment:
        raise InvalidSpec(f"invalid file model URI {uri!r}: no query or fragment allowed")
    return Path(path)
