"""Prediction logging without Ray: the logger, its queue and both sinks, against real parts.

The HTTP sink posts to a real aiohttp receiver on loopback (`support.event_receiver`), the S3
sink writes to moto's server (through `support.blackout` where S3 must go down), on a real
event loop. Back-off is shortened so that outages last a fraction of a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import struct
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from rayship.contract import PredictionLogging
from rayship.spec import LoggingSpec, LogMode, StorageSpec
from rayship_predictors.prediction_log import (
    Backoff,
    BatchSizes,
    PredictionLogger,
    PredictionRecord,
    open_sink,
)
from rayship_predictors.prediction_log_events import cloud_events
from rayship_predictors.prediction_log_s3 import json_line, v2_document
from rayship_predictors.settings import PredictorSettings
from rayship_predictors.v2.codec import encode_response
from rayship_predictors.v2.grpc_codec import decode_infer_request, encode_infer_response
from support.blackout import Blackout
from support.event_receiver import EventReceiver, Received
from support.s3 import REGION, S3Server

MODEL, VERSION, NAMESPACE = "iris", "3", "team-a"
ARRIVED = datetime(2025, 1, 31, 12, 0, 0, 250000, tzinfo=UTC)
FAST = Backoff(first_seconds=0.05, max_seconds=0.2)
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"

JSON_REQUEST = (
    b'{"id":"r1","inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1.5,2.5]}]}'
)
JSON_RESPONSE = (
    b'{"model_name":"iris","model_version":"3","id":"r1",'
    b'"outputs":[{"name":"y","datatype":"INT64","shape":[1],"data":[2]}]}'
)


def record(request_id: str = "r1", **fields: Any) -> PredictionRecord:
    values: dict[str, Any] = {
        "model": MODEL,
        "version": VERSION,
        "request_id": request_id,
        "timestamp": ARRIVED,
        "latency_seconds": 0.125,
        "status": 200,
        "request": JSON_REQUEST,
        "request_header_length": None,
        "response": JSON_RESPONSE,
        "response_header_length": None,
    }
    return PredictionRecord(**{**values, **fields})


def binary_request() -> tuple[bytes, int]:
    """A V2 request with an FP32 and a BYTES input as binary data, the BYTES not all UTF-8."""
    x = np.array([[1.0, 2.0]], dtype="<f4").tobytes()
    words = b"".join(struct.pack("<I", len(word)) + word for word in (b"ok", b"\xff\xfe"))
    header = json.dumps(
        {
            "id": "r2",
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [1, 2],
                 "parameters": {"binary_data_size": len(x)}},
                {"name": "w", "datatype": "BYTES", "shape": [2],
                 "parameters": {"binary_data_size": len(words), "note": "kept"}},
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()  # fmt: skip
    return header + x + words, len(header)


def binary_response() -> tuple[bytes, int]:
    """The codec's binary answer with a NaN in it."""
    outputs = {"y": np.array([[0.5, np.nan]], dtype=np.float32)}
    body, header_length = encode_response(MODEL, VERSION, "r2", outputs, None, True)
    assert header_length is not None
    return body, header_length


def binary_record() -> PredictionRecord:
    request, request_length = binary_request()
    response, response_length = binary_response()
    return record(
        "r2",
        request=request,
        request_header_length=request_length,
        response=response,
        response_header_length=response_length,
    )


