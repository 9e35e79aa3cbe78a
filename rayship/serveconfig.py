"""Compose the whole Ray Serve config of one cluster from the models that target it.

Serve's REST PUT replaces every application on a cluster, so the config is always built from
all models at once (local mode and the operator both call `compose`). Each live version of a
model is one application, `<model>@<version>`:

- the version that takes all of the model's traffic is routed at `/v2/models/<model>`, so
  unversioned requests reach its replicas with no extra hop (the common case, measured in
  `bench/server_bench.py`); it also answers `/versions/<v>` below that URL, its own directly
  and other live versions' through a DeploymentHandle;
- every other live version has no HTTP route (`route_prefix: null`) and is reached by handle.

The server application at `/v2` answers server metadata and health, and every model URL no
version owns: it forwards the requests of a model whose traffic is split (a canary) by the
traffic table, and answers 404 for unknown models.

Why versions never hold a route of their own: with HAProxy ingress, Serve reconfigures a
replica's route prefix before HAProxy's routes change, and a replica refuses paths outside its
prefix, so moving a live version from the model URL to `/versions/<v>` failed requests for
about a second (hundreds in the e2e test that switches versions under load). A replica with no
route prefix accepts every path, so handing the model URL from one version to another, or to
the server application, never fails a request. Route prefixes and `user_config` are both
lightweight updates in Serve: moving traffic never restarts a model replica.

Pure functions only: no I/O, so the operator's reconcile logic is testable without a cluster.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rayship.auth import token_hashes
from rayship.contract import (
    GRPC_SERVICER,
    SERVER_APP,
    SERVER_BUILDER,
    SERVER_DEPLOYMENT,
    SERVER_ROUTE,
    VERSION_BUILDER,
    VERSION_DEPLOYMENT,
    ModelTable,
    PredictionLogging,
    ServerUserConfig,
    VersionArgs,
    VersionUserConfig,
    model_route,
    version_app_name,
)
from rayship.errors import InvalidSpec
from rayship.manifest import ModelDeployment
from rayship.spec import ModelDeploymentSpec

# The server application only forwards bytes: reserving a whole CPU for it (Serve's default)
# would starve the models. Actor options are floats, as Serve's schema stores and reports them:
# a config read back from the cluster (`deployed_app_config`) is then the config written.
ROUTER_ACTOR_OPTIONS = {"num_cpus": 0.0}

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_UNITS = {
    None: 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


@dataclass(frozen=True)
class LiveVersion:
    """A version with replicas on the cluster, and the digest of its files."""

    version: str
    digest: str


@dataclass(frozen=True)
class ModelRouting:
    """The desired state of one model on a cluster: its live versions and traffic split."""

    deployment: ModelDeployment
    live: tuple[LiveVersion, ...]
    traffic: tuple[tuple[str, int], ...]
    # The replicas' variables that only I/O can know: the storage credentials as AWS_* ...
    environment: dict[str, str] = field(default_factory=dict)
    # ... and spec.runtimeEnv.envFrom's, read from their Secrets (locally, the environment);
    env_from: dict[str, str] = field(default_factory=dict)
    # the bearer tokens its URLs accept: spec.auth's and the server-wide ones (none: open).
    tokens: tuple[str, ...] = ()

    @property
    def model_name(self) -> str:
        """The V2 model name."""
        return self.deployment.model_name


@dataclass(frozen=True)
class IngressOptions:
    """Where Serve's ingress listens: `port` for V2 REST, `grpc_port` for the V2 gRPC service
    (8001, Triton's, by default), both on `host`."""

    host: str = "0.0.0.0"
    port: int = 8000
    grpc_port: int = 8001

    @property
    def client_host(self) -> str:
        """Where a client on this machine reaches the ingress: loopback when it listens on
        every address."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host


def memory_bytes(quantity: str) -> int:
    """A Kubernetes quantity (`2Gi`, `512M`) in bytes, for Ray's `memory` actor option."""
    match = _QUANTITY.match(quantity)
    if match is None:
        raise InvalidSpec(f"spec.resources.memory: {quantity!r} is not a Kubernetes quantity")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _actor_options(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """Ray actor options for a version's replicas."""
    options: dict[str, Any] = {"num_cpus": float(spec.resources.cpu)}
    if spec.resources.gpu:
        options["num_gpus"] = float(spec.resources.gpu)
    if spec.resources.memory:
        options["memory"] = float(memory_bytes(spec.resources.memory))
    return options


def _scaling(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """`num_replicas` or Serve's `autoscaling_config` for a version's deployment."""
    if spec.autoscaling is None:
        return {"num_replicas": spec.replicas}
    scaling = spec.autoscaling
    return {
        "autoscaling_config": {
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
            "upscale_delay_s": scaling.upscale_delay_seconds,
            "downscale_delay_s": scaling.downscale_delay_seconds,
        }
    }


def direct_version(routing: ModelRouting) -> str | None:
    """The version that takes all unversioned traffic, if one does: it owns the model's URL."""
    shares = [(version, percent) for version, percent in routing.traffic if percent > 0]
    if len(shares) == 1 and shares[0][1] == 100:
        return shares[0][0]
    return None


def route_of(routing: ModelRouting, version: str) -> str | None:
    """The model's URL for the version taking all traffic; no HTTP route for the others."""
    if version == direct_version(routing):
        return model_route(routing.model_name)
    return None


def version_args(routing: ModelRouting, live: LiveVersion) -> VersionArgs:
    """What defines one version's replicas; nothing here may change when traffic moves."""
    spec = routing.deployment.spec
    return VersionArgs(
        model_name=routing.model_name,
        version=live.version,
        digest=live.digest,
        storage_uri=spec.model.storage_uri,
        runtime=spec.model.runtime,
        storage=spec.storage,
        batching=spec.batching,
        use_gpu=spec.resources.gpu > 0,
    )


def _version_app(routing: ModelRouting, live: LiveVersion) -> dict[str, Any]:
    """The application that loads and serves one version."""
    spec = routing.deployment.spec
    app: dict[str, Any] = {
        "name": version_app_name(routing.model_name, live.version),
        "route_prefix": route_of(routing, live.version),
        "import_path": VERSION_BUILDER,
        "args": version_args(routing, live).to_dict(),
        "deployments": [
            {
                "name": VERSION_DEPLOYMENT,
                "max_ongoing_requests": spec.max_ongoing_requests,
                "ray_actor_options": _actor_options(spec),
                "user_config": VersionUserConfig(
                    _version_apps(routing),
                    spec.async_,
                    token_hashes(routing.tokens),
                    _prediction_logging(routing),
                ).to_dict(),
                **_scaling(spec),
            }
        ],
    }
    return _with_environment(app, routing)


def _prediction_logging(routing: ModelRouting) -> PredictionLogging | None:
    """`spec.logging` for the replicas, with the namespace that CloudEvents name."""
    spec = routing.deployment.spec.logging
    if spec is None:
        return None
    return PredictionLogging(spec, routing.deployment.namespace)


def _with_environment(app: dict[str, Any], routing: ModelRouting) -> dict[str, Any]:
    """Give a version application the model's `runtime_env`: `spec.runtimeEnv`'s requirements
    and its variables, and the storage credentials.

    The variables merge as in a Kubernetes container: `env` wins over `envFrom`, whose later
    Secrets win over earlier ones; the storage credentials win over both, since the replicas
    read the model with exactly those. Serve restarts an application's replicas when its
    `runtime_env` changes, which is what a new requirement or a rotated Secret needs; traffic
    never touches it.
    """
    wanted = routing.deployment.spec.runtime_env
    variables = {
        **routing.env_from,
        **{variable.name: variable.value for variable in wanted.env},
        **routing.environment,
    }
    runtime_env: dict[str, Any] = {}
    if wanted.pip:
        runtime_env["pip"] = list(wanted.pip)
    if variables:
        runtime_env["env_vars"] = variables
    if runtime_env:
        app["runtime_env"] = runtime_env
    return app


def _version_apps(routing: ModelRouting) -> dict[str, str]:
    """Each live version's application, for forwarding requests by handle."""
    return {
        live.version: version_app_name(routing.model_name, live.version) for live in routing.live
    }


def model_table(routing: ModelRouting) -> ModelTable:
    """What the server application needs to forward a model's requests."""
    return ModelTable(_version_apps(routing), routing.traffic)


def _server_app(user_config: ServerUserConfig) -> dict[str, Any]:
    """The server-level application: `/v2`, health, split traffic and 404 for unknown models."""
    return {
        "name": SERVER_APP,
        "route_prefix": SERVER_ROUTE,
        "import_path": SERVER_BUILDER,
        "deployments": [
            {
                "name": SERVER_DEPLOYMENT,
                "ray_actor_options": ROUTER_ACTOR_OPTIONS,
                "user_config": user_config.to_dict(),
            }
        ],
    }


def app_names(routings: Iterable[ModelRouting]) -> list[str]:
    """The version applications a composed config creates (the server app aside)."""
    return [
        version_app_name(routing.model_name, live.version)
        for routing in routings
        for live in routing.live
    ]


@dataclass(frozen=True)
class KeptModel:
    """A model on a cluster whose desired routing is unknown (the operator has not reconciled
    its ModelDeployment yet, or cannot: an unreadable Secret, a failing handler): its version
    applications and traffic table as the cluster runs them, sent again unchanged so that a
    config written for the other models neither deletes nor restarts them."""

    model_name: str
    table: ModelTable | None
    apps: tuple[dict[str, Any], ...]


def _model_apps(routing: ModelRouting) -> KeptModel:
    """A routed model in the same shape as a kept one, so `compose` orders both alike."""
    apps = tuple(_version_app(routing, live) for live in routing.live)
    return KeptModel(routing.model_name, model_table(routing), apps)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a block that builds a large acyclic tree.

    A config holds about a hundred small dicts and lists per model, all alive until it is
    written; each time the survivors pass the collector's threshold it scans the whole heap
    again, which made `compose`'s cost per model 1.6 to 2 times higher with 10,000 models
    than with 1,000 (`bench/scale_bench.py`). The tree has no reference cycles, so reference
    counting frees it as before. The pause is process-wide: other threads' cyclic garbage
    waits until the block ends. A collector the caller had disabled stays disabled.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def compose(
    models: list[ModelRouting],
    http: IngressOptions | None = None,
    kept: Iterable[KeptModel] = (),
) -> dict[str, Any]:
    """The complete Serve config for a cluster serving `models` and `kept` (which must not
    share a model name with `models`), with its own hash inside."""
    with _cyclic_gc_paused():
        return _compose(models, http or IngressOptions(), kept)


def _compose(
    models: list[ModelRouting], http: IngressOptions, kept: Iterable[KeptModel]
) -> dict[str, Any]:
    every = [*(_model_apps(routing) for routing in models), *kept]
    ordered = sorted(every, key=lambda model: model.model_name)
    tables = ServerUserConfig(
        {model.model_name: model.table for model in ordered if model.table is not None}
    )
    versions = [app for model in ordered for app in model.apps]
    unhashed = {
        "http_options": {"host": http.host, "port": http.port},
        "grpc_options": {"port": http.grpc_port, "grpc_servicer_functions": [GRPC_SERVICER]},
        "applications": [_server_app(tables), *versions],
    }
    hashed = dataclasses.replace(tables, config_hash=config_hash(unhashed))
    return {**unhashed, "applications": [_server_app(hashed), *versions]}


def config_hash(config: dict[str, Any]) -> str:
    """A stable digest of a Serve config, so unchanged configs are never PUT again and a
    restarted operator recognises the config it wrote (`compose` carries it inside)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
