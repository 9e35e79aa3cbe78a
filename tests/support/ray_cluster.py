"""A real local Ray with Serve, started once per test session through local mode's own code.

Tests deploy through `ServeCluster.deploy`, which is local mode's compose-and-PUT path, so what
the tests exercise is what `rayship serve` and the operator run. Serve's PUT replaces every
application, so each test deploys the full set it needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

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


@pytest.fixture(scope="session")
def serve_cluster() -> Iterator[ServeCluster]:
    """A local Ray head with Serve on a free loopback port, shut down after the session."""
    with LocalRay() as dashboard:
        yield ServeCluster(dashboard, HttpOptions("127.0.0.1", free_port()))
