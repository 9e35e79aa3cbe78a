"""Local mode: serve ModelDeployment YAML on this machine, no Kubernetes.

It runs the operator's path on a local Ray: resolve each model's version in storage, compose
the whole Serve config (`rayship.serveconfig`), PUT it to the local dashboard and wait until
every application runs. A `file:` URI without `//` (for example `file:models/iris`) is taken
relative to the YAML file (`rayship.manifest.load_file` resolves it), so examples work from any
working directory.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from rayship.auth import parse_tokens, server_tokens
from rayship.credentials import AUTH_FIELD, env_from_field
from rayship.dashboard import DashboardError, ServeDashboard
from rayship.errors import CredentialsError, InvalidSpec, PortInUse, RayshipError
from rayship.haproxy import drain_ingress, write_launcher
from rayship.ingress import ROUTES_PATH, grpc_applications, route_table
from rayship.manifest import ModelDeployment
from rayship.processes import (
    ProcessEntry,
    descendants,
    end_processes,
    has_variable,
    process_table,
)
from rayship.serveconfig import (
    IngressOptions,
    LiveVersion,
    ModelRouting,
    app_names,
    compose,
)
from rayship.serving_env import HAPROXY, serving_environment
from rayship.status import app_states
from rayship.storage import ModelStore

logger = logging.getLogger(__name__)

# Logical CPUs for the local Ray: replicas reserve CPUs for scheduling, and a laptop with two
# cores should still hold a model with a canary beside it. Real CPU use is unaffected.
LOCAL_LOGICAL_CPUS = max(os.cpu_count() or 1, 16)


class DeployFailed(RayshipError):
    """An application failed to deploy; the message carries Serve's reason."""


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ingress_options(host: str, port: int, grpc_port: int) -> IngressOptions:
    """Where `rayship serve` listens, refused at once when a port is taken: HAProxy would
    otherwise fail to start inside Serve and take both endpoints with it. A port of 0 is any
    free one."""
    ports = {}
    for flag, wanted in (("--port", port), ("--grpc-port", grpc_port)):
        ports[flag] = wanted or free_port()
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, ports[flag]))
            except OSError as error:
                raise PortInUse(
                    f"{flag} {ports[flag]}: cannot listen on {host}:{ports[flag]} "
                    f"({error.strerror}); choose another port, or 0 for any free one"
                ) from None
    return IngressOptions(host, ports["--port"], ports["--grpc-port"])


ENV_FILE = ".env"
"""The env file beside a ModelDeployment's YAML that local mode reads for envFrom, if present."""

_ENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_QUOTED = re.compile(r"""(['"])(.*)\1(?:\s+#.*)?""")
_COMMENT = re.compile(r"\s+#")


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of an env file, in the dotenv form docker compose also reads.

    One `NAME=value` per line, optionally after `export `; blank lines and `#` lines are
    skipped. A value in single or double quotes is taken literally between them; an unquoted
    one ends at a ` #` comment. Errors name the line, never its content (it may be a secret).
    """
    try:
        text = path.read_text()
    except OSError as error:
        raise CredentialsError(f"{path}: cannot read the env file: {error.strerror}") from None
    variables = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.fullmatch(stripped)
        if match is None:
            raise CredentialsError(f"{path}:{number}: not a NAME=value line")
        name, value = match.groups()
        quoted = _QUOTED.fullmatch(value)
        variables[name] = quoted.group(2) if quoted else _COMMENT.split(value, maxsplit=1)[0]
    return variables


@dataclass(frozen=True)
class LocalSecrets:
    """What stands in for Kubernetes Secrets in local mode: the variables of the process
    environment and of an env file, the environment winning (as with docker compose).

    An envFrom entry's variables are looked up by the names the replicas see (prefix + key),
    so two Secrets with the same key stay apart locally as on a cluster.
    """

    variables: Mapping[str, str]
    env_file: Path

    @classmethod
    def load(
        cls, yaml_file: Path, env_file: Path | None, environ: Mapping[str, str]
    ) -> LocalSecrets:
        """`env_file` (which must exist) or else `.env` beside `yaml_file` (when there is one),
        under `environ`."""
        path = env_file if env_file is not None else yaml_file.resolve().parent / ENV_FILE
        from_file = read_env_file(path) if env_file is not None or path.is_file() else {}
        return cls({**from_file, **environ}, path)

    def env_from(self, deployment: ModelDeployment) -> dict[str, str]:
        """`spec.runtimeEnv.envFrom`'s variables; one missing is an error naming it."""
        found = {}
        for index, source in enumerate(deployment.spec.runtime_env.env_from):
            what = (
                f"ModelDeployment {deployment.name!r}: {env_from_field(index)} "
                f"{source.secret_ref.name!r}"
            )
            if not source.keys:
                raise InvalidSpec(
                    f"{what} lists no keys: rayship serve takes Secret values from the "
                    "environment and needs the keys' names"
                )
            for name in (source.prefix + key for key in source.keys):
                if name not in self.variables:
                    raise CredentialsError(
                        f"{what}: {name} is set neither in the environment nor in {self.env_file}"
                    )
                found[name] = self.variables[name]
        return found

    def tokens(self, deployment: ModelDeployment) -> tuple[str, ...]:
        """The bearer tokens the model accepts: the server-wide `RAYSHIP_AUTH_TOKENS` and, for
        `spec.auth`, the variable named like its Secret key (which must be set)."""
        tokens = server_tokens(self.variables)
        auth = deployment.spec.auth
        if auth is None:
            return tokens
        own = parse_tokens(self.variables.get(auth.key, ""))
        if not own:
            raise CredentialsError(
                f"ModelDeployment {deployment.name!r}: {AUTH_FIELD} "
                f"{auth.secret_ref.name!r}: {auth.key} is set neither in the environment nor "
                f"in {self.env_file}"
            )
        return tokens + own


def routing_for(
    deployment: ModelDeployment, store: ModelStore, secrets: LocalSecrets
) -> ModelRouting:
    """Resolve the serving (and canary) versions of one model and route traffic to them.

    The storage URI is already absolute: `rayship.manifest.load_file` resolved a relative one.
    """
    env_from = secrets.env_from(deployment)
    model = deployment.spec.model
    main = store.resolve(model.storage_uri, model.version)
    live = [LiveVersion(main.version, main.digest)]
    traffic = [(main.version, 100)]
    canary = deployment.spec.rollout.canary
    if canary is not None and canary.version != main.version:
        resolved = store.resolve(model.storage_uri, canary.version)
        live.append(LiveVersion(resolved.version, resolved.digest))
        traffic = [(main.version, 100 - canary.percent), (resolved.version, canary.percent)]
    return ModelRouting(
        deployment,
        tuple(live),
        tuple(traffic),
        env_from=env_from,
        tokens=secrets.tokens(deployment),
    )


def _pause(seconds: float, stop: threading.Event | None) -> bool:
    """Sleep `seconds`, cut short when `stop` is set; whether a stop was asked for.

    The waits below poll Serve; a process asked to stop while it deploys should not sit out
    the rest of a readiness timeout first.
    """
    if stop is None:
        time.sleep(seconds)
        return False
    return stop.wait(seconds)


