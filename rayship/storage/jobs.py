"""Where asynchronous job records live: one object per job under an S3 prefix or a folder.

The replica that runs a job writes its record; any replica of the model reads it back, so the
store, not a replica's memory, is what makes a job outlive the replica that accepted it. A
record is opaque bytes here (`rayship_predictors.jobs` defines its form). Calls block: the
predictors run them in a thread. S3 failures leave as `StorageError`s naming the object, as in
`rayship.storage.s3`, with the same fail-fast client.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rayship.spec import StorageSpec
from rayship.storage.s3 import client_for, errors_naming, read_object
from rayship.storage.uris import parse_model_uri

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class JobStore(Protocol):
    """Put, get and delete job records by job id."""

    def put(self, job_id: str, record: bytes) -> None:
        """Write (or replace) a job's record."""

    def get(self, job_id: str) -> bytes | None:
        """A job's record, or None when there is none."""

    def delete(self, job_id: str) -> None:
        """Remove a job's record; a missing one is not an error."""


@dataclass(frozen=True)
class S3JobStore:
    """Records as objects `<prefix><job id>` in a bucket."""

    client: S3Client
    bucket: str
    prefix: str

    def _uri(self, job_id: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{job_id}"

    def put(self, job_id: str, record: bytes) -> None:
        """Write (or replace) a job's record."""
        with errors_naming(self._uri(job_id)):
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + job_id, Body=record)

    def get(self, job_id: str) -> bytes | None:
        """A job's record, or None when there is none."""
        return read_object(self.client, self.bucket, self.prefix + job_id)

    def delete(self, job_id: str) -> None:
        """Remove a job's record; a missing one is not an error (S3 says so itself)."""
        with errors_naming(self._uri(job_id)):
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + job_id)


@dataclass(frozen=True)
class FolderJobStore:
    """Records as files in a local folder: jobs of one machine (local mode)."""

    folder: Path

    def put(self, job_id: str, record: bytes) -> None:
        """Write a job's record atomically, so a reader never sees half of one."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{job_id}.")
        with os.fdopen(handle, "wb") as file:
            file.write(record)
        os.replace(temporary, self.folder / job_id)

    def get(self, job_id: str) -> bytes | None:
        """A job's record, or None when there is none."""
        try:
            return (self.folder / job_id).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, job_id: str) -> None:
        """Remove a job's record; a missing one is not an error."""
        (self.folder / job_id).unlink(missing_ok=True)


def open_job_store(storage_uri: str, model_name: str, storage: StorageSpec) -> JobStore:
    """The store of `model_name`'s jobs: `<storage_uri>/<model_name>/`.

    An S3 store is reached with `storage`'s endpoint and region and boto3's standard
    credentials chain, which is how the replicas already read the model itself.
    """
    location = parse_model_uri(storage_uri)
    if isinstance(location, Path):
        return FolderJobStore(location / model_name)
    client = client_for(storage_uri, storage)
    return S3JobStore(client, location.bucket, f"{location.prefix}{model_name}/")
