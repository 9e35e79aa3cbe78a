"""A replica's CPU reservation sizes its ONNX sessions' default threads (`reserved_cpus`): read
here from real Ray actors with the reservations replicas get from `spec.resources.cpu`."""

from __future__ import annotations

import pytest

import ray
from rayship_predictors.app import reserved_cpus
from tests.support.ray_cluster import ServeCluster


@ray.remote
class Probe:
    """An actor standing in for a replica: Ray reserves CPUs for it as for one."""

    def reserved(self) -> int | None:
        return reserved_cpus()


@pytest.mark.parametrize(
    ("num_cpus", "expected"),
    [(1.0, 1), (2.0, 2), (0.5, 1), (0.0, None)],  # a fraction still computes on a core
)
def test_reserved_cpus_of_an_actor(
    serve_cluster: ServeCluster, num_cpus: float, expected: int | None
) -> None:
    probe = Probe.options(num_cpus=num_cpus).remote()  # type: ignore[attr-defined]
    try:
        assert ray.get(probe.reserved.remote(), timeout=120) == expected
    finally:
        ray.kill(probe)