def wait_running(
    dashboard: ServeDashboard,
    names: list[str],
    timeout_s: float,
    stop: threading.Event | None = None,
) -> None:
    """Block until every named application runs, or `stop` is set; DeployFailed as soon as
    one fails."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = app_states(dashboard.applications())
        failed = {name: states[name] for name in names if name in states and states[name].failed}
        if failed:
            reasons = "\n".join(f"{name}: {state.message}" for name, state in failed.items())
            raise DeployFailed(f"deployment failed:\n{reasons}")
        if all(name in states and states[name].running for name in names):
            return
        if time.monotonic() > deadline:
            waiting = [name for name in names if not (name in states and states[name].running)]
            raise DeployFailed(f"not running after {timeout_s:.0f}s: {', '.join(waiting)}")
        if _pause(0.5, stop):
            return


def deploy(
    dashboard: ServeDashboard,
    routings: list[ModelRouting],
    http: IngressOptions,
    timeout_s: float,
    stop: threading.Event | None = None,
) -> None:
    """PUT the composed config and wait until it serves: applications running, routes in place.

    Once `stop` is set it returns without waiting further: the caller is stopping, and Serve's
    half-done deployment goes with its Ray.
    """
    deadline = time.monotonic() + timeout_s
    config = compose(routings, http)
    dashboard.put_config(config)
    wait_running(dashboard, app_names(routings), timeout_s, stop)
    routes = routes_of(config)
    if stop is None or not stop.is_set():
        wait_routed(http, routes, max(deadline - time.monotonic(), 1.0), stop)
    if http.grpc_port and (stop is None or not stop.is_set()):
        known = set(routes.values())
        wait_grpc_known(http, known, max(deadline - time.monotonic(), 1.0), stop)


def routes_of(config: dict[str, Any]) -> dict[str, str]:
    """The HTTP route table a composed config asks for: route prefix -> application."""
    return {
        app["route_prefix"]: app["name"]
        for app in config["applications"]
        if app.get("route_prefix") is not None
    }


def wait_routed(
    http: IngressOptions,
    routes: dict[str, str],
    timeout_s: float,
    stop: threading.Event | None = None,
) -> None:
    """Block until the HTTP ingress routes exactly `routes`, or `stop` is set.

    Serve reports applications running before its ingress (HAProxy in throughput-optimized
    mode, else Serve's proxy) has the new routes; until then a model URL may still reach the
    version that owned it before. Both answer `GET /-/routes` with their current table.
    """
    url = f"http://{http.client_host}:{http.port}"
    deadline = time.monotonic() + timeout_s
    current = None
    while current != routes:
        if time.monotonic() > deadline:
            raise DeployFailed(
                f"{url}{ROUTES_PATH} still says {current} after {timeout_s:.0f}s, not {routes}"
            )
        if _pause(0.2, stop):
            return
        current = route_table(url)


def wait_grpc_known(
    http: IngressOptions,
    apps: set[str],
    timeout_s: float,
    stop: threading.Event | None = None,
) -> None:
    """Block until Serve's gRPC proxy knows every one of `apps`, or `stop` is set: before, a
    ModelInfer that HAProxy hands it (its backup while a new version's replica is not up there
    yet) is answered NOT_FOUND (`rayship.ingress`)."""
    address = f"{http.client_host}:{http.grpc_port}"
    deadline = time.monotonic() + timeout_s
    known: set[str] | None = None
    while known is None or not apps <= known:
        if time.monotonic() > deadline:
            missing = sorted(apps - (known or set()))
            raise DeployFailed(f"gRPC ingress at {address} does not know {missing} yet")
        if _pause(0.2, stop):
            return
        known = grpc_applications(address)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals that stop a process serving on a LocalRay; `ray.init` must not keep them."""

DRAIN_SECONDS = 20.0
"""Longest a stop waits for requests in flight: Serve's default graceful_shutdown_timeout_s,
which is what Serve gives the requests of a replica it stops (Rayship composes no other)."""

OWNER_VARIABLE = "RAYSHIP_LOCAL_RAY"
"""Set, to the LocalRay's folder, in the environment of every process its Ray starts."""

SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class StartInterrupted(RayshipError):
    """SIGTERM arrived while `ray.init` ran and Ray's own handler cut it short; what it had
    started has been stopped again."""


@dataclass
class LocalRay:
    """A Ray head on this machine with its dashboard on loopback, owned by this process.

    Leaving the block stops all of it, whatever ended the block (`_stop`): the ingress refuses
    new requests and those in flight get up to `drain_s` to finish (no more once `hurry` is
    set), then Ray goes down, and any process it started that outlives `ray.shutdown` is ended.
    """

    dashboard_port: int = 0
    metrics_port: int = 0
    num_cpus: int = LOCAL_LOGICAL_CPUS
    drain_s: float = DRAIN_SECONDS
    hurry: threading.Event = field(default_factory=threading.Event)
    _haproxy_dir: Path = field(init=False, repr=False)
    _seen: set[tuple[int, int]] = field(init=False, repr=False, default_factory=set)

    def __enter__(self) -> ServeDashboard:
        try:
            import ray  # noqa: F401  (only whether it is there)
        except ImportError:
            raise DeployFailed("local mode needs Ray: pip install 'rayship[serve]'") from None

        port = self.dashboard_port or free_port()
        self.metrics_port = self.metrics_port or free_port()
        self._haproxy_dir = Path(tempfile.mkdtemp(prefix="rayship-haproxy-"))
        try:
            write_launcher(self._haproxy_dir)
            self._init(port)
            dashboard = ServeDashboard(f"http://127.0.0.1:{port}")
            _wait_dashboard(dashboard, timeout_s=60)
        except BaseException as error:
            self._stop()
            if isinstance(error, SystemExit) and error.code == signal.SIGTERM:
                raise StartInterrupted("stopped by SIGTERM while Ray was starting") from None
            raise
        return dashboard

    @property
    def metrics_url(self) -> str:
        """Ray's Prometheus endpoint on this node, with the replicas' metrics (once entered)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def _init(self, port: int) -> None:
        """`ray.init` in the environment Serve needs, keeping this process's stop handlers.

        Ray's processes inherit this process's environment when ray.init starts them, and
        pass it on to every process they start: with `OWNER_VARIABLE` in it, all of them can be
        found again (`_processes`). The caller's own environment is left as it was afterwards.

        ray.init also takes SIGTERM over: while it starts the node, with a handler that calls
        sys.exit(SIGTERM), then, in its core worker, with a native one that dumps the stack and
        aborts the process (the "*** SIGTERM received" of a stopped `rayship serve`), so no
        clean-up ran and Ray's agents and HAProxy outlived it. The handlers the process had for
        `STOP_SIGNALS` are put back; a SIGTERM in the last moments of ray.init, after its core
        worker started, still meets Ray's native one.
        """
        import ray

        saved_environment = dict(os.environ)
        handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        os.environ.update(serve_environment(os.environ, self._haproxy_dir))
        os.environ[OWNER_VARIABLE] = str(self._haproxy_dir)
        try:
            ray.init(
                # A new Ray of its own: without an address ray.init joins the cluster a
                # `ray start` on this machine last recorded (/tmp/ray/ray_current_cluster),
                # even a dead one, and then refuses num_cpus.
                address="local",
                num_cpus=self.num_cpus,
                include_dashboard=True,
                dashboard_host="127.0.0.1",
                dashboard_port=port,
                # Where Prometheus scrapes the replicas' metrics (`metrics_url`); Ray's own
                # choice is a random port nobody is told.
                _metrics_export_port=self.metrics_port,
                logging_level=logging.WARNING,
            )
        finally:
            os.environ.clear()
            os.environ.update(saved_environment)
            restore_handlers(handlers)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        """Stop all `__enter__` started, also after a start that failed half-way.

        The ingress first (`drain_ingress`), so requests in flight are answered; then
        `ray.shutdown`, which ends the processes ray.init started and, through the raylet, the
        workers; then whatever outlived it (Ray's agents and the HAProxy that Serve starts do
        not always end with their parents, and a start cut short leaves the dashboard's helpers
        behind).

        Serve's own `serve.shutdown` is not called: in HAProxy mode it keeps every HTTP ingress
        replica up for 30 s, a window for external load balancers to notice (there is none in
        front of this Ray), before the replica even starts draining, and all it would clean up
        lives in this Ray, which goes. So replicas' destructors do not run: an asynchronous job
        still running is answered as lost, as after a crash (`rayship_predictors.jobs`).
        """
        import ray

        drain_ingress(self._haproxy_dir, self.drain_s, self.hurry)
        self._processes()  # seen while their parents run: ray.shutdown may orphan them
        try:
            ray.shutdown(wait_for_processes=True)
        except Exception:  # what it left running is ended below
            logger.warning("ray.shutdown failed; ending Ray's processes", exc_info=True)
        finally:
            end_processes(self._processes)
            shutil.rmtree(self._haproxy_dir, ignore_errors=True)

    def _processes(self) -> list[ProcessEntry]:
        """Every process this LocalRay's Ray started, directly or not: GCS, raylet, dashboard
        and its helpers, agents, workers, HAProxy.

        They carry `OWNER_VARIABLE`, which names this LocalRay's own folder (so no other Ray's
        are found), or descend from one that does: Ray's agents retitle themselves over their
        environment's memory, and /proc no longer shows it. Each is remembered once seen, as
        an orphan no longer shows whose it was.
        """
        table = process_table()
        roots = {
            entry
            for entry in table
            if entry.pid != os.getpid()
            and (
                (entry.pid, entry.started) in self._seen
                or has_variable(entry.pid, OWNER_VARIABLE, str(self._haproxy_dir))
            )
        }
        found = descendants(table, roots)
        self._seen.update((entry.pid, entry.started) for entry in found)
        return found


def restore_handlers(handlers: Mapping[signal.Signals, SignalHandler]) -> None:
    """Put signal handlers back as `signal.getsignal` reported them.

    Only the main thread may set handlers, and one set outside Python (reported as None) cannot
    be put back: both are left as they are.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, handler in handlers.items():
        if handler is not None:
            signal.signal(signum, handler)


