"""How a version's objects download (`S3Prefix.download` through `CacheSlot.sync`), against a
real S3 endpoint (moto's server): all at once, large ones in ranged parts, and never at the cost
of the cached copy when one of them fails."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import KB, TransferConfig

from rayship.storage import ModelNotFound, ModelStore, StorageError, StorageUnavailable
from rayship.storage.cache import MANIFEST_NAME, CacheSlot
from rayship.storage.s3 import S3Prefix, make_client
from rayship.storage.uris import S3Location
from rayship.storage.versions import ObjectEntry
from support.s3 import S3Server

SMALL_PARTS = TransferConfig(
    multipart_threshold=256 * KB, multipart_chunksize=256 * KB, max_concurrency=4
)
"""Ranged GETs for anything over 256 KB, so a test object of a megabyte comes in parts."""
LARGE = os.urandom(1024 * KB + 3)  # four whole parts and three bytes
FILES = {"model.onnx": b"graph", "weights.bin": LARGE}


class Requests:
    """The GetObject and HeadObject calls one client made, and the threads that made them."""

    def __init__(self, prefix: S3Prefix) -> None:
        self.gets: list[dict[str, Any]] = []
        self.heads = 0
        self.threads: set[int] = set()
        events = prefix.client.meta.events
        events.register("before-parameter-build.s3.GetObject", self._get)
        events.register("before-parameter-build.s3.HeadObject", self._head)

    def _get(self, params: dict[str, Any], **kwargs: Any) -> None:
        self.gets.append(dict(params))
        self.threads.add(threading.get_ident())

    def _head(self, **kwargs: Any) -> None:
        self.heads += 1


@pytest.fixture
def uri(s3_server: S3Server) -> str:
    return f"s3://{s3_server.new_bucket()}/team/big"


def _prefix(server: S3Server, uri: str) -> S3Prefix:
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    return S3Prefix(make_client(server.storage, None), S3Location(bucket, f"{prefix}/"))


def _slot(tmp_path: Path, prefix: S3Prefix) -> CacheSlot:
    return CacheSlot.of(tmp_path / "cache", prefix.location, "1")


def _sync(slot: CacheSlot, prefix: S3Prefix, listed: list[ObjectEntry] | None = None) -> None:
    """What `ModelStore.fetch` does for version 1 (as listed now, unless `listed` is given),
    with SMALL_PARTS for the downloads."""
    entries = prefix.objects("1") if listed is None else listed
    with slot.locked():
        slot.sync(entries, lambda wanted: prefix.download("1", wanted, SMALL_PARTS))


def _cached(server: S3Server, uri: str, tmp_path: Path) -> tuple[S3Prefix, CacheSlot]:
    """FILES as version 1 of `uri`, fetched into the cache."""
    server.upload_version(uri, "1", FILES)
    prefix = _prefix(server, uri)
    slot = _slot(tmp_path, prefix)
    _sync(slot, prefix)
    return prefix, slot


def _contents(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file() and path.name != MANIFEST_NAME
    }


def _left_in_work(slot: CacheSlot) -> list[str]:
    """What the version's bookkeeping folder holds besides its lock: staging leftovers."""
    return sorted(path.name for path in slot.work.iterdir() if path.name != "lock")


def _cached_state(slot: CacheSlot) -> tuple[dict[str, bytes], str]:
    return _contents(slot.folder), (slot.folder / MANIFEST_NAME).read_text()


def test_many_objects_download_at_once_byte_identical(
    s3_server: S3Server, uri: str, tmp_path: Path
) -> None:
    files = {f"shard-{n:02d}/part.bin": os.urandom(n * 997) for n in range(40)}
    s3_server.upload_version(uri, "1", files)
    prefix = _prefix(s3_server, uri)
    requests = Requests(prefix)
    slot = _slot(tmp_path, prefix)
    _sync(slot, prefix)
    assert _contents(slot.folder) == files
    assert len(requests.gets) == len(files)
    assert len(requests.threads) > 1  # the GETs ran side by side
    assert requests.heads == 0  # sizes and ETags come from the listing


