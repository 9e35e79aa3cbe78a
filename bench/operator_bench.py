"""What a user of the operator waits for: apply to Ready, version switches, canary changes.

    .venv/bin/python bench/operator_bench.py              # 3 rounds
    .venv/bin/python bench/operator_bench.py --repeat 5

It starts the real parts the e2e suite runs on, through the suite's own code: the test control
plane (tests/controlplane; its binaries are built on first use, see README "The test control
plane"), moto's S3 server, a local Ray with Serve, and the operator as a subprocess watching one
namespace (`open_stack` in tests/e2e/conftest.py). The example iris ONNX model's versions 1 and
2 go to S3 once. Each round then applies a fresh ModelDeployment and times:

- apply -> Ready: `kubectl apply` until the Ready condition is True (sampled every 0.2 s);
- apply -> first answer: until the unversioned model URL first answers a V2 inference;

and, under steady load (two V2 clients, 50 requests a second in all, on the unversioned URL),
from each `kubectl patch` until the clients' answers show the traffic moved (20 answers in a
row from the expected versions; the moment is the first of them, or a canary's first answer):

- new version (cold): version 1 -> 2, which loads version 2;
- warm rollback: back to version 1, kept warm; warm roll forward: to version 2 again;
- canary on (version 1 at 50%: both versions answer) and off (only version 2 answers).

Before the next step it waits until the operator reports the step's generation Ready, so steps
never overlap. Each step also counts the requests that failed and the replicas that restarted
(new replica ids in the version applications that were live before it). Then it deletes the
ModelDeployment. It prints min / median / max seconds per step beside the goals; a goal is met
when every round met it.

The machine is shared and noisy: seconds vary between runs; any restart or failure is a finding.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # never the repo root

from controlplane.cluster import ControlPlane, ensure_binaries
from controlplane.fixtures import CRDS_DIR
from e2e.conftest import Stack, open_stack
from support.models import build_models
from support.ray_cluster import ServeCluster, local_serve_cluster
from support.s3 import S3Server, start_s3_server
from support.traffic import SteadyLoad, first_answer

NAMESPACE = "bench"
COLD_TIMEOUT_S = 180
WARM_TIMEOUT_S = 120


@dataclass(frozen=True)
class Step:
    """One timed step of the round, and its goal in seconds (None: no goal)."""

    label: str
    goal_s: float | None = None


APPLY_READY = Step("apply -> Ready", 10.0)
APPLY_ANSWER = Step("apply -> first answer")
COLD = Step("new version (cold) -> traffic moved")
ROLLBACK = Step("warm rollback -> traffic moved", 1.0)
FORWARD = Step("warm roll forward -> traffic moved", 1.0)
CANARY_ON = Step("canary on (50%) -> both answer", 1.0)
CANARY_OFF = Step("canary off -> one version answers", 1.0)
STEPS = (APPLY_READY, APPLY_ANSWER, COLD, ROLLBACK, FORWARD, CANARY_ON, CANARY_OFF)


@dataclass(frozen=True)
class Measured:
    """One step of one round: seconds, failed requests and restarted replicas during it."""

    step: Step
    seconds: float
    failed: int = 0
    restarted: int = 0


@dataclass(frozen=True)
class Round:
    """Every step of one round, and the requests the load sent and saw fail over all of it."""

    steps: list[Measured]
    sent: int
    failed: int


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Parts:
    """The e2e suite's parts without the operator: control plane, S3, Ray, the models folder."""

    plane: ControlPlane
    s3: S3Server
    serve: ServeCluster
    models: Path


@contextmanager
def started_parts(workdir: Path) -> Iterator[Parts]:
    """The e2e suite's parts, started in this process and stopped by process id at the end;
    the namespace NAMESPACE exists and the iris example model is built."""
    # moto accepts any credentials; these keep boto3 off the developer's own.
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    with ExitStack() as parts:
        log("control plane: building or reusing binaries (tests/controlplane/build.sh)")
        plane = ControlPlane(ensure_binaries(), state_dir=workdir / "controlplane").start()
        parts.callback(plane.stop)
        plane.apply_crds(CRDS_DIR)
        plane.kubectl("create", "namespace", NAMESPACE)
        s3 = start_s3_server(workdir)
        parts.callback(s3.stop)
        log("starting a local Ray with Serve")
        serve: ServeCluster = parts.enter_context(local_serve_cluster())
        build_models.build_iris_onnx(workdir / "models")
        yield Parts(plane, s3, serve, workdir / "models")


@contextmanager
def real_parts(workdir: Path) -> Iterator[Stack]:
    """`started_parts` with the operator watching NAMESPACE."""
    with started_parts(workdir) as parts:
        log_file = workdir / "operator.log"
        with open_stack(
            parts.plane, NAMESPACE, parts.serve, parts.s3, parts.models, log_file
        ) as stack:
            yield stack


def restarted(before: dict[str, frozenset[str]], after: dict[str, frozenset[str]]) -> int:
    """Replicas started during a step in the applications that were live before it.

    Counted by new ids rather than lost ones: a replica Serve is still replacing when the step
    ends has its successor's id beside its own already.
    """
    return sum(len(after.get(app, frozenset()) - ids) for app, ids in before.items())


@dataclass(frozen=True)
class Move:
    """One `kubectl patch` under load: the spec it merges, the versions that answer after it,
    how long it may take, and the status fields that show it done."""

    step: Step
    spec: dict[str, Any]
    versions: frozenset[str]
    timeout_s: float
    status: dict[str, Any]


