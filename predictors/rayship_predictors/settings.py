"""The predictors' settings: one typed tree read from the environment once per deployment.

A replica's environment (its Ray node's, plus its application's `runtime_env` variables) decides
them, so each deployment reads its settings when Serve constructs it, never at import. Nothing
else in `rayship_predictors` reads the environment, so tests construct `PredictorSettings`
directly, with two exceptions that read variables other tools define: the model store a
replica fetches with (`rayship.storage`: $RAYSHIP_CACHE_DIR, and boto3's AWS chain), as in
every process that fetches models, and tracing (`rayship_predictors.tracing`), which reads
OpenTelemetry's standard `OTEL_*` variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata


def _installed_version() -> str:
    """The version of the installed `rayship` distribution (pyproject.toml's, once built)."""
    return metadata.version("rayship")


@dataclass(frozen=True)
class PredictorSettings:
    """Every knob of a predictor replica, with the variable that sets it."""

    max_request_bytes: int = 64 * 2**20
    """RAYSHIP_MAX_REQUEST_BYTES: the largest request body a replica reads, in bytes; a larger
    one is refused with 413 before it is read whole. A replica holds a body in memory while it
    decodes it, so the limit bounds what one request can cost; 64 MiB holds a batch of 64
    224x224 RGB images as FP32 binary tensor data (37 MiB) with room to spare."""

    predict_threads: int = 4
    """RAYSHIP_PREDICT_THREADS: the worker threads a version replica runs synchronous `infer`
    (`predict`) calls in, so a slow call never holds up the replica's event loop and the
    requests waiting on it. ONNX Runtime and torch release the GIL while they compute, so calls
    on the threads really overlap. 4 lets a slow request and a few fast ones run side by side,
    and is the best of 1, 2 and 4 for the CPU-bound CNN in bench/predict_bench.py on 2 cores
    (1.6-2x inline with `onnx.intraOpThreads: 1`; about even with ONNX Runtime's default of a
    thread per core, whose calls then contend for the cores). An ONNX model whose spec leaves
    `intraOpThreads` unset gets an intra-op pool sized so that these threads' calls fill the
    replica's reserved CPUs without oversubscribing them
    (`runtimes.onnx.default_intra_op_threads`, chosen in bench/cpu_models_bench.py: no pool
    beyond the calling thread on 2 cores). 0 runs `infer` on the event loop itself, one call at
    a time: for microsecond models, whose in-process throughput the hop to
    a thread halves, although behind HTTP and Serve the difference vanished in the run's noise.
    An `async def predict` never uses the threads. `spec.maxOngoingRequests` (64 by default)
    bounds how many requests a replica holds, waiting for a thread or running."""

    storage_patience_seconds: float = 60.0
    """RAYSHIP_STORAGE_PATIENCE_SECONDS: how long a starting replica keeps trying an S3 that
    cannot be reached (with no cached copy of its version) before it fails. Serve gives a
    failing replica few tries, and a version whose replicas fail is rolled back: without the
    wait, S3 away for seconds as a rollout starts would roll back a good version. The
    operator's readiness deadline (spec.rollout.readinessDeadlineSeconds) still bounds it."""

    prediction_log_queue: int = 2000
    """RAYSHIP_PREDICTION_LOG_QUEUE: how many prediction log records (`spec.logging`) a replica
    holds while its sink is slow or down; more are dropped, and counted, never waited for. A
    record refers to its request and response bodies, so the queue's memory is up to this many
    of them: lower it for models with large tensors."""

    prediction_log_batch: int = 100
    """RAYSHIP_PREDICTION_LOG_BATCH: the most records a CloudEvents sink sends together (as
    many concurrent POSTs)."""

    prediction_log_object_records: int = 500
    """RAYSHIP_PREDICTION_LOG_OBJECT_RECORDS: the most records in one JSON Lines object in S3.
    Fewer, larger objects cost S3 (and the replica) less per record: at 100 records an object,
    writing one every few milliseconds under load cost the iris model about 14% of its
    throughput (bench/observability_bench.py)."""

    metrics: bool = True
    """RAYSHIP_METRICS: `0` or `false` turns the data-plane metrics (`rayship_predictors.metrics`)
    off, as Triton's `--allow-metrics=false` does; bench/observability_bench.py measures what
    they cost against that."""

    server_name: str = "rayship"
    """No variable: the `name` that `GET /v2` reports. It names the server software, not a
    deployment, so there is nothing to configure."""

    server_version: str = field(default_factory=_installed_version)
    """No variable: the `version` that `GET /v2` reports, the installed package's version, so it
    never drifts from the release it describes."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PredictorSettings:
        """Settings from environment variables (defaults where unset)."""
        env = os.environ if environ is None else environ
        return cls(
            max_request_bytes=int(env.get("RAYSHIP_MAX_REQUEST_BYTES", cls.max_request_bytes)),
            predict_threads=int(env.get("RAYSHIP_PREDICT_THREADS", cls.predict_threads)),
            storage_patience_seconds=float(
                env.get("RAYSHIP_STORAGE_PATIENCE_SECONDS", cls.storage_patience_seconds)
            ),
            prediction_log_queue=int(
                env.get("RAYSHIP_PREDICTION_LOG_QUEUE", cls.prediction_log_queue)
            ),
            prediction_log_batch=int(
                env.get("RAYSHIP_PREDICTION_LOG_BATCH", cls.prediction_log_batch)
            ),
            prediction_log_object_records=int(
                env.get("RAYSHIP_PREDICTION_LOG_OBJECT_RECORDS", cls.prediction_log_object_records)
            ),
            metrics=env.get("RAYSHIP_METRICS", "1").strip().lower() not in ("0", "false"),
        )

    def concurrent_calls(self, batched: bool) -> int:
        """How many runtime calls a version replica runs at once: one batch at a time when
        `batched` (Serve's batch queue), else one per predict thread (at least one: with 0
        threads the event loop runs them one at a time). It sizes ONNX's default intra-op
        threads."""
        return 1 if batched else max(1, self.predict_threads)

    def __post_init__(self) -> None:
        if self.predict_threads < 0:
            raise ValueError(
                f"RAYSHIP_PREDICT_THREADS must be 0 or more, got {self.predict_threads}"
            )
        for name, value in (
            ("RAYSHIP_PREDICTION_LOG_QUEUE", self.prediction_log_queue),
            ("RAYSHIP_PREDICTION_LOG_BATCH", self.prediction_log_batch),
            ("RAYSHIP_PREDICTION_LOG_OBJECT_RECORDS", self.prediction_log_object_records),
        ):
            if value < 1:
                raise ValueError(f"{name} must be 1 or more, got {value}")
