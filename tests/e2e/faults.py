"""Faults under steady load, through the operator: what fails, and how long until all is right.

Shared by tests/e2e/test_faults.py, which asserts the goals (README "Faults"), and
bench/faults.py, which prints them as a table. Each scenario serves a fresh ModelDeployment
(the example iris model, versions 1 and 2 in S3), puts steady load on its unversioned URL from
real V2 clients (`SteadyLoad`: two clients, 50 requests a second), injects one fault into a
real part, waits until serving and the status are right again, and returns a `FaultReport`.

Outages are real: the API server process is stopped and started; S3 and the Ray dashboard sit
behind a `Blackout` forwarder that is cut, so the operator and the replicas see refused
connections as they would from a dead host. Kills are SIGKILL of the real process.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from controlplane.cluster import ControlPlane
from e2e.conftest import Stack, open_stack
from rayship.contract import version_app_name
from support.blackout import Blackout
from support.ray_cluster import ServeCluster, WorkerNode
from support.s3 import S3Server
from support.traffic import SteadyLoad, condition, settled
from support.waiting import eventually

OUTAGE_S = 30.0  # how long the API server and the dashboard stay away
RECOVERY_TIMEOUT_S = 180.0
REPLICA_CPUS = 4  # a worker node holds one such replica; the head holds the replacement


@dataclass(frozen=True)
class FaultReport:
    """One fault's outcome under load."""

    fault: str
    sent: int
    failed: int
    allowed: int
    """Failures the goal allows: requests in flight on a process when it was killed (one per
    client at most); 0 for outages, where serving must not notice."""
    recovered_s: float
    """From the end of the fault (the restart, the outage's end, the kill) until the model
    serves as it should and its status says so; for the API server's outage, until the
    operator has handled a change made when it returned."""
    errors: tuple[str, ...] = ()

    def row(self) -> str:
        return (
            f"| {self.fault} | {self.sent} | {self.failed} | {self.allowed} | "
            f"{self.recovered_s:.1f} |"
        )


@dataclass
class FaultStack:
    """The e2e stack with S3 and the Ray dashboard reached through forwarders that can be cut."""

    stack: Stack
    s3: Blackout
    dashboard: Blackout
    workdir: Path
    """Where a scenario may write (a worker node's log)."""


@contextmanager
def fault_stack(  # noqa: PLR0917 - the parts of a Stack, in open_stack's order
    plane: ControlPlane,
    namespace: str,
    serve: ServeCluster,
    s3: S3Server,
    models: Path,
    operator_log: Path,
) -> Iterator[FaultStack]:
    """`open_stack` with the operator reaching the dashboard, and models reading S3, through
    forwarders the scenarios cut."""
    with (
        Blackout(host_port(s3.endpoint_url)) as s3_path,
        Blackout(host_port(serve.dashboard.address)) as dashboard_path,
        open_stack(
            plane, namespace, serve, s3, models, operator_log, dashboard=dashboard_path.url
        ) as stack,
    ):
        yield FaultStack(stack, s3_path, dashboard_path, operator_log.parent)


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", int(parts.port or 80)


def serve_model(faults: FaultStack, name: str, **spec: Any) -> None:
    """Apply a ModelDeployment reading S3 through the forwarder; wait until version 1 serves."""
    stack = faults.stack
    uri = f"s3://{stack.s3.new_bucket()}/{name}"
    stack.upload_iris(uri, ("1", "2"))
    manifest = stack.model_deployment(name, uri, "1", **spec)
    manifest["spec"]["storage"]["endpointUrl"] = faults.s3.url
    stack.apply(manifest)
    stack.wait_for(name, settled(1, activeVersion="1"), timeout_s=RECOVERY_TIMEOUT_S)


def report(fault: str, load: SteadyLoad, allowed: int, recovered_s: float) -> FaultReport:
    failures = load.failures()
    return FaultReport(
        fault,
        sent=len(load.answers),
        failed=len(failures),
        allowed=allowed,
        recovered_s=recovered_s,
        errors=tuple(sorted({a.error for a in failures})),
    )


