"""The Ray Serve deployments and the application builders named in the Serve config.

`rayship.serveconfig` composes three kinds of application, each built here from its `args`:

- `version_app`: one loaded model version (`ModelVersion`), routed at
  `/v2/models/<m>/versions/<v>`; it also answers the ingress's handle calls.
- `ingress_app`: `ModelIngress` at `/v2/models/<m>`, which forwards to the live versions by the
  traffic split in its `user_config` (a lightweight update: no replica restarts).
- `server_app`: `ServerInfo` at `/v2`: server metadata, health, and 404 for unknown models.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from ray import serve
from rayship.spec import BatchingSpec, ModelSpec, StorageSpec, from_plain
from rayship.storage import ModelStore
from rayship_predictors.dataplane import Reply, VersionDataPlane
from rayship_predictors.errors import NotFound, NotReady
from rayship_predictors.http import RouteTable, find_handler, max_body_bytes, serve_http
from rayship_predictors.runtimes.loader import load_runtime

logger = logging.getLogger(__name__)

SERVER_NAME = "rayship"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["binary_tensor_data"]
VERSION_DEPLOYMENT = "ModelVersion"

Tensors = Mapping[str, np.ndarray]


class ModelVersion:
    """One version of a model: fetched from storage and loaded once per replica."""

    def __init__(
        self,
        *,
        model_name: str,
        version: str,
        digest: str,
        storage_uri: str,
        model: dict[str, Any],
        storage: dict[str, Any],
        batching: dict[str, Any] | None,
        use_gpu: bool,
    ) -> None:
        spec: ModelSpec = from_plain(ModelSpec, model)
        store = ModelStore(from_plain(StorageSpec, storage))
        local_dir: Path = store.fetch(storage_uri, version)
        runtime = load_runtime(spec, local_dir, use_gpu)
        self.plane = VersionDataPlane(model_name, version, runtime)
        self.body_limit = max_body_bytes()
        self._run_batched: Callable[[Tensors], Awaitable[dict[str, np.ndarray]]] | None = None
        self._triton_config = self.plane.triton_config()
        if batching is not None:
            options: BatchingSpec = from_plain(BatchingSpec, batching)
            self._triton_config = self.plane.triton_config(
                options.max_batch_size, options.batch_wait_timeout_ms
            )
            self._run_batched = serve.batch(
                max_batch_size=options.max_batch_size,
                batch_wait_timeout_s=options.batch_wait_timeout_ms / 1000,
            )(self._run_many)
        self.routes: RouteTable = {
            "": {"GET": self._metadata},
            "/ready": {"GET": self._ready},
            "/config": {"GET": self._config},
            "/infer": {"POST": self._infer},
        }
        logger.info("loaded %s version %s (%s) from %s", model_name, version, digest, local_dir)

    async def __call__(self, request: Request) -> Response:
        """HTTP entry for `/v2/models/<m>/versions/<v>/...`."""
        return await serve_http(request, self.route_request, self.body_limit)

    async def route_request(
        self, method: str, path: str, body: bytes, header_length: int | None
    ) -> Reply:
        """Route one request; also the method the ingress calls through its handle."""
        return await find_handler(self.routes, method, path)(body, header_length)

    async def _metadata(self, body: bytes, header_length: int | None) -> Reply:
        return Reply.json(self.plane.metadata())

    async def _ready(self, body: bytes, header_length: int | None) -> Reply:
        return Reply.json({"name": self.plane.model_name, "ready": True})

    async def _config(self, body: bytes, header_length: int | None) -> Reply:
        return Reply.json(self._triton_config)

    async def _infer(self, body: bytes, header_length: int | None) -> Reply:
        request = self.plane.decode(body, header_length)
        if self._run_batched is None:
            outputs = self.plane.run(request.inputs)
        else:
            outputs = await self._run_batched(request.inputs)
        return self.plane.encode(request, outputs)

    async def _run_many(self, requests: list[Tensors]) -> list[dict[str, np.ndarray]]:
        """The body of dynamic batching: Serve's batch queue calls it with many requests."""
        return self.plane.run_batch(requests)


