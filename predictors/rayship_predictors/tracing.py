"""OpenTelemetry traces of a replica's requests, exported over OTLP/HTTP when configured.

A request's trace joins the caller's when it brings a W3C `traceparent`: the request span is a
child of the caller's span, and its own steps (decode, the wait in the batching queue, the
model, encode) are children of the request span. When this replica forwards the request, the
`traceparent` it sends names the request span, so the next replica's spans nest under it.

Configuration is OpenTelemetry's own environment variables, so the collector a cluster already
uses for other services is set the same way here:

- OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the full URL spans are POSTed to, used as given; or
- OTEL_EXPORTER_OTLP_ENDPOINT: the collector's base URL, to which `/v1/traces` is appended.
- OTEL_SERVICE_NAME: the `service.name` of the spans; `rayship` by default.
- OTEL_SDK_DISABLED=true: tracing off even with an endpoint set.
- OTEL_RESOURCE_ATTRIBUTES: more `key=value` attributes of the spans' resource.

The exporter and the batch processor also read their standard variables (OTEL_EXPORTER_OTLP_*
headers, timeout, compression and certificates; OTEL_BSP_* batching; OTEL_TRACES_SAMPLER), so
those are read by OpenTelemetry, not here.

With no endpoint set tracing is off: no provider, no exporter thread, and every request gets a
pass-through trace whose methods do nothing but hand the incoming `traceparent` on, so a trace
that runs through this replica stays whole even though this replica adds nothing to it.

The provider is this replica's own, never OpenTelemetry's global one: Ray, or a user's model
code, may own that. Nor are spans ever made "current" in OpenTelemetry's context: with dynamic
batching one model call serves several requests' traces, so each span names its parent
explicitly instead.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import TracebackType
from typing import Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

Attributes = Mapping[str, str | int]

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_DEFAULT_SERVICE_NAME = "rayship"
_PROPAGATOR = TraceContextTextMapPropagator()
# Resource attributes naming what a replica serves (no OpenTelemetry convention covers it).
MODEL_ATTRIBUTE = "rayship.model.name"
VERSION_ATTRIBUTE = "rayship.model.version"
STATUS_CODE_ATTRIBUTE = "http.response.status_code"


class RequestTrace(Protocol):
    """One request's trace. Use it as a context manager around the whole request: the request
    span ends when the block exits, marked as an error if the block raised."""

    def __enter__(self) -> RequestTrace: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def span(self, name: str) -> AbstractContextManager[None]:
        """A child span of the request timing the block; an error if the block raises."""
        ...

    def record(self, name: str, start_ns: int, end_ns: int) -> None:
        """A child span of the request measured after the fact, as `time.time_ns()` values
        (nanoseconds since the epoch): the wait in the batching queue, say."""
        ...

    def set_status_code(self, http_status: int) -> None:
        """The HTTP status answered; 500 and above mark the request span as an error (a 4xx is
        the caller's fault, so OpenTelemetry's HTTP conventions leave it unmarked)."""
        ...

    @property
    def traceparent(self) -> str | None:
        """The `traceparent` header to send when forwarding the request to another replica."""
        ...

    @property
    def tracestate(self) -> str | None:
        """The `tracestate` header to send with `traceparent`, if there is one."""
        ...


class Tracing:
    """A replica's tracing: traces its requests, or passes their trace headers through."""

    def __init__(self, provider: TracerProvider | None) -> None:
        """`provider` exports the spans; None turns tracing off. `from_env` makes either."""
        self._provider = provider
        self._tracer = provider.get_tracer(__name__) if provider is not None else None

    @classmethod
    def from_env(cls, model: str, version: str) -> Tracing:
        """Tracing for a replica serving `version` of `model`, on when an OTLP endpoint is set
        in the environment (see the module's docstring); one per replica."""
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or not any(
            os.environ.get(name) for name in _ENDPOINT_VARIABLES
        ):
            return cls(None)
        # Imported only when tracing is on: a replica that traces nothing never loads it.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        resource = Resource.create(
            {
                SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or _DEFAULT_SERVICE_NAME,
                MODEL_ATTRIBUTE: model,
                VERSION_ATTRIBUTE: version,
            }
        )
        provider = TracerProvider(resource=resource)
        # The exporter resolves the endpoint from the same variables, with the /v1/traces rule.
        # The batch processor exports on a thread of its own, so a slow or absent collector
        # never holds up a request; spans beyond its queue are dropped, not waited for.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    @property
    def enabled(self) -> bool:
        """Whether requests' spans are recorded and exported."""
        return self._tracer is not None

    def request(
        self,
        traceparent: str | None,
        tracestate: str | None,
        name: str,
        attributes: Attributes,
    ) -> RequestTrace:
        """The trace of one request that arrived with these trace headers (None when absent).

        A valid `traceparent` makes the request span its child; an absent or invalid one
        starts a new trace, as W3C Trace Context says, and is never an error. The request span
        starts now and ends when the returned trace's `with` block exits.
        """
        if self._tracer is None:
            return _PassThrough(traceparent, tracestate)
        carrier = {"traceparent": traceparent, "tracestate": tracestate}
        parent = _PROPAGATOR.extract({k: v for k, v in carrier.items() if v is not None})
        span = self._tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=dict(attributes)
        )
        return _Traced(self._tracer, span)

    def shutdown(self, timeout_s: float) -> None:
        """Export the spans still queued and stop the exporter thread (the replica stops).

        Blocks for at most `timeout_s`: with the collector down OpenTelemetry's own shutdown
        retries for up to 30 seconds, longer than a replica is given to stop. Past the bound
        it carries on in a daemon thread, and what it has not sent when the process exits is
        lost, as spans are whenever the collector cannot be reached.
        """
        if self._provider is not None:
            stopping = threading.Thread(
                target=self._provider.shutdown, name="rayship-tracing-shutdown", daemon=True
            )
            stopping.start()
            stopping.join(timeout_s)


