"""Data-plane metrics of one model version, exported through Ray's metrics pipeline.

The series follow Triton's server metrics, the convention V2 clients and dashboards already
know: every series carries `model` and `version` labels, inference requests are counted apart
from health and metadata calls, and a request's time is split the way Triton splits it
(end to end, waiting in the batch queue, model compute). Where Triton exports cumulative
microsecond counters, these are Prometheus histograms in seconds, so percentiles can be read
without a summary per replica.

Ray adds `application`, `deployment` and `replica` labels (and its own `Version`, Ray's
release, not the model's) and prefixes each name with `ray_` on its metrics export port: the
requests counter is scraped as `ray_rayship_inference_requests_total`. Ray records a histogram
observation as its bucket's midpoint, so a histogram's `_sum` is approximate; its `_count` and
buckets are exact, and they are what rates and quantiles are read from.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from ray.serve import metrics

MODEL_LABELS = ("model", "version")

FLUSH_SECONDS = 1.0
"""How long request counts may wait in the replica before Ray has them (Ray itself reports
them to its metrics agent every `RAY_metrics_report_interval_ms`, ten seconds by default)."""

LATENCY_BUCKETS_S = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
]  # fmt: skip
"""From half a millisecond (a small ONNX model answers in about that) to thirty seconds (a
large model on a busy CPU)."""

LOAD_BUCKETS_S = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0]
"""From a small ONNX file on local disk to a large model fetched over a slow S3 link."""

BATCH_SIZE_BUCKETS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]
"""Powers of two up to the largest `maxBatchSize` the resource accepts."""


class VersionMetrics:
    """The series of one model version in one replica; each call records one event.

    Labels are set once per replica (`set_default_tags`). The counters of `answered` are added
    up here and handed to Ray at most once a `FLUSH_SECONDS` (`flush`, by the request path
    and by a task on the replica's loop for the last ones): a Ray counter increment costs
    microseconds of tag merging and a call into Ray's core worker, three of them per request
    were most of what the metrics cost, and Ray reports to Prometheus only every ten seconds
    anyway. Made with `enabled=False` (RAYSHIP_METRICS=0), it creates no series and records
    nothing.
    """

    def __init__(self, model: str, version: str, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._codes: Counter[int] = Counter()
        self._request_bytes = 0
        self._response_bytes = 0
        self._flushed_at = time.monotonic()
        self._flusher: asyncio.Task[None] | None = None
        if not enabled:
            return
        labels = {"model": model, "version": version}
        self.requests = metrics.Counter(
            "rayship_inference_requests",
            description="V2 inference requests answered, by HTTP status code.",
            tag_keys=(*MODEL_LABELS, "code"),
        )
        self.request_seconds = self._histogram(
            "rayship_inference_request_duration_seconds",
            "Time from a request reaching the version's replica to its answer.",
            LATENCY_BUCKETS_S,
        )
        self.compute_seconds = self._histogram(
            "rayship_inference_compute_duration_seconds",
            "Time in the model's runtime: one call per request, or per batch when batching.",
            LATENCY_BUCKETS_S,
        )
        self.queue_seconds = self._histogram(
            "rayship_inference_queue_duration_seconds",
            "Time a request waited in the dynamic batching queue.",
            LATENCY_BUCKETS_S,
        )
        self.batch_size = self._histogram(
            "rayship_inference_batch_size",
            "Requests in each batch the dynamic batcher ran.",
            BATCH_SIZE_BUCKETS,
        )
        self.request_bytes = metrics.Counter(
            "rayship_inference_request_bytes",
            description="Bytes of inference request bodies, after decompression.",
            tag_keys=MODEL_LABELS,
        )
        self.response_bytes = metrics.Counter(
            "rayship_inference_response_bytes",
            description="Bytes of inference response bodies.",
            tag_keys=MODEL_LABELS,
        )
        # A histogram, not a per-replica gauge: Ray exports a gauge only in the report after
        # it was set, so a value set once at load time would vanish from the scrape.
        self.load_seconds = self._histogram(
            "rayship_model_load_duration_seconds",
            "Time a replica took to fetch and load its model version, once per replica start.",
            LOAD_BUCKETS_S,
        )
        self.log_dropped = metrics.Counter(
            "rayship_prediction_log_dropped",
            description="Prediction log records dropped, by reason, never the request itself.",
            tag_keys=(*MODEL_LABELS, "reason"),
        )
        for series in (
            self.requests,
            self.request_seconds,
            self.compute_seconds,
            self.queue_seconds,
            self.batch_size,
            self.request_bytes,
            self.response_bytes,
            self.load_seconds,
            self.log_dropped,
        ):
            series.set_default_tags(dict(labels))  # Serve adds its labels to the dict

    @staticmethod
    def _histogram(name: str, description: str, buckets: list[float]) -> metrics.Histogram:
        return metrics.Histogram(
            name, description=description, boundaries=buckets, tag_keys=MODEL_LABELS
        )

    def answered(self, code: int, seconds: float, request_bytes: int, response_bytes: int) -> None:
        """One inference request answered with status `code`."""
        if not self.enabled:
            return
        self.request_seconds.observe(seconds)
        self._codes[code] += 1
        self._request_bytes += request_bytes
        self._response_bytes += response_bytes
        if time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            self.flush()
        elif self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_while_running())

    def flush(self) -> None:
        """Hand the counts added up since the last flush to Ray."""
        self._flushed_at = time.monotonic()
        for code, count in self._codes.items():
            self.requests.inc(count, tags={"code": str(code)})
        self._codes.clear()
        # Ray refuses to add zero to a counter; an empty body is a request all the same.
        if self._request_bytes:
            self.request_bytes.inc(self._request_bytes)
            self._request_bytes = 0
        if self._response_bytes:
            self.response_bytes.inc(self._response_bytes)
            self._response_bytes = 0

    async def _flush_while_running(self) -> None:
        """Flush every `FLUSH_SECONDS`, so the last requests before a quiet spell are counted
        too; the task lives as long as the replica's loop."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()

    def computed(self, seconds: float) -> None:
        """One runtime call finished (one request, or one batch)."""
        if not self.enabled:
            return
        self.compute_seconds.observe(seconds)

    def batched(self, size: int) -> None:
        """The dynamic batcher ran `size` requests together."""
        if not self.enabled:
            return
        self.batch_size.observe(size)

    def queued(self, seconds: float) -> None:
        """A request waited `seconds` for its batch."""
        if not self.enabled:
            return
        self.queue_seconds.observe(seconds)

    def loaded(self, seconds: float) -> None:
        """This replica's version took `seconds` to fetch and load."""
        if not self.enabled:
            return
        self.load_seconds.observe(seconds)

    def log_dropped_records(self, reason: str, count: int) -> None:
        """Prediction log records dropped without being sent (`reason`: why)."""
        if not self.enabled:
            return
        self.log_dropped.inc(count, tags={"reason": reason})
