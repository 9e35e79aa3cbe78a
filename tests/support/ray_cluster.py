"""A real local Ray with Serve, started once per test session through local mode's own code.

Tests deploy through `ServeCluster.deploy`, which is local mode's compose-and-PUT path, so what
the tests exercise is what `rayship serve` and the operator run. Serve's PUT replaces every
application, so each test deploys the full set it needs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

from rayship.contract import version_app_name
from rayship.dashboard import ServeDashboard
from rayship.local import LocalRay, deploy, free_port
from rayship.serveconfig import IngressOptions, ModelRouting


@dataclass
class ServeCluster:
    """The session's Ray: its dashboard and the V2 endpoint's base URL."""

    dashboard: ServeDashboard
    http: IngressOptions
    metrics_url: str

    @property
    def url(self) -> str:
        """Base URL of the Serve proxy, e.g. http://127.0.0.1:8123."""
        return f"http://{self.http.host}:{self.http.port}"

    @property
    def address(self) -> str:
        """host:port, the form tritonclient takes."""
        return f"{self.http.host}:{self.http.port}"

    @property
    def grpc_address(self) -> str:
        """host:port of the V2 gRPC service, the form tritonclient.grpc takes."""
        return f"{self.http.host}:{self.http.grpc_port}"

    def deploy(self, routings: list[ModelRouting], timeout_s: float = 180) -> None:
        """Serve exactly `routings` and wait until they run."""
        deploy(self.dashboard, routings, self.http, timeout_s)

    def replica_ids(self, model: str) -> dict[str, frozenset[str]]:
        """The replica ids of each of `model`'s version applications (`<model>@<version>`).

        A replica that restarts comes back with a new id, so equal ids before and after a
        change prove that the change restarted nothing.
        """
        prefix = version_app_name(model, "")
        return {
            name: frozenset(
                replica["replica_id"]
                for deployment in (app.get("deployments") or {}).values()
                for replica in deployment.get("replicas") or []
            )
            for name, app in self.dashboard.applications().items()
            if name.startswith(prefix)
        }


@contextmanager
def local_serve_cluster() -> Iterator[ServeCluster]:
    """A local Ray head with Serve on a free loopback port, shut down when the block ends.

    Ray makes a pip runtime env (spec.runtimeEnv.pip) by copying the whole .venv, gigabytes
    and minutes here: a requirement that fails is tried once, not Ray's three times, and the
    copies are removed with the session (whose logs Ray keeps after shutdown, as they are).
    """
    session: Path | None = None
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RUNTIME_ENV_RETRY_TIMES", "1")
            # Replicas report their metrics every second instead of Ray's ten, so a test that
            # scrapes them waits seconds, not tens of seconds.
            patch.setenv("RAY_metrics_report_interval_ms", "1000")
            local_ray = LocalRay()
            with local_ray as dashboard:
                from ray._private import worker  # the only way to a session's folder

                session = Path(worker._global_node.get_session_dir_path())
                http = IngressOptions("127.0.0.1", free_port(), free_port())
                yield ServeCluster(dashboard, http, local_ray.metrics_url)
    finally:
        if session is not None:
            shutil.rmtree(session / "runtime_resources", ignore_errors=True)


@pytest.fixture(scope="session")
def serve_cluster() -> Iterator[ServeCluster]:
    """The session's local Ray (`local_serve_cluster`), shut down after the session."""
    with local_serve_cluster() as cluster:
        yield cluster


class WorkerNode:
    """A second Ray node joined to this process's Ray (`ray start --address`), as a KubeRay
    worker pod is a node of its own: its processes form a process group of their own, so
    `kill` loses the whole node at once, the way a node or a pod is lost.

    The node shares this machine's address with the head; Serve spreads a deployment's replicas
    over both nodes.
    """

    def __init__(self, num_cpus: int, log: Path) -> None:
        self.num_cpus = num_cpus
        self.log = log
        self.node_id = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._record: Path | None = None

    def __enter__(self) -> Self:
        import ray

        before = alive_nodes()
        from ray._common.utils import get_ray_address_file  # where `ray start` records it

        self._record = Path(get_ray_address_file(None))
        # The local Ray uses token authentication; a joining `ray start` must be told to.
        env = dict(os.environ, RAY_AUTH_MODE="token")
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                [str(Path(sys.executable).with_name("ray")), "start", "--block",
                 f"--address={ray.get_runtime_context().gcs_address}",
                 f"--num-cpus={self.num_cpus}", "--disable-usage-stats"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while not (joined := alive_nodes() - before):
            if time.monotonic() > deadline or self._process.poll() is not None:
                self.kill()
                raise RuntimeError(f"the worker node did not join; its log: {self.log}")
            time.sleep(0.5)
        (self.node_id,) = joined
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.kill()

    def kill(self) -> None:
        """SIGKILL every process of the node (raylet, agents, its replicas): the node is lost."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        # `ray start` recorded the cluster for later `ray` commands; killed, it cannot take
        # the record back, and a Ray started later without an address would try to join it.
        if self._record is not None:
            self._record.unlink(missing_ok=True)


def alive_nodes() -> set[str]:
    """The ids of the Ray nodes alive now."""
    import ray

    return {node["NodeID"] for node in ray.nodes() if node["Alive"]}
