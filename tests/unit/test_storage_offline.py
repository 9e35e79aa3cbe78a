"""S3 going down: the cached copy serves with a warning; nothing cached is StorageUnavailable."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from rayship.storage import ModelStore, StorageUnavailable
from rayship.storage.cache import MANIFEST_NAME
from support.s3 import S3Server

FILES = {"model.onnx": b"onnx weights"}


def test_cached_copy_serves_while_s3_is_down(
    private_s3_server: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri = f"s3://{private_s3_server.new_bucket()}/iris"
    private_s3_server.upload_version(uri, "1", FILES)
    private_s3_server.upload_version(uri, "2", FILES)
    store = ModelStore(private_s3_server.storage, cache_dir=tmp_path / "cache")
    folder = store.fetch(uri, "1")
    private_s3_server.stop()

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="rayship.storage"):
        assert store.fetch(uri, "1") == folder
    assert time.monotonic() - started < 5
    assert (folder / "model.onnx").read_bytes() == FILES["model.onnx"]
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{uri}/1/" in warning.getMessage()
    assert "cached copy" in warning.getMessage()

    with pytest.raises(StorageUnavailable, match=rf"^{uri}/2/ cannot be fetched and is not cached"):
        store.fetch(uri, "2")
    with pytest.raises(StorageUnavailable, match=rf"cannot reach S3 for {uri}/"):
        store.resolve(uri, "latest")


def test_an_incomplete_cached_copy_never_serves(
    private_s3_server: S3Server, tmp_path: Path
) -> None:
    uri = f"s3://{private_s3_server.new_bucket()}/iris"
    private_s3_server.upload_version(uri, "1", FILES)
    store = ModelStore(private_s3_server.storage, cache_dir=tmp_path / "cache")
    folder = store.fetch(uri, "1")
    private_s3_server.stop()

    (folder / "model.onnx").write_bytes(b"cut short")
    with pytest.raises(StorageUnavailable, match="not cached"):
        store.fetch(uri, "1")
    (folder / "model.onnx").write_bytes(FILES["model.onnx"])
    (folder / MANIFEST_NAME).unlink()
    with pytest.raises(StorageUnavailable, match="not cached"):
        store.fetch(uri, "1")