def test_a_large_object_arrives_in_ranged_parts_pinned_to_its_etag(
    s3_server: S3Server, uri: str, tmp_path: Path
) -> None:
    etags = s3_server.upload_version(uri, "1", FILES)
    prefix = _prefix(s3_server, uri)
    requests = Requests(prefix)
    slot = _slot(tmp_path, prefix)
    _sync(slot, prefix)
    assert _contents(slot.folder) == FILES
    ranged = [get for get in requests.gets if get["Key"].endswith("weights.bin")]
    assert len(ranged) == 5  # ceil((1024 KB + 3) / 256 KB)
    assert {get["IfMatch"] for get in ranged} == {etags["weights.bin"]}
    assert len({get["Range"] for get in ranged}) == 5


def test_the_default_transfer_settings_fetch_through_the_store(
    s3_server: S3Server, uri: str, tmp_path: Path
) -> None:
    s3_server.upload_version(uri, "1", FILES)
    store = ModelStore(s3_server.storage, cache_dir=tmp_path / "cache")
    assert _contents(store.fetch(uri, "1")) == FILES


def test_a_missing_object_fails_naming_it_and_keeps_the_cached_copy(
    s3_server: S3Server, uri: str, tmp_path: Path
) -> None:
    prefix, slot = _cached(s3_server, uri, tmp_path)
    before = _cached_state(slot)
    s3_server.upload_version(uri, "1", {"model.onnx": b"graph 2", "weights.bin": LARGE[::-1]})
    listed = prefix.objects("1")
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    s3_server.client.delete_object(Bucket=bucket, Key=f"{key}/1/model.onnx")
    with pytest.raises(ModelNotFound, match=r"team/big/1/model\.onnx not found"):
        _sync(slot, prefix, listed)
    assert _cached_state(slot) == before
    assert _left_in_work(slot) == []


def test_an_object_rewritten_since_listed_fails_and_keeps_the_cached_copy(
    s3_server: S3Server, uri: str, tmp_path: Path
) -> None:
    prefix, slot = _cached(s3_server, uri, tmp_path)
    before = _cached_state(slot)
    s3_server.upload_version(uri, "1", {"weights.bin": LARGE[::-1]})
    listed = prefix.objects("1")
    s3_server.upload_version(uri, "1", {"weights.bin": LARGE[1:]})  # rewritten once more
    with pytest.raises(StorageError, match=r"team/big/1/weights\.bin changed while it was down"):
        _sync(slot, prefix, listed)
    assert _cached_state(slot) == before
    assert _left_in_work(slot) == []


def test_s3_going_away_mid_fetch_is_unavailable_and_keeps_the_cached_copy(
    private_s3_server: S3Server, tmp_path: Path
) -> None:
    uri = f"s3://{private_s3_server.new_bucket()}/team/big"
    prefix, slot = _cached(private_s3_server, uri, tmp_path)
    before = _cached_state(slot)
    private_s3_server.upload_version(uri, "1", {"weights.bin": LARGE[::-1]})
    listed = prefix.objects("1")
    private_s3_server.stop()
    with pytest.raises(StorageUnavailable, match=r"team/big/1/weights\.bin"):
        _sync(slot, prefix, listed)
    assert _cached_state(slot) == before
    assert _left_in_work(slot) == []


def test_an_etag_goes_back_to_s3_exactly_as_listed(
    s3_server: S3Server, uri: str, tmp_path: Path
) -> None:
    """S3 compares If-Match exactly, so case folding would refuse every ranged GET on a store
    whose ETags are not lowercase. moto's are, so a hook on this client's listing stands in for
    such a store (upper-casing every listed ETag) and the GETs are checked before they go out."""
    s3_server.upload_version(uri, "1", FILES)
    prefix = _prefix(s3_server, uri)

    def upper_case_etags(parsed: dict[str, Any], **kwargs: Any) -> None:
        for obj in parsed.get("Contents", []):
            obj["ETag"] = obj["ETag"].upper()

    prefix.client.meta.events.register("after-call.s3.ListObjectsV2", upper_case_etags)
    entries = prefix.objects("1")
    listed = {entry.key: entry.etag for entry in entries}
    assert all(etag == etag.upper() and not etag.startswith('"') for etag in listed.values())

    requests = Requests(prefix)
    with pytest.raises(StorageError):  # moto's own ETag is lowercase: it refuses the upper case
        _sync(_slot(tmp_path, prefix), prefix)
    ranged = [get for get in requests.gets if get["Key"].endswith("weights.bin")]
    assert ranged
    assert {get["IfMatch"] for get in ranged} == {f'"{listed["weights.bin"]}"'}
