"""CPU per request: what Rayship, KServe and MLServer spend on the CPU to serve iris.

    .venv/bin/python bench/cpu_bench.py              # three rounds, about 8 minutes
    .venv/bin/python bench/cpu_bench.py --quick --rounds 1
    .venv/bin/python bench/cpu_bench.py --only rayship,rayship-replica-metrics,kserve

Throughput with wrk alone hides a server's CPU cost: wrk is light, so a server that burns more
CPU per request still wins while it has the cores to itself. A heavier client, or any other
work on the machine, takes those cores away. So, for each server on the example iris ONNX model
(bench/models.py), JSON bodies, after one answer checked against ONNX Runtime and a warm-up:

1. idle: the server's CPU over a few seconds with no request (Ray's background cost);
2. fixed rates (200 and 500 req/s, open loop, from vegeta: `scripts/vegeta`, built on first
   use): the server's CPU-seconds per 1,000 requests, also with the idle cost taken out, and
   the generator's own CPU;
3. maximum throughput at concurrency 8 and 32 from two generators: wrk (server_bench's `wrk`,
   one thread) and vegeta (`-rate=0`, one worker per connection), which spends several times
   wrk's CPU per request; the ratio to KServe for each generator.

A server's CPU is that of its whole session: server_bench's `process` starts each server in a
session of its own, and every process it starts stays in it (Ray's GCS, raylet, dashboard and
its helpers, agents, the Serve controller, proxy, HAProxy manager, replicas and HAProxy: all of
them are the `rayship serve` process's descendants as well). Each process's user and system
time is read before and after a window; the split by part (process title) is printed too.
A generator's CPU is that of the child processes this bench waited for during the window.

`rayship-replica-metrics` (not in the default run) is local mode with
`RAY_SERVE_HAPROXY_METRICS_ENABLED=0`: Serve's HTTP ingress metrics recorded by the ingress
replica itself instead of parsed by Serve's HAProxy manager from a per-request log line. It
looked cheaper under load from other work and measured dearer on a quiet machine (the replica's
event loop is the bottleneck), so local mode keeps Serve's default; this keeps the comparison.

The servers take turns, round after round (`--rounds`); each figure is the median of the
rounds, field by field. The machine is shared and noisy: only ratios from one run mean much.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from unittest.mock import patch

import numpy as np
import psutil
from models import build_iris  # bench/models.py: the example model, built here
from server_bench import (
    IRIS_ROW,
    REPO,
    Body,
    check_answer,
    json_body,
    kserve,
    log,
    mlserver,
    rayship,
    rayship_yaml,
    reference,
    wrk,
    wrk_figure,
)

SERVERS = ("rayship", "kserve", "mlserver")  # the default; also: rayship-replica-metrics
BASELINE = "kserve"
RATES = (200, 500)
CONCURRENCY = (8, 32)
GENERATORS = ("wrk", "vegeta")
WARM_UP_S = 1.0
OPEN_LOOP_WORKERS = 200
# Ray's Python processes by the script they run: (what the command line holds, the part).
SCRIPTS = (
    ("ray/dashboard/dashboard.py", "dashboard"),
    ("ray/_private/log_monitor.py", "log monitor"),
    ("ray/autoscaler/_private/monitor.py", "autoscaler monitor"),
    ("multiprocessing", "multiprocessing helper"),
)
T = TypeVar("T")


# --- CPU of a server's session and of the generator ---------------------------------------------


def part_of(process: psutil.Process, session: int) -> str:
    """Which part of a server `process` is, from its title: Ray retitles its workers
    (`ray::ServeReplica:iris@2:ModelVersion`, `ray::ServeController.listen_for_change`)."""
    if process.pid == session:
        return "main process"
    command = process.cmdline()
    title = " ".join(command).strip() or process.name()
    if title.startswith("ray::"):
        return title.removeprefix("ray::").split()[0].split(".")[0]
    if title.startswith("ray-dashboard-"):
        return "dashboard"
    for needle, part in SCRIPTS:
        if needle in title:
            return part
    return Path(command[0]).name if command else process.name()


def session_cpu(session: int) -> dict[tuple[int, float], tuple[str, float]]:
    """CPU seconds (user + system) so far of every process in `session`, by (pid, start)."""
    found = {}
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) != session:
                continue
            with process.oneshot():
                times = process.cpu_times()
                key = (process.pid, process.create_time())
                found[key] = (part_of(process, session), times.user + times.system)
        except (psutil.Error, OSError):  # gone meanwhile, or not ours to read
            continue
    return found


def children_cpu() -> float:
    """CPU seconds of the child processes this process has waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Window:
    """What a server and the generator spent on the CPU while `action` ran."""

    seconds: float
    server: dict[str, float]  # CPU seconds by part
    generator: float


