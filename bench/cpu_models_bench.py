"""CPU-bound models on Rayship, KServe and MLServer, side by side: who uses the cores best.

    .venv/bin/python bench/cpu_models_bench.py            # about 6 minutes
    .venv/bin/python bench/cpu_models_bench.py --quick    # 2 s per point instead of 5
    .venv/bin/python bench/cpu_models_bench.py --sweep    # every Rayship candidate (~20 minutes)

Two models from bench/models.py, each a synchronous ONNX Runtime call that keeps a core busy:
the small CNN (about 0.7 ms a call) and the heavy one (about 10 ms). Each server serves both on
loopback, answers one request checked against ONNX Runtime in-process, and is driven by wrk at
concurrency 8 and 32 (server_bench's `measure`): KServe 0.21 (JSON and binary) and MLServer
1.7.1 (JSON; it has no binary extension) as they ship, one worker running the model on its
event loop with ONNX Runtime's default threads (bench/peers/), and Rayship local mode (binary
bodies) in one or more configurations. Every figure is divided by KServe's best body at the
same concurrency, the baseline.

What a Rayship configuration varies, the ways a replica can use more than one core:

- replicas: `spec.replicas`, separate processes behind HAProxy;
- intra-op: `spec.model.onnx.intraOpThreads`, the threads one ONNX Runtime call spreads over
  (unset: Rayship's default; ONNX Runtime's own choice is a thread per physical core);
- pool: RAYSHIP_PREDICT_THREADS, how many calls a replica runs at once off its event loop.

The default run measures Rayship as shipped, with the previous default (intra-op threads left
to ONNX Runtime) and with two replicas of one thread each (the sweep's best on two cores);
`--sweep` measures every combination of replicas 1/2, intra-op 1/2 and pool 1/2/4 instead, to
choose the default from. The machine is shared and noisy: only ratios
within one run mean anything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import models  # bench/ is the script's folder, so on sys.path
import numpy as np
import server_bench as sb

# The concurrencies the goal is judged at (server_bench also measures 1).
CONCURRENCY = (8, 32)
KSERVE = "kserve"
# ONNX Runtime's own intra-op choice: a thread per physical core (every vCPU here).
ORT_OWN_CHOICE = os.cpu_count() or 1


@dataclass(frozen=True)
class Model:
    """A benchmark model: its folder, one input, and what ONNX Runtime answers to it."""

    name: str
    folder: Path
    image: np.ndarray
    expected: dict[str, np.ndarray]
    floor_us: float


@dataclass(frozen=True)
class Variant:
    """One Rayship configuration; None leaves a knob at Rayship's default."""

    replicas: int = 1
    intra_op: int | None = None
    pool: int | None = None

    @property
    def label(self) -> str:
        parts = [
            f"replicas {self.replicas}",
            f"intra-op {'default' if self.intra_op is None else self.intra_op}",
            f"pool {'default' if self.pool is None else self.pool}",
        ]
        return "rayship " + ", ".join(parts)


SHIPPED = Variant()
PREVIOUS_DEFAULT = Variant(intra_op=ORT_OWN_CHOICE, pool=4)
# The sweep's best on the 2-core machine: a process per core, one call each, no shared GIL.
TWO_PROCESSES = Variant(replicas=2, intra_op=1, pool=1)


def sweep() -> list[Variant]:
    """Every combination worth a look on a small node, shipped default first."""
    grid = [
        Variant(replicas, intra_op, pool)
        for replicas, intra_op, pool in product((1, 2), (1, 2), (1, 2, 4))
    ]
    return [SHIPPED, *grid]


def build_models(root: Path) -> list[Model]:
    """The CNN and the heavy model, with their in-process floors (ONNX Runtime's defaults)."""
    built = []
    rng = np.random.default_rng(0)
    for name, folder, shape in (
        ("cnn", models.build_cnn(root), models.CNN_SHAPE),
        ("heavy", models.build_heavy(root), models.HEAVY_SHAPE),
    ):
        image = rng.random((1, *shape), dtype=np.float32)
        feeds = {models.CNN_INPUT: image}
        path = folder / "1" / "model.onnx"
        floor = sb.floor_us(path, feeds, calls=100 if name == "heavy" else 300)
        sb.log(f"floor: {name} {floor / 1000:.2f} ms a call in-process")
        built.append(Model(name, folder, image, sb.reference(path, feeds), floor))
    return built


def variant_yaml(workdir: Path, model: Model, variant: Variant) -> Path:
    """server_bench's ModelDeployment, with the variant's replicas and intra-op threads."""
    path = sb.rayship_yaml(workdir, model.name, model.folder, "1")
    extra = []
    if variant.intra_op is not None:
        extra += ["    onnx:", f"      intraOpThreads: {variant.intra_op}"]
    extra.append(f"  replicas: {variant.replicas}")
    with path.open("a") as spec:
        spec.write("\n".join(extra) + "\n")
    return path


@contextmanager
def pool_environment(pool: int | None) -> Iterator[None]:
    """RAYSHIP_PREDICT_THREADS for the Ray processes `rayship serve` starts (they inherit it)."""
    saved = os.environ.pop("RAYSHIP_PREDICT_THREADS", None)
    if pool is not None:
        os.environ["RAYSHIP_PREDICT_THREADS"] = str(pool)
    try:
        yield
    finally:
        os.environ.pop("RAYSHIP_PREDICT_THREADS", None)
        if saved is not None:
            os.environ["RAYSHIP_PREDICT_THREADS"] = saved