def roll_to_2(stack: Stack, name: str, generation: int, load: SteadyLoad, since: float) -> float:
    """Wait until version 2 serves every request and the status says so; the seconds since
    `since`."""
    stack.wait_for(name, settled(generation, activeVersion="2"), timeout_s=RECOVERY_TIMEOUT_S)
    load.wait_moved(since, {"2"}, timeout_s=RECOVERY_TIMEOUT_S)
    return time.monotonic() - since


def operator_killed_mid_rollout(faults: FaultStack) -> FaultReport:
    """SIGKILL the operator once version 2's application exists, start it again: the
    restarted operator picks the rollout up from the status and finishes it."""
    stack, name = faults.stack, "fault-operator"
    serve_model(faults, name)
    with SteadyLoad(stack.serve.address, name) as load:
        stack.patch(name, {"model": {"version": "2"}})
        eventually(
            lambda: version_app_name(name, "2") in stack.serve.dashboard.applications(),
            timeout_s=RECOVERY_TIMEOUT_S,
            what="version 2 deploying",
        )
        stack.operator.kill()
        stack.operator.start()
        recovered = roll_to_2(stack, name, 2, load, time.monotonic())
    return report("operator SIGKILLed mid-rollout, restarted", load, 0, recovered)


def api_server_down(faults: FaultStack) -> FaultReport:
    """Stop the API server for OUTAGE_S; once it is back, a version change goes through."""
    stack, name = faults.stack, "fault-apiserver"
    serve_model(faults, name)
    with SteadyLoad(stack.serve.address, name) as load:
        stack.plane.stop_apiserver()
        time.sleep(OUTAGE_S)
        stack.plane.start_apiserver()
        back = time.monotonic()
        stack.patch(name, {"model": {"version": "2"}})
        stack.wait_for(name, handled(2), timeout_s=RECOVERY_TIMEOUT_S)
        recovered = time.monotonic() - back  # the operator works again
        roll_to_2(stack, name, 2, load, back)
    return report(f"kube-apiserver down {OUTAGE_S:.0f} s", load, 0, recovered)


def s3_down_during_rollout(faults: FaultStack) -> FaultReport:
    """Cut S3, ask for version 2: version 1 keeps serving and the status names the storage
    problem; restore S3 and version 2 rolls out."""
    stack, name = faults.stack, "fault-s3-rollout"
    serve_model(faults, name)
    with SteadyLoad(stack.serve.address, name) as load:
        faults.s3.cut()
        stack.patch(name, {"model": {"version": "2"}})
        status = stack.wait_for(name, degraded(2, "StorageError"), timeout_s=RECOVERY_TIMEOUT_S)
        assert status["activeVersion"] == "1", status  # nothing rolled back, nothing lost
        faults.s3.restore()
        recovered = roll_to_2(stack, name, 2, load, time.monotonic())
    return report("S3 down during a rollout", load, 0, recovered)


def s3_down_while_a_replica_starts(faults: FaultStack) -> FaultReport:
    """Cut S3 and add a replica: it loads the version from the node's cache."""
    stack, name = faults.stack, "fault-s3-replica"
    serve_model(faults, name)
    with SteadyLoad(stack.serve.address, name) as load:
        faults.s3.cut()
        since = time.monotonic()
        stack.patch(name, {"replicas": 2})
        stack.wait_for(name, settled(2, activeVersion="1", readyReplicas=2))
        recovered = time.monotonic() - since
        faults.s3.restore()
    return report("S3 down while a replica starts (cache)", load, 0, recovered)


def replica_killed(faults: FaultStack) -> FaultReport:
    """SIGKILL one of two replicas: only requests in flight on it may fail; Serve replaces it
    and the status shows two ready replicas again."""
    stack, name = faults.stack, "fault-replica"
    serve_model(faults, name, replicas=2)
    stack.wait_for(name, settled(1, readyReplicas=2))
    app = version_app_name(name, "1")
    with SteadyLoad(stack.serve.address, name) as load:
        time.sleep(2)  # steady before the kill
        before = stack.serve.replica_ids(name)[app]
        os.kill(replica_pids(stack, app)[0], signal.SIGKILL)
        killed = time.monotonic()
        eventually(
            lambda: len(stack.serve.replica_ids(name)[app] - before) == 1,
            timeout_s=RECOVERY_TIMEOUT_S,
            what="a replacement replica",
        )
        stack.wait_for(name, settled(1, readyReplicas=2), timeout_s=RECOVERY_TIMEOUT_S)
        recovered = time.monotonic() - killed
        time.sleep(2)  # and steady after
    return report("a replica SIGKILLed (of 2)", load, allowed=2, recovered_s=recovered)


