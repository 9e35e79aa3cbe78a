"""The ModelDeployment spec as typed, immutable Python objects.

The CRD in `crds/modeldeployment.yaml` is the one source of the schema: `rayship.manifest`
validates a document against it (and its CEL rules) before `from_dict` here turns the validated
dict into these dataclasses. Field names are the CRD's camelCase names in snake_case, which a
test checks both ways so the two cannot drift.
"""

from __future__ import annotations

import dataclasses
import keyword
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

ModelFormat = Literal["onnx", "pytorch", "python", "kserve"]


@dataclass(frozen=True)
class TensorDecl:
    """A tensor the user declares (needed where the artifact carries no metadata)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class OnnxOptions:
    """How to load an ONNX export from a version folder."""

    file: str = "model.onnx"
    intra_op_threads: int = 0
    """ONNX Runtime's intra-op pool size; 0: sized to the replica's reserved CPUs and the calls
    it runs at once (`rayship_predictors.runtimes.onnx.default_intra_op_threads`)."""


@dataclass(frozen=True)
class PytorchOptions:
    """A `state_dict` plus the class that owns it, or a TorchScript archive when no class."""

    file: str = "model.pt"
    model_class: str | None = None
    init_args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PythonOptions:
    """A user class (`module:Class`) with `load(path)` and `predict(inputs)`."""

    predictor_class: str


@dataclass(frozen=True)
class KserveOptions:
    """A `kserve.Model` subclass (`module:Class`), constructed as KServe does: `Class(name)`."""

    model_class: str


@dataclass(frozen=True)
class RuntimeSpec:
    """What a version's replicas load and how: the part of `spec.model` that defines a version.

    Everything else in `spec.model` (the requested version, the poll interval) changes with
    traffic and must not reach the replicas (see `rayship.contract.VersionArgs`).
    """

    format: ModelFormat
    onnx: OnnxOptions = field(default_factory=OnnxOptions)
    pytorch: PytorchOptions = field(default_factory=PytorchOptions)
    python: PythonOptions | None = None
    kserve: KserveOptions | None = None
    inputs: tuple[TensorDecl, ...] = ()
    outputs: tuple[TensorDecl, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """What to serve: the V2 model name, its runtime and where its versions live."""

    format: ModelFormat
    storage_uri: str
    name: str | None = None
    version: str = "latest"
    poll_interval_seconds: int = 60
    onnx: OnnxOptions = field(default_factory=OnnxOptions)
    pytorch: PytorchOptions = field(default_factory=PytorchOptions)
    python: PythonOptions | None = None
    kserve: KserveOptions | None = None
    inputs: tuple[TensorDecl, ...] = ()
    outputs: tuple[TensorDecl, ...] = ()

    @property
    def runtime(self) -> RuntimeSpec:
        """The runtime options alone: what the replicas of every version of this model load."""
        return RuntimeSpec(
            self.format,
            self.onnx,
            self.pytorch,
            self.python,
            self.kserve,
            self.inputs,
            self.outputs,
        )


@dataclass(frozen=True)
class SecretRef:
    """A Secret in the ModelDeployment's namespace, by name."""

    name: str


@dataclass(frozen=True)
class StorageSpec:
    """How to reach an S3-compatible store; empty means the standard AWS chain."""

    endpoint_url: str | None = None
    region: str | None = None
    secret_ref: SecretRef | None = None


@dataclass(frozen=True)
class ResourceSpec:
    """Per-replica resources, mapped onto Ray actor options."""

    cpu: float = 1.0
    memory: str | None = None
    gpu: float = 0.0


