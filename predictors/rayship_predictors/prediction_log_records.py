"""What the prediction log carries and what a sink promises: records in, a `Delivery` out.

A record holds the request and response bodies exactly as they crossed the wire (bytes, with
their `Inference-Header-Content-Length`), so the request path that makes one does no
conversion work; the sinks (`prediction_log_events`, `prediction_log_s3`) turn them into their
own forms in the background.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from rayship.spec import LogMode

Kind = Literal["request", "response"]

KINDS_OF_MODE: dict[LogMode, tuple[Kind, ...]] = {
    "request": ("request",),
    "response": ("response",),
    "all": ("request", "response"),
}
"""The payloads that each `spec.logging.mode` logs."""


@dataclass(frozen=True)
class PredictionRecord:
    """One answered inference request: who answered, when, how, and both bodies.

    `timestamp` is when the request arrived (a UTC datetime); `latency_seconds` how long it
    took to answer. A header length is None for a plain JSON body, else the length of the
    JSON part before the binary tensor data. `grpc` says the call came through the V2 gRPC
    service: its bodies are then the serialized ModelInferRequest and, when answered,
    ModelInferResponse (a failure's response is its V2 JSON error body, as over REST).
    """

    model: str
    version: str
    request_id: str
    timestamp: datetime
    latency_seconds: float
    status: int
    request: bytes
    request_header_length: int | None
    response: bytes
    response_header_length: int | None
    grpc: bool = False

    def payload(self, kind: Kind) -> tuple[bytes, int | None]:
        """The request's or the response's body, and its header length."""
        if kind == "request":
            return self.request, self.request_header_length
        return self.response, self.response_header_length

    def is_protobuf(self, kind: Kind) -> bool:
        """Whether the request's or the response's body is a gRPC message (not V2 JSON)."""
        return self.grpc and (kind == "request" or self.status == 200)

    @property
    def answered_at(self) -> datetime:
        """When the response left: arrival plus latency."""
        return self.timestamp + timedelta(seconds=self.latency_seconds)


@dataclass(frozen=True)
class Delivery:
    """What came of sending a batch: the records to send again because the sink could not be
    reached (or asked for a retry), how many it refused for good, and why, for the log."""

    retry: tuple[PredictionRecord, ...] = ()
    refused: int = 0
    problem: str | None = None


DELIVERED = Delivery()


class Sink(Protocol):
    """Where a batch of records goes, at most `batch_size` at once. `send` never raises for a
    failure of the sink itself: it says what to retry and what was refused in its `Delivery`."""

    @property
    def batch_size(self) -> int:
        """The most records one `send` takes."""

    async def send(self, batch: Sequence[PredictionRecord]) -> Delivery:
        """Deliver `batch`, or say what is left of it."""


def rfc3339(moment: datetime) -> str:
    """A time as RFC 3339 in UTC with microseconds and a `Z`, as CloudEvents' `time` is."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
