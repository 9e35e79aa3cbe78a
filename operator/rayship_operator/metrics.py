"""The operator's own Prometheus metrics: what it reconciles, writes and rolls out, and how long
a spec change takes to be served.

Names follow Prometheus's conventions (base units, `_total` for counters, a prefix per
exporter: `rayship_operator_`), as kube-state-metrics and controller-runtime's operators do, so
the usual recording rules and dashboards apply. Labels name a ModelDeployment
(`namespace`, `modeldeployment`) where the figure is about one, and a Ray cluster by its
dashboard address where it is about a cluster: both are bounded by what the operator serves.

Each `OperatorMetrics` has a registry of its own, so tests build as many as they like; the
operator serves its one on `RAYSHIP_METRICS_ADDRESS` (`serve`).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from rayship.conditions import Event, Phase, Reason

# From a warm rollback (about a second) to a large model on a new GPU node (minutes).
READY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
RECONCILE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# A Serve config is about 0.9 KB a model version (`bench/scale_bench.py`): one model to 10,000.
CONFIG_BYTES_BUCKETS = tuple(2**power for power in range(10, 25, 2))  # 1 KiB to 16 MiB
CONFIG_WRITE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
OBJECT = ("namespace", "modeldeployment")


@dataclass
class _Pending:
    """A generation of a ModelDeployment not yet Ready, and since when (monotonic)."""

    generation: int
    since: float


@dataclass
class OperatorMetrics:
    """Every metric the operator exports, in one registry."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _pending: dict[str, _Pending] = field(default_factory=dict)

    def __post_init__(self) -> None:
        registry = self.registry
        self.reconciles = Counter(
            "rayship_operator_reconciles",
            "Reconciles of ModelDeployments (a change or a timer tick), by how they ended: "
            "ok, or error when the handler raised and kopf retries it.",
            ["result"],
            registry=registry,
        )
        self.reconcile_seconds = Histogram(
            "rayship_operator_reconcile_duration_seconds",
            "How long one reconcile took, settling a rollout included.",
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.degraded = Counter(
            "rayship_operator_degraded",
            "Times a ModelDeployment turned Degraded or changed its Degraded reason, by reason "
            "(RolledBack, LoadFailed, StorageError, ClusterUnreachable, ...).",
            [*OBJECT, "reason"],
            registry=registry,
        )
        self.rollouts = Counter(
            "rayship_operator_rollouts",
            "Versions that took over a model's traffic.",
            list(OBJECT),
            registry=registry,
        )
        self.rollbacks = Counter(
            "rayship_operator_automatic_rollbacks",
            "Versions or canaries given up on by the operator itself (RolledBack, CanaryFailed), "
            "while the previous version went on serving.",
            list(OBJECT),
            registry=registry,
        )
        self.config_writes = Counter(
            "rayship_operator_config_writes",
            "Serve configs written to a Ray cluster (PUTs), by the cluster's dashboard.",
            ["cluster"],
            registry=registry,
        )
        self.config_write_bytes = Histogram(
            "rayship_operator_config_write_bytes",
            "Size of each Serve config written (the PUT's JSON body): it grows with the model "
            "versions on the cluster, and Serve parses and applies all of it on every write.",
            ["cluster"],
            buckets=CONFIG_BYTES_BUCKETS,
            registry=registry,
        )
        self.config_write_seconds = Histogram(
            "rayship_operator_config_write_duration_seconds",
            "How long each Serve config PUT took, until the dashboard answered.",
            ["cluster"],
            buckets=CONFIG_WRITE_BUCKETS,
            registry=registry,
        )
        self.config_holds = Counter(
            "rayship_operator_config_writes_held",
            "Serve configs held back because a Serve build they would restart was running.",
            ["cluster"],
            registry=registry,
        )
        self.time_to_ready = Histogram(
            "rayship_operator_time_to_ready_seconds",
            "From the operator's first sight of a spec generation to that generation Ready.",
            buckets=READY_BUCKETS,
            registry=registry,
        )

    def reconciled(self, seconds: float, ok: bool) -> None:
        """One reconcile ended after `seconds`."""
        self.reconciles.labels("ok" if ok else "error").inc()
        self.reconcile_seconds.observe(seconds)

    def config_written(self, cluster: str, size: int, seconds: float) -> None:
        """A Serve config of `size` bytes was PUT to `cluster` in `seconds`."""
        self.config_writes.labels(cluster).inc()
        self.config_write_bytes.labels(cluster).observe(size)
        self.config_write_seconds.labels(cluster).observe(seconds)

    def events(self, namespace: str, name: str, events: tuple[Event, ...]) -> None:
        """Count what a reconcile's Events say happened."""
        for event in events:
            if event.reason == Reason.ROLLED_OUT:
                self.rollouts.labels(namespace, name).inc()
            if event.warning:
                self.degraded.labels(namespace, name, event.reason.value).inc()
                if event.reason in (Reason.ROLLED_BACK, Reason.CANARY_FAILED):
                    self.rollbacks.labels(namespace, name).inc()

    def status(self, key: str, generation: int, phase: str, now: float | None = None) -> None:
        """A status was decided for `generation` of `key`: once it is Ready, observe how long
        that took since the generation was first seen. A generation Ready at first sight is
        not observed: a restarted operator finding it served, or a change that moved nothing,
        says nothing of how long changes take."""
        now = time.monotonic() if now is None else now
        pending = self._pending.get(key)
        if pending is None or pending.generation != generation:
            first = -1.0 if phase == Phase.READY else now
            pending = self._pending[key] = _Pending(generation, first)
        if phase == Phase.READY and pending.since >= 0:
            self.time_to_ready.observe(now - pending.since)
            pending.since = -1.0  # observed once per generation

    def forget(self, namespace: str, name: str, key: str) -> None:
        """A ModelDeployment is gone: drop its series, so none lingers at its last value."""
        self._pending.pop(key, None)
        for metric in (self.rollouts, self.rollbacks):
            with contextlib.suppress(KeyError):  # it never had one
                metric.remove(namespace, name)
        for reason in Reason:
            with contextlib.suppress(KeyError):
                self.degraded.remove(namespace, name, reason.value)

    def serve(self, address: str) -> None:
        """Answer scrapes at `host:port` (`:port` for every interface), in a daemon thread."""
        host, _, port = address.rpartition(":")
        start_http_server(int(port), addr=host or "0.0.0.0", registry=self.registry)