@dataclass(frozen=True)
class AutoscalingSpec:
    """Serve's autoscaling_config, in Kubernetes-style names."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0
    upscale_delay_seconds: float = 30.0
    downscale_delay_seconds: float = 600.0


@dataclass(frozen=True)
class BatchingSpec:
    """Dynamic batching; absent means every request runs on its own."""

    max_batch_size: int = 8
    batch_wait_timeout_ms: float = 5.0


@dataclass(frozen=True)
class EnvVar:
    """An environment variable of the version replicas, given in the spec."""

    name: str
    value: str = ""


@dataclass(frozen=True)
class EnvFromSource:
    """Variables from a Secret: each of `keys` (every key when empty) as `prefix` + key.

    Only the operator can read the Secret; local mode looks the same names up in its own
    environment instead, which is why it needs `keys`.
    """

    secret_ref: SecretRef
    prefix: str = ""
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuntimeEnvSpec:
    """Python requirements and environment variables of every version's replicas.

    It becomes each version application's Serve `runtime_env` (`rayship.serveconfig`), so, like
    the runtime options, it defines what the replicas run: Serve restarts them when it changes.
    """

    pip: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    env_from: tuple[EnvFromSource, ...] = ()


@dataclass(frozen=True)
class CanarySpec:
    """A second live version that receives `percent` of the traffic."""

    version: str
    percent: int


@dataclass(frozen=True)
class RolloutSpec:
    """How versions replace each other."""

    canary: CanarySpec | None = None
    readiness_deadline_seconds: int = 300
    keep_previous_seconds: int = 600


@dataclass(frozen=True)
class AsyncSpec:
    """Asynchronous invocations: where job results are kept, for how long, and how many run.

    Results live under `storage_uri` (S3, reached like the model's storage, or `file://` for
    one machine) so that any replica can answer for a job another replica ran.
    """

    storage_uri: str
    result_ttl_seconds: int = 3600
    timeout_seconds: int = 300
    max_queued: int = 32


LogMode = Literal["request", "response", "all"]


@dataclass(frozen=True)
class LoggingSpec:
    """Prediction logging: which payloads to keep, for what share of requests, and where.

    Exactly one sink is set (the CRD's rules say so): `url`, an HTTP endpoint that receives
    CloudEvents as from KServe's payload logger, so receivers written for KServe work
    unchanged; or `storage_uri`, an S3 prefix that receives JSON Lines batches, reached like
    the model's storage (`spec.storage` and its credentials). The replicas read it from
    `user_config`, so changing it never restarts one.
    """

    mode: LogMode = "all"
    sample_rate: float = 1.0
    url: str | None = None
    storage_uri: str | None = None


@dataclass(frozen=True)
class AuthSpec:
    """Bearer tokens that a model's inference URLs require, from a Secret's `key`.

    The value holds one or more tokens, separated by whitespace or commas: every one is
    accepted, so a token is rotated by adding the new one, moving clients, removing the old.
    """

    secret_ref: SecretRef
    key: str = "tokens"


@dataclass(frozen=True)
class RayClusterRef:
    """A KubeRay RayCluster in the same namespace; absent means the operator's default."""

    name: str


@dataclass(frozen=True)
class ModelDeploymentSpec:
    """The whole `spec` of a ModelDeployment."""

    model: ModelSpec
    storage: StorageSpec = field(default_factory=StorageSpec)
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    replicas: int = 1
    max_ongoing_requests: int = 64
    autoscaling: AutoscalingSpec | None = None
    batching: BatchingSpec | None = None
    runtime_env: RuntimeEnvSpec = field(default_factory=RuntimeEnvSpec)
    rollout: RolloutSpec = field(default_factory=RolloutSpec)
    ray_cluster: RayClusterRef | None = None
    async_: AsyncSpec | None = None
    logging: LoggingSpec | None = None
    auth: AuthSpec | None = None


def _snake(name: str) -> str:
    """`storageUri` -> `storage_uri`: CRD field names to dataclass field names; a Python
    keyword gets a trailing underscore (`async` -> `async_`)."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return f"{snake}_" if keyword.iskeyword(snake) else snake


def from_plain(hint: Any, value: Any) -> Any:
    """Turn a schema-valid JSON value (camelCase or snake_case keys) into the type `hint` names."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = typing.get_type_hints(hint)
        known = {f.name for f in dataclasses.fields(hint)}
        kwargs = {
            _snake(key): from_plain(hints[_snake(key)], item)
            for key, item in value.items()
            if _snake(key) in known
        }
        return hint(**kwargs)
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return None if value is None else from_plain(options[0], value)
    if origin is tuple:
        item_hint = typing.get_args(hint)[0]
        return tuple(from_plain(item_hint, item) for item in value)
    if hint is float:
        return float(value)
    if hint is int:
        return int(value)  # an integer written 2.0, which the API server stores as 2
    return value


def spec_from_dict(spec: dict[str, Any]) -> ModelDeploymentSpec:
    """Typed spec from a CRD-valid, defaulted `spec` dict (see `rayship.manifest.validate`)."""
    converted: ModelDeploymentSpec = from_plain(ModelDeploymentSpec, spec)
    return converted
