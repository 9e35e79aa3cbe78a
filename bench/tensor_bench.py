"""Big tensors over V2 REST: Rayship against KServe's and MLServer's model servers.

    .venv/bin/python bench/tensor_bench.py            # about 5 minutes
    .venv/bin/python bench/tensor_bench.py --quick    # 2 s per point instead of 5
    .venv/bin/python bench/tensor_bench.py --only rayship,kserve --sizes 1MB,10MB

A request of a large image batch and a small answer: the model (built here, `mean_model`)
takes FP32 images [N,3,H,W] and returns each image's per-channel mean [N,3], well under a
millisecond of compute per megabyte, so what is measured is moving the request body through
each server. Three batches are sent (`SIZES`): about 100 KB, 1 MB and 10 MB of tensor data, as
the binary tensor extension and, for the two smaller ones, as JSON (about five times the bytes
on the wire; MLServer's only REST format).

Each server (`rayship serve` in local mode as shipped, with HAProxy; KServe 0.21; MLServer
1.7.1; started by bench/server_bench.py's helpers) answers one request of each body, checked
against ONNX Runtime in-process, then is driven by wrk at concurrency 1 and 8. Rayship is also
driven straight at its replica's own port (`rayship-replica`), HAProxy left out, which says
what the ingress costs. Where one request takes so long that a point would see fewer than four
requests, or the requests in flight would pass wrk's 10 s timeout, three requests are timed one
after another instead at concurrency 1 (driver `seq`), and higher concurrencies are skipped.
It prints, per body and concurrency, req/s, tensor MB/s (tensor bytes, not wire bytes, so JSON
and binary compare), p50, p99 and the ratio of MB/s to KServe's; and the in-process floor: the
same decode, ONNX Runtime call and encode without HTTP.

The machine is shared and noisy: only ratios measured in the same run mean anything.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper
from server_bench import (
    Body,
    binary_body,
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

from rayship_predictors.http import join_aligned
from rayship_predictors.v2 import codec

MODEL = "images"
INPUT = "images"
OUTPUT = "means"
# Image batches of about 100 KB, 1 MB and 10 MB of FP32 tensor data.
SIZES: dict[str, tuple[int, int, int, int]] = {
    "100KB": (8, 3, 32, 32),
    "1MB": (5, 3, 128, 128),
    "10MB": (50, 3, 128, 128),
}
SIZES_BYTES = {name: int(np.prod(shape)) * 4 for name, shape in SIZES.items()}
JSON_SIZES = ("100KB", "1MB")
CONCURRENCY = (1, 8)
SERVERS = ("rayship", "rayship-replica", "kserve", "mlserver")
BASELINE = "kserve"
# What each server reads over REST: MLServer has no binary tensor extension.
FORMATS = {"mlserver": ("json",)}
WRK_TIMEOUT_S = 10.0  # server_bench.wrk's --timeout
MIN_REQUESTS = 4  # fewer per wrk point, and requests are timed one after another instead
REPLICA_WAIT_S = 60
CHUNK_BYTES = 1 << 16


def mean_model(root: Path) -> Path:
    """`root/images/1/model.onnx`, images [N,3,H,W] -> per-channel means [N,3]; returns the
    model folder. H and W are free, so one model takes every batch in `SIZES`."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", [INPUT], [OUTPUT], axes=[2, 3], keepdims=0)],
        "channel_means",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["n", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder = root / MODEL / "1"
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    return root / MODEL


@dataclass(frozen=True)
class Case:
    """One request body: a batch of `size` sent as `body.fmt`."""

    size: str
    body: Body
    tensor_bytes: int
    expected: dict[str, np.ndarray]


def cases(model_file: Path, sizes: list[str], formats: list[str]) -> list[Case]:
    """Every (size, format) body to send, with the answer ONNX Runtime gives in-process."""
    rng = np.random.default_rng(0)
    made = []
    for size in sizes:
        images = rng.random(SIZES[size], dtype=np.float32)
        expected = reference(model_file, {INPUT: images})
        if "binary" in formats:
            made.append(Case(size, binary_body(INPUT, images), images.nbytes, expected))
        if "json" in formats and size in JSON_SIZES:
            made.append(Case(size, json_body(INPUT, images), images.nbytes, expected))
    return made


@dataclass(frozen=True)
class Point:
    """One server, body and concurrency; `rps` is None where the point was skipped."""

    server: str
    size: str
    fmt: str
    concurrency: int
    wire_bytes: int
    tensor_bytes: int
    rps: float | None = None
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    driver: str = "wrk"

    @property
    def mb_s(self) -> float | None:
        """Tensor megabytes (10**6 bytes) per second."""
        return None if self.rps is None else self.rps * self.tensor_bytes / 1e6


# --- the floor: the same work in-process -------------------------------------------------------


def floor_ms(model_file: Path, case: Case, calls: int = 20) -> float:
    """Median ms of what Rayship's replica does per request besides HTTP: join the body from
    the chunks the HTTP server hands over (uvicorn's are at most about 64 KB), decode it, call
    ONNX Runtime, encode the answer."""
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    data = case.body.data
    chunks = [data[start : start + CHUNK_BYTES] for start in range(0, len(data), CHUNK_BYTES)]

    def once() -> None:
        body, header_length = join_aligned(chunks, case.body.header_length)
        request = codec.decode_request(body, header_length)
        outputs = dict(zip([OUTPUT], session.run([OUTPUT], request.inputs), strict=True))
        codec.encode_response(MODEL, "1", None, outputs, None, request.binary_output)

    return _median_ms(once, calls)


def _median_ms(work: Callable[[], None], calls: int) -> float:
    work()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


# --- load --------------------------------------------------------------------------------------


def drive(server: str, url: str, todo: list[Case], seconds: float, workdir: Path) -> list[Point]:
    """Check one answer per body and time one more, then wrk at each concurrency (after a
    one-second warm-up). A server so slow that a point would see few requests, or that the
    requests in flight would pass wrk's timeout, is timed request by request instead at
    concurrency 1, and skipped at higher ones."""
    points = []
    for case in todo:
        check_answer(url, case.body, case.expected)
        one_s = _timed_s(url, case)
        wrk(url, case.body, 1, 1.0, workdir)
        for concurrency in CONCURRENCY:
            point = Point(
                server,
                case.size,
                case.body.fmt,
                concurrency,
                len(case.body.data),
                case.tensor_bytes,
            )
            if one_s <= seconds / MIN_REQUESTS and one_s * concurrency <= WRK_TIMEOUT_S / 2:
                point = _measured(point, wrk(url, case.body, concurrency, seconds, workdir))
            elif concurrency == 1:
                point = _one_by_one(point, [one_s, *(_timed_s(url, case) for _ in range(2))])
            else:
                log(
                    f"{server} {case.size} {case.body.fmt} c={concurrency}: skipped ({one_s:.1f} s)"
                )
            points.append(point)
    return points


def _timed_s(url: str, case: Case) -> float:
    """Seconds one checked request takes."""
    started = time.perf_counter()
    check_answer(url, case.body, case.expected)
    return time.perf_counter() - started


def _one_by_one(point: Point, seconds: list[float]) -> Point:
    """Figures of requests sent one after another (median time; its inverse as req/s)."""
    median = statistics.median(seconds)
    return _logged(
        Point(
            **{
                **asdict(point),
                "rps": 1 / median,
                "p50_ms": median * 1000,
                "p99_ms": max(seconds) * 1000,
                "driver": "seq",
            }
        )
    )


def _measured(point: Point, result: dict[str, float]) -> Point:
    """`point` with wrk's figures."""
    figure = wrk_figure(point.server, point.fmt, point.concurrency, result)
    measured = Point(
        **{
            **asdict(point),
            "rps": figure.rps,
            "p50_ms": figure.p50_ms,
            "p99_ms": figure.p99_ms,
            "errors": figure.errors,
        }
    )
    return _logged(measured)


def _logged(point: Point) -> Point:
    log(
        f"{point.server:<16} {point.size:>5} {point.fmt:<6} c={point.concurrency:<2} "
        f"{point.rps:7.1f} req/s {point.mb_s:7.1f} MB/s  p50 {point.p50_ms:8.2f} ms  "
        f"errors {point.errors}"
    )
    return point


# --- Rayship's replica, HAProxy left out ------------------------------------------------------


def replica_url(base: str, app: str) -> str:
    """The direct-ingress address of `app`'s replica behind `rayship serve` at `base`, read
    from the HAProxy config whose HTTP frontend listens on `base`'s port (local mode keeps it
    in a folder of its own under the temporary directory)."""
    bind = f"bind {base.removeprefix('http://')}"
    deadline = time.monotonic() + REPLICA_WAIT_S
    while time.monotonic() < deadline:
        for config in Path(tempfile.gettempdir()).glob("rayship-haproxy-*/*/haproxy.cfg"):
            with suppress(OSError):
                text = config.read_text()
                if any(line.strip() == bind for line in text.splitlines()):
                    address = _backend_server(text, app)
                    if address:
                        return f"http://{address}"
        time.sleep(0.5)
    raise RuntimeError(f"no HAProxy backend server for {app} behind {base}")


def _backend_server(config: str, app: str) -> str | None:
    """host:port of the replica in the HTTP backend of `app` (Serve names it http-<app>)."""
    backend = f"backend http-{app.replace('@', '_')}"
    inside = False
    for line in config.splitlines():
        if line and not line[0].isspace():
            inside = line.strip() == backend
        elif inside and (match := re.match(r"\s+server SERVE_REPLICA\S* (\S+:\d+) ", line)):
            return match.group(1)
    return None


# --- servers ----------------------------------------------------------------------------------


@dataclass
class Run:
    """What one invocation measures, and where."""

    seconds: float
    servers: list[str]
    cases: list[Case]
    workdir: Path


def run_servers(run: Run, model_dir: Path) -> list[Point]:
    """Every server asked for, one at a time, each stopped before the next starts."""
    model_file = model_dir / "1" / "model.onnx"
    infer = f"/v2/models/{MODEL}/infer"
    points: list[Point] = []

    def drive_all(server: str, url: str) -> None:
        formats = FORMATS.get(server, ("binary", "json"))
        todo = [case for case in run.cases if case.body.fmt in formats]
        points.extend(drive(server, url, todo, run.seconds, run.workdir))

    if {"rayship", "rayship-replica"} & set(run.servers):
        yaml = rayship_yaml(run.workdir, MODEL, model_dir, "1")
        with rayship(run.workdir, [yaml], optimized=True) as base:
            if "rayship" in run.servers:
                drive_all("rayship", base + infer)
            if "rayship-replica" in run.servers:
                drive_all("rayship-replica", replica_url(base, f"{MODEL}@1") + infer)
    if "kserve" in run.servers:
        with kserve(run.workdir, model_file, model_name=MODEL) as base:
            drive_all("kserve", base + infer)
    if "mlserver" in run.servers:
        with mlserver(run.workdir, model_file, model_name=MODEL) as base:
            drive_all("mlserver", base + infer)
    return points


# --- report -----------------------------------------------------------------------------------


def table(points: list[Point], floors: dict[tuple[str, str], float]) -> str:
    """Markdown: a row per server, body and concurrency, MB/s against KServe's."""
    baseline = {
        (p.size, p.fmt, p.concurrency): p.mb_s for p in points if p.server == BASELINE and p.mb_s
    }
    lines = [
        "| body | server | conc. | driver | req/s | tensor MB/s | p50 ms | p99 ms "
        "| MB/s ÷ KServe | errors |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    order = {name: index for index, name in enumerate(SERVERS)}
    for point in sorted(
        points,
        key=lambda p: (list(SIZES).index(p.size), p.fmt, order[p.server], p.concurrency),
    ):
        body = f"{point.size} {point.fmt} ({point.wire_bytes / 1e6:.2f} MB)"
        if point.mb_s is None:
            lines.append(f"| {body} | {point.server} | {point.concurrency} | skipped |||||||")
            continue
        peer = baseline.get((point.size, point.fmt, point.concurrency))
        ratio = f"{point.mb_s / peer:.2f}" if peer else "-"
        lines.append(
            f"| {body} | {point.server} | {point.concurrency} | {point.driver} | "
            f"{point.rps:,.1f} | {point.mb_s:,.1f} | {point.p50_ms:.2f} | {point.p99_ms:.2f} | "
            f"{ratio} | {point.errors} |"
        )
    lines += ["", "In-process floor (join, decode, ONNX Runtime, encode; no HTTP):", ""]
    lines += [
        f"- {size} {fmt}: {ms:.2f} ms = {SIZES_BYTES[size] / ms / 1000:,.0f} MB/s"
        for (size, fmt), ms in floors.items()
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s per point instead of 5")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per point")
    parser.add_argument("--only", default=",".join(SERVERS), help="comma-separated servers")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated sizes")
    parser.add_argument("--formats", default="binary,json")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        log("wrk is missing: apt-get install wrk")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="rayship-tensor-bench-"))
    model_dir = mean_model(workdir / "models")
    model_file = model_dir / "1" / "model.onnx"
    run = Run(
        seconds=args.seconds or (2.0 if args.quick else 5.0),
        servers=args.only.split(","),
        cases=cases(model_file, args.sizes.split(","), args.formats.split(",")),
        workdir=workdir,
    )
    floors = {(case.size, case.body.fmt): floor_ms(model_file, case) for case in run.cases}
    points = run_servers(run, model_dir)
    print(f"\n### Big tensors, V2 REST ({run.seconds:.0f} s per point)\n")
    print(table(points, floors))
    if args.json:
        rows = [{**asdict(point), "mb_s": point.mb_s} for point in points]
        args.json.write_text(json.dumps(rows, indent=1))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
