"""A starting replica waits for an S3 that is briefly away, and fails at once for the rest.

S3 is moto behind a real TCP forwarder that the test cuts and restores (support.blackout).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from rayship.storage import ModelNotFound, ModelStore, StorageUnavailable
from rayship_predictors.fetching import fetch_patiently
from support.blackout import Blackout
from support.s3 import S3Server

FILES = {"model.onnx": b"onnx weights"}


def store_behind(path: Blackout, s3: S3Server, cache: Path) -> ModelStore:
    """A store reaching `s3` through `path`."""
    return ModelStore(dataclasses.replace(s3.storage, endpoint_url=path.url), cache_dir=cache)


def forwarder(s3: S3Server) -> Blackout:
    endpoint = urlsplit(s3.endpoint_url)
    return Blackout((str(endpoint.hostname), int(endpoint.port or 80)))


def test_a_version_loads_once_s3_is_back(s3_server: S3Server, tmp_path: Path) -> None:
    uri = f"s3://{s3_server.new_bucket()}/iris"
    s3_server.upload_version(uri, "1", FILES)
    with forwarder(s3_server) as path:
        store = store_behind(path, s3_server, tmp_path)
        path.cut()
        threading.Timer(2.0, path.restore).start()
        folder = fetch_patiently(store, uri, "1", patience_seconds=60)
    assert (folder / "model.onnx").read_bytes() == FILES["model.onnx"]


def test_it_gives_up_after_its_patience(s3_server: S3Server, tmp_path: Path) -> None:
    uri = f"s3://{s3_server.new_bucket()}/iris"
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        time.sleep(seconds)

    with forwarder(s3_server) as path:
        store = store_behind(path, s3_server, tmp_path)
        path.cut()
        with pytest.raises(StorageUnavailable, match="cannot be fetched and is not cached"):
            fetch_patiently(store, uri, "1", patience_seconds=3, sleep=sleep)
    assert pauses[:2] == [0.5, 1.0]  # backing off
    assert sum(pauses) <= 3


def test_a_missing_version_fails_at_once(s3_server: S3Server, tmp_path: Path) -> None:
    uri = f"s3://{s3_server.new_bucket()}/iris"
    pauses: list[float] = []
    with pytest.raises(ModelNotFound):
        fetch_patiently(
            ModelStore(s3_server.storage, cache_dir=tmp_path), uri, "7", 60, pauses.append
        )
    assert pauses == []
