"""The `rayship` command.

`rayship serve FILE...` is local mode: the same ModelDeployment YAML the operator reads, served
on this machine's Ray until Ctrl-C; a model that asks for `latest` gets each new version rolled
out as the operator would (`rayship.follow`). `rayship status|history|rollback NAME` read and
roll back a ModelDeployment on a Kubernetes cluster (kubeconfig or in-cluster credentials; they need
`pip install 'rayship[kube]'`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from rayship import kubecli
from rayship.contract import model_route
from rayship.dashboard import ServeDashboard
from rayship.errors import RayshipError
from rayship.follow import Follower
from rayship.local import (
    STOP_SIGNALS,
    LocalRay,
    LocalSecrets,
    StartInterrupted,
    deploy,
    ingress_options,
    routing_for,
)
from rayship.manifest import load_file
from rayship.serveconfig import IngressOptions, ModelRouting
from rayship.storage import ModelStore


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rayship", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve ModelDeployment YAML locally (no Kubernetes)")
    serve.add_argument("files", nargs="+", type=Path, help="ModelDeployment YAML files")
    serve.add_argument("--host", default="127.0.0.1", help="address the V2 endpoint listens on")
    serve.add_argument(
        "--port", type=int, default=8000, help="port of the V2 REST endpoint (0: any free port)"
    )
    serve.add_argument(
        "--grpc-port",
        type=int,
        default=8001,
        help="port of the V2 gRPC service (Triton's 8001; 0: any free port)",
    )
    serve.add_argument("--dashboard-port", type=int, default=0, help="Ray dashboard port (0: any)")
    serve.add_argument(
        "--metrics-port", type=int, default=0, help="Prometheus metrics port (0: any)"
    )
    serve.add_argument("--timeout", type=float, default=300, help="seconds to wait for readiness")
    serve.add_argument(
        "--env-file",
        type=Path,
        help="variables for spec.runtimeEnv.envFrom (default: .env beside each YAML file, if "
        "there is one); the environment wins over the file",
    )
    for name, what in (
        ("status", "show a ModelDeployment's versions, phase and conditions"),
        ("history", "list a ModelDeployment's rollouts, newest first"),
        ("rollback", "set spec.model.version back to the previous good version"),
    ):
        command = commands.add_parser(name, help=what)
        command.add_argument("name", help="the ModelDeployment")
        command.add_argument(
            "-n",
            "--namespace",
            help="default: the kubeconfig context's namespace, in a pod its own, else default",
        )
        if name == "rollback":
            command.add_argument("--to", help="a version to roll back to (default: previous good)")
    return parser


def say(line: str) -> None:
    """A line for the person running `rayship serve`."""
    print(line, flush=True)


class StopSignals:
    """SIGTERM and SIGINT as `rayship serve` takes them: the first asks it to stop (`stop`),
    any later one to stop at once (`hurry`).

    The handler only writes the signal to a pipe, and a thread reading the pipe sets the
    events. A Python handler runs in the main thread between two bytecodes, possibly while that
    thread holds the lock inside a `threading.Event` it waits on; setting an Event from the
    handler would then wait for that lock forever. Writing to a pipe takes no lock.

    SIGINT is taken even when the process inherited it ignored, as a background job of a
    non-interactive shell does: test runners, supervisors and `kill -INT` send it to stop the
    server, and it should stop, not linger.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.hurry = threading.Event()
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)

    def install(self) -> None:
        """Take over SIGTERM and SIGINT for this process (from the main thread)."""
        threading.Thread(target=self._relay, name="rayship-stop-signals", daemon=True).start()
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe already holds a request
            os.write(self._write, bytes([signum]))

    def _relay(self) -> None:
        """Turn the signals in the pipe into `stop`, then `hurry`."""
        while received := os.read(self._read, 64):
            for _ in received:
                (self.hurry if self.stop.is_set() else self.stop).set()


def serve_locally(args: argparse.Namespace) -> int:
    """Deploy every model in the files, print their URLs, and serve until stopped.

    SIGTERM (what `docker stop`, systemd and Kubernetes send) and SIGINT stop it cleanly, also
    while it still starts or deploys: requests in flight are answered, then everything it
    started is ended (`LocalRay`). That is the normal end of a server, so the exit status is 0:
    docker, systemd and Kubernetes read 0 as a clean stop, whereas 143 or 130 (128 + the
    signal) would read as a failure, and a restart-on-failure policy would start it again.
    """
    deployments = [(path, md) for path in args.files for md in load_file(path)]
    store = ModelStore()
    routings = [
        routing_for(md, store, LocalSecrets.load(path, args.env_file, os.environ))
        for path, md in deployments
    ]
    signals = StopSignals()
    signals.install()
    http = ingress_options(args.host, args.port, args.grpc_port)
    try:
        local_ray = LocalRay(
            dashboard_port=args.dashboard_port, metrics_port=args.metrics_port, hurry=signals.hurry
        )
        with local_ray as dashboard:
            serve_until_stopped(
                dashboard,
                http,
                store,
                routings,
                timeout_s=args.timeout,
                stop=signals.stop,
                metrics_url=local_ray.metrics_url,
            )
    except StartInterrupted:
        say("stopping")
    return 0


def serve_until_stopped(
    dashboard: ServeDashboard,
    http: IngressOptions,
    store: ModelStore,
    routings: list[ModelRouting],
    *,
    timeout_s: float,
    stop: threading.Event,
    metrics_url: str,
) -> None:
    """Deploy, print the URLs (the models', and where their metrics are scraped) and follow
    `latest` (or just wait) until `stop` is set; a stop that comes while it deploys skips the
    rest."""
    if not stop.is_set():
        deploy(dashboard, routings, http, timeout_s, stop)
    if not stop.is_set():
        for routing in routings:
            split = ", ".join(f"{v} {p}%" for v, p in routing.traffic)
            url = f"http://{http.host}:{http.port}{model_route(routing.model_name)}"
            say(f"serving {routing.model_name} ({split}) at {url}")
        say(f"V2 gRPC at {http.host}:{http.grpc_port}")
        say(f"metrics at {metrics_url}")
        say("press Ctrl-C to stop")
        follower = Follower(dashboard, http, store, routings, say)
        if follower.active:  # a model asks for `latest`: roll its new versions out
            follower.run(stop)
        else:
            stop.wait()
    say("stopping")


def on_cluster(args: argparse.Namespace) -> int:
    """status, history and rollback against the Kubernetes API."""
    cluster = kubecli.connect()
    namespace = args.namespace or cluster.namespace
    deployments = kubecli.ModelDeployments(cluster.api)
    if args.command == "rollback":
        old, new = deployments.rollback(namespace, args.name, args.to)
        print(f"{namespace}/{args.name}: spec.model.version {old} -> {new}")
        return 0
    obj = deployments.get(namespace, args.name)
    print(kubecli.format_status(obj) if args.command == "status" else kubecli.format_history(obj))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rayship` console script."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        return serve_locally(args) if args.command == "serve" else on_cluster(args)
    except RayshipError as error:  # what a person can fix; anything else is a bug: traceback
        print(f"rayship: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