def metered(session: int, action: Callable[[], T]) -> tuple[T, Window]:
    """Run `action` (a generator run, or a sleep) and meter the CPU around it. A process that
    ends inside the window takes its CPU with it; a server's processes live throughout."""
    before, generator = session_cpu(session), children_cpu()
    start = time.monotonic()
    result = action()
    seconds = time.monotonic() - start
    generator = children_cpu() - generator
    parts: dict[str, float] = {}
    for key, (part, cpu) in session_cpu(session).items():
        parts[part] = parts.get(part, 0.0) + cpu - before.get(key, (part, 0.0))[1]
    return result, Window(seconds, parts, generator)


def server_session() -> int:
    """The session of the server just started: server_bench's `process` makes its only running
    child a session leader, so the session id is that child's pid."""
    running = [
        child for child in psutil.Process().children() if child.status() != psutil.STATUS_ZOMBIE
    ]
    if len(running) != 1:
        raise RuntimeError(f"expected one running server, found {running}")
    pid: int = running[0].pid
    return pid


# --- load ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What a generator reports of one run."""

    requests: int  # answered with 200
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Target:
    """Where a generator sends what, and the folder for its files."""

    url: str
    body: Body
    workdir: Path


def vegeta_attack(target: Target, seconds: float, rate: int = 0, workers: int = 0) -> Path:
    """One vegeta run: `rate` req/s (open loop), or with `rate` 0 as fast as `workers` can,
    each with one request in flight (closed loop, like wrk's connections). Returns the results
    file, which `vegeta_report` reads (outside the metered window: it is no load)."""
    body_file = target.workdir / "vegeta-body"
    body_file.write_bytes(target.body.data)
    targets = target.workdir / "vegeta-targets"
    content_type = target.body.content_type
    targets.write_text(f"POST {target.url}\nContent-Type: {content_type}\n@{body_file}\n")
    results = target.workdir / "vegeta-results.bin"
    # At a fixed rate vegeta adds a connection whenever all are busy; past 256 from one client
    # Rayship's ingress resets new ones (`rayship.haproxy`), so a stalled server would show
    # the limit rather than its CPU. OPEN_LOOP_WORKERS stays under it.
    pace = [f"-rate={rate}/1s", f"-max-workers={OPEN_LOOP_WORKERS}"]
    if not rate:
        pace = ["-rate=0", f"-workers={workers}", f"-max-workers={workers}"]
    command = [
        *(str(REPO / "scripts" / "vegeta"), "attack", f"-targets={targets}"),
        *(f"-duration={seconds}s", "-timeout=10s", f"-output={results}"),
        *pace,
    ]
    subprocess.run(command, check=True, capture_output=True)
    return results


def vegeta_report(results: Path) -> Load:
    """What a vegeta run's results file says."""
    report = subprocess.run(
        [str(REPO / "scripts" / "vegeta"), "report", "-type=json", str(results)],
        check=True,
        capture_output=True,
    )
    summary = json.loads(report.stdout)
    answered = int(summary["status_codes"].get("200", 0))
    if answered < summary["requests"]:
        log(f"vegeta saw errors: {summary['status_codes']} {(summary['errors'] or [])[:3]}")
    latencies = summary["latencies"]
    return Load(
        answered,
        int(summary["requests"]) - answered,
        float(summary["throughput"]),
        latencies["50th"] / 1e6,
        latencies["99th"] / 1e6,
    )


