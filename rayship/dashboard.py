"""A small client for Ray Serve's REST API on the Ray dashboard (port 8265).

Only the three calls Rayship needs: PUT the whole config, GET application status, DELETE all.
Plain urllib keeps it dependency-free and easy to call from a thread in the async operator.
Ray clusters with token authentication (the default for new local clusters) need a bearer
token; it is found where Ray's own clients look for it.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rayship.errors import ClusterUnreachable

APPLICATIONS = "/api/serve/applications/"
SHUTDOWN_TIMEOUT_S = 120.0
READ_TIMEOUT_S = 10.0
"""A GET of the applications answers in well under a second; one that hangs (a partition that
drops packets rather than refusing them) would otherwise keep the operator from reporting the
cluster unreachable for the whole call timeout."""


def ray_auth_token() -> str | None:
    """Ray's token: $RAY_AUTH_TOKEN, else the file at $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token.

    Read here, not taken from the operator's or the CLI's settings: these are Ray's variables,
    and reading them as Ray's own clients do means whatever token `ray` itself uses works here.
    """
    token = os.environ.get("RAY_AUTH_TOKEN")
    if token:
        return token.strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    return path.read_text().strip() if path.is_file() else None


class DashboardError(ClusterUnreachable):
    """The dashboard refused a call or could not be reached; the message says which."""


class ServeDashboard:
    """Serve's REST API at one dashboard address, e.g. `http://127.0.0.1:8265`."""

    def __init__(self, address: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        self.address = address.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        token = token or ray_auth_token()
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, data: bytes | None = None, timeout_s: float | None = None) -> Any:
        request = urllib.request.Request(
            self.address + APPLICATIONS,
            data=data,
            method=method,
            headers=self._headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s or self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace").strip()
            raise DashboardError(
                f"{method} {self.address}{APPLICATIONS} failed with {error.code}: {detail[-2000:]}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            raise DashboardError(f"Ray dashboard at {self.address} unreachable: {error}") from None
        return json.loads(payload) if payload.strip() else None

    def put_config(self, config: dict[str, Any]) -> int:
        """Declaratively deploy `config`, replacing every application not in it; the size of
        the body sent, in bytes (the operator's metrics record it)."""
        data = json.dumps(config).encode()
        self._call("PUT", data)
        return len(data)

    def applications(self) -> dict[str, Any]:
        """The `applications` map of the Serve details (name -> status, deployments, ...)."""
        details = self._call("GET", timeout_s=min(self.timeout_s, READ_TIMEOUT_S)) or {}
        apps: dict[str, Any] = details.get("applications") or {}
        return apps

    def delete_all(self) -> None:
        """Remove every Serve application on the cluster.

        The dashboard answers only once Serve has shut down, and Serve lets ingress replicas
        drain for up to 35 s first (20 s, raised for HAProxy's direct ingress): longer than a
        call's usual timeout, so this one waits up to `SHUTDOWN_TIMEOUT_S`.
        """
        self._call("DELETE", timeout_s=SHUTDOWN_TIMEOUT_S)
