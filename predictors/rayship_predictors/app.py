"""The Ray Serve deployments and the application builders named in the Serve config.

`rayship.serveconfig` composes two kinds of application, each built here from its `args`:

- `version_app`: one loaded model version (`ModelVersion`). Routed at `/v2/models/<m>` when it
  takes all of the model's traffic, and with no HTTP route otherwise (why: `serveconfig`'s
  docstring); either way it answers the whole URL, and `/versions/<v>` of its sibling versions
  by forwarding them through a DeploymentHandle.
- `server_app`: `ServerInfo` at `/v2`: server metadata and health, every model URL no version
  owns (a split traffic table, or a model still starting), and 404 for unknown models.

Traffic tables and sibling lists travel in `user_config`: a lightweight update in Serve, so
moving traffic never restarts a replica.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

import ray
from ray import serve
from rayship.contract import (
    SERVER_DEPLOYMENT,
    SERVER_ROUTE,
    VERSION_DEPLOYMENT,
    ServerUserConfig,
    VersionArgs,
    VersionUserConfig,
    below_model,
    split_job,
    split_model,
    split_version,
)
from rayship.spec import AsyncSpec
from rayship.storage import ModelStore
from rayship.storage.jobs import open_job_store
from rayship_predictors.auth import OPEN_PATHS, check_bearer
from rayship_predictors.dataplane import Call, Outcome, Reply, VersionDataPlane
from rayship_predictors.errors import InferenceError, NotFound
from rayship_predictors.exclusive_ports import exclusive_grpc_ports
from rayship_predictors.fetching import fetch_patiently
from rayship_predictors.grpc_service import InferenceService
from rayship_predictors.http import PayloadTooLarge, RouteTable, find_handler, serve_http
from rayship_predictors.jobs import AsyncJobs
from rayship_predictors.observing import InferenceObserver, current_trace
from rayship_predictors.runtimes.loader import load_runtime
from rayship_predictors.settings import PredictorSettings
from rayship_predictors.tracing import RequestTrace
from rayship_predictors.traffic import TrafficTable
from rayship_predictors.v2.codec import InferRequest

logger = logging.getLogger(__name__)

EXTENSIONS = ["binary_tensor_data"]
INFER_PATH = "/infer"
LOG_DRAIN_SECONDS = 10.0
"""How long a stopping replica gives its prediction log to send what it holds (Serve's
graceful shutdown timeout is 20 s by default)."""


BY_REFERENCE_BYTES = 1 << 20
"""Request bodies over this cross to another application through Ray's object store, not
Serve's gRPC transport: bench/handle_transport_bench.py measured a canary split at about 1.4x
the model URL's time for 60 MB that way, against 2.9x over gRPC, and the two alike at 1 MB."""


class VersionHandles:
    """DeploymentHandles to version applications, made on first use and kept while live: per
    application, one over Serve's default transport and one passing arguments by reference."""

    def __init__(self) -> None:
        self._handles: dict[str, tuple[DeploymentHandle, DeploymentHandle]] = {}

    def keep_only(self, apps: set[str]) -> None:
        """Forget handles to applications that are no longer live."""
        self._handles = {app: h for app, h in self._handles.items() if app in apps}

    async def forward(self, app: str, call: Call) -> Reply:
        """One request, answered by the version application `app`."""
        handles = self._handles.get(app)
        if handles is None:
            # Built directly, as Serve's own client does: asking the controller whether the
            # application exists would block this replica's event loop on every new sibling.
            handle = DeploymentHandle(VERSION_DEPLOYMENT, app)
            handles = (handle, handle.options(_by_reference=True))
            self._handles[app] = handles
        small, large = handles
        chosen = large if len(call.body) > BY_REFERENCE_BYTES else small
        reply: Reply = await chosen.route_request.remote(call)
        return reply


@dataclass(frozen=True)
class Queued:
    """A decoded request entering the dynamic batching queue, and when (epoch nanoseconds)."""

    request: InferRequest
    enqueued_ns: int


@dataclass(frozen=True)
class Batched:
    """One request's outcome from its batch, with when the batch's runtime call ran."""

    outcome: Outcome
    started_ns: int
    ended_ns: int


def reserved_cpus() -> int | None:
    """The whole CPUs Ray reserved for this process (a replica's `spec.resources.cpu`, at least
    one when it reserved a fraction), or None when it reserved none.

    They are what an ONNX session's default intra-op threads share out: replicas packed onto a
    big node by their CPU requests would otherwise each spread their calls over all its cores.
    """
    reserved = float(ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0))
    return max(1, int(reserved)) if reserved > 0 else None


