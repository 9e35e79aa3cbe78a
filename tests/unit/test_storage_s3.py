"""S3 model prefixes against a real S3 endpoint (moto's server), reached through boto3."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rayship.storage import Credentials, ModelNotFound, ModelStore, StorageError
from rayship.storage.cache import MANIFEST_NAME, CacheSlot
from rayship.storage.uris import S3Location
from support.s3 import S3Server

FILES = {"model.onnx": b"onnx weights", "sub/labels.txt": b"setosa\nversicolor\n"}


@pytest.fixture
def store(s3_server: S3Server, tmp_path: Path) -> ModelStore:
    return ModelStore(s3_server.storage, cache_dir=tmp_path / "cache")


@pytest.fixture
def uri(s3_server: S3Server) -> str:
    return f"s3://{s3_server.new_bucket()}/team/iris"


def _stats(folder: Path) -> dict[str, tuple[int, int]]:
    """Inode and modification time of every file: a re-download changes both."""
    return {
        path.relative_to(folder).as_posix(): (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file()
    }


def test_versions_are_listed_in_natural_order(
    s3_server: S3Server, store: ModelStore, uri: str
) -> None:
    for version in ("v1.10", "10", "2", "v1.9", "1", ".staging"):
        s3_server.upload_version(uri, version, FILES)
    s3_server.set_latest(uri, "2")
    s3_server.upload_version(uri.rsplit("/", 1)[0], "other", FILES)  # a sibling model
    assert store.list_versions(uri) == ["1", "2", "10", "v1.9", "v1.10"]
    assert store.list_versions(uri + "/") == store.list_versions(uri)


def test_listing_pages_past_a_thousand_versions(
    s3_server: S3Server, store: ModelStore, uri: str
) -> None:
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda n: s3_server.client.put_object(
                    Bucket=bucket, Key=f"{prefix}/{n}/model.onnx", Body=b"x"
                ),
                range(1005),
            )
        )
    versions = store.list_versions(uri)
    assert versions == [str(n) for n in range(1005)]
    assert store.resolve(uri, "latest").version == "1004"


def test_latest_follows_the_pointer_object(
    s3_server: S3Server, store: ModelStore, uri: str
) -> None:
    for version in ("1", "2", "3"):
        s3_server.upload_version(uri, version, {"model.onnx": version.encode()})
    s3_server.set_latest(uri, "2")
    resolved = store.resolve(uri, "latest")
    assert resolved.version == "2"
    assert resolved == store.resolve(uri, "2")


def test_latest_without_pointer_is_the_highest_version(
    s3_server: S3Server, store: ModelStore, uri: str
) -> None:
    for version in ("9", "10", "2"):
        s3_server.upload_version(uri, version, FILES)
    assert store.resolve(uri, "latest").version == "10"


def test_pointer_to_a_missing_version_names_it(
    s3_server: S3Server, store: ModelStore, uri: str
) -> None:
    s3_server.upload_version(uri, "1", FILES)
    s3_server.set_latest(uri, "9")
    with pytest.raises(ModelNotFound, match=rf"^{uri}/9/ not found \(latest resolved to '9'\)$"):
        store.resolve(uri, "latest")


def test_pointer_that_is_not_a_version_name_is_an_error(
    s3_server: S3Server, store: ModelStore, uri: str
) -> None:
    s3_server.upload_version(uri, "1", FILES)
    s3_server.set_latest(uri, "../1")
    with pytest.raises(StorageError, match=rf"^{uri}/latest holds '../1', not a version name$"):
        store.resolve(uri, "latest")


def test_missing_version_is_not_found_naming_the_uri(
    s3_server: S3Server, store: ModelStore, uri: str
) -> None:
    s3_server.upload_version(uri, "1", FILES)
    with pytest.raises(ModelNotFound, match=rf"^{uri}/7/ not found$") as caught:
        store.resolve(uri, "7")
    assert caught.value.uri == f"{uri}/7/"
    with pytest.raises(ModelNotFound, match=rf"^{uri}/7/ not found$"):
        store.fetch(uri, "7")


def test_no_versions_and_no_bucket_are_not_found(s3_server: S3Server, store: ModelStore) -> None:
    bucket = s3_server.new_bucket()
    with pytest.raises(ModelNotFound, match=rf"^no versions under s3://{bucket}/iris/$"):
        store.resolve(f"s3://{bucket}/iris", "latest")
    with pytest.raises(ModelNotFound, match=r"^s3://no-such-bucket-x/iris/ not found \(no such"):
        store.list_versions("s3://no-such-bucket-x/iris")


def test_a_region_botocore_refuses_is_a_storage_error_naming_the_uri(
    s3_server: S3Server, uri: str
) -> None:
    """botocore refuses a malformed region when the client is made, before any request: the
    operator reports only `StorageError`s, so anything else would fail its handler forever."""
    storage = dataclasses.replace(s3_server.storage, region="eu west")
    with pytest.raises(StorageError, match=rf"^cannot use {uri}: .*'eu west'") as caught:
        ModelStore(storage).resolve(uri, "1")
    assert caught.value.uri == uri


def test_digest_covers_key_etag_and_size_of_every_object(
    s3_server: S3Server, store: ModelStore, uri: str
) -> None:
    etags = s3_server.upload_version(uri, "1", FILES)
    rows = sorted([key, etags[key].strip('"'), len(data)] for key, data in FILES.items())
    expected = hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()
    digest = store.resolve(uri, "1").digest
    assert digest == f"sha256:{expected}"
    assert store.resolve(uri, "1").digest == digest
    s3_server.upload_version(uri, "1", {"model.onnx": b"retrained"})
    assert store.resolve(uri, "1").digest != digest


def test_digest_matches_the_same_folder_on_disk(
    s3_server: S3Server, store: ModelStore, uri: str, tmp_path: Path
) -> None:
    local = tmp_path / "local" / "iris"
    for key, data in FILES.items():
        (local / "1" / key).parent.mkdir(parents=True, exist_ok=True)
        (local / "1" / key).write_bytes(data)
    s3_server.upload_version(uri, "1", local / "1")
    assert store.resolve(uri, "1") == store.resolve(f"file://{local}", "1")


def test_fetch_downloads_the_version_into_the_cache(
    s3_server: S3Server, store: ModelStore, uri: str
) -> None:
    s3_server.upload_version(uri, "1", FILES)
    folder = store.fetch(uri, "1")
    bucket = uri.removeprefix("s3://").split("/")[0]
    assert folder == store.cache_dir / bucket / "team" / "iris" / "1"
    assert {key: (folder / key).read_bytes() for key in FILES} == FILES
    assert sorted(path.name for path in folder.iterdir()) == [MANIFEST_NAME, "model.onnx", "sub"]


def test_second_fetch_downloads_nothing(s3_server: S3Server, store: ModelStore, uri: str) -> None:
    s3_server.upload_version(uri, "1", FILES)
    folder = store.fetch(uri, "1")
    before = _stats(folder)
    folder_inode = folder.stat().st_ino
    assert store.fetch(uri, "1") == folder
    assert _stats(folder) == before
    assert folder.stat().st_ino == folder_inode


def test_changed_object_is_the_only_one_downloaded_again(
    s3_server: S3Server, store: ModelStore, uri: str
) -> None:
    s3_server.upload_version(uri, "1", FILES)
    before = _stats(store.fetch(uri, "1"))
    s3_server.upload_version(uri, "1", {"model.onnx": b"retrained"})
    folder = store.fetch(uri, "1")
    after = _stats(folder)
    assert (folder / "model.onnx").read_bytes() == b"retrained"
    assert after["sub/labels.txt"] == before["sub/labels.txt"]
    assert after["model.onnx"][0] != before["model.onnx"][0]


def test_removed_object_leaves_the_cached_copy(
    s3_server: S3Server, store: ModelStore, uri: str
) -> None:
    s3_server.upload_version(uri, "1", FILES)
    folder = store.fetch(uri, "1")
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    s3_server.client.delete_object(Bucket=bucket, Key=f"{prefix}/1/sub/labels.txt")
    assert store.fetch(uri, "1") == folder
    assert not (folder / "sub" / "labels.txt").exists()
    assert (folder / "model.onnx").read_bytes() == FILES["model.onnx"]


def test_an_incomplete_cached_copy_is_replaced(
    s3_server: S3Server, store: ModelStore, uri: str
) -> None:
    s3_server.upload_version(uri, "1", FILES)
    folder = store.fetch(uri, "1")
    (folder / "model.onnx").write_bytes(b"trunc")  # as if copied by hand and cut short
    assert store.fetch(uri, "1") == folder
    assert (folder / "model.onnx").read_bytes() == FILES["model.onnx"]


def test_fetch_of_latest_resolves_first(s3_server: S3Server, store: ModelStore, uri: str) -> None:
    s3_server.upload_version(uri, "1", FILES)
    s3_server.upload_version(uri, "2", FILES)
    assert store.fetch(uri, "latest").name == "2"


def test_explicit_credentials_and_the_cache_dir_environment(
    s3_server: S3Server, uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAYSHIP_CACHE_DIR", str(tmp_path / "env-cache"))
    credentials = Credentials("AKIDEXAMPLE", "very-secret", "token-secret")
    assert "secret" not in repr(credentials)
    store = ModelStore(s3_server.storage, credentials=credentials)
    s3_server.upload_version(uri, "1", FILES)
    assert store.fetch(uri, "1").is_relative_to(tmp_path / "env-cache")


def test_many_fetches_at_once_agree(s3_server: S3Server, store: ModelStore, uri: str) -> None:
    s3_server.upload_version(uri, "1", FILES)
    with ThreadPoolExecutor(8) as pool:
        folders = set(pool.map(lambda _: store.fetch(uri, "1"), range(8)))
    (folder,) = folders
    assert {key: (folder / key).read_bytes() for key in FILES} == FILES
    assert os.listdir(store.cache_dir / ".rayship")  # bookkeeping kept apart from versions


def test_a_crashed_download_leaves_nothing_that_looks_complete(
    s3_server: S3Server, store: ModelStore, uri: str
) -> None:
    s3_server.upload_version(uri, "1", FILES)
    slot = CacheSlot.of(store.cache_dir, S3Location(*_bucket_and_prefix(uri)), "1")
    leftover = slot.work / "staging-crashed"  # what a fetch killed mid-download leaves
    leftover.mkdir(parents=True)
    (leftover / "model.onnx").write_bytes(b"half")
    assert slot.complete_entries() is None
    folder = store.fetch(uri, "1")
    assert folder == slot.folder
    assert slot.complete_entries() is not None
    assert not leftover.exists()


def _bucket_and_prefix(uri: str) -> tuple[str, str]:
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    return bucket, f"{prefix}/"
