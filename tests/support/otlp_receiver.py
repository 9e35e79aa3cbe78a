"""A real OTLP/HTTP trace receiver on loopback, standing in for an OpenTelemetry collector.

It answers POSTs on any path the way a collector answers `/v1/traces` (protobuf in, gzip or
not; 200 with an empty ExportTraceServiceResponse out) and records the path each batch came
to, so a test can see which URL an exporter resolved from its configuration. Spans are kept
flattened, ids as hex, in the order they arrived.

    with OtlpReceiver() as receiver:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.url
        ...
        receiver.wait_for_spans(4)
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from support.waiting import eventually

_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
    "": bytes,
}


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span as the collector saw it."""

    path: str
    """The URL path its batch was POSTed to."""
    encoding: str
    """Its batch's Content-Encoding: "gzip", "deflate" or "" (none)."""
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    """Empty for a root span."""
    kind: int
    """`opentelemetry.proto.trace.v1.trace_pb2.Span.SpanKind`: 2 is SERVER, 1 INTERNAL."""
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status: str
    """"UNSET", "OK" or "ERROR"."""
    resource: dict[str, Any]


class OtlpReceiver:
    """The receiver, serving from a thread of its own on a free loopback port while open."""

    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # A short poll interval, so closing the receiver takes milliseconds, not half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it (no path)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far."""
        with self._lock:
            return list(self._spans)

    def wait_for_spans(self, count: int, timeout_s: float = 10) -> list[ReceivedSpan]:
        """The spans received, once there are at least `count` of them."""

        def enough() -> list[ReceivedSpan]:
            spans = self.spans
            return spans if len(spans) >= count else []

        return eventually(
            enough,
            timeout_s=timeout_s,
            what=f"{count} spans at the OTLP receiver",
        )

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _receive(self, path: str, encoding: str, body: bytes) -> None:
        export = ExportTraceServiceRequest.FromString(_DECOMPRESS[encoding](body))
        received = [
            ReceivedSpan(
                path=path,
                encoding=encoding,
                name=span.name,
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_span_id=span.parent_span_id.hex(),
                kind=span.kind,
                start_ns=span.start_time_unix_nano,
                end_ns=span.end_time_unix_nano,
                attributes=_attributes(span.attributes),
                status=Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
                resource=_attributes(resource_spans.resource.attributes),
            )
            for resource_spans in export.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self._spans.extend(received)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver._receive(self.path, self.headers.get("Content-Encoding", ""), body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: pytest shows failures, not every export."""

        return Handler


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind is not None else None
