"""The contract between what composes Serve applications and what runs inside them.

`rayship.serveconfig` writes Serve configs (in the operator and in local mode); the deployments
in `rayship_predictors.app` read them back as constructor arguments and `user_config`; the
operator reads them once more from the dashboard to see whether its routes are in effect. All
three go through the frozen types and names here, so a field renamed on one side is renamed on
every side, and `tests/unit/test_contract.py` round-trips what `compose` writes through what
the replicas read.

Also here: the ModelDeployment resource's API coordinates, which the operator, the CLI and the
manifest validation share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rayship.spec import (
    AsyncSpec,
    BatchingSpec,
    LoggingSpec,
    RuntimeSpec,
    StorageSpec,
    from_plain,
)

# --- the ModelDeployment resource ----------------------------------------------------------

GROUP = "serving.rayship.io"
CRD_VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{CRD_VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"

# --- Serve application and deployment names, and routes -------------------------------------

PREDICTORS_MODULE = "rayship_predictors.app"
SERVER_APP = "rayship"
SERVER_ROUTE = "/v2"
VERSION_DEPLOYMENT = "ModelVersion"
SERVER_DEPLOYMENT = "ServerInfo"
VERSION_BUILDER = f"{PREDICTORS_MODULE}:version_app"
SERVER_BUILDER = f"{PREDICTORS_MODULE}:server_app"
GRPC_SERVICER = "rayship_predictors.grpc_service.add_inference_service"
"""The function that registers the V2 gRPC service on Serve's gRPC servers (`grpc_options`)."""

MODELS_PATH = "/models/"
VERSIONS_PATH = "/versions/"
JOBS_PATH = "/jobs/"


def version_app_name(model: str, version: str) -> str:
    """The Serve application that runs one version of a model."""
    return f"{model}@{version}"


def model_route(model: str) -> str:
    """The V2 route prefix of a model, exactly KServe's public URL: `/v2/models/<m>`."""
    return f"{SERVER_ROUTE}{MODELS_PATH}{model}"


def below_model(model_name: str, path: str) -> str:
    """The path below `/v2/models/<m>`: a version with no route prefix sees the whole URL path
    (see `rayship.serveconfig`); one routed at the model URL sees only the rest."""
    prefix = model_route(model_name)
    if path == prefix or path.startswith(prefix + "/"):
        return path[len(prefix) :]
    return path


def split_model(path: str) -> tuple[str, str] | None:
    """`/models/<m>/infer` (a path below `/v2`) -> (m, `/infer`); None for other paths."""
    if not path.startswith(MODELS_PATH):
        return None
    name, slash, rest = path[len(MODELS_PATH) :].partition("/")
    return name, slash + rest


def job_url(model: str, job_id: str) -> str:
    """Where an asynchronous job's result is fetched: `/v2/models/<m>/jobs/<id>`."""
    return f"{model_route(model)}{JOBS_PATH}{job_id}"


def split_job(path: str) -> str | None:
    """`/jobs/<id>` (a path below the model URL) -> the job id; None for other paths."""
    if not path.startswith(JOBS_PATH):
        return None
    return path[len(JOBS_PATH) :]


def split_version(path: str) -> tuple[str | None, str]:
    """`/versions/<v>/infer` -> (v, `/infer`); a path naming no version -> (None, path)."""
    if not path.startswith(VERSIONS_PATH):
        return None, path
    version, slash, rest = path[len(VERSIONS_PATH) :].partition("/")
    return version, slash + rest