FALLBACK_PROXY_PORTS = ("RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")


def serve_environment(current: Mapping[str, str], haproxy_dir: Path) -> dict[str, str]:
    """Environment variables for a local Ray's Serve, on top of `current` (which wins).

    Rayship's serving settings (`rayship.serving_env`, the launcher in `haproxy_dir`), and what
    keeps local Rays apart: HAProxy's stats and metrics listeners and Serve's fallback proxy get
    free ports instead of Serve's fixed 8404, 9101, 8500 and 9500, and HAProxy's files live in
    `haproxy_dir` instead of Serve's shared /tmp/haproxy-serve, so several local Rays (parallel
    test sessions, two `rayship serve`) can run on one machine.
    """
    env = serving_environment(
        current, str(haproxy_dir / "haproxy"), max_connections=ingress_max_connections()
    )
    if not env:
        return env
    # Serve's fallback proxy binds fixed ports with SO_REUSEPORT: two local Rays would share
    # them, and HAProxy could hand a request to the other Ray's proxy.
    for name in FALLBACK_PROXY_PORTS:
        env[name] = current.get(name) or str(free_port())
    if env.get(HAPROXY) == "1":
        for name in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT"):
            env[name] = current.get(name) or str(free_port())
        env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"] = str(haproxy_dir / "haproxy.cfg")
        env["RAY_SERVE_HAPROXY_SOCKET_PATH"] = str(haproxy_dir / "admin.sock")
        env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] = str(haproxy_dir)
        env["RAY_SERVE_HAPROXY_SERVER_STATE_FILE"] = str(haproxy_dir / "server-state")
    return env


def ingress_max_connections(wanted: int = 16384) -> int:
    """As many connections as HAProxy can hold under this process's open-file limit, at most
    `wanted`: it reserves about 2.5 descriptors per connection (client, server, spares) and
    refuses to start without them (maxconn 9744 asked for 24396)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return wanted
    return max(1024, min(wanted, (hard - 1024) // 3))


def _wait_dashboard(dashboard: ServeDashboard, timeout_s: float) -> None:
    """The dashboard's HTTP server comes up a little after ray.init returns."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            dashboard.applications()
            return
        except DashboardError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
