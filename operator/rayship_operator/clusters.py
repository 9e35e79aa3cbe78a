"""One writer per Ray cluster: the whole Serve config, composed from every model targeting it.

Serve's REST PUT replaces every application on a cluster, so a writer keeps the desired
routing of each ModelDeployment on its cluster and PUTs the composed config, under a lock, only
when its hash differs from what the cluster runs (the hash travels inside the config, so a
restarted operator recognises its own config and redeploys nothing) or when the cluster lost an
application it should have. Until every ModelDeployment known to target the cluster has been
reconciled once, the writer does not PUT: a config missing one of them would delete its apps.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rayship.dashboard import ServeDashboard
from rayship.serveconfig import (
    SERVER_APP,
    HttpOptions,
    ModelRouting,
    app_names,
    compose,
    config_hash,
    direct_version,
    model_route,
    version_app_name,
)
from rayship.spec import RayClusterRef
from rayship.status import AppState, app_states
from rayship_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)

HASH_KEY = "rayshipConfigHash"


@dataclass(frozen=True)
class ClusterRef:
    """Where a Ray cluster's dashboard and Serve proxy are, and how its proxy listens."""

    dashboard: str
    serve_url: str
    http: HttpOptions


def cluster_for(
    namespace: str, ref: RayClusterRef | None, settings: OperatorSettings
) -> ClusterRef:
    """The cluster a ModelDeployment targets: its KubeRay head service, or the default."""
    if ref is None:
        dashboard, serve_url = settings.default_dashboard, settings.default_serve_url
    else:
        host = f"{ref.name}-head-svc.{namespace}.{settings.cluster_domain}"
        dashboard = f"http://{host}:{settings.dashboard_port}"
        serve_url = f"http://{host}:{settings.serve_port}"
    port = urlsplit(serve_url).port or settings.serve_port
    return ClusterRef(dashboard, serve_url, HttpOptions(settings.serve_http_host, port))


def _with_hash(config: dict[str, Any]) -> str:
    """Put the config's own hash into the server app's user_config; return the hash."""
    digest = config_hash(config)
    for app in config["applications"]:
        if app["name"] == SERVER_APP:
            app["deployments"][0]["user_config"][HASH_KEY] = digest
    return digest


def _server_user_config(applications: dict[str, Any]) -> dict[str, Any]:
    """The user_config the cluster's server application was deployed with ({} if none)."""
    server = applications.get(SERVER_APP) or {}
    deployed = server.get("deployed_app_config") or {}
    for deployment in deployed.get("deployments") or []:
        return dict(deployment.get("user_config") or {})
    return {}


def _deployed_hash(applications: dict[str, Any]) -> str | None:
    """The hash of the config the cluster runs, if an operator put it there."""
    value = _server_user_config(applications).get(HASH_KEY)
    return str(value) if value else None


def routes_in_effect(applications: dict[str, Any], routing: ModelRouting) -> bool:
    """Whether Serve's applications (`GET /api/serve/applications/`) route as `routing` plans.

    The server application must run with the model's traffic table, and the model's URL must
    belong to the running version that takes all traffic (or, for a split, to no version).
    """
    server = applications.get(SERVER_APP) or {}
    if server.get("status") != "RUNNING":
        return False
    tables = _server_user_config(applications).get("models") or {}
    table = tables.get(routing.model_name) or {}
    if table.get("traffic") != [list(pair) for pair in routing.traffic]:
        return False
    owner = direct_version(routing)
    route = model_route(routing.model_name)
    for live in routing.live:
        app = applications.get(version_app_name(routing.model_name, live.version)) or {}
        if (app.get("route_prefix") == route) != (live.version == owner):
            return False
        if live.version == owner and app.get("status") != "RUNNING":
            return False
    return True


class ClusterWriter:
    """The single writer of one cluster's Serve config."""

    def __init__(self, ref: ClusterRef) -> None:
        self.ref = ref
        self.dashboard = ServeDashboard(ref.dashboard)
        self.lock = asyncio.Lock()
        self.routings: dict[str, ModelRouting | None] = {}
        self._applications: dict[str, Any] = {}

    async def observe(self) -> dict[str, AppState]:
        """Application states by name (kept for the following `write`)."""
        self._applications = await asyncio.to_thread(self.dashboard.applications)
        return app_states(self._applications)

    def traffic_in_effect(self, routing: ModelRouting) -> bool:
        """Whether the cluster, as last observed, routes `routing`'s traffic as planned."""
        return routes_in_effect(self._applications, routing)

    def assign(self, key: str, routing: ModelRouting | None) -> None:
        """Record one ModelDeployment's routing; None means it holds no applications."""
        self.routings[key] = routing

    def forget(self, key: str) -> None:
        """A ModelDeployment is gone (deleted, or moved to another cluster)."""
        self.routings.pop(key, None)

    async def write(self, known: set[str]) -> bool:
        """PUT the composed config if needed; `known` are all keys targeting this cluster.

        Returns True when a config was sent.
        """
        waiting = known - self.routings.keys()
        if waiting:
            logger.info("not writing %s yet: waiting for %s", self.ref.dashboard, sorted(waiting))
            return False
        routings = [r for r in self.routings.values() if r is not None]
        config = compose(routings, self.ref.http)
        digest = _with_hash(config)
        missing = {SERVER_APP, *app_names(routings)} - self._applications.keys()
        unchanged = digest == _deployed_hash(self._applications)
        if unchanged and not missing:
            return False
        if unchanged:
            logger.warning(
                "cluster %s lost %s; applying again", self.ref.dashboard, sorted(missing)
            )
        await asyncio.to_thread(self.dashboard.put_config, config)
        return True


class Clusters:
    """Writers by dashboard address, created on first use."""

    def __init__(self) -> None:
        self._writers: dict[str, ClusterWriter] = {}

    def writer(self, ref: ClusterRef) -> ClusterWriter:
        """The writer for `ref`."""
        writer = self._writers.get(ref.dashboard)
        if writer is None:
            writer = self._writers[ref.dashboard] = ClusterWriter(ref)
        return writer

    def forget_everywhere(self, key: str) -> None:
        """Drop a ModelDeployment from every writer (it moved or was deleted)."""
        for writer in self._writers.values():
            writer.forget(key)
