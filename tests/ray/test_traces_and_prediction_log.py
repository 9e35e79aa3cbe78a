"""Traces and prediction logs from real replicas on a real Serve, through the path users take:
a canary split (the `/v2` application forwards to the version that answers) with dynamic
batching, exported to an OTLP receiver and a CloudEvents receiver on loopback, and JSON Lines
written to a real S3 (moto on loopback). Each replica is pointed at the receivers through its
model's `spec.runtimeEnv.env`, as a user would, so no other test's replicas trace anything.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from support.event_receiver import EventReceiver, LoopThread
from support.http import http_call
from support.models import model_deployment, route
from support.otlp_receiver import OtlpReceiver
from support.prometheus import scrape_until, total
from support.ray_cluster import ServeCluster
from support.s3 import S3Server

pytestmark = pytest.mark.ray

GOOD = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5, 3, 1, 0]}]}
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass
class Served:
    cluster: ServeCluster
    otlp: OtlpReceiver
    events: EventReceiver
    loop: LoopThread
    s3: S3Server
    bucket: str


@pytest.fixture(scope="module")
def served(
    serve_cluster: ServeCluster, s3_server: S3Server, example_models: Path
) -> Iterator[Served]:
    """`t-canary` (versions 1 and 2 split 50/50, batching, traced, logged as CloudEvents),
    `t-s3` (logged to S3 as JSON Lines) and `t-full` (a queue of 2 records, logged to a
    receiver that is down)."""
    loop = LoopThread()
    events = EventReceiver()
    loop.run(events.start())
    bucket = s3_server.new_bucket("predictions")
    iris = {"format": "onnx", "storageUri": (example_models / "iris-onnx").as_uri()}
    storage = {"endpointUrl": s3_server.endpoint_url, "region": "us-east-1"}
    with OtlpReceiver() as otlp:
        traced = {
            "env": [
                {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": otlp.url},
                {"name": "OTEL_BSP_SCHEDULE_DELAY", "value": "200"},  # export every 0.2 s
            ]
        }
        full = {"env": [{"name": "RAYSHIP_PREDICTION_LOG_QUEUE", "value": "2"}]}
        down = {"url": "http://127.0.0.1:9/events"}  # the discard port: nobody listens
        canary = {
            "model": iris,
            "batching": {"maxBatchSize": 4, "batchWaitTimeoutMs": 20},
            "runtimeEnv": traced,
            "logging": {"url": events.url},
        }
        s3_logged = {
            "model": iris,
            "storage": storage,
            "logging": {"storageUri": f"s3://{bucket}/logs", "mode": "response"},
        }
        serve_cluster.deploy(
            [
                route(model_deployment("t-canary", canary), {"1": 50, "2": 50}),
                # The bucket's credentials, as the operator passes those of spec.storage.
                route(model_deployment("t-s3", s3_logged), {"2": 100}, None, MOTO_CREDENTIALS),
                route(
                    model_deployment(
                        "t-full", {"model": iris, "runtimeEnv": full, "logging": down}
                    ),
                    {"2": 100},
                ),
            ]
        )
        try:
            yield Served(serve_cluster, otlp, events, loop, s3_server, bucket)
        finally:
            loop.run(events.stop())
            loop.close()


def infer(cluster: ServeCluster, model: str, headers: dict[str, str]) -> tuple[int, bytes]:
    body = json.dumps(GOOD).encode()
    status, _, answer = http_call(
        f"{cluster.url}/v2/models/{model}/infer", "POST", body, headers=headers
    )
    return status, answer


def test_a_split_request_joins_the_callers_trace_with_its_four_steps(served: Served) -> None:
    headers = {"traceparent": TRACEPARENT, "x-request-id": "trace-me"}
    status, _ = infer(served.cluster, "t-canary", headers)
    assert status == 200

    spans = served.otlp.wait_for_spans(5, timeout_s=60)
    (request,) = [span for span in spans if span.parent_span_id == CALLER_SPAN]
    assert request.trace_id == CALLER_TRACE  # through the /v2 hop, into the caller's trace
    assert request.attributes["http.response.status_code"] == 200
    assert request.resource["rayship.model.name"] == "t-canary"
    children = {span.name: span for span in spans if span.parent_span_id == request.span_id}
    assert sorted(children) == ["decode", "encode", "model", "queue"]
    assert all(span.trace_id == CALLER_TRACE for span in children.values())
    steps = [children[name] for name in ("decode", "queue", "model", "encode")]
    for before, after in itertools.pairwise(steps):
        assert before.end_ns <= after.start_ns, (before, after)  # one after the other
    assert request.start_ns <= steps[0].start_ns
    assert steps[-1].end_ns <= request.end_ns


def test_each_answer_is_logged_as_kserve_cloudevents(served: Served) -> None:
    answers = {}
    for index in range(4):
        status, answer = infer(served.cluster, "t-canary", {"x-request-id": f"log-{index}"})
        assert status == 200
        answers[f"log-{index}"] = answer

    def mine() -> list[Any]:
        return [post for post in served.events.accepted if post.headers["ce-id"] in answers]

    deadline = time.monotonic() + 60
    while len(mine()) < 8 and time.monotonic() < deadline:
        time.sleep(0.2)
    posts = mine()
    assert len(posts) == 8, posts  # a request and a response event each, nothing twice
    by_type: dict[str, dict[str, Any]] = {}
    for post in posts:
        by_type.setdefault(post.headers["ce-type"], {})[post.headers["ce-id"]] = post
    assert set(by_type) == {
        "org.kubeflow.serving.inference.request",
        "org.kubeflow.serving.inference.response",
    }
    requests = by_type["org.kubeflow.serving.inference.request"]
    responses = by_type["org.kubeflow.serving.inference.response"]
    assert set(requests) == set(responses) == set(answers)
    for request_id, answer in answers.items():
        assert json.loads(requests[request_id].body) == GOOD
        assert responses[request_id].body == answer
        assert requests[request_id].headers["ce-inferenceservicename"] == "t-canary"
        assert requests[request_id].headers["ce-specversion"] == "1.0"
        version = json.loads(answer)["model_version"]
        assert responses[request_id].headers["ce-source"].endswith(f"/versions/{version}")


def test_responses_land_in_s3_as_json_lines(served: Served) -> None:
    answers = {}
    for index in range(3):
        status, answer = infer(served.cluster, "t-s3", {"x-request-id": f"s3-{index}"})
        assert status == 200
        answers[f"s3-{index}"] = json.loads(answer)

    s3 = boto3.client("s3", endpoint_url=served.s3.endpoint_url, region_name="us-east-1")
    lines: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while len(lines) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        listed = s3.list_objects_v2(Bucket=served.bucket, Prefix="logs/").get("Contents", [])
        lines = [
            json.loads(line)
            for item in listed
            for line in s3.get_object(Bucket=served.bucket, Key=item["Key"])["Body"].iter_lines()
        ]
    assert {line["id"] for line in lines} == set(answers)
    for line in lines:
        assert line["model"] == "t-s3"
        assert line["version"] == "2"
        assert line["status"] == 200
        assert line["response"] == answers[line["id"]]
        assert line["request"] is None  # mode: response
    keys = [item["Key"] for item in listed]
    assert all(key.startswith("logs/t-s3/2/") and key.endswith(".jsonl") for key in keys), keys


def test_a_sink_that_is_down_costs_records_never_answers(served: Served) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: infer(served.cluster, "t-full", {})[0], range(40)))
    assert statuses == [200] * 40

    def dropped(samples: list[Any]) -> float:
        return total(
            samples,
            "ray_rayship_prediction_log_dropped_total",
            model="t-full",
            version="2",
            reason="queue_full",
        )

    samples = scrape_until(served.cluster.metrics_url, lambda s: dropped(s) > 0)
    assert dropped(samples) <= 40