class Drops:
    """The `on_drop` callback: every report, in order."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, int]] = []

    def __call__(self, reason: str, count: int) -> None:
        self.reports.append((reason, count))

    def total(self, reason: str) -> int:
        return sum(count for why, count in self.reports if why == reason)


def to_url(url: str, mode: LogMode = "all", sample_rate: float = 1.0) -> PredictionLogging:
    return PredictionLogging(LoggingSpec(mode=mode, sample_rate=sample_rate, url=url), NAMESPACE)


def to_s3(uri: str, mode: LogMode = "all") -> PredictionLogging:
    return PredictionLogging(LoggingSpec(mode=mode, storage_uri=uri), NAMESPACE)


def new_logger(drops: Drops, **tuning: Any) -> PredictionLogger:
    return PredictionLogger(MODEL, VERSION, drops, batch_wait_seconds=0.01, backoff=FAST, **tuning)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


async def until(probe: Callable[[], object], what: str, timeout_s: float = 20) -> None:
    """Wait for something the logger does in the background."""
    deadline = time.monotonic() + timeout_s
    while not probe():
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        await asyncio.sleep(0.02)


def event_headers(post: Received) -> dict[str, str]:
    """What a CloudEvents receiver reads: the ce-* attributes and how to read the body."""
    kept = ("content-type", "inference-header-content-length")
    return {
        name: value
        for name, value in post.headers.items()
        if name.startswith("ce-") or name in kept
    }


def kserve_headers(
    request_id: str, kind: str, time_: str, content_type: str = "application/json"
) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": request_id,
        "ce-type": kind,
        "ce-source": "/v2/models/iris/versions/3",
        "ce-time": time_,
        "ce-inferenceservicename": MODEL,
        "ce-namespace": NAMESPACE,
        "ce-component": "predictor",
        "ce-endpoint": VERSION,
        "content-type": content_type,
    }


# --- the CloudEvents sink ---------------------------------------------------------------------


def test_events_carry_kserve_headers_and_the_bodies_as_they_were() -> None:
    async def scenario() -> None:
        drops = Drops()
        async with EventReceiver() as receiver:
            log = new_logger(drops)
            log.configure(to_url(receiver.url), StorageSpec())
            log.offer(record())
            request_event, response_event = await receiver.wait_for(2)
            await log.drain(5)

        assert event_headers(request_event) == kserve_headers(
            "r1", REQUEST_TYPE, "2025-01-31T12:00:00.250000Z"
        )
        assert request_event.body == JSON_REQUEST
        assert event_headers(response_event) == kserve_headers(
            "r1", RESPONSE_TYPE, "2025-01-31T12:00:00.375000Z"
        )
        assert response_event.body == JSON_RESPONSE
        assert drops.reports == []

    run(scenario)


def test_binary_bodies_travel_with_their_header_length() -> None:
    async def scenario() -> None:
        async with EventReceiver() as receiver:
            log = new_logger(Drops())
            log.configure(to_url(receiver.url), StorageSpec())
            sent = binary_record()
            log.offer(sent)
            request_event, response_event = await receiver.wait_for(2)
            await log.drain(5)

        binary = "application/octet-stream"
        assert event_headers(request_event) == {
            **kserve_headers("r2", REQUEST_TYPE, "2025-01-31T12:00:00.250000Z", binary),
            "inference-header-content-length": str(sent.request_header_length),
        }
        assert request_event.body == sent.request
        assert event_headers(response_event)["inference-header-content-length"] == str(
            sent.response_header_length
        )
        assert response_event.body == sent.response

    run(scenario)


@pytest.mark.parametrize(
    ("mode", "types"),
    [
        ("request", [REQUEST_TYPE]),
        ("response", [RESPONSE_TYPE]),
        ("all", [REQUEST_TYPE, RESPONSE_TYPE]),
    ],
)
def test_the_mode_chooses_the_events(mode: LogMode, types: list[str]) -> None:
    assert [e.headers["ce-type"] for e in cloud_events(record(), mode, NAMESPACE)] == types


def test_like_kserve_an_error_answer_sends_only_the_request_event() -> None:
    failed = record(status=400, response=b'{"error":"no"}')
    assert [e.headers["ce-type"] for e in cloud_events(failed, "all", NAMESPACE)] == [REQUEST_TYPE]


def test_request_and_response_events_share_the_request_id() -> None:
    async def scenario() -> None:
        async with EventReceiver() as receiver:
            log = new_logger(Drops(), batch_sizes=BatchSizes(3, 3))
            log.configure(to_url(receiver.url), StorageSpec())
            for index in range(5):
                log.offer(record(f"r{index}"))
            posts = await receiver.wait_for(10)
            await log.drain(5)

        pairs = sorted((post.headers["ce-id"], post.headers["ce-type"]) for post in posts)
        assert pairs == [
            (f"r{index}", kind) for index in range(5) for kind in (REQUEST_TYPE, RESPONSE_TYPE)
        ]

    run(scenario)


def test_a_receiver_that_is_down_gets_the_records_once_it_is_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        drops = Drops()
        receiver = EventReceiver()
        await receiver.start()
        await receiver.stop()  # its port is known, and refuses connections
        log = new_logger(drops)
        log.configure(to_url(receiver.url), StorageSpec())
        log.offer(record("r1"))
        log.offer(record("r2"))
        await until(lambda: "retrying 2 records" in caplog.text, "a failed try")

        log.offer(record("r3"))  # queued while the sink is down
        await receiver.start()
        posts = await receiver.wait_for(6)
        await log.drain(5)
        await receiver.stop()

        assert sorted({post.headers["ce-id"] for post in posts}) == ["r1", "r2", "r3"]
        assert drops.reports == []

    with caplog.at_level(logging.WARNING):
        run(scenario)


def test_a_failing_receiver_is_retried_and_a_refusing_one_is_not() -> None:
    async def scenario() -> None:
        drops = Drops()
        async with EventReceiver() as receiver:
            log = new_logger(drops)
            log.configure(to_url(receiver.url), StorageSpec())
            receiver.status = 503
            log.offer(record("retried"))
            await receiver.wait_for(2, accepted=False)  # two tries of the request event
            receiver.status = 200
            delivered = await receiver.wait_for(2)

            receiver.status = 400
            log.offer(record("refused"))
            await until(lambda: drops.reports, "the refusal counted")
            await log.drain(5)

        assert [post.headers["ce-id"] for post in delivered] == ["retried", "retried"]
        assert drops.reports == [("sink_failed", 1)]

    run(scenario)


# --- the queue --------------------------------------------------------------------------------


def test_a_full_queue_drops_and_counts_and_never_blocks() -> None:
    async def scenario() -> None:
        drops = Drops()
        receiver = EventReceiver()
        await receiver.start()
        await receiver.stop()
        log = new_logger(drops, queue_size=2)
        log.configure(to_url(receiver.url), StorageSpec())

        for index in range(5):
            log.offer(record(f"r{index}"))

        assert drops.reports == [("queue_full", 1)] * 3
        await log.drain(0.2)  # the receiver stays down: the two queued are given up
        assert drops.total("stopped") == 2

    run(scenario)


@pytest.mark.parametrize(("rate", "logged"), [(0.0, 0), (1.0, 1000)])
def test_the_sample_rate_decides_how_many_are_logged(rate: float, logged: int) -> None:
    log = new_logger(Drops())
    log.configure(to_url("http://127.0.0.1:9/events", sample_rate=rate), StorageSpec())
    assert sum(log.sampled() for _ in range(1000)) == logged


def test_a_share_is_sampled_at_random() -> None:
    log = new_logger(Drops())
    log.configure(to_url("http://127.0.0.1:9/events", sample_rate=0.25), StorageSpec())
    assert 150 < sum(log.sampled() for _ in range(1000)) < 350


def test_nothing_is_sampled_without_logging() -> None:
    log = new_logger(Drops())
    assert not any(log.sampled() for _ in range(100))


def test_switching_sinks_hands_over_what_is_queued() -> None:
    async def scenario() -> None:
        drops = Drops()
        down = EventReceiver()
        await down.start()
        await down.stop()
        async with EventReceiver() as up:
            log = new_logger(drops)
            log.configure(to_url(down.url), StorageSpec())
            for index in range(3):
                log.offer(record(f"r{index}"))
            log.configure(to_url(up.url), StorageSpec())
            posts = await up.wait_for(6)
            await log.drain(5)

        assert sorted({post.headers["ce-id"] for post in posts}) == ["r0", "r1", "r2"]
        assert drops.reports == []

    run(scenario)


def test_turning_logging_off_drops_what_is_queued_and_counts_it() -> None:
    async def scenario() -> None:
        drops = Drops()
        down = EventReceiver()
        await down.start()
        await down.stop()
        log = new_logger(drops)
        log.configure(to_url(down.url), StorageSpec())
        for index in range(3):
            log.offer(record(f"r{index}"))
        log.configure(None, StorageSpec())
        await until(lambda: drops.total("disabled") == 3, "the queued records dropped")
        log.offer(record("after"))  # not logging: nothing queued, nothing counted
        await log.drain(1)
        assert drops.reports == [("disabled", 3)]

    run(scenario)


def test_drain_sends_what_is_queued() -> None:
    async def scenario() -> None:
        async with EventReceiver() as receiver:
            log = new_logger(Drops(), batch_sizes=BatchSizes(2, 2))
            log.configure(to_url(receiver.url, mode="request"), StorageSpec())
            for index in range(7):
                log.offer(record(f"r{index}"))
            await log.drain(10)
            assert len(receiver.accepted) == 7

    run(scenario)


def test_settings_read_the_queue_and_batch_sizes() -> None:
    settings = PredictorSettings.from_env(
        {
            "RAYSHIP_PREDICTION_LOG_QUEUE": "50",
            "RAYSHIP_PREDICTION_LOG_BATCH": "5",
            "RAYSHIP_PREDICTION_LOG_OBJECT_RECORDS": "7",
        }
    )
    assert (
        settings.prediction_log_queue,
        settings.prediction_log_batch,
        settings.prediction_log_object_records,
    ) == (50, 5, 7)
    with pytest.raises(ValueError, match="RAYSHIP_PREDICTION_LOG_OBJECT_RECORDS must be 1"):
        PredictorSettings.from_env({"RAYSHIP_PREDICTION_LOG_OBJECT_RECORDS": "0"})
    with pytest.raises(ValueError, match="RAYSHIP_PREDICTION_LOG_QUEUE must be 1 or more"):
        PredictorSettings.from_env({"RAYSHIP_PREDICTION_LOG_QUEUE": "0"})


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = Backoff(first_seconds=1, max_seconds=5).delays()
    assert [next(delays) for _ in range(5)] == [1, 2, 4, 5, 5]


# --- the S3 sink ------------------------------------------------------------------------------


def test_v2_documents_turn_binary_data_into_data_lists() -> None:
    body, header_length = binary_request()
    assert v2_document(body, header_length, "inputs") == {
        "id": "r2",
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]},
            {"name": "w", "datatype": "BYTES", "shape": [2], "parameters": {"note": "kept"},
             "data": ["ok", "\\xff\\xfe"]},
        ],
        "parameters": {"binary_data_output": True},
    }  # fmt: skip


def test_lines_are_strict_json_and_keep_what_is_not_v2() -> None:
    bad = record("r9", status=400, request=b"{not json", response=b'{"error":"malformed"}')
    line = json_line(bad, "all")
    assert line.endswith(b"\n")
    assert json.loads(line, parse_constant=pytest.fail) == {
        "model": MODEL,
        "version": VERSION,
        "id": "r9",
        "timestamp": "2025-01-31T12:00:00.250000Z",
        "latency_ms": 125.0,
        "status": 400,
        "request": None,
        "request_base64": "e25vdCBqc29u",
        "response": {"error": "malformed"},
    }


def grpc_record(**fields: Any) -> PredictionRecord:
    """A call through the V2 gRPC service: protobuf bodies as tritonclient's generated code
    writes them, and as the replica answers."""
    request = service_pb2.ModelInferRequest(model_name=MODEL, id="g1")
    request.parameters["temperature"].double_param = 0.5
    tensor = request.inputs.add(name="w", datatype="BYTES", shape=[2])
    tensor.parameters["note"].string_param = "kept"
    tensor.contents.bytes_contents.extend([b"ok", b"\xff"])
    request.outputs.add(name="y")
    body = request.SerializeToString()
    answer = encode_infer_response(
        MODEL, VERSION, decode_infer_request(body), {"y": np.array([[1.5, 2.5]], np.float32)}
    )
    return record("g1", **{"request": body, "response": answer, "grpc": True, **fields})


def test_grpc_calls_are_written_in_the_v2_json_form() -> None:
    line = json.loads(json_line(grpc_record(), "all"), parse_constant=pytest.fail)
    assert line["request"] == {
        "id": "g1",
        "parameters": {"temperature": 0.5},
        "inputs": [{"name": "w", "datatype": "BYTES", "shape": [2],
                    "parameters": {"note": "kept"}, "data": ["ok", "\\xff"]}],
        "outputs": [{"name": "y"}],
    }  # fmt: skip
    assert line["response"] == {
        "model_name": MODEL,
        "model_version": VERSION,
        "id": "g1",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.5]}],
    }


def test_grpc_events_carry_the_protobuf_bodies_as_they_were() -> None:
    grpc = grpc_record()
    request, response = cloud_events(grpc, "all", NAMESPACE)
    assert (request.body, response.body) == (grpc.request, grpc.response)
    assert request.headers["Content-Type"] == response.headers["Content-Type"]
    assert request.headers["Content-Type"] == "application/x-protobuf"


def test_a_failed_grpc_call_keeps_its_json_error_body() -> None:
    failed = grpc_record(status=400, response=b'{"error":"input \'w\': bad"}')
    line = json.loads(json_line(failed, "all"), parse_constant=pytest.fail)
    assert line["request"]["id"] == "g1"
    assert line["response"] == {"error": "input 'w': bad"}


def read_lines(s3: S3Server, bucket: str, prefix: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The keys under a prefix and every line of every object, in key order."""
    listed = s3.client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    keys = sorted(item["Key"] for item in listed)
    lines = []
    for key in keys:
        body = s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        lines += [json.loads(line, parse_constant=pytest.fail) for line in body.splitlines()]
    return keys, lines


