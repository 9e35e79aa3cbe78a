"""What the operator's metrics count, read back from their Prometheus registry."""

from __future__ import annotations

import urllib.request

import pytest

from controlplane.cluster import free_port
from rayship.conditions import Event, Reason
from rayship_operator.metrics import OperatorMetrics

OBJECT = {"namespace": "team-a", "modeldeployment": "iris"}


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_rollouts_rollbacks_and_degraded_reasons_are_counted_per_object() -> None:
    metrics = OperatorMetrics()
    metrics.events(
        "team-a",
        "iris",
        (
            Event(False, Reason.ROLLING_OUT, "rolling out version 2"),
            Event(False, Reason.ROLLED_OUT, "version 2 serves"),
            Event(True, Reason.ROLLED_BACK, "version 3 failed to load; still serving version 2"),
            Event(True, Reason.STORAGE_ERROR, "cannot reach S3"),
            Event(True, Reason.CANARY_FAILED, "canary 4 failed"),
        ),
    )
    assert value(metrics, "rayship_operator_rollouts_total", **OBJECT) == 1
    assert value(metrics, "rayship_operator_automatic_rollbacks_total", **OBJECT) == 2
    for reason in ("RolledBack", "StorageError", "CanaryFailed"):
        assert value(metrics, "rayship_operator_degraded_total", **OBJECT, reason=reason) == 1

    metrics.forget("team-a", "iris", "team-a/iris")
    assert value(metrics, "rayship_operator_rollouts_total", **OBJECT) is None
    assert value(metrics, "rayship_operator_degraded_total", **OBJECT, reason="RolledBack") is None


def test_time_to_ready_is_observed_once_per_generation_from_its_first_sight() -> None:
    metrics = OperatorMetrics()
    metrics.status("team-a/iris", 1, "Progressing", now=100.0)
    metrics.status("team-a/iris", 1, "Progressing", now=103.0)
    metrics.status("team-a/iris", 1, "Ready", now=107.5)
    metrics.status("team-a/iris", 1, "Ready", now=200.0)  # the timer's later ticks
    metrics.status("team-a/iris", 2, "Progressing", now=300.0)  # a warm rollback
    metrics.status("team-a/iris", 2, "Ready", now=301.0)
    metrics.status("team-a/wine", 4, "Ready", now=400.0)  # served when a restart first saw it
    assert value(metrics, "rayship_operator_time_to_ready_seconds_count") == 2
    assert value(metrics, "rayship_operator_time_to_ready_seconds_sum") == 8.5


def test_reconciles_are_counted_by_result_and_timed() -> None:
    metrics = OperatorMetrics()
    metrics.reconciled(0.2, ok=True)
    metrics.reconciled(0.3, ok=False)
    assert value(metrics, "rayship_operator_reconciles_total", result="ok") == 1
    assert value(metrics, "rayship_operator_reconciles_total", result="error") == 1
    assert value(metrics, "rayship_operator_reconcile_duration_seconds_count") == 2


def test_the_registry_is_served_over_http() -> None:
    metrics = OperatorMetrics()
    metrics.config_writes.labels("http://ray-head:8265").inc()
    port = free_port()
    metrics.serve(f"127.0.0.1:{port}")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    assert 'rayship_operator_config_writes_total{cluster="http://ray-head:8265"} 1.0' in text


def test_config_writes_are_counted_sized_and_timed_per_cluster() -> None:
    metrics = OperatorMetrics()
    cluster = {"cluster": "http://ray-head:8265"}
    metrics.config_written("http://ray-head:8265", 3000, 0.02)
    metrics.config_written("http://ray-head:8265", 5000, 0.04)
    assert value(metrics, "rayship_operator_config_writes_total", **cluster) == 2
    assert value(metrics, "rayship_operator_config_write_bytes_sum", **cluster) == 8000
    assert value(metrics, "rayship_operator_config_write_bytes_count", **cluster) == 2
    seconds = "rayship_operator_config_write_duration_seconds_sum"
    assert value(metrics, seconds, **cluster) == pytest.approx(0.06)
