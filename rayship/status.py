"""Read Serve's application details into the few facts Rayship acts on.

Local mode waits on these and the operator turns them into ModelDeployment status, so both
read the dashboard's JSON the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RUNNING = "RUNNING"
FAILED = {"DEPLOY_FAILED", "UNHEALTHY"}


@dataclass(frozen=True)
class AppState:
    """One Serve application's status, its message, and its running replica count."""

    status: str
    message: str
    running_replicas: int

    @property
    def running(self) -> bool:
        """Serving traffic."""
        return self.status == RUNNING

    @property
    def failed(self) -> bool:
        """Will not become ready without a change."""
        return self.status in FAILED


MISSING = AppState("NOT_STARTED", "", 0)


def app_states(applications: dict[str, Any]) -> dict[str, AppState]:
    """AppState per application name from `GET /api/serve/applications/`'s `applications`."""
    states = {}
    for name, details in applications.items():
        deployments = (details.get("deployments") or {}).values()
        messages = [details.get("message") or ""] + [d.get("message") or "" for d in deployments]
        replicas = sum(
            1
            for deployment in deployments
            for replica in deployment.get("replicas") or []
            if replica.get("state") == RUNNING
        )
        states[name] = AppState(
            status=details.get("status", "NOT_STARTED"),
            message="\n".join(message for message in messages if message),
            running_replicas=replicas,
        )
    return states