MOVES = (
    Move(
        COLD, {"model": {"version": "2"}}, frozenset({"2"}), COLD_TIMEOUT_S, {"activeVersion": "2"}
    ),
    Move(
        ROLLBACK,
        {"model": {"version": "1"}},
        frozenset({"1"}),
        WARM_TIMEOUT_S,
        {"activeVersion": "1"},
    ),
    Move(
        FORWARD,
        {"model": {"version": "2"}},
        frozenset({"2"}),
        WARM_TIMEOUT_S,
        {"activeVersion": "2"},
    ),
    Move(
        CANARY_ON,
        {"rollout": {"canary": {"version": "1", "percent": 50}}},
        frozenset({"1", "2"}),
        WARM_TIMEOUT_S,
        {"activeVersion": "2", "canaryVersion": "1"},
    ),
    Move(
        CANARY_OFF,
        {"rollout": {"canary": None}},
        frozenset({"2"}),
        WARM_TIMEOUT_S,
        {"activeVersion": "2", "canaryVersion": None},
    ),
)


def apply_until_ready(stack: Stack, uri: str, name: str, **spec: Any) -> list[Measured]:
    """Apply a fresh ModelDeployment of version 1 (`spec` merged into its spec) and time it
    to Ready and to its first answer."""
    with stack.watch_status(name) as watcher:
        applied = time.monotonic()
        stack.apply(stack.model_deployment(name, uri, "1", **spec))
        answered = first_answer(stack.serve.address, name, COLD_TIMEOUT_S)
        ready = watcher.wait_ready(applied, COLD_TIMEOUT_S)
    log(f"{name}: Ready after {ready - applied:.2f} s, first answer {answered - applied:.2f} s")
    return [Measured(APPLY_READY, ready - applied), Measured(APPLY_ANSWER, answered - applied)]


def moves_under_load(stack: Stack, name: str) -> Round:
    """Every move of MOVES in turn on `name` (serving version 1), timed under steady load."""
    results: list[Measured] = []
    with SteadyLoad(stack.serve.address, name) as load:
        load.wait_moved(0.0, {"1"}, WARM_TIMEOUT_S)
        for move in MOVES:
            before = stack.serve.replica_ids(name)
            since = time.monotonic()
            seconds = stack.move_traffic(
                name, load, move.spec, set(move.versions), move.timeout_s, **move.status
            )
            failures = load.failures(since)
            started = restarted(before, stack.serve.replica_ids(name))
            results.append(Measured(move.step, seconds, len(failures), started))
            first = f" (first: {failures[0].error})" if failures else ""
            log(
                f"{name}: {move.step.label}: {seconds:.2f} s, {len(failures)} failed{first}, "
                f"{started} restarted"
            )
    return Round(results, len(load.answers), len(load.failures()))


def delete(stack: Stack, *names: str) -> None:
    """Delete ModelDeployments and wait until they are gone.

    The operator's finalizer removes the applications: wait for it, however long it takes
    (it has taken over a minute on a busy machine), so what the bench does next never overlaps.
    """
    stack.plane.kubectl(
        "-n", stack.namespace, "delete", "md", *names, "--timeout=170s", timeout=COLD_TIMEOUT_S
    )


def one_round(stack: Stack, uri: str, name: str, **spec: Any) -> Round:
    """Apply a fresh ModelDeployment, time every step under load, then delete it."""
    ready = apply_until_ready(stack, uri, name, **spec)
    moved = moves_under_load(stack, name)
    done = Round(ready + moved.steps, moved.sent, moved.failed)
    log(f"{name}: {done.sent} requests sent under load, {done.failed} failed")
    delete(stack, name)
    return done


@contextmanager
def iris_stack(prefix: str) -> Iterator[tuple[Stack, str]]:
    """`real_parts` in a fresh folder, with the iris versions 1 and 2 in S3 under the URI it
    yields beside the stack; the folder goes afterwards unless the bench failed (the
    operator's log is in it)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with real_parts(workdir) as stack:
            uri = f"s3://{stack.s3.new_bucket()}/iris"
            stack.upload_iris(uri, ("1", "2"))
            yield stack, uri
    except BaseException:
        log(f"failed; its files (the operator's log among them) are kept in {workdir}")
        raise
    shutil.rmtree(workdir, ignore_errors=True)


def table(rounds: list[Round]) -> str:
    """min / median / max per step, failures and restarts, and each goal met or not."""
    everything = [m for done in rounds for m in done.steps]
    lines = [
        "| step | n | min s | median s | max s | failed | restarted | goal | met |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for step in STEPS:
        mine = [m for m in everything if m.step == step]
        times = [m.seconds for m in mine]
        goal = f"< {step.goal_s:g} s" if step.goal_s is not None else ""
        met = "" if step.goal_s is None else ("met" if max(times) < step.goal_s else "not met")
        lines.append(
            f"| {step.label} | {len(mine)} | {min(times):.2f} | {statistics.median(times):.2f} "
            f"| {max(times):.2f} | {sum(m.failed for m in mine)} "
            f"| {sum(m.restarted for m in mine)} | {goal} | {met} |"
        )
    sent, failed = sum(r.sent for r in rounds), sum(r.failed for r in rounds)
    lines.append(
        f"\nrequests under load: {sent} sent, {failed} failed "
        f"(goal 0 failed: {'met' if failed == 0 else 'not met'})"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every step")
    args = parser.parse_args()
    with iris_stack("rayship-operator-bench-") as (stack, uri):
        rounds = []
        for index in range(1, args.repeat + 1):
            log(f"round {index} of {args.repeat}")
            rounds.append(one_round(stack, uri, f"iris-{index}"))
    print(f"\n### Rollout timings ({args.repeat} rounds, iris ONNX)\n")
    print(table(rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
