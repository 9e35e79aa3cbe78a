"""Control-plane scale: the operator's rollout steps with 1, 10 and many models on one cluster,
and what composing one cluster's Serve config costs with 1,000 and 10,000.

    .venv/bin/python bench/scale_bench.py                  # sizes 1, 10, 40; about 8 minutes alone
    .venv/bin/python bench/scale_bench.py --sizes 1,5      # a short development run
    .venv/bin/python bench/scale_bench.py --compose-only   # the in-process part, seconds

On a cluster (`bench/operator_bench.py`'s parts: the test control plane, moto S3, a local Ray
with Serve, the operator as a subprocess, reconciling every second as in the e2e suite), for
each size N it applies tiny iris ONNX ModelDeployments (`resources.cpu: 0`, one replica) until
N - 1 of them are Ready beside each other ("fillers", added to those of the previous size), and
then:

- the probe: operator_bench's round on one more model (apply -> Ready, first answer, cold
  switch, warm rollback and roll forward, canary on and off, under load, then its delete), and
  the Serve config writes the operator made meanwhile: how many, their mean size and the mean
  duration of the PUT (its `rayship_operator_config_write_*` histograms);
- idle, once the probe is Ready beside the fillers (N models): for `--idle-seconds`, the
  operator's CPU seconds (psutil, its process) divided by the reconciles it ran (its
  `rayship_operator_reconciles_total`): the cost of one reconcile tick of one model, whose
  every tick reads the whole cluster and composes its whole config; and the Serve config
  writes it made (none are due);
- the size of Serve's application details (`GET /api/serve/applications/`), which every
  reconcile reads.

Steps and costs are printed against N = 1 as ratios.

In process, without a cluster, it times in CPU seconds what one reconcile computes for N models
on a cluster (N = 1,000 and 10,000 by default): `rollout.plan` for one model,
`serveconfig.compose` for all (the config's size with it), the checks the writer makes before a
PUT (`ClusterView.of`, `restarting_apps`, `builds_restarted`) and, after an operator restart,
`kept_models` for all models but one. Per-model cost at 10,000 against 1,000 shows whether each
grows linearly.

The machine is shared and noisy: seconds vary between runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

# bench/ is the script's folder, so on sys.path (operator_bench); never the repo root
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from operator_bench import (
    STEPS,
    Round,
    Step,
    apply_until_ready,
    delete,
    iris_stack,
    log,
    moves_under_load,
)

from e2e.conftest import Stack
from rayship import manifest
from rayship.contract import version_app_name
from rayship.rollout import Observed, RolloutState, plan
from rayship.serveconfig import LiveVersion, ModelRouting, compose
from rayship.storage import ResolvedVersion
from rayship_operator.clusters import ClusterView, builds_restarted, kept_models, restarting_apps
from support.prometheus import scrape, total
from support.traffic import condition
from support.waiting import eventually

# Replicas that reserve no CPU, so as many as memory holds; a readiness deadline long enough for
# dozens of them starting at once on two cores (the e2e suite's 60 s is not).
TINY = {
    "resources": {"cpu": 0},
    "rollout": {"readinessDeadlineSeconds": 600, "keepPreviousSeconds": 600},
}
FILL_TIMEOUT_S = 600
RECONCILES = "rayship_operator_reconciles_total"
WRITES = "rayship_operator_config_writes_total"
WRITE_BYTES = "rayship_operator_config_write_bytes"
WRITE_SECONDS = "rayship_operator_config_write_duration_seconds"


# --- on a cluster -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Counters:
    """The operator's own figures at one moment: CPU seconds and what its metrics counted."""

    cpu_s: float
    reconciles: float
    writes: float
    write_bytes: float
    write_s: float

    def __sub__(self, other: Counters) -> Counters:
        return Counters(*(a - b for a, b in zip(self.values(), other.values(), strict=True)))

    def values(self) -> tuple[float, ...]:
        """The figures in field order."""
        return dataclasses.astuple(self)


@dataclass(frozen=True)
class Size:
    """Everything measured with `models` ModelDeployments on the cluster."""

    models: int
    fill_s: float  # applying this size's new fillers until all were Ready
    idle_s: float
    idle: Counters
    probe: Round
    writes: Counters  # during the probe's round
    details_bytes: int  # Serve's application details, as every reconcile reads them
    memory_gib: float  # memory in use on the machine