class ModelIngress:
    """Splits unversioned traffic for one model across its live versions."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.body_limit = max_body_bytes()
        self.versions: dict[str, str] = {}
        self.traffic: list[tuple[str, int]] = []
        self._handles: dict[str, DeploymentHandle] = {}

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Take a new routing table; called by Serve on every user_config change."""
        self.versions = dict(config.get("versions", {}))
        self.traffic = [(str(v), int(p)) for v, p in config.get("traffic", []) if int(p) > 0]
        self._handles = {v: h for v, h in self._handles.items() if v in self.versions}

    def _handle(self, version: str) -> DeploymentHandle:
        handle = self._handles.get(version)
        if handle is None:
            handle = serve.get_deployment_handle(
                VERSION_DEPLOYMENT, app_name=self.versions[version], _check_exists=False
            )
            self._handles[version] = handle
        return handle

    def _require_traffic(self) -> None:
        if not self.traffic:
            raise NotReady(f"model {self.model_name!r} has no version ready to serve")

    def _primary(self) -> str:
        """The version with the largest share: it answers metadata and readiness."""
        self._require_traffic()
        return max(self.traffic, key=lambda pair: pair[1])[0]

    def _pick(self) -> str:
        """A version drawn by the traffic split."""
        self._require_traffic()
        if len(self.traffic) == 1:
            return self.traffic[0][0]
        names = [version for version, _ in self.traffic]
        weights = [percent for _, percent in self.traffic]
        return random.choices(names, weights)[0]

    async def __call__(self, request: Request) -> Response:
        """HTTP entry for `/v2/models/<m>/...`."""
        return await serve_http(request, self.route_request, self.body_limit)

    async def route_request(
        self, method: str, path: str, body: bytes, header_length: int | None
    ) -> Reply:
        """Forward to one live version: the drawn one for infer, the primary otherwise."""
        if path.startswith("/versions/"):
            version, _, rest = path[len("/versions/") :].partition("/")
            if version not in self.versions:
                raise NotFound(f"model {self.model_name!r} has no live version {version!r}")
            target, path = version, f"/{rest}" if rest else ""
        elif path == "/infer":
            target = self._pick()
        else:
            target = self._primary()
        reply: Reply = await self._handle(target).route_request.remote(
            method, path, body, header_length
        )
        if path == "" and method == "GET" and reply.status == 200:
            return self._with_all_versions(reply)
        return reply

    def _with_all_versions(self, reply: Reply) -> Reply:
        """Model metadata lists every live version, not just the one that answered."""
        metadata = orjson.loads(reply.body)
        metadata["versions"] = sorted(self.versions)
        return Reply.json(metadata)


class ServerInfo:
    """`/v2`: server metadata and health, and the V2 404 for models nobody serves."""

    def __init__(self) -> None:
        self.models: set[str] = set()
        self.body_limit = max_body_bytes()
        self.routes: RouteTable = {
            "": {"GET": self._metadata},
            "/health/live": {"GET": self._live},
            "/health/ready": {"GET": self._ready},
        }

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Take the list of models this cluster serves."""
        self.models = set(config.get("models", []))

    async def __call__(self, request: Request) -> Response:
        """HTTP entry for `/v2/...`."""
        return await serve_http(request, self.route_request, self.body_limit)

    async def route_request(
        self, method: str, path: str, body: bytes, header_length: int | None
    ) -> Reply:
        """Server routes, or a V2 error for a model path no model application took."""
        if path.startswith("/models/"):
            name = path[len("/models/") :].split("/", 1)[0]
            if name in self.models:
                raise NotReady(f"model {name!r} is not ready yet")
            raise NotFound(f"model {name!r} not found")
        return await find_handler(self.routes, method, path)(body, header_length)

    async def _metadata(self, body: bytes, header_length: int | None) -> Reply:
        return Reply.json(
            {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}
        )

    async def _live(self, body: bytes, header_length: int | None) -> Reply:
        return Reply.json({"live": True})

    async def _ready(self, body: bytes, header_length: int | None) -> Reply:
        return Reply.json({"ready": True})


# Deployments are made explicitly rather than by class decorators, so the classes keep their
# types for mypy and stay plain classes for tests. Serve's per-request access log is off: on a
# small model it was the largest single cost in a replica after the HTTP server itself
# (bench/server_bench.py, profiled with py-spy); errors are still logged.
QUIET = {"enable_access_log": False}
model_version = serve.deployment(ModelVersion, name=VERSION_DEPLOYMENT, logging_config=QUIET)
model_ingress = serve.deployment(
    ModelIngress, name="ModelIngress", max_ongoing_requests=1000, logging_config=QUIET
)
server_info = serve.deployment(ServerInfo, name="ServerInfo", max_ongoing_requests=1000)


def version_app(args: dict[str, Any]) -> Any:
    """Builder for `<model>@<version>` applications."""
    return model_version.bind(**args)


def ingress_app(args: dict[str, Any]) -> Any:
    """Builder for `<model>` applications."""
    return model_ingress.bind(args["model_name"])


def server_app(args: dict[str, Any]) -> Any:
    """Builder for the server-level `/v2` application."""
    return server_info.bind()
