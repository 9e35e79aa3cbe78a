"""Metrics, traces and prediction logs of a canary applied with kubectl, through the operator.

The operator composes what the replicas read (`spec.logging` with the namespace in
`user_config`, `spec.runtimeEnv.env` with the OpenTelemetry endpoint): this checks that
composition on the path users take, and that changing `spec.logging` restarts no replica.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.conftest import Stack
from support.event_receiver import EventReceiver, LoopThread
from support.http import http_call
from support.otlp_receiver import OtlpReceiver
from support.prometheus import scrape_until, total
from support.traffic import settled
from support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.kube, pytest.mark.ray]

ROW = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [6, 3, 5, 2]}]}
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
REQUESTS = "ray_rayship_inference_requests_total"


@pytest.fixture
def events() -> Iterator[tuple[EventReceiver, LoopThread]]:
    """A CloudEvents receiver on loopback, on a loop of its own."""
    loop = LoopThread()
    receiver = EventReceiver()
    loop.run(receiver.start())
    try:
        yield receiver, loop
    finally:
        loop.run(receiver.stop())
        loop.close()


def infer(stack: Stack, request_id: str) -> dict[str, Any]:
    headers = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "x-request-id": request_id}
    url = f"{stack.serve.url}/v2/models/observed/infer"
    status, _, body = http_call(url, "POST", json.dumps(ROW).encode(), headers=headers)
    assert status == 200, body
    answer: dict[str, Any] = json.loads(body)
    return answer


def logged_ids(receiver: EventReceiver, ids: set[str], count: int, timeout_s: float) -> set[str]:
    """The request ids among `ids` with events delivered, once `count` events have come (or
    the time is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        mine = [post for post in receiver.accepted if post.headers["ce-id"] in ids]
        if len(mine) >= count or time.monotonic() > deadline:
            return {post.headers["ce-id"] for post in mine}
        time.sleep(0.2)


def reconfigured(stack: Stack) -> bool:
    """Whether every version of `observed` runs, healthy, a user_config without logging: Serve
    reconfigures the replicas after it takes the new config, and only then are they done."""
    deployments = [
        deployment
        for name, app in stack.serve.dashboard.applications().items()
        if name.startswith("observed@")
        for deployment in (app.get("deployments") or {}).values()
    ]
    return bool(deployments) and all(
        deployment.get("status") == "HEALTHY"
        and "logging" not in (deployment["deployment_config"].get("user_config") or {})
        for deployment in deployments
    )


def test_a_canary_is_counted_traced_and_logged(
    stack: Stack, events: tuple[EventReceiver, LoopThread]
) -> None:
    receiver, _ = events
    uri = f"s3://{stack.s3.new_bucket()}/observed"
    stack.upload_iris(uri, ("1", "2"))
    with OtlpReceiver() as otlp:
        env = [
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": otlp.url},
            {"name": "OTEL_BSP_SCHEDULE_DELAY", "value": "200"},
        ]
        canary = {"canary": {"version": "2", "percent": 50}, "readinessDeadlineSeconds": 60}
        spec = {"runtimeEnv": {"env": env}, "logging": {"url": receiver.url}}
        stack.apply(stack.model_deployment("observed", uri, "1", rollout=canary, **spec))
        stack.wait_for(
            "observed", lambda s: s.get("canaryVersion") == "2" and s.get("phase") == "Ready"
        )

        answers = {f"op-{index}": infer(stack, f"op-{index}") for index in range(12)}
        assert {answer["model_version"] for answer in answers.values()} == {"1", "2"}

        # Each request's two events, naming the ModelDeployment's namespace.
        assert logged_ids(receiver, set(answers), 24, timeout_s=60) == set(answers)
        mine = [post for post in receiver.accepted if post.headers["ce-id"] in answers]
        assert len(mine) == 24
        assert {post.headers["ce-namespace"] for post in mine} == {stack.namespace}
        for post in mine:
            if post.headers["ce-type"].endswith(".response"):
                answer = answers[post.headers["ce-id"]]
                assert json.loads(post.body) == answer
                assert post.headers["ce-endpoint"] == answer["model_version"]

        # Each request's span, in the caller's trace, from the version that answered it.
        spans = otlp.wait_for_spans(12 * 4, timeout_s=60)  # infer, decode, model, encode
        requests = [span for span in spans if span.parent_span_id == CALLER_SPAN]
        assert len(requests) == 12
        assert {span.trace_id for span in requests} == {CALLER_TRACE}
        answered = sorted(answer["model_version"] for answer in answers.values())
        assert sorted(span.resource["rayship.model.version"] for span in requests) == answered

    # Counted once each, by the version that answered.
    def counted(samples: list[Any]) -> float:
        return total(samples, REQUESTS, model="observed", code="200")

    samples = scrape_until(stack.serve.metrics_url, lambda s: counted(s) >= 12)
    assert counted(samples) == 12
    for version in ("1", "2"):
        served = sum(answer["model_version"] == version for answer in answers.values())
        assert total(samples, REQUESTS, model="observed", version=version) == served

    # Logging off is a user_config change: no replica restarts, and nothing more is logged.
    replicas = stack.serve.replica_ids("observed")
    stack.patch("observed", {"logging": None})
    generation = int(stack.get("observed")["metadata"]["generation"])
    stack.wait_for("observed", settled(generation, canaryVersion="2"))
    eventually(lambda: reconfigured(stack), timeout_s=60, what="replicas without spec.logging")
    later = {f"off-{index}": infer(stack, f"off-{index}") for index in range(6)}
    assert logged_ids(receiver, set(later), 1, timeout_s=5) == set()
    assert stack.serve.replica_ids("observed") == replicas
