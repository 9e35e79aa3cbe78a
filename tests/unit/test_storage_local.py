"""`file://` model prefixes: the same layout as S3, served in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayship.storage import ModelNotFound, ModelStore


@pytest.fixture
def models(tmp_path: Path) -> Path:
    prefix = tmp_path / "models" / "iris"
    for version in ("1", "2", "10"):
        (prefix / version / "sub").mkdir(parents=True)
        (prefix / version / "model.onnx").write_bytes(f"weights {version}".encode())
        (prefix / version / "sub" / "labels.txt").write_text("setosa\n")
    (prefix / ".staging").mkdir()
    (prefix / "empty").mkdir()
    return prefix


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(cache_dir=tmp_path / "cache")


def test_versions_are_the_sub_folders_in_natural_order(store: ModelStore, models: Path) -> None:
    assert store.list_versions(f"file://{models}") == ["1", "2", "10", "empty"]


def test_fetch_returns_the_folder_itself(store: ModelStore, models: Path) -> None:
    assert store.fetch(f"file://{models}/", "2") == models / "2"
    assert not store.cache_dir.exists()


def test_latest_follows_the_pointer_file(store: ModelStore, models: Path) -> None:
    (models / "latest").write_text("2\n")
    assert store.resolve(f"file://{models}", "latest").version == "2"
    assert store.fetch(f"file://{models}", "latest") == models / "2"


def test_latest_without_pointer_is_the_highest_version(store: ModelStore, tmp_path: Path) -> None:
    prefix = tmp_path / "numbered"
    for version in ("2", "10", "9"):
        (prefix / version).mkdir(parents=True)
        (prefix / version / "model.onnx").write_bytes(b"x")
    assert store.resolve(f"file://{prefix}", "latest").version == "10"


def test_missing_or_empty_version_is_not_found(store: ModelStore, models: Path) -> None:
    for version in ("7", "empty"):
        with pytest.raises(ModelNotFound, match=rf"^file://{models}/{version}/ not found"):
            store.fetch(f"file://{models}", version)
        with pytest.raises(ModelNotFound, match=rf"^file://{models}/{version}/ not found"):
            store.resolve(f"file://{models}", version)


def test_missing_prefix_has_no_versions(store: ModelStore, tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/nothing"
    assert store.list_versions(uri) == []
    with pytest.raises(ModelNotFound, match=rf"^no versions under file://{tmp_path}/nothing/$"):
        store.resolve(uri, "latest")


def test_digest_changes_with_content(store: ModelStore, models: Path) -> None:
    before = store.resolve(f"file://{models}", "1").digest
    assert store.resolve(f"file://{models}", "1").digest == before
    (models / "1" / "model.onnx").write_bytes(b"retrained")
    assert store.resolve(f"file://{models}", "1").digest != before
