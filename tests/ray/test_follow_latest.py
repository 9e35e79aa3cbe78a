"""Local mode follows `latest` on a real Ray with a file store, by the operator's rules."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rayship.follow import Follower
from rayship.storage import ModelStore
from support.models import build_models, model_deployment, route
from support.ray_cluster import ServeCluster
from support.traffic import v2_client

pytestmark = pytest.mark.ray

WAIT_S = 180


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {WAIT_S}s")
        time.sleep(0.5)


def answers_only(infer: Callable[[str], str], model: str, version: str) -> bool:
    return all(infer(model) == version for _ in range(10))


def test_new_latest_rolls_out_and_a_broken_one_stays_out(
    serve_cluster: ServeCluster, tmp_path: Path
) -> None:
    root = build_models.build_iris_onnx(tmp_path / "store")
    (root / "latest").unlink()  # latest: the highest version folder
    unpublished = tmp_path / "v2"
    shutil.move(root / "2", unpublished)
    md = model_deployment(
        "follow",
        {
            "model": {
                "format": "onnx",
                "storageUri": root.as_uri(),
                "version": "latest",
                "pollIntervalSeconds": 1,
            }
        },
    )
    routing = route(md, {"1": 100})
    serve_cluster.deploy([routing])
    said: list[str] = []
    follower = Follower(
        serve_cluster.dashboard, serve_cluster.http, ModelStore(), [routing], said.append
    )
    assert follower.active
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop,), daemon=True)
    thread.start()
    infer = v2_client(serve_cluster.address)
    try:
        assert answers_only(infer, "follow", "1")
        first = serve_cluster.replica_ids("follow")["follow@1"]

        shutil.move(unpublished, root / "2")  # publish version 2
        wait_until(lambda: answers_only(infer, "follow", "2"), "traffic moving to version 2")
        assert any("version 2 serves (was 1" in line for line in said), said
        assert serve_cluster.replica_ids("follow")["follow@1"] == first  # kept warm, untouched

        broken = root / "3"
        broken.mkdir()
        (broken / "model.onnx").write_bytes(b"this is not an onnx model")
        wait_until(lambda: any("version 3 failed to load" in line for line in said), "a report")
        failure = next(line for line in said if "version 3 failed to load" in line)
        assert failure.endswith("still serving version 2"), failure
        assert "\n" not in failure
        assert answers_only(infer, "follow", "2")
        assert {w.version for w in follower.models[0].state.live} == {"1", "2"}
    finally:
        stop.set()
        thread.join(timeout=30)