class ModelVersion(InferenceService):
    """One version of a model: fetched from storage and loaded once per replica.

    Its gRPC methods (`InferenceService`) see paths as its HTTP entry does: the whole URL path.
    """

    grpc_path_root = SERVER_ROUTE

    def __init__(self, args: VersionArgs) -> None:
        exclusive_grpc_ports()
        model_name, version = args.model_name, args.version
        started = time.perf_counter()
        self.storage = args.storage
        settings = PredictorSettings.from_env()
        self.observer = InferenceObserver(model_name, version, settings)
        store = ModelStore(args.storage)
        local_dir = fetch_patiently(
            store, args.storage_uri, version, settings.storage_patience_seconds
        )
        runtime = load_runtime(
            args.runtime,
            local_dir,
            args.use_gpu,
            model_name=model_name,
            concurrent_calls=settings.concurrent_calls(batched=args.batching is not None),
            cpus=reserved_cpus(),
        )
        self.observer.metrics.loaded(time.perf_counter() - started)
        self.plane = VersionDataPlane(model_name, version, runtime, settings.predict_threads)
        self.siblings = TrafficTable(model_name, {}, ())  # live versions; traffic unused here
        self.handles = VersionHandles()
        self.jobs = AsyncJobs(model_name)
        self.token_hashes: frozenset[str] = frozenset()
        self.body_limit = settings.max_request_bytes
        self._run_batched: Callable[[Queued], Awaitable[Batched]] | None = None
        self._triton_config = self.plane.triton_config()
        if args.batching is not None:
            options = args.batching
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
            INFER_PATH: {"POST": self._infer},
        }
        logger.info(
            "loaded %s version %s (%s) from %s", model_name, version, args.digest, local_dir
        )

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Take the model's live versions and their applications, and where its jobs are kept
        (Serve calls it on every user_config change)."""
        user_config = VersionUserConfig.from_dict(config)
        self.siblings = TrafficTable(self.plane.model_name, user_config.versions, ())
        self.handles.keep_only(set(self.siblings.versions.values()))
        self._configure_jobs(user_config.jobs)
        self.token_hashes = frozenset(user_config.token_hashes)
        self.observer.configure_logging(user_config.logging, self.storage)

    def _configure_jobs(self, spec: AsyncSpec | None) -> None:
        """Open the job store when `spec.async` changed; every traffic move reconfigures too,
        and opening one makes an S3 client."""
        if spec == self.jobs.spec:
            return
        store = None
        if spec is not None:
            store = open_job_store(spec.storage_uri, self.plane.model_name, self.storage)
        self.jobs.configure(spec, store)

    async def __call__(self, request: Request) -> Response:
        """HTTP entry: the model's URLs when this version owns them (or HAProxy still thinks so)."""
        return await serve_http(request, self.route_request, self.body_limit)

    async def __del__(self) -> None:
        """Serve's graceful stop: give running asynchronous jobs their chance to finish, then
        send the prediction log records and spans they and earlier requests left."""
        await self.jobs.drain()
        await self.observer.close(LOG_DRAIN_SECONDS)

    async def route_request(self, call: Call) -> Reply:
        """Route one request; also the method other applications call through a handle."""
        version, rest = split_version(below_model(self.plane.model_name, call.path))
        call = replace(call, path=rest)
        if version is not None and version != self.plane.version:
            self._admit(call)
            return await self.handles.forward(self.siblings.app_of(version), call)
        if rest == INFER_PATH:
            return await self.observer.observe(call, self._answer)
        return await self._answer(call)

    def _admit(self, call: Call) -> None:
        """Refuse a body over this model's limit or a call without a valid token."""
        if len(call.body) > self.body_limit:
            # Reached through `/v2` (a canary split), the body was read under the server app's
            # limit: this model's own applies here too.
            raise PayloadTooLarge(f"request body exceeds {self.body_limit} bytes")
        if call.path not in OPEN_PATHS:
            check_bearer(self.plane.model_name, call.authorization, self.token_hashes)

    async def _answer(self, call: Call) -> Reply:
        """A request for this version itself."""
        self._admit(call)
        job_id = split_job(call.path)
        if job_id is not None and call.method == "GET":
            return await self.jobs.answer(job_id)
        return await find_handler(self.routes, call.method, call.path)(call)

    async def _metadata(self, call: Call) -> Reply:
        versions = sorted(self.siblings.versions) or [self.plane.version]
        return Reply.json({**self.plane.metadata(), "versions": versions})

    async def _ready(self, call: Call) -> Reply:
        return Reply.json({"name": self.plane.model_name, "ready": True})

    async def _config(self, call: Call) -> Reply:
        return Reply.json(self._triton_config)

    async def _infer(self, call: Call) -> Reply:
        """Answer now, or as an asynchronous job when the client prefers it and the model
        keeps jobs (`spec.async`)."""
        if call.respond_async is not None and self.jobs.enabled:
            return await self.jobs.submit(partial(self._infer_now, call), call.respond_async)
        return await self._infer_now(call)

    async def _infer_now(self, call: Call) -> Reply:
        trace = current_trace()
        with trace.span("decode"):
            request = self.plane.decode_call(call)
        if self._run_batched is None:
            started = time.time_ns()
            try:
                outputs = await self.plane.run(request)
            finally:
                self._computed(trace, started, time.time_ns())
        else:
            enqueued = time.time_ns()
            batched = await self._run_batched(Queued(request, enqueued))
            trace.record("queue", enqueued, batched.started_ns)
            trace.record("model", batched.started_ns, batched.ended_ns)
            if isinstance(batched.outcome, InferenceError):
                raise batched.outcome
            outputs = batched.outcome
        with trace.span("encode"):
            return self.plane.encode_call(call, request, outputs)

    def _computed(self, trace: RequestTrace, started_ns: int, ended_ns: int) -> None:
        """One runtime call of one request took from `started_ns` to `ended_ns`."""
        trace.record("model", started_ns, ended_ns)
        self.observer.metrics.computed((ended_ns - started_ns) / 1e9)

    async def _run_many(self, queued: list[Queued]) -> list[Batched]:
        """The body of dynamic batching: Serve's batch queue calls it with many requests."""
        started = time.time_ns()
        outcomes = await self.plane.run_batch([item.request for item in queued])
        ended = time.time_ns()
        metrics = self.observer.metrics
        metrics.computed((ended - started) / 1e9)
        metrics.batched(len(queued))
        for item in queued:
            metrics.queued((started - item.enqueued_ns) / 1e9)
        return [Batched(outcome, started, ended) for outcome in outcomes]


