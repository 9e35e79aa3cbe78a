"""Request traces reach a real OTLP/HTTP receiver on loopback, nested under the caller's trace;
with no endpoint configured nothing is traced and trace headers pass through unchanged."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from rayship_predictors.tracing import Tracing
from support.otlp_receiver import OtlpReceiver, ReceivedSpan

# The example ids of the W3C Trace Context specification.
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
SERVER, INTERNAL = 2, 1  # OTLP's Span.SpanKind values
OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_SAMPLER",
)


@pytest.fixture(autouse=True)
def no_otel_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the OpenTelemetry variables it means; none come from outside."""
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture
def tracing(receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tracing]:
    """Tracing on, exporting to `receiver`; shut down (flushed) by the test or at teardown."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    tracing = Tracing.from_env("mnist", "3")
    assert tracing.enabled
    yield tracing
    tracing.shutdown(timeout_s=10)


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    assert len({span.name for span in spans}) == len(spans), spans
    return {span.name: span for span in spans}


def exporter_threads() -> int:
    return sum("OtelBatchSpan" in thread.name for thread in threading.enumerate())


def test_steps_nest_under_the_request_which_nests_under_the_caller(
    tracing: Tracing, receiver: OtlpReceiver
) -> None:
    with tracing.request(
        TRACEPARENT, "vendor=opaque", "POST /v2/models/{model}/infer", {"rayship.rows": 2}
    ) as trace:
        with trace.span("decode"):
            pass
        queued_ns = time.time_ns()
        dequeued_ns = time.time_ns()
        trace.record("queue", queued_ns, dequeued_ns)
        with trace.span("model"):
            pass
        with trace.span("encode"):
            pass
        trace.set_status_code(200)
        outgoing, outgoing_state = trace.traceparent, trace.tracestate
    tracing.shutdown(timeout_s=10)

    spans = by_name(receiver.wait_for_spans(5))
    request = spans.pop("POST /v2/models/{model}/infer")
    assert (request.trace_id, request.parent_span_id) == (TRACE_ID, PARENT_ID)
    assert request.kind == SERVER
    assert request.status == "UNSET"
    assert request.attributes == {"rayship.rows": 2, "http.response.status_code": 200}
    assert request.resource["service.name"] == "rayship"
    assert request.resource["rayship.model.name"] == "mnist"
    assert request.resource["rayship.model.version"] == "3"
    assert request.path == "/v1/traces"
    assert sorted(spans) == ["decode", "encode", "model", "queue"]
    for step in spans.values():
        assert (step.trace_id, step.parent_span_id) == (TRACE_ID, request.span_id)
        assert step.kind == INTERNAL
        assert request.start_ns <= step.end_ns <= request.end_ns
    assert (spans["queue"].start_ns, spans["queue"].end_ns) == (queued_ns, dequeued_ns)
    assert spans["decode"].end_ns <= spans["model"].start_ns
    assert spans["model"].end_ns <= spans["encode"].start_ns
    # a replica this one forwards to continues the trace under the request span
    assert outgoing == f"00-{TRACE_ID}-{request.span_id}-01"
    assert outgoing_state == "vendor=opaque"


@pytest.mark.parametrize(
    ("http_status", "status"), [(500, "ERROR"), (503, "ERROR"), (404, "UNSET"), (200, "UNSET")]
)
def test_server_errors_mark_the_request_span(
    tracing: Tracing, receiver: OtlpReceiver, http_status: int, status: str
) -> None:
    with tracing.request(None, None, "infer", {}) as trace:
        trace.set_status_code(http_status)
    tracing.shutdown(timeout_s=10)
    (request,) = receiver.wait_for_spans(1)
    assert request.status == status
    assert request.attributes["http.response.status_code"] == http_status


def test_an_exception_marks_its_step_and_the_request(
    tracing: Tracing, receiver: OtlpReceiver
) -> None:
    with (
        pytest.raises(RuntimeError, match="model crashed"),
        tracing.request(None, None, "infer", {}) as trace,
        trace.span("model"),
    ):
        raise RuntimeError("model crashed")
    tracing.shutdown(timeout_s=10)
    spans = by_name(receiver.wait_for_spans(2))
    assert spans["model"].status == spans["infer"].status == "ERROR"
    assert spans["model"].parent_span_id == spans["infer"].span_id


@pytest.mark.parametrize(
    "traceparent",
    [
        None,
        "",
        "not a traceparent",
        f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is forbidden
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # ids are lower-case hex
    ],
)
def test_a_missing_or_invalid_traceparent_starts_a_new_trace(
    tracing: Tracing, receiver: OtlpReceiver, traceparent: str | None
) -> None:
    with tracing.request(traceparent, "vendor=opaque", "infer", {}) as trace:
        outgoing = trace.traceparent
        outgoing_state = trace.tracestate
    tracing.shutdown(timeout_s=10)
    (request,) = receiver.wait_for_spans(1)
    assert request.parent_span_id == ""
    assert request.trace_id not in {TRACE_ID, "0" * 32}
    # sampled, and (W3C Trace Context level 2) a trace id of random bits
    assert outgoing == f"00-{request.trace_id}-{request.span_id}-03"
    assert outgoing_state is None  # a tracestate means nothing without its traceparent


def test_an_unsampled_caller_is_followed_but_not_exported(
    tracing: Tracing, receiver: OtlpReceiver
) -> None:
    with tracing.request(f"00-{TRACE_ID}-{PARENT_ID}-00", None, "infer", {}) as trace:
        with trace.span("model"):
            pass
        outgoing = trace.traceparent
    tracing.shutdown(timeout_s=10)
    assert receiver.spans == []
    assert outgoing is not None
    version, trace_id, span_id, flags = outgoing.split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "00")
    assert span_id != PARENT_ID


def test_without_an_endpoint_nothing_is_traced_and_headers_pass_through(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "configured-but-no-endpoint")
    threads = exporter_threads()
    tracing = Tracing.from_env("mnist", "3")
    assert not tracing.enabled
    assert exporter_threads() == threads
    for traceparent, tracestate in [(TRACEPARENT, "vendor=opaque"), ("junk", None), (None, None)]:
        with tracing.request(traceparent, tracestate, "infer", {"a": 1}) as trace:
            with trace.span("model"):
                pass
            trace.record("queue", 1, 2)
            trace.set_status_code(500)
            assert (trace.traceparent, trace.tracestate) == (traceparent, tracestate)
    tracing.shutdown(timeout_s=10)
    assert receiver.spans == []


def test_sdk_disabled_turns_tracing_off_despite_an_endpoint(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    tracing = Tracing.from_env("mnist", "3")
    assert not tracing.enabled
    with tracing.request(TRACEPARENT, None, "infer", {}) as trace:
        assert trace.traceparent == TRACEPARENT
    tracing.shutdown(timeout_s=10)
    assert receiver.spans == []


@pytest.mark.parametrize(
    ("variables", "path"),
    [
        # the generic endpoint is a base URL: the traces path is appended
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "{url}"}, "/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "{url}/collector/"}, "/collector/v1/traces"),
        # the traces endpoint is the whole URL, used as given, and wins over the generic one
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{url}/custom/spans"}, "/custom/spans"),
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{url}/custom/spans",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "{url}/collector",
            },
            "/custom/spans",
        ),
    ],
)
def test_endpoint_variables_and_the_traces_path(
    receiver: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    path: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value.format(url=receiver.url))
    tracing = Tracing.from_env("mnist", "3")
    with tracing.request(None, None, "infer", {}):
        pass
    tracing.shutdown(timeout_s=10)
    (request,) = receiver.wait_for_spans(1)
    assert request.path == path


def test_service_name_resource_and_compression_from_the_environment(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "predictors-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    tracing = Tracing.from_env("mnist", "3")
    with tracing.request(None, None, "infer", {}):
        pass
    tracing.shutdown(timeout_s=10)
    (request,) = receiver.wait_for_spans(1)
    assert request.resource["service.name"] == "predictors-eu"
    assert request.resource["deployment.environment.name"] == "staging"
    assert request.resource["rayship.model.name"] == "mnist"
    assert request.encoding == "gzip"


def test_shutdown_is_bounded_when_the_collector_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as unused:  # a loopback port nothing listens on once closed
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    tracing = Tracing.from_env("mnist", "3")
    with tracing.request(None, None, "infer", {}):
        pass
    started = time.monotonic()
    tracing.shutdown(timeout_s=0.5)
    assert time.monotonic() - started < 2
