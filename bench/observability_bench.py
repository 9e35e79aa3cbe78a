"""What metrics and prediction logging cost in throughput, on the iris model in local mode.

    .venv/bin/python bench/observability_bench.py              # 5 rounds of 4 s per point
    .venv/bin/python bench/observability_bench.py --rounds 9 --seconds 5

It serves the example iris ONNX model with four `rayship serve` processes, all running at once:

1. metrics off (`RAYSHIP_METRICS=0`), no prediction log: the baseline;
2. metrics on (the default), no prediction log;
3. metrics on, and every request and response logged (`spec.logging`, sample rate 1.0) as
   CloudEvents to a receiver on loopback (bench/event_sink.py, a process of its own);
4. metrics on, and every prediction logged as JSON Lines to S3 (moto's server on loopback).

This machine is shared and its speed drifts by tens of percent within minutes, more than the
differences measured here, so the setups are not measured one after the other: all four run
side by side (each idle while another is driven), and each round drives every one of them
once, in a new random order, with wrk (bench/server_bench.py's driver; `apt-get install wrk`)
at concurrency 8 and the same V2 JSON body; then, in another random order, with vegeta at a
fixed 400 req/s while the server's own processes are metered (bench/cpu_bench.py): its
CPU-seconds per 1,000 requests above its idle CPU, which leaves the receivers out. It prints
each setup's medians over the rounds (req/s, p50, p99, CPU per request) and its ratios to the
baseline (the goal: metrics and logging cost under 5%), and for the logged setups how many
records were delivered and how many dropped (read from the server's own
`ray_rayship_prediction_log_dropped_total`). The receivers share the machine's two cores with
the servers, as a sidecar collector would on a small node.

Last, the steadiest figure: each sink's own CPU per logged prediction, full batches of the
same request and its answer sent from this process to the same receivers, against the
server's CPU per request with metrics on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from cpu_bench import Target, metered, run_metered  # bench/cpu_bench.py: CPU of a session
from models import build_iris  # bench/models.py: the example model, built here
from server_bench import (
    BENCH,
    IRIS_ROW,
    REPO,
    check_answer,
    free_port,
    json_body,
    log,
    process,
    reference,
    wait_ready,
    wrk,
)

sys.path.insert(0, str(REPO / "tests"))  # the tests' moto server; never the repo root

from rayship.spec import StorageSpec
from rayship_predictors.prediction_log_events import CloudEventsSink
from rayship_predictors.prediction_log_records import PredictionRecord, Sink
from rayship_predictors.prediction_log_s3 import open_json_lines_sink
from support.prometheus import scrape, total
from support.s3 import start_s3_server

CONCURRENCY = 8
FIXED_RATE = 400
"""Requests a second for the CPU figure: well under what any setup answers flat out."""
GOAL_RATIO = 0.95
MOTO_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass
class Setup:
    """One way of serving iris, and what it measured."""

    name: str
    env: dict[str, str]
    spec: dict[str, Any]
    url: str = ""
    metrics_url: str = ""
    session: int = 0
    runs: list[dict[str, float]] = field(default_factory=list)
    cpu_per_1k: list[float] = field(default_factory=list)

    @property
    def logged(self) -> bool:
        return "logging" in self.spec


@contextmanager
def event_sink(workdir: Path) -> Iterator[str]:
    """bench/event_sink.py on a free port; yields its base URL."""
    port = free_port()
    command = [sys.executable, str(BENCH / "event_sink.py"), str(port)]
    with process("event-sink", command, dict(os.environ), workdir) as child:
        wait_ready(f"http://127.0.0.1:{port}/count", child)
        yield f"http://127.0.0.1:{port}"


@contextmanager
def served(workdir: Path, iris_dir: Path, setup: Setup) -> Iterator[None]:
    """`rayship serve` for one setup, with its metrics on a known port; fills in its URLs."""
    document = {
        "apiVersion": "serving.rayship.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris"},
        "spec": {
            "model": {"format": "onnx", "storageUri": iris_dir.as_uri(), "version": "2"},
            **setup.spec,
        },
    }
    slug = setup.name.replace(" ", "-").replace(".", "")
    model_yaml = workdir / f"{slug}.yaml"
    model_yaml.write_text(yaml.safe_dump(document))
    port, metrics_port = free_port(), free_port()
    command = [
        str(REPO / ".venv/bin/rayship"), "serve", str(model_yaml),
        "--port", str(port), "--grpc-port", "0", "--metrics-port", str(metrics_port),
    ]  # fmt: skip
    with process(slug, command, dict(os.environ, **setup.env), workdir) as child:
        wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", child)
        setup.session = child.pid  # `process` makes it a session leader
        setup.url = f"http://127.0.0.1:{port}/v2/models/iris/infer"
        setup.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        yield


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="rayship-observability-bench-"))
    iris_dir = build_iris(workdir / "models")
    rows = np.array([IRIS_ROW], dtype=np.float32)
    body = json_body("input", rows)
    expected = reference(iris_dir / "2" / "model.onnx", {"input": rows})

    os.environ.update(MOTO_ENV)  # the moto server and the S3 setup's replicas read them
    s3 = start_s3_server(workdir)
    try:
        bucket = s3.new_bucket("predictions")
        with ExitStack() as stack:
            sink = stack.enter_context(event_sink(workdir))
            s3_storage = {"endpointUrl": s3.endpoint_url, "region": "us-east-1"}
            setups = [
                Setup("metrics off", {"RAYSHIP_METRICS": "0"}, {}),
                Setup("metrics on", {}, {}),
                Setup("+ CloudEvents log 1.0", {}, {"logging": {"url": f"{sink}/events"}}),
                Setup(
                    "+ S3 JSON Lines log 1.0",
                    {},
                    {"storage": s3_storage, "logging": {"storageUri": f"s3://{bucket}/log/"}},
                ),
            ]
            for setup in setups:
                stack.enter_context(served(workdir, iris_dir, setup))
                check_answer(setup.url, body, expected)
                wrk(setup.url, body, CONCURRENCY, 2.0, workdir)  # warm-up
            for number in range(args.rounds):
                for setup in random.sample(setups, len(setups)):
                    run = wrk(setup.url, body, CONCURRENCY, args.seconds, workdir)
                    setup.runs.append(run)
                    rps = run["requests"] / (run["duration_us"] / 1e6)
                    log(f"round {number + 1}: {setup.name:<24} {rps:8.0f} req/s")
                for setup in random.sample(setups, len(setups)):
                    cpu = request_cpu(setup, Target(setup.url, body, workdir), args.seconds)
                    setup.cpu_per_1k.append(cpu)
                    log(f"round {number + 1}: {setup.name:<24} {cpu:8.3f} CPU-s/1k requests")
            with urllib.request.urlopen(f"{sink}/count", timeout=10) as answer:
                events = json.loads(answer.read())
            answer_body = answer_of(setups[1].url, body.data)
            sinks = {
                "CloudEvents": CloudEventsSink(f"{sink}/events", "all", "default"),
                "S3 JSON Lines": open_json_lines_sink(
                    f"s3://{bucket}/sink-cpu/", "all", StorageSpec(s3.endpoint_url, "us-east-1")
                ),
            }
            sink_us = {
                name: sink_cpu_us(one, body.data, answer_body) for name, one in sinks.items()
            }
            print(report(setups, events, s3.client, bucket))
            print(sink_report(sink_us, statistics.median(setups[1].cpu_per_1k)))
    finally:
        s3.stop()
    return 0


def request_cpu(setup: Setup, target: Target, seconds: float) -> float:
    """The server's CPU-seconds per 1,000 requests at FIXED_RATE, less what it spends idle
    over as long (Ray's own background work, the same with or without logging): what the
    requests cost, which is what bounds its throughput."""
    _, idle = metered(setup.session, partial(time.sleep, seconds))
    load, window = run_metered(setup.session, target, "vegeta", seconds, rate=FIXED_RATE)
    idle_cores = sum(idle.server.values()) / idle.seconds
    busy = sum(window.server.values()) - idle_cores * window.seconds
    return busy * 1000 / max(load.requests, 1)


def sink_cpu_us(sink: Sink, body: bytes, answer: bytes, batches: int = 100) -> float:
    """The CPU one logged prediction costs a replica in its sink, in microseconds: full
    batches of a V2 JSON iris request and answer sent from this process (the receiver and
    moto run in processes of their own). Steadier than any throughput on this machine."""

    def record(number: int) -> PredictionRecord:
        arrived = datetime.now(UTC)
        return PredictionRecord("iris", "2", f"r{number}", arrived, 0.001, 200, body, None,
                                answer, None)  # fmt: skip

    async def send_all() -> float:
        batch = [record(number) for number in range(sink.batch_size)]
        await sink.send(batch)  # connections, imports, the bucket's first object
        started = time.process_time()
        for _ in range(batches):
            delivery = await sink.send(batch)
            if delivery.retry or delivery.refused:
                raise RuntimeError(f"the sink did not take a batch: {delivery.problem}")
        return (time.process_time() - started) * 1e6 / (batches * len(batch))

    return asyncio.run(send_all())


def answer_of(url: str, body: bytes) -> bytes:
    """What the server answers `body` with: the response a logged record carries."""
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: bytes = response.read()
    return answer


def sink_report(sink_us: dict[str, float], request_cpu_per_1k: float) -> str:
    """Each sink's CPU per logged prediction against a request's CPU with metrics on."""
    request_us = request_cpu_per_1k * 1000
    lines = [
        "",
        f"the sinks' own CPU per logged prediction (in this process), against {request_us:,.0f} "
        "us of server CPU per request with metrics on:",
    ]
    for name, micros in sink_us.items():
        share = micros / request_us
        met = "met" if share < 1 - GOAL_RATIO else "missed"
        lines.append(f"- {name}: {micros:.1f} us, {share:.1%} ({met})")
    return "\n".join(lines)


def verdict(setup: Setup, setups: list[Setup], ratio: float) -> str:
    """Whether a setup's ratio meets the goal; the baseline has none."""
    if setup is setups[0]:
        return ""
    return " (met)" if ratio >= GOAL_RATIO else " (missed)"


def report(setups: list[Setup], events: dict[str, int], s3: Any, bucket: str) -> str:
    """Medians per setup with the ratio to the baseline, then what the logs delivered."""

    def rps(run: dict[str, float]) -> float:
        return run["requests"] / (run["duration_us"] / 1e6)

    base = statistics.median(rps(run) for run in setups[0].runs)
    base_cpu = statistics.median(setups[0].cpu_per_1k)
    lines = [
        f"iris, V2 JSON, medians of {len(setups[0].runs)} rounds: wrk at concurrency "
        f"{CONCURRENCY} (receivers on the same cores), and the server's own CPU per 1,000 "
        f"requests at {FIXED_RATE} req/s above its idle CPU (vegeta; receivers not counted)",
        "",
        "| setup | req/s | p50 ms | p99 ms | throughput vs metrics off "
        "| server CPU-s / 1k req | throughput its CPU allows vs metrics off |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for setup in setups:
        ratio = statistics.median(rps(run) for run in setup.runs) / base
        cpu = statistics.median(setup.cpu_per_1k)
        lines.append(
            f"| {setup.name} | {statistics.median(rps(run) for run in setup.runs):,.0f} "
            f"| {statistics.median(run['p50_us'] for run in setup.runs) / 1000:.2f} "
            f"| {statistics.median(run['p99_us'] for run in setup.runs) / 1000:.2f} "
            f"| {ratio:.3f}{verdict(setup, setups, ratio)} "
            f"| {cpu:.3f} | {base_cpu / cpu:.3f}{verdict(setup, setups, base_cpu / cpu)} |"
        )
    lines.append("")
    for setup in setups:
        if not setup.logged:
            continue
        samples = scrape(setup.metrics_url)
        answered = total(samples, "ray_rayship_inference_requests_total", model="iris")
        dropped = total(samples, "ray_rayship_prediction_log_dropped_total", model="iris")
        if "url" in setup.spec["logging"]:
            delivered = f"{events}"
        else:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="log/")
            delivered = f"{sum(page.get('KeyCount', 0) for page in pages)} JSON Lines objects"
        lines.append(
            f"{setup.name}: {answered:,.0f} requests answered, {dropped:,.0f} records dropped "
            f"({dropped / max(answered, 1):.1%}); delivered: {delivered}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