def operator_process() -> psutil.Process:
    """The operator subprocess the stack started (`python -P -m rayship_operator`)."""
    for child in psutil.Process().children(recursive=True):
        if "rayship_operator" in child.cmdline():
            return child
    raise RuntimeError("the operator process was not found among this bench's children")


def counters(stack: Stack, operator: psutil.Process) -> Counters:
    """The operator's CPU seconds (user and system, all threads) and metrics now."""
    cpu = operator.cpu_times()
    samples = scrape(stack.operator.metrics_url)
    return Counters(
        cpu.user + cpu.system,
        total(samples, RECONCILES),
        total(samples, WRITES),
        total(samples, f"{WRITE_BYTES}_sum"),
        total(samples, f"{WRITE_SECONDS}_sum"),
    )


def filler(stack: Stack, uri: str, index: int) -> dict[str, Any]:
    """The manifest of one tiny model that only has to be there."""
    return stack.model_deployment(f"filler-{index}", uri, "1", **TINY)


def all_ready(stack: Stack, names: set[str]) -> bool:
    """Whether every ModelDeployment in `names` reports Ready."""
    listed = json.loads(stack.kubectl("get", "md", "-o", "json"))["items"]
    ready = {
        item["metadata"]["name"]
        for item in listed
        if condition(item.get("status") or {}, "Ready").get("status") == "True"
    }
    return names <= ready


def fill(stack: Stack, uri: str, first: int, last: int) -> float:
    """Apply fillers `first`..`last` in one `kubectl apply` and wait until all are Ready;
    return the seconds that took (0 when there are none to add)."""
    indexes = range(first, last + 1)
    if not indexes:
        return 0.0
    started = time.monotonic()
    items = [filler(stack, uri, index) for index in indexes]
    stack.apply({"apiVersion": "v1", "kind": "List", "items": items})
    names = {f"filler-{index}" for index in indexes}
    while not all_ready(stack, names):
        if time.monotonic() - started > FILL_TIMEOUT_S:
            raise TimeoutError(f"fillers {first}..{last} not Ready in {FILL_TIMEOUT_S} s")
        time.sleep(1.0)
    seconds = time.monotonic() - started
    log(f"fillers {first}..{last} Ready after {seconds:.1f} s")
    return seconds


def details_size(stack: Stack) -> int:
    """Bytes of Serve's application details as JSON (what each reconcile reads)."""
    return len(json.dumps(stack.serve.dashboard.applications()).encode())


def metrics_served(stack: Stack) -> bool:
    """Whether the operator answers scrapes yet (it starts serving them once it runs)."""
    try:
        scrape(stack.operator.metrics_url)
    except OSError:
        return False
    return True


def measure_size(
    stack: Stack, uri: str, operator: psutil.Process, models: int, *, idle_s: float, fill_s: float
) -> Size:
    """With `models` - 1 fillers Ready: the probe applied until Ready, the idle tick cost with
    all `models` on the cluster, the probe's moves under load; then the probe is deleted."""
    probe = f"probe-{models}"
    start = counters(stack, operator)
    ready = apply_until_ready(stack, uri, probe, **TINY)
    before_idle = counters(stack, operator)
    time.sleep(idle_s)
    idle = counters(stack, operator) - before_idle
    details = details_size(stack)
    memory = psutil.virtual_memory().used / 2**30
    moved = moves_under_load(stack, probe)
    writes = counters(stack, operator) - start - idle
    delete(stack, probe)
    done = Round(ready + moved.steps, moved.sent, moved.failed)
    return Size(models, fill_s, idle_s, idle, done, writes, details, memory)


def run_sizes(sizes: list[int], idle_s: float) -> list[Size]:
    """Every size in turn on one stack, fillers growing from one size to the next."""
    measured: list[Size] = []
    with iris_stack("rayship-scale-bench-") as (stack, uri):
        operator = operator_process()
        eventually(lambda: metrics_served(stack), timeout_s=60, what="the operator's metrics")
        fillers = 0
        for models in sizes:
            log(f"size {models}: {models - 1} fillers")
            fill_s = fill(stack, uri, fillers + 1, models - 1)
            fillers = max(fillers, models - 1)
            measured.append(
                measure_size(stack, uri, operator, models, idle_s=idle_s, fill_s=fill_s)
            )
        delete(stack, *(f"filler-{index}" for index in range(1, fillers + 1)))
    return measured