class ServerInfo(InferenceService):
    """`/v2`: server metadata and health, split traffic, and the V2 404 for unknown models.

    Serve routes a model URL here only when no version application owns it: the model's traffic
    is split (a canary), no version serves yet, or the model is unknown. Every V2 gRPC call
    that names no Serve application comes here too (`rayship.haproxy`), with paths below `/v2`.
    """

    def __init__(self) -> None:
        exclusive_grpc_ports()
        self.models: dict[str, TrafficTable] = {}
        self.handles = VersionHandles()
        self.settings = PredictorSettings.from_env()
        self.routes: RouteTable = {
            "": {"GET": self._metadata},
            "/health/live": {"GET": self._live},
            "/health/ready": {"GET": self._ready},
        }

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Take every model's traffic table; called by Serve on each user_config change."""
        self.models = {
            name: TrafficTable.of(name, table)
            for name, table in ServerUserConfig.from_dict(config).models.items()
        }
        self.handles.keep_only(
            {app for table in self.models.values() for app in table.versions.values()}
        )

    async def __call__(self, request: Request) -> Response:
        """HTTP entry for `/v2/...`."""
        return await serve_http(request, self.route_request, self.settings.max_request_bytes)

    async def route_request(self, call: Call) -> Reply:
        """Server routes, or a model path that no version application owns."""
        model_path = split_model(call.path)
        if model_path is not None:
            name, rest = model_path
            table = self.models.get(name)
            if table is None:
                raise NotFound(f"model {name!r} not found")
            return await self._forward(table, replace(call, path=rest))
        return await find_handler(self.routes, call.method, call.path)(call)

    async def _forward(self, table: TrafficTable, call: Call) -> Reply:
        """Send a model request on: versioned to its version, infer by the split, the rest
        (job results included: any version reads them) to the primary version."""
        version, rest = split_version(call.path)
        if version is None:
            version = table.pick() if rest == INFER_PATH else table.primary()
        return await self.handles.forward(table.app_of(version), replace(call, path=rest))

    async def _metadata(self, call: Call) -> Reply:
        return Reply.json(
            {
                "name": self.settings.server_name,
                "version": self.settings.server_version,
                "extensions": EXTENSIONS,
            }
        )

    async def _live(self, call: Call) -> Reply:
        return Reply.json({"live": True})

    async def _ready(self, call: Call) -> Reply:
        return Reply.json({"ready": True})


# Deployments are made explicitly rather than by class decorators, so the classes keep their
# types for mypy and stay plain classes for tests. Serve's per-request access log is off: on a
# small model it was the largest single cost in a replica after the HTTP server itself
# (bench/server_bench.py, profiled with py-spy); errors are still logged.
QUIET = {"enable_access_log": False}
model_version = serve.deployment(ModelVersion, name=VERSION_DEPLOYMENT, logging_config=QUIET)
server_info = serve.deployment(
    ServerInfo, name=SERVER_DEPLOYMENT, max_ongoing_requests=1000, logging_config=QUIET
)


def version_app(args: dict[str, Any]) -> Any:
    """Builder for `<model>@<version>` applications: Serve passes the config's `args`."""
    return model_version.bind(VersionArgs.from_dict(args))


def server_app(args: dict[str, Any]) -> Any:
    """Builder for the server-level `/v2` application."""
    return server_info.bind()