def worker_node_lost(faults: FaultStack) -> FaultReport:
    """Lose a Ray worker node with one of two replicas on it: only requests in flight on it
    may fail; Serve replaces the replica on the node left, and the status shows two ready
    replicas again."""
    stack, name = faults.stack, "fault-node"
    app = version_app_name(name, "1")
    with WorkerNode(num_cpus=REPLICA_CPUS, log=faults.workdir / "worker-node.log") as node:
        serve_model(faults, name, replicas=2, resources={"cpu": REPLICA_CPUS})
        stack.wait_for(name, settled(1, readyReplicas=2))
        assert node.node_id in replica_nodes(stack, app), "no replica was placed on the worker"
        with SteadyLoad(stack.serve.address, name) as load:
            time.sleep(2)  # steady before the loss
            before = stack.serve.replica_ids(name)[app]
            node.kill()
            lost = time.monotonic()
            eventually(
                lambda: len(stack.serve.replica_ids(name)[app] - before) == 1,
                timeout_s=RECOVERY_TIMEOUT_S,
                what="a replacement replica",
            )
            stack.wait_for(name, settled(1, readyReplicas=2), timeout_s=RECOVERY_TIMEOUT_S)
            recovered = time.monotonic() - lost
            time.sleep(2)  # and steady after
    return report("a Ray worker node lost (1 of 2 replicas on it)", load, 2, recovered)


def dashboard_unreachable(faults: FaultStack) -> FaultReport:
    """Cut the operator's way to the Ray dashboard for OUTAGE_S: serving goes on, the status
    says the cluster is unreachable, and Ready again once it is back."""
    stack, name = faults.stack, "fault-dashboard"
    serve_model(faults, name)
    with SteadyLoad(stack.serve.address, name) as load:
        started = time.monotonic()
        faults.dashboard.cut()
        stack.wait_for(name, degraded(1, "ClusterUnreachable"), timeout_s=OUTAGE_S)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
        faults.dashboard.restore()
        back = time.monotonic()
        stack.wait_for(name, healthy(1), timeout_s=RECOVERY_TIMEOUT_S)
        recovered = time.monotonic() - back
    return report(f"Ray dashboard unreachable {OUTAGE_S:.0f} s", load, 0, recovered)


SCENARIOS: tuple[Callable[[FaultStack], FaultReport], ...] = (
    operator_killed_mid_rollout,
    api_server_down,
    s3_down_during_rollout,
    s3_down_while_a_replica_starts,
    replica_killed,
    worker_node_lost,
    dashboard_unreachable,
)


def running_replicas(stack: Stack, app: str) -> list[dict[str, Any]]:
    """An application's running replicas, as Serve reports them (pid, node_id, ...)."""
    details = stack.serve.dashboard.applications()[app]
    return [
        replica
        for deployment in details["deployments"].values()
        for replica in deployment.get("replicas") or []
        if replica.get("state") == "RUNNING"
    ]


def replica_pids(stack: Stack, app: str) -> list[int]:
    return [int(replica["pid"]) for replica in running_replicas(stack, app)]


def replica_nodes(stack: Stack, app: str) -> set[str]:
    return {str(replica["node_id"]) for replica in running_replicas(stack, app)}


def degraded(generation: int, reason: str) -> Callable[[dict[str, Any]], bool]:
    """A status check: `generation` handled, Degraded True for `reason`."""

    def check(status: dict[str, Any]) -> bool:
        found = condition(status, "Degraded")
        return (
            status.get("observedGeneration") == generation
            and found.get("status") == "True"
            and found.get("reason") == reason
        )

    return check


def handled(generation: int) -> Callable[[dict[str, Any]], bool]:
    """A status check: the operator has handled `generation`, whatever it decided."""
    return lambda status: status.get("observedGeneration") == generation


def healthy(generation: int) -> Callable[[dict[str, Any]], bool]:
    """A status check: Ready for `generation`, and Degraded no longer True."""
    ready = settled(generation)
    return lambda status: ready(status) and condition(status, "Degraded").get("status") != "True"