KEY = re.compile(r"^logs/iris/3/2025/01/31/120000-[0-9a-f]{32}\.jsonl$")


def test_batches_become_json_lines_objects_in_s3(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket("logs")

    async def scenario() -> None:
        drops = Drops()
        log = new_logger(drops)
        log.configure(to_s3(f"s3://{bucket}/logs"), s3_server.storage)
        log.offer(record())
        log.offer(binary_record())
        await log.drain(10)
        assert drops.reports == []

    run(scenario)
    keys, lines = read_lines(s3_server, bucket, "logs/")
    assert len(keys) == 1
    assert KEY.match(keys[0]), keys
    common = {"model": MODEL, "version": VERSION, "timestamp": "2025-01-31T12:00:00.250000Z",
              "latency_ms": 125.0, "status": 200}  # fmt: skip
    assert lines == [
        {**common, "id": "r1", "request": json.loads(JSON_REQUEST),
         "response": json.loads(JSON_RESPONSE)},
        {**common, "id": "r2",
         "request": v2_document(*binary_request(), "inputs"),
         "response": {"model_name": MODEL, "model_version": VERSION, "id": "r2", "outputs": [
             {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [0.5, None]}]}},
    ]  # fmt: skip


def test_each_sink_takes_batches_of_its_own_size(s3_server: S3Server) -> None:
    """An S3 object holds up to `object_records` records; CloudEvents go `posts` at a time."""
    bucket = s3_server.new_bucket("logs")

    async def scenario() -> None:
        log = new_logger(Drops(), batch_sizes=BatchSizes(posts=2, object_records=4))
        log.configure(to_s3(f"s3://{bucket}/sized"), s3_server.storage)
        for index in range(10):
            log.offer(record(f"r{index}"))
        await log.drain(10)

    run(scenario)
    keys, lines = read_lines(s3_server, bucket, "sized/")
    assert len(lines) == 10
    assert len(keys) == 3  # 4 + 4 + 2: the whole queue was there when the first batch filled
    assert open_sink(to_s3(f"s3://{bucket}/x"), s3_server.storage, BatchSizes(2, 4)).batch_size == 4
    assert open_sink(to_url("http://127.0.0.1:1/"), StorageSpec(), BatchSizes(2, 4)).batch_size == 2


@pytest.mark.parametrize(
    ("mode", "kept"),
    [("request", ("request",)), ("response", ("response",)), ("all", ("request", "response"))],
)
def test_the_mode_chooses_what_each_line_holds(mode: LogMode, kept: tuple[str, ...]) -> None:
    line = json.loads(json_line(record(), mode))
    assert {kind: line[kind] is not None for kind in ("request", "response")} == {
        kind: kind in kept for kind in ("request", "response")
    }


def test_s3_that_is_down_gets_the_records_once_it_is_back(
    s3_server: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = s3_server.new_bucket("logs")
    moto = urlsplit(s3_server.endpoint_url)

    async def scenario() -> None:
        drops = Drops()
        with Blackout((str(moto.hostname), int(moto.port or 80))) as path:
            path.cut()
            log = new_logger(drops)
            storage = StorageSpec(endpoint_url=path.url, region=REGION)
            log.configure(to_s3(f"s3://{bucket}/logs", mode="request"), storage)
            for index in range(3):
                log.offer(record(f"r{index}"))
            await until(lambda: "retrying 3 records" in caplog.text, "a failed try")
            path.restore()
            await log.drain(20)
        assert drops.reports == []

    with caplog.at_level(logging.WARNING):
        run(scenario)
    _, lines = read_lines(s3_server, bucket, "logs/")
    assert [(line["id"], line["response"]) for line in lines] == [
        ("r0", None),
        ("r1", None),
        ("r2", None),
    ]


def test_a_bucket_that_does_not_exist_refuses_and_is_counted(s3_server: S3Server) -> None:
    async def scenario() -> None:
        drops = Drops()
        log = new_logger(drops)
        log.configure(to_s3("s3://no-such-bucket-for-logs/x"), s3_server.storage)
        log.offer(record())
        await log.drain(10)
        assert drops.reports == [("sink_failed", 1)]

    run(scenario)
