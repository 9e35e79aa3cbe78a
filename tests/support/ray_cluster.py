"""A real local Ray with Serve, started once per test session through local mode's own code.

Tests deploy through `ServeCluster.deploy`, which is local mode's compose-and-PUT path, so what
the tests exercise is what `rayship serve` and the operator run. Serve's PUT replaces every
application, so each test deploys the full set it needs.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from rayship.contract import version_app_name
from rayship.dashboard import ServeDashboard
from rayship.local import LocalRay, deploy, free_port
from rayship.serveconfig import HttpOptions, ModelRouting


@dataclass
class ServeCluster:
    """The session's Ray: its dashboard and the V2 endpoint's base URL."""

    dashboard: ServeDashboard
    http: HttpOptions

    @property
    def url(self) -> str:
        """Base URL of the Serve proxy, e.g. http://127.0.0.1:8123."""
        return f"http://{self.http.host}:{self.http.port}"

    @property
    def address(self) -> str:
        """host:port, the form tritonclient takes."""
        return f"{self.http.host}:{self.http.port}"

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
            with LocalRay() as dashboard:
                from ray._private import worker  # the only way to a session's folder

                session = Path(worker._global_node.get_session_dir_path())
                yield ServeCluster(dashboard, HttpOptions("127.0.0.1", free_port()))
    finally:
        if session is not None:
            shutil.rmtree(session / "runtime_resources", ignore_errors=True)


@pytest.fixture(scope="session")
def serve_cluster() -> Iterator[ServeCluster]:
    """The session's local Ray (`local_serve_cluster`), shut down after the session."""
    with local_serve_cluster() as cluster:
        yield cluster
