"""The route table a Ray cluster's HTTP ingress actually uses, from its `GET /-/routes`.

Serve reports an application's new route prefix before its ingress (HAProxy in
throughput-optimized mode, else Serve's proxy) routes by it; until then a model URL still
reaches whichever application held it before. So whoever says "this version serves the model
URL" (local mode's deploy, the operator's Ready condition) asks the ingress itself. Both
ingresses answer `/-/routes` with `{route_prefix: application}`.
"""

from __future__ import annotations

import json
import urllib.request

ROUTES_PATH = "/-/routes"


def route_table(serve_url: str, timeout_s: float = 5.0) -> dict[str, str] | None:
    """The ingress's route table, or None while it cannot answer (starting, no replicas,
    unreachable from here)."""
    try:
        with urllib.request.urlopen(
            serve_url.rstrip("/") + ROUTES_PATH, timeout=timeout_s
        ) as reply:
            table = json.loads(reply.read())
    except (OSError, ValueError):
        return None
    return (
        {str(prefix): str(app) for prefix, app in table.items()}
        if isinstance(table, dict)
        else None
    )