def wrk_load(target: Target, seconds: float, concurrency: int) -> Load:
    """One wrk run (server_bench's, one thread) as a Load."""
    result = wrk(target.url, target.body, concurrency, seconds, target.workdir)
    figure = wrk_figure("", target.body.fmt, concurrency, result)
    answered = int(result["requests"]) - figure.errors
    return Load(answered, figure.errors, figure.rps, figure.p50_ms, figure.p99_ms)


def run_metered(
    session: int, target: Target, generator: str, seconds: float, *, rate: int = 0, conc: int = 0
) -> tuple[Load, Window]:
    """One run of `generator`, vegeta at `rate` req/s or either one flat out with `conc`
    connections, with the server's and the generator's CPU metered over the load alone."""
    if generator == "wrk":
        return metered(session, partial(wrk_load, target, seconds, conc))
    results, window = metered(session, partial(vegeta_attack, target, seconds, rate, conc))
    return vegeta_report(results), window


# --- figures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One measured point: `kind` is idle, rate (vegeta, open loop), wrk or vegeta (closed loop);
    `load` the offered req/s or the concurrency."""

    server: str
    kind: str
    load: int
    load_figures: Load
    window: Window

    @property
    def server_cpu(self) -> float:
        return sum(self.window.server.values())

    def per_1k(self, cpu: float) -> float:
        """CPU seconds per 1,000 answered requests."""
        return cpu * 1000 / max(self.load_figures.requests, 1)


def measure_server(
    server: str, base: str, body: Body, seconds: float, workdir: Path
) -> list[Point]:
    """Idle, then the fixed rates, then each generator flat out, on the server just started."""
    session = server_session()
    target = Target(f"{base}/v2/models/iris/infer", body, workdir)
    vegeta_attack(target, WARM_UP_S, workers=CONCURRENCY[0])  # connections, caches, imports
    _, window = metered(session, partial(time.sleep, seconds))
    points = [Point(server, "idle", 0, Load(0, 0, 0.0, 0.0, 0.0), window)]
    for rate in RATES:
        load, window = run_metered(session, target, "vegeta", seconds, rate=rate)
        points.append(Point(server, "rate", rate, load, window))
    for generator in GENERATORS:
        run_metered(session, target, generator, WARM_UP_S, conc=CONCURRENCY[0])
        for concurrency in CONCURRENCY:
            load, window = run_metered(session, target, generator, seconds, conc=concurrency)
            points.append(Point(server, generator, concurrency, load, window))
    for point in points:
        log(describe(point))
    return points


def describe(point: Point) -> str:
    figures = point.load_figures
    return (
        f"{point.server:<9} {point.kind:<6} {point.load:>4}: {figures.rps:7.0f} req/s "
        f"p50 {figures.p50_ms:6.2f} ms, server {point.server_cpu / point.window.seconds:4.2f} "
        f"cores, {point.per_1k(point.server_cpu):6.3f} CPU-s/1k, generator "
        f"{point.per_1k(point.window.generator):6.3f} CPU-s/1k, errors {figures.errors}"
    )


StartServer = Callable[[Path, Path, Path], AbstractContextManager[str]]


@contextmanager
def local_mode(workdir: Path, iris_dir: Path, environment: dict[str, str]) -> Iterator[str]:
    """`rayship serve` on iris (server_bench's `rayship`), with `environment` on top of ours."""
    yaml_file = rayship_yaml(workdir, "iris", iris_dir, "2")
    with patch.dict(os.environ, environment), rayship(workdir, [yaml_file], optimized=True) as base:
        yield base


def starters() -> dict[str, StartServer]:
    """How each server is started in a round's folder, given the model folder and file."""
    return {
        "rayship": lambda workdir, iris_dir, _: local_mode(workdir, iris_dir, {}),
        # Serve's HTTP ingress metrics recorded in the replica rather than by HAProxy's
        # manager (see the module docstring).
        "rayship-replica-metrics": lambda workdir, iris_dir, _: local_mode(
            workdir, iris_dir, {"RAY_SERVE_HAPROXY_METRICS_ENABLED": "0"}
        ),
        "kserve": lambda workdir, _, model_file: kserve(workdir, model_file),
        "mlserver": lambda workdir, _, model_file: mlserver(workdir, model_file),
    }


def one_round(workdir: Path, seconds: float, servers: list[str]) -> list[Point]:
    """Every server started, checked, measured and stopped, one after another."""
    iris_dir = build_iris(workdir / "models")
    model_file = iris_dir / "2" / "model.onnx"
    rows = np.array([IRIS_ROW], dtype=np.float32)
    expected = reference(model_file, {"input": rows})
    body = json_body("input", rows)
    points: list[Point] = []
    for server in servers:
        with starters()[server](workdir, iris_dir, model_file) as base:
            check_answer(f"{base}/v2/models/iris/infer", body, expected)
            points += measure_server(server, base, body, seconds, workdir)
    return points


def median_of(values: list[Any]) -> Any:
    """The median of numbers, or of dataclasses and dicts of numbers field by field."""
    first = values[0]
    if isinstance(first, dict):
        keys = {key for value in values for key in value}
        return {key: statistics.median(value.get(key, 0.0) for value in values) for key in keys}
    if hasattr(first, "__dataclass_fields__"):
        changes = {
            f.name: median_of([getattr(value, f.name) for value in values])
            for f in fields(first)
            if not isinstance(getattr(first, f.name), str)
        }
        return replace(first, **changes)
    return statistics.median(values)


def medians(rounds: list[list[Point]]) -> list[Point]:
    """Each point's median over the rounds, field by field (each rate, part and latency)."""
    return [median_of(list(same)) for same in zip(*rounds, strict=True)]


# --- report -------------------------------------------------------------------------------------


def ratio(value: float, baseline: float | None) -> str:
    return f"{value / baseline:.2f}" if baseline else "-"


def idle_cores(points: list[Point], server: str) -> float:
    (idle,) = [p for p in points if p.server == server and p.kind == "idle"]
    return idle.server_cpu / idle.window.seconds


def above_idle(point: Point, points: list[Point]) -> float:
    """The server's CPU over a window less what it spends idle in as long."""
    return point.server_cpu - idle_cores(points, point.server) * point.window.seconds


def rate_table(points: list[Point]) -> str:
    """Markdown: CPU per 1,000 requests at each fixed rate, with ratios to the baseline's."""
    rated = [p for p in points if p.kind == "rate"]
    baseline = {p.load: p for p in rated if p.server == BASELINE}
    lines = [
        "| server | offered req/s | served | p50 ms | p99 ms | idle cores | "
        "server CPU-s / 1k req | ÷ KServe | above idle | ÷ KServe | vegeta CPU-s / 1k |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for point in rated:
        peer = baseline.get(point.load)
        total, extra = point.per_1k(point.server_cpu), point.per_1k(above_idle(point, points))
        lines.append(
            f"| {point.server} | {point.load} | {point.load_figures.rps:,.0f} | "
            f"{point.load_figures.p50_ms:.2f} | {point.load_figures.p99_ms:.2f} | "
            f"{idle_cores(points, point.server):.3f} | {total:.3f} | "
            f"{ratio(total, peer.per_1k(peer.server_cpu) if peer else None)} | {extra:.3f} | "
            f"{ratio(extra, peer.per_1k(above_idle(peer, points)) if peer else None)} | "
            f"{point.per_1k(point.window.generator):.3f} |"
        )
    return "\n".join(lines)


def throughput_table(points: list[Point]) -> str:
    """Markdown: each generator flat out, with the ratio to the baseline's throughput."""
    flat = [p for p in points if p.kind in GENERATORS]
    baseline = {(p.kind, p.load): p for p in flat if p.server == BASELINE}
    lines = [
        "| server | generator | conc. | req/s | p50 ms | p99 ms | req/s ÷ KServe | "
        "server cores | server CPU-s / 1k | generator CPU-s / 1k | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for point in sorted(flat, key=lambda p: (p.kind, p.server != BASELINE, p.server, p.load)):
        peer = baseline.get((point.kind, point.load))
        figures = point.load_figures
        lines.append(
            f"| {point.server} | {point.kind} | {point.load} | {figures.rps:,.0f} | "
            f"{figures.p50_ms:.2f} | {figures.p99_ms:.2f} | "
            f"{ratio(figures.rps, peer.load_figures.rps if peer else None)} | "
            f"{point.server_cpu / point.window.seconds:.2f} | "
            f"{point.per_1k(point.server_cpu):.3f} | {point.per_1k(point.window.generator):.3f} | "
            f"{figures.errors} |"
        )
    return "\n".join(lines)


def split_table(points: list[Point], server: str) -> str:
    """Markdown: where a server's CPU goes, by part: idle in CPU-ms per second, under load in
    CPU-s per 1,000 requests."""
    mine = [p for p in points if p.server == server and p.kind in ("idle", "rate", "vegeta")]
    columns = [p for p in mine if p.kind != "vegeta" or p.load == max(CONCURRENCY)]
    parts = sorted(
        {part for p in columns for part in p.window.server},
        key=lambda part: -sum(p.window.server.get(part, 0.0) for p in columns),
    )
    heads = [
        "idle CPU-ms/s" if p.kind == "idle" else f"{p.kind} {p.load}: CPU-s/1k" for p in columns
    ]
    lines = [f"| {server} part | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for part in [*parts, "total"]:
        cells = []
        for p in columns:
            cpu = p.server_cpu if part == "total" else p.window.server.get(part, 0.0)
            idle = p.kind == "idle"
            cells.append(f"{cpu * 1000 / p.window.seconds:.1f}" if idle else f"{p.per_1k(cpu):.3f}")
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(points: list[Point]) -> str:
    """The issue's goals: CPU per request no more than KServe's at each rate, and at least
    1.5x KServe's throughput at concurrency 8 and 32 whichever generator drives it."""
    by_key = {(p.server, p.kind, p.load): p for p in points}
    lines = []
    for rate in RATES:
        ours, theirs = by_key[("rayship", "rate", rate)], by_key[(BASELINE, "rate", rate)]
        share = ours.per_1k(ours.server_cpu) / theirs.per_1k(theirs.server_cpu)
        verdict = "met" if share <= 1 else "not met"
        lines.append(f"CPU per request at {rate} req/s: {share:.2f}x KServe's ({verdict})")
    for generator in GENERATORS:
        for concurrency in CONCURRENCY:
            lead = (
                by_key[("rayship", generator, concurrency)].load_figures.rps
                / by_key[(BASELINE, generator, concurrency)].load_figures.rps
            )
            verdict = "met" if lead >= 1.5 else "not met"
            lines.append(
                f"throughput with {generator} at c={concurrency}: {lead:.2f}x KServe's "
                f"({verdict}; goal 1.5x)"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s per point instead of 4")
    parser.add_argument("--seconds", type=float, help="seconds per point")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, reported by median")
    parser.add_argument("--only", default=",".join(SERVERS), help="comma-separated servers")
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 4.0)
    servers = args.only.split(",")
    rounds = []
    for number in range(args.rounds):
        log(f"round {number + 1} of {args.rounds}")
        with tempfile.TemporaryDirectory(prefix="rayship-cpu-bench-") as folder:
            rounds.append(one_round(Path(folder), seconds, servers))
    points = medians(rounds)
    print(f"\n### CPU at fixed request rates (vegeta, {seconds:.0f} s per point)\n")
    print(rate_table(points))
    print("\n### Throughput flat out, two generators\n")
    print(throughput_table(points))
    for server in servers:
        print(f"\n### Where {server}'s CPU goes\n")
        print(split_table(points, server))
    if "rayship" in servers and BASELINE in servers:
        print("\n" + goals(points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