# --- what travels in the config --------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A dataclass tree as JSON-ready dicts and lists (tuples become lists, as in JSON)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class VersionArgs:
    """The `args` of a `<model>@<version>` application: only what defines that version.

    Serve restarts an application's replicas whenever its `args` change, so nothing that
    changes with traffic (the requested version, the poll interval, the split) may be here.
    """

    model_name: str
    version: str
    digest: str
    storage_uri: str
    runtime: RuntimeSpec
    storage: StorageSpec = field(default_factory=StorageSpec)
    batching: BatchingSpec | None = None
    use_gpu: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written into the Serve config."""
        plain: dict[str, Any] = _plain(self)
        return plain

    @classmethod
    def from_dict(cls, args: Mapping[str, Any]) -> VersionArgs:
        """What a replica's builder receives, back in typed form."""
        parsed: VersionArgs = from_plain(cls, args)
        return parsed


@dataclass(frozen=True)
class ModelTable:
    """One model's live versions (version -> application) and its traffic split."""

    versions: Mapping[str, str]
    traffic: tuple[tuple[str, int], ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: traffic as `[[version, percent], ...]`."""
        return {
            "versions": dict(self.versions),
            "traffic": [[version, percent] for version, percent in self.traffic],
        }

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> ModelTable:
        """Read the JSON form back."""
        return cls(
            versions={str(v): str(app) for v, app in (table.get("versions") or {}).items()},
            traffic=tuple((str(v), int(p)) for v, p in table.get("traffic") or []),
        )


@dataclass(frozen=True)
class PredictionLogging:
    """`spec.logging` as a replica needs it: with the ModelDeployment's namespace, which the
    replica cannot know otherwise and which CloudEvents receivers read (`ce-namespace`)."""

    spec: LoggingSpec
    namespace: str


@dataclass(frozen=True)
class VersionUserConfig:
    """A version deployment's `user_config`: its model's live versions, for `/versions/<v>`,
    where its asynchronous jobs are kept (`spec.async`), how its predictions are logged
    (`spec.logging`), and the hashes of the bearer tokens its URLs accept (`rayship.auth`;
    none: open).

    A lightweight update: Serve calls `reconfigure` on the running replicas, so neither moving
    traffic, nor changing how jobs are kept or predictions logged, nor rotating a token
    restarts one.
    """

    versions: Mapping[str, str]
    jobs: AsyncSpec | None = None
    token_hashes: tuple[str, ...] = ()
    logging: PredictionLogging | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form; `jobs`, `tokenHashes` and `logging` only when set."""
        plain: dict[str, Any] = {"versions": dict(self.versions)}
        if self.jobs is not None:
            plain["jobs"] = _plain(self.jobs)
        if self.token_hashes:
            plain["tokenHashes"] = list(self.token_hashes)
        if self.logging is not None:
            plain["logging"] = _plain(self.logging)
        return plain

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> VersionUserConfig:
        """Read the JSON form back."""
        jobs = config.get("jobs")
        logging = config.get("logging")
        return cls(
            {str(v): str(app) for v, app in (config.get("versions") or {}).items()},
            from_plain(AsyncSpec, jobs) if jobs else None,
            tuple(str(h) for h in config.get("tokenHashes") or ()),
            from_plain(PredictionLogging, logging) if logging else None,
        )


@dataclass(frozen=True)
class ServerUserConfig:
    """The server deployment's `user_config`: every model's table, and the config's hash.

    `config_hash` is the hash of the whole composed config without it: a restarted operator
    recognises the config it wrote and redeploys nothing.
    """

    models: Mapping[str, ModelTable]
    config_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form; the hash only when set."""
        plain: dict[str, Any] = {
            "models": {name: table.to_dict() for name, table in self.models.items()}
        }
        if self.config_hash is not None:
            plain["configHash"] = self.config_hash
        return plain

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> ServerUserConfig:
        """Read the JSON form back."""
        models = {
            str(name): ModelTable.from_dict(table)
            for name, table in (config.get("models") or {}).items()
        }
        digest = config.get("configHash")
        return cls(models, str(digest) if digest else None)


def deployment_user_config(app: Mapping[str, Any]) -> dict[str, Any]:
    """The `user_config` of an application's (only) deployment, in a config or as deployed."""
    for deployment in app.get("deployments") or []:
        return dict(deployment.get("user_config") or {})
    return {}
