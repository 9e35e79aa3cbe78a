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
from rayship.errors import RayshipError
from rayship.follow import Follower
from rayship.local import LocalRay, LocalSecrets, deploy, routing_for
from rayship.manifest import load_file
from rayship.serveconfig import HttpOptions
from rayship.storage import ModelStore


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rayship", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve ModelDeployment YAML locally (no Kubernetes)")
    serve.add_argument("files", nargs="+", type=Path, help="ModelDeployment YAML files")
    serve.add_argument("--host", default="127.0.0.1", help="address the V2 endpoint listens on")
    serve.add_argument("--port", type=int, default=8000, help="port of the V2 endpoint")
    serve.add_argument("--dashboard-port", type=int, default=0, help="Ray dashboard port (0: any)")
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


def serve_locally(args: argparse.Namespace) -> int:
    """Deploy every model in the files, print their URLs, and serve until interrupted."""
    deployments = [(path, md) for path in args.files for md in load_file(path)]
    store = ModelStore()
    routings = [
        routing_for(md, store, LocalSecrets.load(path, args.env_file, os.environ))
        for path, md in deployments
    ]
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    http = HttpOptions(args.host, args.port)
    with LocalRay(dashboard_port=args.dashboard_port) as dashboard:
        deploy(dashboard, routings, http, args.timeout)
        for routing in routings:
            split = ", ".join(f"{v} {p}%" for v, p in routing.traffic)
            url = f"http://{args.host}:{args.port}{model_route(routing.model_name)}"
            print(f"serving {routing.model_name} ({split}) at {url}", flush=True)
        print("press Ctrl-C to stop", flush=True)
        follower = Follower(dashboard, http, store, routings, say)
        with contextlib.suppress(KeyboardInterrupt):
            if follower.active:  # a model asks for `latest`: roll its new versions out
                follower.run(stop)
            else:
                stop.wait()
        print("stopping", flush=True)
    return 0


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
