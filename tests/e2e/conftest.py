"""End-to-end fixtures: the real control plane, a local Ray, moto S3 and the operator process."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controlplane.cluster import ControlPlane
from controlplane.fixtures import control_plane, kube_tools, kubeconfig, namespace
from rayship.local import free_port
from support.operator_process import OperatorProcess, run_operator
from support.ray_cluster import ServeCluster
from support.s3 import S3Server
from support.traffic import StatusWatcher, SteadyLoad, settled

__all__ = ["control_plane", "kube_tools", "kubeconfig", "namespace"]


@dataclass
class Stack:
    """Everything an e2e test drives: kubectl, the operator, Serve, S3, a namespace."""

    plane: ControlPlane
    operator: OperatorProcess
    serve: ServeCluster
    s3: S3Server
    namespace: str
    models: Path

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        """kubectl in the test namespace; returns stdout."""
        done = self.plane.kubectl("-n", self.namespace, *args, input=input, check=check)
        return done.stdout + done.stderr if not check else done.stdout

    def apply(self, manifest: dict[str, Any]) -> None:
        """kubectl apply a manifest given as a dict."""
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def patch(self, name: str, spec: dict[str, Any]) -> None:
        """Merge-patch a ModelDeployment's spec (`null` removes a field), as a user would."""
        self.kubectl("patch", "md", name, "--type=merge", "-p", json.dumps({"spec": spec}))

    def rayship(self, *args: str, kubeconfig: Path | None = None) -> tuple[int, str]:
        """`rayship ARGS` as a user runs it: a subprocess with the control plane's kubeconfig
        unless another is given. Returns the exit status and stdout followed by stderr."""
        env = self.plane.env()
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        done = subprocess.run(
            [sys.executable, "-P", "-m", "rayship.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    def watch_status(self, name: str) -> StatusWatcher:
        """A sampler of the ModelDeployment's Ready condition (enter it to start sampling)."""
        return StatusWatcher(self.plane.kubeconfig, self.namespace, name)

    def move_traffic(
        self,
        name: str,
        load: SteadyLoad,
        spec: dict[str, Any],
        versions: set[str],
        timeout_s: float,
        **status: Any,
    ) -> float:
        """Patch the spec, wait until `load`'s answers come from exactly `versions` and the
        operator reports the new generation Ready with `status`'s fields; return the seconds
        from the patch (kubectl's own start included) until the traffic moved."""
        since = time.monotonic()
        self.patch(name, spec)
        moved = load.wait_moved(since, versions, timeout_s)
        generation = int(self.get(name)["metadata"]["generation"])
        self.wait_for(name, settled(generation, **status), timeout_s)
        return moved - since

    def get(self, name: str) -> dict[str, Any]:
        """The ModelDeployment as the API server has it."""
        got: dict[str, Any] = json.loads(self.kubectl("get", "md", name, "-o", "json"))
        return got

    def wait_for(
        self, name: str, check: Callable[[dict[str, Any]], bool], timeout_s: float = 180
    ) -> dict[str, Any]:
        """Poll the object until `check(status)` holds; fail with the operator's log."""
        deadline = time.monotonic() + timeout_s
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.get(name).get("status") or {}
            if check(status):
                return status
            time.sleep(0.5)
        pytest.fail(
            f"{name} never reached the expected status; last status:\n"
            f"{json.dumps(status, indent=1)}\noperator log:\n{self.operator.tail()}"
        )

    def upload_iris(self, uri: str, versions: tuple[str, ...]) -> None:
        """Upload example iris versions to S3 (`1`, `2` exist; others copy version 1)."""
        for version in versions:
            source = version if version in ("1", "2") else "1"
            self.s3.upload_version(uri, version, self.models / "iris-onnx" / source)

    def model_deployment(self, name: str, uri: str, version: str, **spec: Any) -> dict[str, Any]:
        """An onnx ModelDeployment reading `uri` through the namespace's S3 Secret."""
        body: dict[str, Any] = {
            "model": {"format": "onnx", "storageUri": uri, "version": version},
            "storage": {"endpointUrl": self.s3.endpoint_url, "secretRef": {"name": "s3"}},
            "rollout": {"readinessDeadlineSeconds": 60, "keepPreviousSeconds": 600},
        }
        body.update(spec)
        return {
            "apiVersion": "serving.rayship.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": body,
        }


def _secret(namespace: str) -> dict[str, Any]:
    values = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s3", "namespace": namespace},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }


@contextmanager
def open_stack(  # noqa: PLR0917 - the parts of a Stack, in its order
    plane: ControlPlane,
    namespace: str,
    serve: ServeCluster,
    s3: S3Server,
    models: Path,
    operator_log: Path,
    dashboard: str = "",
) -> Iterator[Stack]:
    """An S3 Secret in `namespace` and an operator watching only it, for the block's duration;
    the operator reaches the Ray dashboard at `dashboard` (default: `serve`'s own address).

    The `stack` fixture's body, also used by the benches to time the same parts.
    """
    plane.kubectl("apply", "-f", "-", input=json.dumps(_secret(namespace)))
    env = plane.env()
    env.update(
        {
            "RAYSHIP_RAY_DASHBOARD": dashboard or serve.dashboard.address,
            "RAYSHIP_SERVE_URL": serve.url,
            "RAYSHIP_SERVE_HTTP_HOST": serve.http.host,
            # Serve keeps the gRPC port it started with; the operator's must be the same
            "RAYSHIP_SERVE_GRPC_PORT": str(serve.http.grpc_port),
            "RAYSHIP_RECONCILE_SECONDS": "1",
            # some tests name RayClusters that never exist, and then delete their models
            "RAYSHIP_DELETE_GRACE_SECONDS": "5",
            "RAYSHIP_NAMESPACES": namespace,
            "RAYSHIP_LIVENESS_ENDPOINT": f"http://127.0.0.1:{free_port()}/healthz",
        }
    )
    with run_operator(env, operator_log) as operator:
        yield Stack(plane, operator, serve, s3, namespace, models)


@pytest.fixture
def stack(  # noqa: PLR0917 - pytest injects fixtures positionally
    control_plane: ControlPlane,
    namespace: str,
    serve_cluster: ServeCluster,
    s3_server: S3Server,
    example_models: Path,
    tmp_path: Path,
) -> Iterator[Stack]:
    """A namespace with an S3 Secret and an operator watching only it."""
    with open_stack(
        control_plane,
        namespace,
        serve_cluster,
        s3_server,
        example_models,
        tmp_path / "operator.log",
    ) as stack:
        yield stack
