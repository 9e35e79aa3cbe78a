"""S3 model prefixes through boto3: list version folders, read the pointer, download objects.

The client fails fast on purpose: a predictor that finds S3 down should fall back to its cached
copy within seconds, not after boto3's default minute of connect timeouts and retries. Every
boto3 failure leaves this module as a `StorageError` that names the URI involved:
`StorageUnavailable` when the store cannot be reached (connection errors, timeouts, 5xx after
retries), `ModelNotFound` for a missing bucket or object, plain `StorageError` otherwise
(access denied, bad credentials, an object rewritten since it was listed).

A version's objects download together through one s3transfer pool (`TRANSFER`): large objects
as ranged GETs in parallel, each part written into its file at its offset as it arrives, small
ones as one GET each beside them (bench/cold_start_bench.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from boto3.exceptions import RetriesExceededError
from boto3.s3.transfer import MB, TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from s3transfer.exceptions import RetriesExceededError as TransferRetriesExceededError
from s3transfer.exceptions import S3DownloadFailedError
from s3transfer.futures import TransferFuture
from s3transfer.subscribers import BaseSubscriber

from rayship.spec import StorageSpec
from rayship.storage.errors import ModelNotFound, StorageError, StorageUnavailable
from rayship.storage.names import LATEST, is_safe_relative_key, is_version_name
from rayship.storage.uris import S3Location
from rayship.storage.versions import ObjectEntry

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 60
MAX_ATTEMPTS = 2
"""Total attempts per request (the first plus one retry), in botocore's `standard` retry mode."""

TRANSFER = TransferConfig(
    multipart_threshold=64 * MB,
    multipart_chunksize=64 * MB,
    max_concurrency=10,
    io_chunksize=1 * MB,
    num_download_attempts=MAX_ATTEMPTS,
    preferred_transfer_client="classic",
)
"""How a version's objects download: objects over 64 MB in 64 MB ranged GETs, ten GETs in
flight across all of a version's objects, written in 1 MB pieces. The fetch used to call
boto3's `download_file` per object with its defaults: 8 MB parts (eight times the requests) and
a pool left idle at the end of every object. Fewer attempts than s3transfer's five, as
everywhere in this module, so a broken download fails in seconds."""

_POINTER_MAX_BYTES = 1024  # a version name; anything longer is not a pointer
_NOT_FOUND_CODES = frozenset({"NoSuchBucket", "NoSuchKey", "404"})


