"""One writer per Ray cluster: the whole Serve config, composed from every model targeting it.

Serve's REST PUT replaces every application on a cluster, so a writer keeps the desired
routing of each ModelDeployment on its cluster and PUTs the composed config, under a lock, only
when its hash differs from what the cluster runs (the hash travels inside the config, so a
restarted operator recognises its own config and redeploys nothing) or when the cluster lost an
application it should have. A ModelDeployment known to target the cluster whose routing the
writer does not know (not reconciled yet, or its reconcile fails) keeps the applications the
cluster runs for it, sent again as they are: a config missing them would delete them, and
waiting for it instead would stall every other model on the cluster behind one broken resource.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rayship.contract import (
    SERVER_APP,
    SERVER_ROUTE,
    ServerUserConfig,
    deployment_user_config,
    model_route,
    version_app_name,
)
from rayship.dashboard import ServeDashboard
from rayship.ingress import route_table
from rayship.serveconfig import (
    IngressOptions,
    KeptModel,
    ModelRouting,
    app_names,
    compose,
    direct_version,
)
from rayship.spec import RayClusterRef
from rayship.status import MISSING, AppState, app_states
from rayship_operator.metrics import OperatorMetrics
from rayship_operator.report import Serving
from rayship_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)

Routes = dict[str, str]  # route prefix -> application name

# What makes Serve replace an application's replicas rather than update them in place: its
# code (import path, args, runtime_env) or a deployment's actor options.
_RESTARTING_APP_FIELDS = ("import_path", "args", "runtime_env")
_RESTARTING_DEPLOYMENT_FIELDS = ("ray_actor_options",)
DELETING = "DELETING"  # Serve's status of an application on its way out
_APP_SEPARATOR = version_app_name("", "")  # between model and version in an application name


@dataclass(frozen=True)
class ClusterRef:
    """Where a Ray cluster's dashboard and Serve proxy are, and how its proxy listens."""

    dashboard: str
    serve_url: str
    http: IngressOptions

    @property
    def grpc_address(self) -> str:
        """host:port of the cluster's V2 gRPC service as clients reach it: the host of its
        Serve URL (a KubeRay head service, or the default cluster's RAYSHIP_SERVE_URL) and the
        gRPC port Serve listens on."""
        host = urlsplit(self.serve_url).hostname or ""
        if ":" in host:  # an IPv6 address, bracketed as in a URL
            host = f"[{host}]"
        return f"{host}:{self.http.grpc_port}"


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
    ingress = IngressOptions(settings.serve_http_host, port, settings.serve_grpc_port)
    return ClusterRef(dashboard, serve_url, ingress)


def _deployed_server_config(applications: dict[str, Any]) -> ServerUserConfig:
    """What the cluster's server application was deployed with (empty if none)."""
    server = applications.get(SERVER_APP) or {}
    return ServerUserConfig.from_dict(
        deployment_user_config(server.get("deployed_app_config") or {})
    )


def _composed_hash(config: dict[str, Any]) -> str | None:
    """The hash `compose` put into a config."""
    for app in config["applications"]:
        if app["name"] == SERVER_APP:
            return ServerUserConfig.from_dict(deployment_user_config(app)).config_hash
    return None


def effective_routes(applications: dict[str, Any], ingress: dict[str, str] | None) -> Routes:
    """Route prefix -> application as requests are routed: the ingress's own table
    (`rayship.ingress`), or Serve's application details when the ingress cannot be asked."""
    if ingress is not None:
        return ingress
    return {
        app["route_prefix"]: name
        for name, app in applications.items()
        if app.get("route_prefix") is not None
    }


@dataclass(frozen=True)
class ClusterView:
    """One observation of a cluster, read once and asked about every model on it: application
    states, the ingress's routes, and the server application's deployed tables."""

    states: dict[str, AppState]
    routes: Routes
    server: ServerUserConfig

    @classmethod
    def of(cls, applications: dict[str, Any], ingress: dict[str, str] | None) -> ClusterView:
        """The view of `GET /api/serve/applications/` and the ingress's `GET /-/routes` (None
        when it could not be asked)."""
        return cls(
            app_states(applications),
            effective_routes(applications, ingress),
            _deployed_server_config(applications),
        )

    def state(self, app: str) -> AppState:
        """An application's state; `MISSING` when the cluster has no such application."""
        return self.states.get(app, MISSING)


def routes_in_effect(view: ClusterView, routing: ModelRouting) -> bool:
    """Whether the cluster routes as `routing` plans: the server application runs with the
    model's traffic table, and the model's URL belongs to the running version that takes all
    traffic (or, for a split, to no version)."""
    if not view.state(SERVER_APP).running:
        return False
    table = view.server.models.get(routing.model_name)
    if table is None or table.traffic != routing.traffic:
        return False
    owner = direct_version(routing)
    holder = view.routes.get(model_route(routing.model_name))
    if owner is None:
        return holder is None
    owner_app = version_app_name(routing.model_name, owner)
    return holder == owner_app and view.state(owner_app).running