class _PassThrough:
    """A request's trace with tracing off: records nothing, hands its trace headers on."""

    def __init__(self, traceparent: str | None, tracestate: str | None) -> None:
        self._traceparent = traceparent
        self._tracestate = tracestate

    def __enter__(self) -> RequestTrace:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def span(self, name: str) -> AbstractContextManager[None]:
        return nullcontext()

    def record(self, name: str, start_ns: int, end_ns: int) -> None:
        return None

    def set_status_code(self, http_status: int) -> None:
        return None

    @property
    def traceparent(self) -> str | None:
        return self._traceparent

    @property
    def tracestate(self) -> str | None:
        return self._tracestate


class _Traced:
    """A request's trace with tracing on: the request span and its children."""

    def __init__(self, tracer: trace.Tracer, span: Span) -> None:
        self._tracer = tracer
        self._span = span
        self._context: Context = trace.set_span_in_context(span)
        self._headers: dict[str, str] | None = None

    def __enter__(self) -> RequestTrace:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, Exception):
            _mark_failed(self._span, error)
        self._span.end()

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        span = self._tracer.start_span(name, context=self._context)
        try:
            yield
        except Exception as error:
            _mark_failed(span, error)
            raise
        finally:
            span.end()

    def record(self, name: str, start_ns: int, end_ns: int) -> None:
        self._tracer.start_span(name, context=self._context, start_time=start_ns).end(end_ns)

    def set_status_code(self, http_status: int) -> None:
        self._span.set_attribute(STATUS_CODE_ATTRIBUTE, http_status)
        if http_status >= 500:
            self._span.set_status(Status(StatusCode.ERROR))

    @property
    def traceparent(self) -> str | None:
        return self._outgoing().get("traceparent")

    @property
    def tracestate(self) -> str | None:
        return self._outgoing().get("tracestate")

    def _outgoing(self) -> dict[str, str]:
        """The trace headers naming the request span as the parent, made once."""
        if self._headers is None:
            self._headers = {}
            _PROPAGATOR.inject(self._headers, context=self._context)
        return self._headers


def _mark_failed(span: Span, error: Exception) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
