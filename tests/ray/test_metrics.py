"""Data-plane metrics on a real Serve, scraped from Ray's Prometheus endpoint as Prometheus
would: exact counts per model, version and status code, through the model URL, a versioned URL,
a canary split and the dynamic batcher.

Models here have names of their own: counters live as long as the session's Ray, and other
modules serve `iris` too.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from support.http import http_call
from support.models import model_deployment, route
from support.prometheus import scrape_until, total
from support.ray_cluster import ServeCluster

pytestmark = pytest.mark.ray

REQUESTS = "ray_rayship_inference_requests_total"
DURATION = "ray_rayship_inference_request_duration_seconds"
COMPUTE = "ray_rayship_inference_compute_duration_seconds"
QUEUE = "ray_rayship_inference_queue_duration_seconds"
BATCH = "ray_rayship_inference_batch_size"
REQUEST_BYTES = "ray_rayship_inference_request_bytes_total"
RESPONSE_BYTES = "ray_rayship_inference_response_bytes_total"
LOAD = "ray_rayship_model_load_duration_seconds"

GOOD = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5, 3, 1, 0]}]}
BAD = {"inputs": [{"name": "nope", "datatype": "FP32", "shape": [1], "data": [1]}]}


@pytest.fixture(scope="module")
def served(serve_cluster: ServeCluster, example_models: Path) -> ServeCluster:
    """One iris on version 2 with version 1 live, one split 50/50, one batching."""
    iris = {"format": "onnx", "storageUri": (example_models / "iris-onnx").as_uri()}
    batching = {"maxBatchSize": 8, "batchWaitTimeoutMs": 200}
    serve_cluster.deploy(
        [
            route(model_deployment("m-iris", {"model": iris}), {"2": 100}, live=["1", "2"]),
            route(model_deployment("m-split", {"model": iris}), {"1": 50, "2": 50}),
            route(model_deployment("m-batch", {"model": iris, "batching": batching}), {"2": 100}),
        ]
    )
    return serve_cluster


def infer(served: ServeCluster, path: str, document: Any) -> tuple[int, bytes, bytes]:
    """Status, request body and response body of one JSON inference request."""
    body = json.dumps(document).encode()
    status, _, answer = http_call(f"{served.url}/v2/models/{path}/infer", "POST", body)
    return status, body, answer


def test_requests_are_counted_by_version_and_status_code(served: ServeCluster) -> None:
    calls = [infer(served, "m-iris", GOOD) for _ in range(3)]
    calls += [infer(served, "m-iris", BAD) for _ in range(2)]
    assert [status for status, _, _ in calls] == [200, 200, 200, 400, 400]
    status, _, _ = infer(served, "m-iris/versions/1", GOOD)  # through version 2's replica
    assert status == 200
    for path in ("", "/ready", "/versions/1"):  # metadata and readiness are no inferences
        assert http_call(f"{served.url}/v2/models/m-iris{path}")[0] == 200

    v1, v2 = {"model": "m-iris", "version": "1"}, {"model": "m-iris", "version": "2"}
    samples = scrape_until(
        served.metrics_url,
        lambda s: total(s, REQUESTS, **v2) == 5 and total(s, REQUESTS, **v1) == 1,
    )
    assert total(samples, REQUESTS, **v2, code="200") == 3
    assert total(samples, REQUESTS, **v2, code="400") == 2
    assert total(samples, REQUESTS, **v1, code="200") == 1
    assert total(samples, f"{DURATION}_count", **v2) == 5
    assert total(samples, f"{COMPUTE}_count", **v2) == 3  # refused inputs never reach the model
    assert total(samples, f"{COMPUTE}_count", **v1) == 1
    assert total(samples, REQUEST_BYTES, **v2) == sum(len(body) for _, body, _ in calls)
    assert total(samples, RESPONSE_BYTES, **v2) == sum(len(answer) for _, _, answer in calls)
    assert total(samples, f"{QUEUE}_count", **v2) == 0  # no batching, no queue
    for version in (v1, v2):
        assert total(samples, f"{LOAD}_count", **version) == 1  # one replica, loaded once
        assert total(samples, f"{LOAD}_sum", **version) > 0


def test_a_canary_split_counts_each_request_once(served: ServeCluster) -> None:
    statuses = [infer(served, "m-split", GOOD)[0] for _ in range(20)]
    assert statuses == [200] * 20

    def answered(version: str, samples: list[Any]) -> float:
        return total(samples, REQUESTS, model="m-split", version=version, code="200")

    samples = scrape_until(served.metrics_url, lambda s: answered("1", s) + answered("2", s) >= 20)
    assert answered("1", samples) + answered("2", samples) == 20
    assert answered("1", samples) > 0
    assert answered("2", samples) > 0


def test_batches_report_their_size_and_each_request_its_wait(served: ServeCluster) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = [
            status for status, _, _ in pool.map(lambda _: infer(served, "m-batch", GOOD), range(8))
        ]
    assert statuses == [200] * 8

    labels = {"model": "m-batch", "version": "2"}
    samples = scrape_until(served.metrics_url, lambda s: total(s, REQUESTS, **labels) == 8)
    assert total(samples, f"{QUEUE}_count", **labels) == 8  # each request waited once
    batches = total(samples, f"{BATCH}_count", **labels)
    assert 1 <= batches <= 8
    assert total(samples, f"{COMPUTE}_count", **labels) == batches  # one runtime call a batch
    # No batch is larger than maxBatchSize. (Ray approximates a histogram's _sum from its
    # buckets, so the sum of the sizes cannot be checked exactly.)
    assert total(samples, f"{BATCH}_bucket", **labels, le="8.0") == batches