def serving(view: ClusterView, model_name: str) -> tuple[str, ...]:
    """The versions that answer a model's unversioned URL: the one the ingress routes it to,
    or, when none holds it, those with a share in the server application's table."""
    holder = view.routes.get(model_route(model_name))
    if holder is not None:
        prefix = version_app_name(model_name, "")
        owns = holder.startswith(prefix) and view.state(holder).answering
        return (holder[len(prefix) :],) if owns else ()
    table = view.server.models.get(model_name)
    server = view.routes.get(SERVER_ROUTE) == SERVER_APP and view.state(SERVER_APP).answering
    if table is None or not server:
        return ()
    shares = [version for version, percent in table.traffic if percent > 0]
    apps = [view.state(version_app_name(model_name, version)) for version in shares]
    return tuple(shares) if shares and all(app.answering for app in apps) else ()


def observe_serving(view: ClusterView, routing: ModelRouting) -> Serving:
    """What users of `routing`'s model get from the cluster as observed."""
    versions = serving(view, routing.model_name)
    replicas = sum(
        view.state(version_app_name(routing.model_name, version)).running_replicas
        for version in versions
    )
    return Serving(versions, replicas, routes_in_effect(view, routing))


def _version_apps_by_model(applications: dict[str, Any]) -> dict[str, list[str]]:
    """The version applications (`<model>@<version>`) of each model, Serve's deleting ones
    left out. Grouped in one pass: scanning every application for each kept model made the
    first write after an operator restart quadratic in the models on the cluster (6.9 s of
    CPU with 10,000, `bench/scale_bench.py`). Model names never contain the separator (`@`,
    by the CRD's pattern), so its first occurrence ends the model name."""
    by_model: dict[str, list[str]] = {}
    for name, details in applications.items():
        model, at, _ = name.partition(_APP_SEPARATOR)
        if at and details.get("status") != DELETING:
            by_model.setdefault(model, []).append(name)
    return by_model


def kept_models(
    applications: dict[str, Any], server: ServerUserConfig, model_names: Iterable[str]
) -> list[KeptModel]:
    """What the cluster runs for each of `model_names`: its version applications as deployed
    (in the order of its traffic table, which is the order `compose` writes them in) and its
    table in the server application. Applications Serve is deleting are not kept: sending
    them again would bring them back."""
    by_model = _version_apps_by_model(applications)
    kept = []
    for model_name in sorted(set(model_names)):
        table = server.models.get(model_name)
        names = sorted(by_model.get(model_name, ()))
        if table is not None:
            listed = [app for app in table.versions.values() if app in names]
            names = listed + [name for name in names if name not in listed]
        apps = tuple(
            deployed
            for name in names
            if (deployed := applications[name].get("deployed_app_config")) is not None
        )
        if apps or table is not None:
            kept.append(KeptModel(model_name, table, apps))
    return kept


def _code_changed(app: dict[str, Any], deployed: dict[str, Any]) -> bool:
    """Whether Serve builds `app` again over `deployed`: what its code version hashes changed."""
    return any(
        (app.get(key) or None) != (deployed.get(key) or None) for key in _RESTARTING_APP_FIELDS
    )


