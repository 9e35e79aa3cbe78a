"""Dynamic batching on a real Serve: batches form, and nobody can tell from the answers.

Concurrent requests to a batched model get exactly what the same model gives each of them
alone, and a probe model (its output `rows` is the row count of the runtime call that served
the request) proves that calls holding several requests really happened.
"""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support.models import BATCH_PROBE_PREDICTOR, model_deployment, python_model, route
from support.ray_cluster import ServeCluster

pytestmark = pytest.mark.ray

CONCURRENT = 24
BATCHING = {"maxBatchSize": 8, "batchWaitTimeoutMs": 50}


@pytest.fixture(scope="module")
def served(
    serve_cluster: ServeCluster, example_models: Path, tmp_path_factory: Any
) -> ServeCluster:
    """The probe and iris, each once with batching and once without."""
    probe_dir = python_model(tmp_path_factory.mktemp("probe"), "probe", BATCH_PROBE_PREDICTOR)
    probe = {
        "format": "python",
        "storageUri": probe_dir.as_uri(),
        "python": {"predictorClass": "predictor:BatchProbe"},
    }
    iris = {"format": "onnx", "storageUri": (example_models / "iris-onnx").as_uri()}
    serve_cluster.deploy(
        [
            route(model_deployment("probe", {"model": probe}), {"1": 100}),
            route(model_deployment("probe-b", {"model": probe, "batching": BATCHING}), {"1": 100}),
            route(model_deployment("iris", {"model": iris}), {"2": 100}),
            route(model_deployment("iris-b", {"model": iris, "batching": BATCHING}), {"2": 100}),
        ]
    )
    return serve_cluster


def infer(served: ServeCluster, model: str, name: str, rows: np.ndarray) -> dict[str, Any]:
    body = {
        "id": f"r{rows.ravel()[0]:g}",
        "inputs": [
            {
                "name": name,
                "datatype": "FP32",
                "shape": list(rows.shape),
                "data": rows.ravel().tolist(),
            }
        ],
    }
    request = urllib.request.Request(
        f"{served.url}/v2/models/{model}/infer", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def concurrently(
    served: ServeCluster, model: str, name: str, requests: list[np.ndarray]
) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(lambda rows: infer(served, model, name, rows), requests))


def outputs(result: dict[str, Any]) -> dict[str, Any]:
    return {output["name"]: output for output in result["outputs"]}


def test_batches_of_more_than_one_request_form(served: ServeCluster) -> None:
    requests = [np.array([[i, -i]], dtype=np.float32) for i in range(CONCURRENT)]
    results = concurrently(served, "probe-b", "x", requests)
    rows = [outputs(result)["rows"]["data"][0] for result in results]
    assert max(rows) > 1, rows
    assert max(rows) <= BATCHING["maxBatchSize"]
    for sent, result in zip(requests, results, strict=True):
        assert result["id"] == f"r{sent[0, 0]:g}"
        assert outputs(result)["y"]["data"] == (sent * 2).ravel().tolist()
        assert outputs(result)["y"]["shape"] == [1, 2]


def test_batched_answers_equal_unbatched_ones(served: ServeCluster) -> None:
    rng = np.random.default_rng(7)
    # Mixed batch sizes: requests of 1, 2 and 3 rows stack along the first dimension.
    requests = [
        (rng.normal(5, 2, size=(1 + i % 3, 4))).astype(np.float32) for i in range(CONCURRENT)
    ]
    batched = concurrently(served, "iris-b", "input", requests)
    alone = [infer(served, "iris", "input", rows) for rows in requests]
    for with_batching, without in zip(batched, alone, strict=True):
        assert with_batching["id"] == without["id"]
        assert with_batching["outputs"] == without["outputs"]


def test_requests_whose_shapes_differ_run_on_their_own(served: ServeCluster) -> None:
    requests = [np.full((1 + i % 2, 2), i, dtype=np.float32) for i in range(CONCURRENT)]
    results = concurrently(served, "probe-b", "x", requests)
    for sent, result in zip(requests, results, strict=True):
        got = outputs(result)
        assert got["y"]["data"] == (sent * 2).ravel().tolist()
        assert got["y"]["shape"] == list(sent.shape)
        assert len(got["rows"]["data"]) == len(sent)
