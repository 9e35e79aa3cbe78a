"""Model URIs, version names, natural order and the digest: the rules with no store behind them."""

from __future__ import annotations

import hashlib
import json

import pytest

from rayship.errors import InvalidSpec
from rayship.storage import ModelStore, natural_key, version_digest
from rayship.storage.uris import S3Location, parse_model_uri
from rayship.storage.versions import ObjectEntry


def test_natural_order_is_numeric_aware_and_total() -> None:
    names = ["v1.10", "V1", "10", "v1.9", "1a", "7", "2", "1.1", "007", "v1", "1"]
    expected = ["1", "1.1", "1a", "2", "007", "7", "10", "V1", "v1", "v1.9", "v1.10"]
    assert sorted(names, key=natural_key) == expected


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [
        ("s3://models/iris", "models", "iris/"),
        ("s3://models/iris/", "models", "iris/"),
        ("s3://models/team/iris/", "models", "team/iris/"),
        ("s3://models", "models", ""),
        ("S3://models/iris", "models", "iris/"),
    ],
)
def test_s3_uris_name_a_bucket_and_prefix(uri: str, bucket: str, prefix: str) -> None:
    location = parse_model_uri(uri)
    assert location == S3Location(bucket, prefix)
    assert isinstance(location, S3Location)
    assert location.uri == f"s3://{bucket}/{prefix}"


def test_file_uris_name_an_absolute_folder() -> None:
    assert str(parse_model_uri("file:///srv/models/iris/")) == "/srv/models/iris"
    assert str(parse_model_uri("file://localhost/srv/my%20models")) == "/srv/my models"


@pytest.mark.parametrize(
    "uri",
    [
        "gs://models/iris",
        "http://example.com/iris",
        "models/iris",
        "/srv/models/iris",
        "s3://",
        "s3:///iris",
        "s3://models/../iris",
        "s3://models/team//iris",
        "s3://.hidden/iris",
        "file://relative/path",
        "file:///srv/models?x=1",
    ],
)
def test_other_uris_are_refused_naming_the_uri(uri: str) -> None:
    with pytest.raises(InvalidSpec, match="model URI") as caught:
        parse_model_uri(uri)
    assert repr(uri) in str(caught.value)


@pytest.mark.parametrize("version", ["", ".", "..", "../1", "a/b", ".staging", "a\nb"])
def test_versions_must_be_one_safe_folder_name(version: str) -> None:
    store = ModelStore()
    with pytest.raises(InvalidSpec, match="invalid version") as caught:
        store.resolve("file:///srv/models/iris", version)
    assert "file:///srv/models/iris/" in str(caught.value)


def test_digest_is_sha256_of_sorted_key_etag_size_json() -> None:
    entries = [ObjectEntry("b.bin", '"ABC"', 3), ObjectEntry("a/x.onnx", "def", 10)]
    rows = [["a/x.onnx", "def", 10], ["b.bin", "abc", 3]]
    expected = hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()
    assert version_digest(entries) == f"sha256:{expected}"
    assert version_digest(reversed(entries)) == version_digest(entries)
    assert version_digest(entries[:1]) != version_digest(entries)
