"""What each inference request leaves behind: metrics, a trace and, when asked, a log record.

One `InferenceObserver` per replica wraps the answering of every V2 inference request the
replica's version answers itself (not those it forwards to a sibling version): it counts the
request by the status it ended in, opens the request's span as a child of the caller's W3C
trace context, and offers a sampled prediction log record. Failures are turned into their V2
error reply here rather than in the HTTP layer, so the status counted, traced and logged is
the one the client gets.

The request's trace is published in `CURRENT_TRACE` for the spans recorded deeper down
(decode, queue, model, encode): a context variable, so an asynchronous job started by the
request keeps it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime

from rayship.contract import PredictionLogging
from rayship.spec import StorageSpec
from rayship_predictors.dataplane import Call, Reply
from rayship_predictors.http import failure_reply
from rayship_predictors.metrics import VersionMetrics
from rayship_predictors.prediction_log import BatchSizes, PredictionLogger, PredictionRecord
from rayship_predictors.settings import PredictorSettings
from rayship_predictors.tracing import RequestTrace, Tracing

NO_TRACE = Tracing(None).request(None, None, "", {})
CURRENT_TRACE: ContextVar[RequestTrace] = ContextVar("rayship_trace", default=NO_TRACE)


class InferenceObserver:
    """Metrics, tracing and prediction logging of one model version in one replica."""

    def __init__(self, model: str, version: str, settings: PredictorSettings) -> None:
        self.model = model
        self.version = version
        self.metrics = VersionMetrics(model, version, enabled=settings.metrics)
        self.tracing = Tracing.from_env(model, version)
        self.predictions = PredictionLogger(
            model,
            version,
            self.metrics.log_dropped_records,
            queue_size=settings.prediction_log_queue,
            batch_sizes=BatchSizes(
                settings.prediction_log_batch, settings.prediction_log_object_records
            ),
        )

    def configure_logging(self, spec: PredictionLogging | None, storage: StorageSpec) -> None:
        """Take the model's `spec.logging` (on every user_config change)."""
        self.predictions.configure(spec, storage)

    async def observe(self, call: Call, answer: Callable[[Call], Awaitable[Reply]]) -> Reply:
        """`answer(call)`, measured, traced and logged; never raises."""
        arrived = time.time()  # a datetime only for a record: most requests make none
        started = time.perf_counter()
        with self.tracing.request(call.traceparent, call.tracestate, "infer", {}) as trace:
            token = CURRENT_TRACE.set(trace)
            try:
                reply = await answer(call)
            except Exception as error:
                reply = failure_reply(error, f"{call.method} {call.path} of {self.model}")
            finally:
                CURRENT_TRACE.reset(token)
            trace.set_status_code(reply.status)
        seconds = time.perf_counter() - started
        self.metrics.answered(reply.status, seconds, len(call.body), len(reply.body))
        if self.predictions.sampled():
            self.predictions.offer(
                PredictionRecord(
                    model=self.model,
                    version=self.version,
                    request_id=call.request_id or uuid.uuid4().hex,
                    timestamp=datetime.fromtimestamp(arrived, UTC),
                    latency_seconds=seconds,
                    status=reply.status,
                    request=call.body,
                    request_header_length=call.header_length,
                    response=reply.body,
                    response_header_length=reply.header_length,
                    grpc=call.grpc,
                )
            )
        return reply

    async def close(self, timeout_s: float) -> None:
        """Send what the prediction log still holds and the spans not yet exported."""
        await self.predictions.drain(timeout_s)
        await asyncio.to_thread(self.tracing.shutdown, timeout_s)


def current_trace() -> RequestTrace:
    """The trace of the inference request being answered (one that traces nothing outside)."""
    return CURRENT_TRACE.get()
