"""Two operator replicas with kopf peering: one handles ModelDeployments, the other takes over.

Real operator processes on the real API server, with the peering object the chart creates and
the peering CRDs from crds/. No Ray runs here: the operators' default cluster is a loopback port
nothing listens on, so every reconcile ends in a ClusterUnreachable status. That status, with
its observedGeneration, is what shows which operator handled which change.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.cluster import ControlPlane
from rayship.local import free_port
from support.operator_process import OperatorProcess, run_operator
from support.waiting import eventually

pytestmark = pytest.mark.kube

REPO = Path(__file__).resolve().parents[2]
PEERING = "rayship-ha"
LIFETIME_S = 10  # a short keep-alive, so a takeover after a kill is quick to see
# What a replica logs when it ran the reconcile handler: kopf names it `reconcile` on create
# and resume, `reconcile/spec` on an update of the spec.
HANDLED = "Handler 'reconcile"


def chart_peering(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    """The KopfPeering the chart creates for an operator watching `namespace`."""
    out = plane.helm(
        "template", "rayship", str(REPO / "helm" / "rayship"), "--namespace", "rayship-system",
        "--set", f"operator.peering={PEERING}",
        "--set", f"operator.watchNamespaces={{{namespace}}}",
    ).stdout  # fmt: skip
    (peering,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "KopfPeering"]
    return dict(peering)


def peers(plane: ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    """The live keep-alives in the peering object, by replica (POD_ID)."""
    out = plane.kubectl("get", "kopfpeering", PEERING, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out).get("status") or {})


def active(plane: ControlPlane, namespace: str) -> str:
    """The replica with the highest priority: the one kopf lets handle objects."""
    return max(peers(plane, namespace).items(), key=lambda item: item[1]["priority"])[0]


def observed_generation(plane: ControlPlane, namespace: str, name: str) -> int:
    out = plane.kubectl("get", "md", name, "-n", namespace, "-o", "json").stdout
    return int((json.loads(out).get("status") or {}).get("observedGeneration") or 0)


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    """A version folder the operator resolves (nothing ever loads it: no Ray runs here)."""
    version = tmp_path / "models" / "1"
    version.mkdir(parents=True)
    (version / "model.onnx").write_bytes(b"never loaded")
    return version.parent


@pytest.fixture
def replicas(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[dict[str, OperatorProcess]]:
    """Two operator replicas, "a" and "b", peering in `namespace` as the chart sets them up."""
    control_plane.kubectl(
        "apply", "-f", "-", input=json.dumps(chart_peering(control_plane, namespace))
    )
    nowhere = f"http://127.0.0.1:{free_port()}"
    with ExitStack() as stack:
        running = {}
        for name in ("a", "b"):
            env = control_plane.env()
            env.update(
                {
                    "POD_ID": name,
                    "RAYSHIP_PEERING": PEERING,
                    "RAYSHIP_PEERING_LIFETIME_SECONDS": str(LIFETIME_S),
                    "RAYSHIP_NAMESPACES": namespace,
                    "RAYSHIP_RAY_DASHBOARD": nowhere,
                    "RAYSHIP_SERVE_URL": nowhere,
                    "RAYSHIP_RECONCILE_SECONDS": "2",
                    "RAYSHIP_LIVENESS_ENDPOINT": f"http://127.0.0.1:{free_port()}/healthz",
                }
            )
            running[name] = stack.enter_context(
                run_operator(env, tmp_path / f"operator-{name}.log")
            )
        yield running


def model_deployment(namespace: str, folder: Path, replicas: int) -> str:
    return json.dumps(
        {
            "apiVersion": "serving.rayship.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "ha", "namespace": namespace},
            "spec": {
                "model": {"format": "onnx", "storageUri": folder.as_uri(), "version": "1"},
                "replicas": replicas,
            },
        }
    )


def test_one_replica_acts_and_a_standby_takes_over_when_it_dies(
    control_plane: ControlPlane,
    namespace: str,
    replicas: dict[str, OperatorProcess],
    model_folder: Path,
) -> None:
    plane = control_plane
    eventually(lambda: len(peers(plane, namespace)) == 2, timeout_s=60, what="both keep-alives")
    leader = active(plane, namespace)
    standby = next(name for name in replicas if name != leader)

    plane.kubectl("apply", "-f", "-", input=model_deployment(namespace, model_folder, 1))
    eventually(lambda: observed_generation(plane, namespace, "ha") == 1, timeout_s=60)
    assert HANDLED in replicas[leader].tail(400)
    # It waited. (kopf starts a peering replica paused, so a standby that never saw itself
    # leading logs no "Pausing operations": that line only marks a leader stepping down.)
    assert HANDLED not in replicas[standby].tail(400)

    # The active replica dies without a word (a node lost, OOM-killed): the standby takes over
    # once its keep-alive lapses, and handles the change made meanwhile.
    killed_at = time.monotonic()
    replicas[leader].kill()
    plane.kubectl("apply", "-f", "-", input=model_deployment(namespace, model_folder, 2))
    eventually(
        lambda: observed_generation(plane, namespace, "ha") == 2,
        timeout_s=LIFETIME_S + 60,
        what=f"replica {standby} handling generation 2",
    )
    took = time.monotonic() - killed_at
    print(f"takeover after SIGKILL: {took:.1f}s (keep-alive lifetime {LIFETIME_S}s)")
    assert HANDLED in replicas[standby].tail(400)


def test_a_replica_that_stops_cleanly_hands_over_at_once(
    control_plane: ControlPlane,
    namespace: str,
    replicas: dict[str, OperatorProcess],
    model_folder: Path,
) -> None:
    """SIGTERM (a rolling update, a drained node): kopf removes the replica's keep-alive as it
    exits, so the standby resumes without waiting for the lifetime to lapse."""
    plane = control_plane
    eventually(lambda: len(peers(plane, namespace)) == 2, timeout_s=60, what="both keep-alives")
    leader = active(plane, namespace)
    standby = next(name for name in replicas if name != leader)
    plane.kubectl("apply", "-f", "-", input=model_deployment(namespace, model_folder, 1))
    eventually(lambda: observed_generation(plane, namespace, "ha") == 1, timeout_s=60)

    stopped_at = time.monotonic()
    replicas[leader].stop()
    assert leader not in peers(plane, namespace)  # it took itself out of the peering
    plane.kubectl("apply", "-f", "-", input=model_deployment(namespace, model_folder, 2))
    eventually(lambda: observed_generation(plane, namespace, "ha") == 2, timeout_s=60)
    print(f"takeover after SIGTERM: {time.monotonic() - stopped_at:.1f}s")
    assert "Resuming operations" in replicas[standby].tail(400)