def restarting_apps(applications: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The applications whose replicas Serve will replace when `config` is applied: those
    already deployed whose code or actor options change (see `_RESTARTING_APP_FIELDS`)."""
    restarting = []
    for app in config["applications"]:
        deployed = (applications.get(app["name"]) or {}).get("deployed_app_config")
        if not deployed:
            continue
        changed = _code_changed(app, deployed)
        pairs = zip(app.get("deployments") or [], deployed.get("deployments") or [], strict=False)
        changed = changed or any(
            (new.get(key) or None) != (old.get(key) or None)
            for new, old in pairs
            for key in _RESTARTING_DEPLOYMENT_FIELDS
        )
        if changed:
            restarting.append(app["name"])
    return restarting


def builds_restarted(applications: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The applications whose build a PUT of `config` would cancel and start over.

    Serve builds a new application in a task before it has any deployment, and any PUT during
    that task starts the build again, even when the application's code is unchanged: every
    other model's rollout on the cluster would restart it, and a dozen rollouts at once would
    keep each other from ever finishing.
    """
    restarted = []
    for app in config["applications"]:
        details = applications.get(app["name"]) or {}
        deployed = details.get("deployed_app_config")
        building = details.get("status") == "DEPLOYING" and not details.get("deployments")
        if building and deployed and not _code_changed(app, deployed):
            restarted.append(app["name"])
    return restarted


@dataclass(frozen=True)
class Written:
    """What a `ClusterWriter.write` did: whether it sent a config or held it back until a build
    ends, and which applications' replicas the config it sent replaces."""

    sent: bool
    deferred: bool = False
    restarting: tuple[str, ...] = ()

    @property
    def pending(self) -> bool:
        """Whether the cluster does not run the config yet: just sent, or held back."""
        return self.sent or self.deferred


class ClusterWriter:
    """The single writer of one cluster's Serve config."""

    def __init__(
        self, ref: ClusterRef, build_grace_seconds: float, metrics: OperatorMetrics
    ) -> None:
        self.ref = ref
        self.metrics = metrics
        self.dashboard = ServeDashboard(ref.dashboard)
        self.lock = asyncio.Lock()
        self.routings: dict[str, ModelRouting | None] = {}
        # Deleted or moved away: never kept, although the index may still list them a moment.
        self.withdrawn: set[str] = set()
        self.build_grace_seconds = build_grace_seconds
        self._applications: dict[str, Any] = {}
        self._view = ClusterView.of({}, None)
        self._deferring_since: float | None = None

    async def observe(self) -> dict[str, AppState]:
        """Application states by name; the whole observation (`ClusterView`) and Serve's raw
        details are kept for `write` and `serving`."""
        self._applications = await asyncio.to_thread(self.dashboard.applications)
        ingress = await asyncio.to_thread(route_table, self.ref.serve_url)
        self._view = ClusterView.of(self._applications, ingress)
        return self._view.states

    def serving(self, routing: ModelRouting) -> Serving:
        """What the cluster, as last observed, serves for `routing`'s model."""
        return observe_serving(self._view, routing)

    def assign(self, key: str, routing: ModelRouting | None) -> None:
        """Record one ModelDeployment's routing; None means it holds no applications."""
        self.routings[key] = routing
        self.withdrawn.discard(key)

    def forget(self, key: str) -> None:
        """A ModelDeployment is gone (deleted, or moved to another cluster)."""
        self.routings.pop(key, None)
        self.withdrawn.add(key)

    def _defer(self, restarted: list[str]) -> bool:
        """Whether to hold a config back for builds it would restart: for at most
        `build_grace_seconds` in a row, so a build that takes long delays no other model's
        change for longer."""
        if not restarted:
            self._deferring_since = None
            return False
        now = time.monotonic()
        if self._deferring_since is None:
            self._deferring_since = now
        if now - self._deferring_since < self.build_grace_seconds:
            logger.info("holding back the config of %s: %s building", self.ref.dashboard, restarted)
            return True
        self._deferring_since = None
        return False

    async def write(self, known: Mapping[str, str]) -> Written:
        """PUT the composed config if needed; `known` maps every ModelDeployment targeting this
        cluster (its key) to its model name."""
        routings = [r for r in self.routings.values() if r is not None]
        routed = {routing.model_name for routing in routings}
        unrouted = {
            model
            for key, model in known.items()
            if key not in self.routings and key not in self.withdrawn
        }
        kept = kept_models(self._applications, self._view.server, unrouted - routed)
        config = compose(routings, self.ref.http, kept)
        missing = {SERVER_APP, *app_names(routings)} - self._applications.keys()
        unchanged = _composed_hash(config) == self._view.server.config_hash
        if unchanged and not missing:
            return Written(sent=False)
        if unchanged:
            logger.warning(
                "cluster %s lost %s; applying again", self.ref.dashboard, sorted(missing)
            )
        if self._defer(builds_restarted(self._applications, config)):
            self.metrics.config_holds.labels(self.ref.dashboard).inc()
            return Written(sent=False, deferred=True)
        restarting = tuple(restarting_apps(self._applications, config))
        started = time.monotonic()
        size = await asyncio.to_thread(self.dashboard.put_config, config)
        self.metrics.config_written(self.ref.dashboard, size, time.monotonic() - started)
        return Written(sent=True, restarting=restarting)


class Clusters:
    """Writers by dashboard address, created on first use."""

    def __init__(self, build_grace_seconds: float, metrics: OperatorMetrics) -> None:
        self.build_grace_seconds = build_grace_seconds
        self.metrics = metrics
        self._writers: dict[str, ClusterWriter] = {}

    def writer(self, ref: ClusterRef) -> ClusterWriter:
        """The writer for `ref`."""
        writer = self._writers.get(ref.dashboard)
        if writer is None:
            writer = ClusterWriter(ref, self.build_grace_seconds, self.metrics)
            self._writers[ref.dashboard] = writer
        return writer