def drive(server: str, url: str, model: Model, fmt: str, run: sb.Run) -> list[sb.Figure]:
    """Check one answer, then wrk at CONCURRENCY; figures are named `<model> <server>`."""
    body = (sb.binary_body if fmt == "binary" else sb.json_body)(models.CNN_INPUT, model.image)
    sb.check_answer(url, body, model.expected)
    return sb.measure(
        f"{model.name} {server}", url, body, run.seconds, run.workdir, concurrencies=CONCURRENCY
    )


def run_rayship(run: sb.Run, built: list[Model], variant: Variant) -> list[sb.Figure]:
    """One `rayship serve` serving every model in `variant`'s configuration, binary bodies.

    A start that fails is tried once more: with other servers starting on the same machine, a
    port Ray or HAProxy picked can be taken before it binds, and a sweep is long to restart.
    """
    yamls = [variant_yaml(run.workdir, model, variant) for model in built]
    try:
        return _serve_and_drive(run, built, variant, yamls)
    except RuntimeError as error:
        sb.log(f"{variant.label}: {error}; starting it once more")
        return _serve_and_drive(run, built, variant, yamls)


def _serve_and_drive(
    run: sb.Run, built: list[Model], variant: Variant, yamls: list[Path]
) -> list[sb.Figure]:
    figures: list[sb.Figure] = []
    with pool_environment(variant.pool), sb.rayship(run.workdir, yamls, optimized=True) as base:
        for model in built:
            url = f"{base}/v2/models/{model.name}/infer"
            figures += drive(variant.label, url, model, "binary", run)
    return figures


def run_peers(run: sb.Run, built: list[Model]) -> list[sb.Figure]:
    """KServe (JSON and binary) and MLServer (JSON), one server process per model."""
    figures: list[sb.Figure] = []
    for model in built:
        model_file = model.folder / "1" / "model.onnx"
        with sb.kserve(run.workdir, model_file, model_name=model.name) as base:
            for fmt in ("json", "binary"):
                figures += drive(KSERVE, f"{base}/v2/models/{model.name}/infer", model, fmt, run)
        with sb.mlserver(run.workdir, model_file, model_name=model.name) as base:
            figures += drive("mlserver", f"{base}/v2/models/{model.name}/infer", model, "json", run)
    return figures


def table(model: Model, figures: list[sb.Figure]) -> str:
    """Markdown for one model: each server and body at every concurrency, against KServe's
    best body at the same concurrency."""
    prefix = f"{model.name} "
    mine = [f for f in figures if f.server.startswith(prefix)]
    baseline: dict[int, float] = {}
    for figure in mine:
        if figure.server == prefix + KSERVE:
            baseline[figure.concurrency] = max(baseline.get(figure.concurrency, 0), figure.rps)
    rows: dict[tuple[str, str], list[sb.Figure]] = {}
    for figure in mine:
        rows.setdefault((figure.server.removeprefix(prefix), figure.fmt), []).append(figure)
    conc = " / ".join(map(str, CONCURRENCY))
    lines = [
        f"### {model.name} ({model.floor_us / 1000:.2f} ms a call in-process), concurrency {conc}",
        "",
        "| server | body | req/s | p50 ms | p99 ms | req/s ÷ KServe | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (server, fmt), points in rows.items():
        lines.append(
            f"| {server} | {fmt} | {_join(f'{p.rps:,.0f}' for p in points)} | "
            f"{_join(f'{p.p50_ms:.1f}' for p in points)} | "
            f"{_join(f'{p.p99_ms:.1f}' for p in points)} | "
            f"{_join(_ratio(p, baseline) for p in points)} | "
            f"{sum(p.errors for p in points)} |"
        )
    return "\n".join(lines)


def _ratio(figure: sb.Figure, baseline: dict[int, float]) -> str:
    peer = baseline.get(figure.concurrency)
    return f"{figure.rps / peer:.2f}" if peer else "-"


def _join(values: Iterator[str]) -> str:
    return " / ".join(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s per point instead of 5")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per point")
    parser.add_argument("--sweep", action="store_true", help="every Rayship candidate")
    parser.add_argument("--no-peers", action="store_true", help="Rayship only (no ratios)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sb.log("wrk is missing: apt-get install wrk")
        return 2
    run = sb.Run(
        seconds=args.seconds or (2.0 if args.quick else 5.0),
        parts=set(),
        formats=["binary"],
        workdir=Path(tempfile.mkdtemp(prefix="rayship-cpu-models-")),
    )
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the start")
    built = build_models(run.workdir / "models")
    figures = [] if args.no_peers else run_peers(run, built)
    for variant in sweep() if args.sweep else [SHIPPED, PREVIOUS_DEFAULT, TWO_PROCESSES]:
        figures += run_rayship(run, built, variant)
    for model in built:
        print("\n" + table(model, figures))
    print(
        f"\nprevious default: intra-op {ORT_OWN_CHOICE} (ONNX Runtime's own choice here), pool 4"
        f"\nload average {os.getloadavg()[0]:.1f} at the end"
    )
    shutil.rmtree(run.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
