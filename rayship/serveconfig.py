"""Compose the whole Ray Serve config of one cluster from the models that target it.

Serve's REST PUT replaces every application on a cluster, so the config is always built from
all models at once (local mode and the operator both call `compose`). Each model becomes:

- one application per live version, `<model>@<version>`, routed at
  `/v2/models/<model>/versions/<version>` so a versioned request takes no extra hop;
- one ingress application `<model>` at `/v2/models/<model>` that forwards unversioned requests
  to the live versions by the traffic split. The split travels in the ingress's `user_config`,
  a lightweight update in Serve: moving traffic or rolling back never restarts model replicas.

A server-level application answers `/v2`, `/v2/health/*` and 404s for unknown models.
Pure functions only: no I/O, so the operator's reconcile logic is testable without a cluster.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from rayship.manifest import ModelDeployment
from rayship.spec import ModelDeploymentSpec

PREDICTORS = "rayship_predictors.app"
SERVER_APP = "rayship"
VERSION_DEPLOYMENT = "ModelVersion"
INGRESS_DEPLOYMENT = "ModelIngress"
SERVER_DEPLOYMENT = "ServerInfo"

# Routers only forward bytes; reserving a whole CPU each (Serve's default) would starve models.
ROUTER_ACTOR_OPTIONS = {"num_cpus": 0}

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
    storage_uri: str | None = (
        None  # overrides spec.model.storageUri (local mode's relative file: URIs)
    )
    environment: dict[str, str] = field(default_factory=dict)  # env vars of the model's replicas

    @property
    def model_name(self) -> str:
        """The V2 model name."""
        return self.deployment.model_name


@dataclass(frozen=True)
class HttpOptions:
    """Where Serve's proxy listens."""

    host: str = "0.0.0.0"
    port: int = 8000


def version_app_name(model: str, version: str) -> str:
    """The Serve application that runs one version of a model."""
    return f"{model}@{version}"


def model_route(model: str) -> str:
    """The V2 route prefix of a model, exactly KServe's public URL."""
    return f"/v2/models/{model}"


def version_route(model: str, version: str) -> str:
    """The V2 route prefix of one version of a model."""
    return f"{model_route(model)}/versions/{version}"


def memory_bytes(quantity: str) -> int:
    """A Kubernetes quantity (`2Gi`, `512M`) in bytes, for Ray's `memory` actor option."""
    match = _QUANTITY.match(quantity)
    if match is None:
        raise ValueError(f"spec.resources.memory: {quantity!r} is not a Kubernetes quantity")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _actor_options(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """Ray actor options for a version's replicas."""
    options: dict[str, Any] = {"num_cpus": spec.resources.cpu}
    if spec.resources.gpu:
        options["num_gpus"] = spec.resources.gpu
    if spec.resources.memory:
        options["memory"] = memory_bytes(spec.resources.memory)
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


def _version_app(routing: ModelRouting, live: LiveVersion) -> dict[str, Any]:
    """The application that loads and serves one version."""
    spec = routing.deployment.spec
    model = routing.model_name
    app: dict[str, Any] = {
        "name": version_app_name(model, live.version),
        "route_prefix": version_route(model, live.version),
        "import_path": f"{PREDICTORS}:version_app",
        "args": {
            "model_name": model,
            "version": live.version,
            "digest": live.digest,
            "storage_uri": routing.storage_uri or spec.model.storage_uri,
            "model": asdict(spec.model),
            "storage": asdict(spec.storage),
            "batching": asdict(spec.batching) if spec.batching else None,
            "use_gpu": spec.resources.gpu > 0,
        },
        "deployments": [
            {
                "name": VERSION_DEPLOYMENT,
                "max_ongoing_requests": spec.max_ongoing_requests,
                "ray_actor_options": _actor_options(spec),
                **_scaling(spec),
            }
        ],
    }
    return _with_environment(app, routing)


def _with_environment(app: dict[str, Any], routing: ModelRouting) -> dict[str, Any]:
    """Give every application of a model the model's environment variables."""
    if routing.environment:
        app["runtime_env"] = {"env_vars": dict(routing.environment)}
    return app


def _ingress_app(routing: ModelRouting) -> dict[str, Any]:
    """The application that splits unversioned traffic across live versions."""
    model = routing.model_name
    app = {
        "name": model,
        "route_prefix": model_route(model),
        "import_path": f"{PREDICTORS}:ingress_app",
        "args": {"model_name": model},
        "deployments": [
            {
                "name": INGRESS_DEPLOYMENT,
                "ray_actor_options": ROUTER_ACTOR_OPTIONS,
                "user_config": {
                    "versions": {
                        live.version: version_app_name(model, live.version) for live in routing.live
                    },
                    "traffic": [list(pair) for pair in routing.traffic],
                },
            }
        ],
    }
    return _with_environment(app, routing)


def _server_app(models: list[str]) -> dict[str, Any]:
    """The server-level application: `/v2`, health, and 404 for unknown models."""
    return {
        "name": SERVER_APP,
        "route_prefix": "/v2",
        "import_path": f"{PREDICTORS}:server_app",
        "deployments": [
            {
                "name": SERVER_DEPLOYMENT,
                "ray_actor_options": ROUTER_ACTOR_OPTIONS,
                "user_config": {"models": sorted(models)},
            }
        ],
    }


def app_names(routings: Iterable[ModelRouting]) -> list[str]:
    """The model and version applications a composed config creates (the server app aside)."""
    names = []
    for routing in routings:
        names.append(routing.model_name)
        names += [version_app_name(routing.model_name, live.version) for live in routing.live]
    return names


def compose(models: list[ModelRouting], http: HttpOptions | None = None) -> dict[str, Any]:
    """The complete Serve config for a cluster serving `models`."""
    http = http or HttpOptions()
    applications = [_server_app([routing.model_name for routing in models])]
    for routing in sorted(models, key=lambda r: r.model_name):
        applications.append(_ingress_app(routing))
        applications += [_version_app(routing, live) for live in routing.live]
    return {
        "http_options": {"host": http.host, "port": http.port},
        "applications": applications,
    }


def config_hash(config: dict[str, Any]) -> str:
    """A stable digest of a Serve config, so unchanged configs are never PUT again."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