def ratio(value: float, base: float) -> str:
    """`value` against `base`, or a dash when the base is zero."""
    return f"{value / base:.2f}" if base else "-"


def per(amount: float, count: float) -> float:
    """`amount` per one of `count`, zero when there were none."""
    return amount / count if count else 0.0


def cost_table(sizes: list[Size]) -> str:
    """Per size: fill time, idle tick cost, config writes and details size, against N = 1."""
    base = sizes[0]
    base_tick = per(base.idle.cpu_s, base.idle.reconciles)
    base_bytes = per(base.writes.write_bytes, base.writes.writes)
    base_put = per(base.writes.write_s, base.writes.writes)
    lines = [
        "| models | fill s | reconciles/s | CPU ms / reconcile (x N=1) | operator CPU % "
        "| idle writes | probe writes | mean write KB (x N=1) | mean PUT ms (x N=1) "
        "| details KB | memory GiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        tick = per(size.idle.cpu_s, size.idle.reconciles)
        written = per(size.writes.write_bytes, size.writes.writes)
        put = per(size.writes.write_s, size.writes.writes)
        lines.append(
            f"| {size.models} | {size.fill_s:.1f} | {size.idle.reconciles / size.idle_s:.1f} "
            f"| {tick * 1e3:.2f} ({ratio(tick, base_tick)}) "
            f"| {100 * size.idle.cpu_s / size.idle_s:.0f} | {size.idle.writes:.0f} "
            f"| {size.writes.writes:.0f} | {written / 1e3:.1f} ({ratio(written, base_bytes)}) "
            f"| {put * 1e3:.0f} ({ratio(put, base_put)}) | {size.details_bytes / 1e3:.0f} "
            f"| {size.memory_gib:.1f} |"
        )
    return "\n".join(lines)


def seconds_of(done: Round, step: Step) -> float:
    """The step's seconds in the round."""
    (measured,) = [m for m in done.steps if m.step == step]
    return measured.seconds


def steps_table(sizes: list[Size]) -> str:
    """operator_bench's steps at each size, and each against N = 1."""
    base = sizes[0]
    header = " | ".join(f"N={size.models} s (x N=1)" for size in sizes)
    lines = [f"| step | {header} |", "|---|" + "---:|" * len(sizes)]
    for step in STEPS:
        cells = [
            f"{seconds_of(size.probe, step):.2f} "
            f"({ratio(seconds_of(size.probe, step), seconds_of(base.probe, step))})"
            for size in sizes
        ]
        lines.append(f"| {step.label} | {' | '.join(cells)} |")
    load = " | ".join(f"{size.probe.failed} of {size.probe.sent}" for size in sizes)
    restarts = " | ".join(str(sum(m.restarted for m in size.probe.steps)) for size in sizes)
    lines += [f"| requests failed under load | {load} |", f"| replicas restarted | {restarts} |"]
    return "\n".join(lines)


# --- in process -------------------------------------------------------------------------------


def template() -> ModelRouting:
    """One iris model serving version 1, parsed from its manifest as the operator parses it."""
    document = {
        "apiVersion": "serving.rayship.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "bench"},
        "spec": {
            "model": {"format": "onnx", "storageUri": "s3://models/iris", "version": "1"},
            "storage": {"endpointUrl": "http://minio:9000", "secretRef": {"name": "s3"}},
            **TINY,
        },
    }
    live = (LiveVersion("1", "sha256:" + "0" * 64),)
    return ModelRouting(manifest.parse(document), live, (("1", 100),))


def routings(count: int) -> list[ModelRouting]:
    """`count` models like `template`'s, each its own name (parsing each manifest again would
    time the manifest's schema validation `count` times, not the config)."""
    one = template()
    return [
        dataclasses.replace(one, deployment=dataclasses.replace(one.deployment, name=f"m{index}"))
        for index in range(count)
    ]


def as_deployed(config: dict[str, Any]) -> dict[str, Any]:
    """Serve's application details once `config` runs, in the shape the writer reads."""
    return {
        app["name"]: {
            "status": "RUNNING",
            "deployed_app_config": app,
            "deployments": {"d": {"status": "HEALTHY", "replicas": [{"state": "RUNNING"}]}},
        }
        for app in config["applications"]
    }


def best_seconds(work: Callable[[], object], repeat: int = 3) -> float:
    """The least CPU time (this process's) of `repeat` runs of `work`: CPU time, not wall
    time, so that other work on the shared machine does not count."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return min(times)


def plan_one(model: ModelRouting) -> None:
    """One model's rollout plan on a steady tick: version 1 active and running."""
    resolved = ResolvedVersion("1", model.live[0].digest)
    state = RolloutState.from_status({"activeVersion": "1", "activeDigest": resolved.digest})
    app = as_deployed({"applications": [{"name": version_app_name(model.model_name, "1")}]})
    apps = ClusterView.of(app, None).states
    seen = Observed(datetime.now(UTC), 1, resolved, apps={"1": apps[f"{model.model_name}@1"]})
    plan(model.deployment.spec, state, seen)


@dataclass(frozen=True)
class Composed:
    """What one reconcile computes for `models` models on a cluster, in seconds each."""

    models: int
    config_bytes: int
    timings: dict[str, float]


def compose_costs(count: int) -> Composed:
    """Time each part of a reconcile's computation with `count` models on the cluster."""
    models = routings(count)
    config = compose(models)
    applications = as_deployed(config)
    view = ClusterView.of(applications, None)
    others = [model.model_name for model in models[1:]]
    timings = {
        "plan (one model)": best_seconds(lambda: plan_one(models[0])),
        "compose": best_seconds(lambda: compose(models)),
        "ClusterView.of": best_seconds(lambda: ClusterView.of(applications, None)),
        "restarting_apps + builds_restarted": best_seconds(
            lambda: (restarting_apps(applications, config), builds_restarted(applications, config))
        ),
        "kept_models (after a restart)": best_seconds(
            lambda: kept_models(applications, view.server, others)
        ),
    }
    size = len(json.dumps(config).encode())
    log(f"{count} models: config {size / 1e6:.1f} MB, compose {timings['compose']:.3f} s")
    return Composed(count, size, timings)


def compose_table(results: list[Composed]) -> str:
    """µs per model at each size, and the last size's against the first."""
    first, last = results[0], results[-1]
    header = " | ".join(f"{r.models:,} models: s (µs/model)" for r in results)
    lines = [
        f"| part of a reconcile | {header} | µs/model {last.models:,} ÷ {first.models:,} |",
        "|---|" + "---:|" * (len(results) + 1),
    ]

    def per_model(result: Composed, part: str) -> float:
        seconds = result.timings[part]
        return seconds * 1e6 if part.startswith("plan") else seconds * 1e6 / result.models

    for part in first.timings:
        cells = [f"{r.timings[part]:.4f} ({per_model(r, part):.1f})" for r in results]
        growth = per_model(last, part) / per_model(first, part)
        lines.append(f"| {part} | {' | '.join(cells)} | {growth:.2f} |")
    sizes = " | ".join(
        f"{r.config_bytes / 1e6:.2f} MB ({r.config_bytes / r.models:.0f})" for r in results
    )
    lines.append(f"| config size, bytes (per model) | {sizes} | |")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


def counts(text: str) -> list[int]:
    """A comma-separated list of sizes."""
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=counts, default=[1, 10, 40], help="models on the cluster")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle window per size")
    parser.add_argument("--compose-sizes", type=counts, default=[1000, 10000])
    parser.add_argument("--compose-only", action="store_true", help="no cluster")
    args = parser.parse_args()
    composed = [compose_costs(count) for count in args.compose_sizes]
    print("\n### Composing one cluster's config, in process\n")
    print(compose_table(composed))
    if args.compose_only:
        return 0
    sizes = run_sizes(sorted(args.sizes), args.idle_seconds)
    print(f"\n### Operator cost with N models on one cluster (idle {args.idle_seconds:g} s)\n")
    print(cost_table(sizes))
    print("\n### operator_bench's steps on one more model, against N = 1\n")
    print(steps_table(sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