@dataclass(frozen=True)
class Credentials:
    """Explicit AWS-style credentials (e.g. from a ModelDeployment's Secret); never printed."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def make_client(storage: StorageSpec, credentials: Credentials | None) -> S3Client:
    """An S3 client for `storage`: explicit credentials if given, else boto3's standard chain.

    A custom endpoint gets path-style addressing, because S3-compatible stores (MinIO, Ceph,
    moto) are usually reached by a host name or address without wildcard DNS for buckets.
    """
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        s3={"addressing_style": "path"} if storage.endpoint_url else None,
    )
    # A session of its own: the default session is shared process state and not thread-safe.
    return boto3.session.Session().client(
        "s3",
        endpoint_url=storage.endpoint_url,
        region_name=storage.region,
        aws_access_key_id=credentials.access_key_id if credentials else None,
        aws_secret_access_key=credentials.secret_access_key if credentials else None,
        aws_session_token=credentials.session_token if credentials else None,
        config=config,
    )


@dataclass(frozen=True)
class S3Prefix:
    """A model prefix in S3, read through one client."""

    client: S3Client
    location: S3Location

    @property
    def uri(self) -> str:
        """The canonical URI of the prefix, with a trailing slash."""
        return self.location.uri

    def version_uri(self, version: str) -> str:
        """The URI of one version folder, as error messages name it."""
        return f"{self.uri}{version}/"

    def version_names(self) -> list[str]:
        """Names of the sub-folders that can be versions, in no particular order."""
        prefix = self.location.prefix
        with errors_naming(self.uri):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=prefix, Delimiter="/"
            )
            folders = [
                common["Prefix"][len(prefix) : -1]
                for page in pages
                for common in page.get("CommonPrefixes", [])
            ]
        return [name for name in folders if is_version_name(name)]

    def pointer(self) -> str | None:
        """The stripped content of the `latest` pointer object, or None when there is none."""
        uri = f"{self.uri}{LATEST}"
        data = read_object(
            self.client, self.location.bucket, self.location.prefix + LATEST, _POINTER_MAX_BYTES
        )
        if data is None:
            return None
        try:
            return data.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise StorageError(uri, f"{uri} is not a UTF-8 version name") from exc

    def objects(self, version: str) -> list[ObjectEntry]:
        """Every object of a version, keyed relative to the version folder.

        Zero-byte keys ending in `/` are folder markers that consoles create, not content.
        """
        version_uri = self.version_uri(version)
        version_prefix = f"{self.location.prefix}{version}/"
        with errors_naming(version_uri):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=version_prefix
            )
            listed = [obj for page in pages for obj in page.get("Contents", [])]
        entries = []
        for obj in listed:
            key = obj["Key"][len(version_prefix) :]
            if not key or key.endswith("/"):
                continue
            if not is_safe_relative_key(key):
                raise StorageError(
                    version_uri, f"{version_uri}{key} cannot be stored as a local file"
                )
            # Unquoted but not case-folded: the ETag goes back to S3 in If-Match, which compares
            # it exactly (version digests fold case themselves).
            entries.append(ObjectEntry(key, obj["ETag"].strip().strip('"'), obj["Size"]))
        return entries

    def download(
        self,
        version: str,
        wanted: Sequence[tuple[ObjectEntry, Path]],
        transfer: TransferConfig = TRANSFER,
    ) -> None:
        """Download objects of a version, each to its file, all at once (see `TRANSFER`).

        The ranged GETs of a large object name its listed ETag (`If-Match`), so an object
        rewritten since it was listed fails rather than landing as a mix of two contents under
        its old manifest entry; a smaller object, one GET, is not pinned. Failures are raised in
        the order of `wanted`, naming the object, and the first one raised cancels the transfers
        still running; files already written stay where they are, for the caller to discard.
        """
        bucket, folder = self.location.bucket, f"{self.location.prefix}{version}/"
        with create_transfer_manager(self.client, transfer) as manager:
            started = [
                (
                    entry,
                    manager.download(
                        bucket, folder + entry.key, str(target), subscribers=[_Listed(entry)]
                    ),
                )
                for entry, target in wanted
            ]
            for entry, future in started:
                with errors_naming(f"{self.version_uri(version)}{entry.key}"):
                    future.result()


class _Listed(BaseSubscriber):
    """Tells s3transfer an object's size and ETag from the listing, sparing a HEAD request."""

    def __init__(self, entry: ObjectEntry) -> None:
        super().__init__()
        self._entry = entry

    def on_queued(self, future: TransferFuture, **kwargs: object) -> None:
        future.meta.provide_transfer_size(self._entry.size)
        future.meta.provide_object_etag(_quoted(self._entry.etag))


def _quoted(etag: str) -> str:
    """An ETag as S3 writes it in headers, from its unquoted form."""
    return f'"{etag}"'


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def read_object(client: S3Client, bucket: str, key: str, limit: int | None = None) -> bytes | None:
    """An object's content (its first `limit` bytes when given), or None when there is none."""
    with errors_naming(f"s3://{bucket}/{key}"):
        try:
            response = client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND_CODES:
                return None
            raise
        body = response["Body"]
        try:
            return body.read(limit)
        finally:
            body.close()


def client_for(uri: str, storage: StorageSpec) -> S3Client:
    """A client with boto3's credentials chain for what lives at `uri`; botocore refuses some
    settings only here (a malformed region), and that refusal names `uri` too."""
    with errors_naming(uri):
        return make_client(storage, None)


@contextmanager
def errors_naming(uri: str) -> Iterator[None]:
    """Turn boto3's exceptions into `StorageError`s that name `uri`."""
    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        if code in _NOT_FOUND_CODES:
            detail = " (no such bucket)" if code == "NoSuchBucket" else ""
            raise ModelNotFound(uri, f"{uri} not found{detail}") from exc
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
            raise StorageUnavailable(uri, f"S3 failed on {uri}: {exc}") from exc
        raise StorageError(uri, f"S3 refused {uri}: {exc}") from exc
    except (
        BotoConnectionError,
        HTTPClientError,
        RetriesExceededError,
        TransferRetriesExceededError,
    ) as exc:
        raise StorageUnavailable(uri, f"cannot reach S3 for {uri}: {exc}") from exc
    except S3DownloadFailedError as exc:  # a ranged GET's If-Match failed
        raise StorageError(uri, f"{uri} changed while it was downloaded: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(uri, f"cannot use {uri}: {exc}") from exc  # reads and writes
