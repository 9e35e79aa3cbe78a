"""Rayship against KServe's and MLServer's model servers, side by side, on this machine.

    .venv/bin/python bench/server_bench.py            # everything (about 10 minutes)
    .venv/bin/python bench/server_bench.py --quick    # 2 s per point instead of 5
    .venv/bin/python bench/server_bench.py --only rayship-tp,kserve --formats json

What it does, in order:

1. builds the example iris ONNX model and a small CNN (bench/models.py) into a temporary folder;
2. times both in-process with ONNX Runtime: the floor every figure is divided by;
3. makes the peers' virtual environments under ~/.cache/rayship/venvs/<peer> when missing
   (kserve==0.21.0, mlserver==1.7.1 with uvloop==0.21.0 pinned, both with onnxruntime);
4. measures wrk (the Debian package; `apt-get install wrk`) against a trivial asyncio server:
   the load generator's own ceiling;
5. starts each server on a loopback port serving the same model.onnx, drives it with wrk
   (`bench/wrk_report.lua`) at concurrency 1, 8 and 32, JSON and (where the server has it) the
   binary tensor extension, after checking one answer by hand; then stops it by process id;
6. does the same for the CNN on Rayship with and without dynamic batching, then drives both at
   fixed request rates (open loop) with Triton's perf_analyzer (`scripts/perf-analyzer`,
   installed on first use), which also shows that a Triton client runs against Rayship unchanged;
7. prints one table per model: req/s, p50, p99, and the ratios to the best peer and the floor.

Rayship runs in local mode (`rayship serve`), once with Ray Serve's defaults
(RAY_SERVE_THROUGHPUT_OPTIMIZED=0) and once as local mode starts it (throughput-optimized mode
with HAProxy ingress). With one version live, both its unversioned and its versioned URL reach
the version's replica directly; both are measured.

The machine is shared and noisy: only ratios measured in the same run mean anything.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENVS = Path(os.environ.get("RAYSHIP_BENCH_VENVS", Path.home() / ".cache/rayship/venvs"))
PEER_PACKAGES = {
    "kserve": ["kserve==0.21.0", "onnxruntime", "numpy"],
    "mlserver": ["mlserver==1.7.1", "uvloop==0.21.0", "onnxruntime", "numpy"],
}
CONCURRENCY = (1, 8, 32)
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
PEERS = ("kserve", "mlserver")
# How long a server may take to answer its first request (Ray's start included).
START_TIMEOUT_S = 240
BATCH_SIZE = 32
BATCH_WAIT_MS = 2.0
# Fixed arrival rates (req/s) for the open-loop CNN runs: below the unbatched model's capacity,
# so latency is what a request pays rather than the queue a saturated closed loop builds.
OPEN_LOOP_RATES = (100, 250, 500)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- request bodies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """One request body as wrk sends it."""

    fmt: str  # "json" or "binary"
    data: bytes
    header_length: int | None

    @property
    def content_type(self) -> str:
        return "application/json" if self.header_length is None else "application/octet-stream"


def json_body(name: str, array: np.ndarray) -> Body:
    document = {
        "inputs": [
            {
                "name": name,
                "datatype": "FP32",
                "shape": list(array.shape),
                "data": array.ravel().tolist(),
            }
        ]
    }
    return Body("json", json.dumps(document).encode(), None)


def binary_body(name: str, array: np.ndarray) -> Body:
    raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": "FP32",
                    "shape": list(array.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return Body("binary", header + raw, len(header))


def check_answer(url: str, body: Body, expected: dict[str, np.ndarray]) -> None:
    """One request by hand: the server must answer what ONNX Runtime answers in-process."""
    headers = {"Content-Type": body.content_type}
    if body.header_length is not None:
        headers["Inference-Header-Content-Length"] = str(body.header_length)
    request = urllib.request.Request(url, data=body.data, headers=headers, method="POST")
    deadline = time.monotonic() + 60  # HAProxy learns of a new application a little later
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                length = response.headers.get("Inference-Header-Content-Length")
                break
        except urllib.error.HTTPError as error:
            if error.code not in (404, 500, 502, 503) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    header = json.loads(raw if length is None else raw[: int(length)])
    offset = 0 if length is None else int(length)
    for output in header["outputs"]:
        name = output["name"]
        if "data" in output:
            got = np.asarray(output["data"], dtype=expected[name].dtype)
        else:
            size = output["parameters"]["binary_data_size"]
            got = np.frombuffer(raw[offset : offset + size], dtype=expected[name].dtype)
            offset += size
        np.testing.assert_allclose(got.ravel(), expected[name].ravel(), rtol=1e-4, atol=1e-6)


# --- the floor --------------------------------------------------------------------------------


def floor_us(model_path: Path, feeds: dict[str, np.ndarray], calls: int = 2000) -> float:
    """Median microseconds of one in-process ONNX Runtime call."""
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    for _ in range(50):
        session.run(None, feeds)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def reference(model_path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


# --- load -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    server: str
    fmt: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0


def wrk(url: str, body: Body, concurrency: int, seconds: float, workdir: Path) -> dict[str, float]:
    """One wrk run; returns its JSON line. Fails on any socket or HTTP error."""
    body_file = workdir / f"body-{body.fmt}-{abs(hash(body.data))}"
    body_file.write_bytes(body.data)
    env = dict(
        os.environ,
        BENCH_BODY=str(body_file),
        BENCH_CONTENT_TYPE=body.content_type,
        BENCH_HEADER_LENGTH="" if body.header_length is None else str(body.header_length),
    )
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "wrk_report.lua"),
        url,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_JSON "))
    result: dict[str, float] = json.loads(line[len("WRK_JSON ") :])
    if result["socket_errors"] or result["status_errors"]:
        log(f"wrk saw errors against {url}: {result}")
        _show_error(url, body)
    return result


def _show_error(url: str, body: Body) -> None:
    """One more request by hand, to log what an error answer says."""
    headers = {"Content-Type": body.content_type}
    if body.header_length is not None:
        headers["Inference-Header-Content-Length"] = str(body.header_length)
    request = urllib.request.Request(url, data=body.data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            log(f"a request by hand got {response.status}")
    except urllib.error.HTTPError as error:
        log(f"a request by hand got {error.code}: {error.read()[:500]!r}")


def wrk_figure(server: str, fmt: str, concurrency: int, result: dict[str, float]) -> Figure:
    """One wrk run's JSON line (`wrk`) as a Figure: req/s, p50 and p99 in ms, failed requests."""
    return Figure(
        server,
        fmt,
        concurrency,
        result["requests"] / (result["duration_us"] / 1e6),
        result["p50_us"] / 1000,
        result["p99_us"] / 1000,
        int(result["socket_errors"] + result["status_errors"]),
    )


def measure(
    server: str,
    url: str,
    body: Body,
    seconds: float,
    workdir: Path,
    *,
    concurrencies: tuple[int, ...] = CONCURRENCY,
) -> list[Figure]:
    """wrk at each of `concurrencies` after a short warm-up, one Figure each."""
    wrk(url, body, 8, min(seconds, 2.0), workdir)  # warm-up: connections, caches, JIT-less paths
    figures = []
    for concurrency in concurrencies:
        figure = wrk_figure(
            server, body.fmt, concurrency, wrk(url, body, concurrency, seconds, workdir)
        )
        log(
            f"{server:<24} {body.fmt:<6} c={concurrency:<3} {figure.rps:8.0f} req/s  "
            f"p50 {figure.p50_ms:6.2f} ms  p99 {figure.p99_ms:6.2f} ms  errors {figure.errors}"
        )
        figures.append(figure)
    return figures


def open_loop(base: str, model: str, shape: str, rate: int, run: Run) -> Figure:
    """Latency at a fixed request rate, from Triton's perf_analyzer (binary tensors).

    wrk keeps `c` requests in flight (a closed loop), so once the server saturates its latency
    is c / throughput by Little's law, whatever batching does; requests arriving at a fixed rate
    below capacity pay only the batch window, the compute and the transport.
    """
    report = run.workdir / f"perf-{model}-{rate}.csv"
    command = [
        str(REPO / "scripts" / "perf-analyzer"),
        *("-m", model, "-u", base.removeprefix("http://"), "-i", "http", "--shape", shape),
        *("--request-rate-range", str(rate)),
        *("--measurement-interval", str(int(run.seconds * 1000))),
        *("--max-trials", "3", "--stability-percentage", "999", "-f", str(report)),
    ]
    subprocess.run(command, capture_output=True, check=True)
    with report.open() as lines:
        row = next(csv.DictReader(lines))
    figure = Figure(
        f"rayship-tp {model} (perf_analyzer)",
        "binary",
        rate,
        float(row["Inferences/Second"]),
        float(row["p50 latency"]) / 1000,
        float(row["p99 latency"]) / 1000,
    )
    log(
        f"{figure.server:<36} {rate:5} req/s offered {figure.rps:8.0f} served  "
        f"p50 {figure.p50_ms:6.2f} ms  p99 {figure.p99_ms:6.2f} ms"
    )
    return figure


# --- processes --------------------------------------------------------------------------------


@contextmanager
def process(
    name: str, command: list[str], env: dict[str, str], cwd: Path, stop: int = signal.SIGINT
) -> Iterator[subprocess.Popen[bytes]]:
    """A server in its own process group, stopped by its process id (then its group) after."""
    logfile = cwd / f"{name}.log"
    with logfile.open("wb") as out:
        child = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    log(f"started {name} (pid {child.pid}); log {logfile}")
    try:
        yield child
    finally:
        _stop(name, child, stop)


def _stop(name: str, child: subprocess.Popen[bytes], stop: int) -> None:
    if child.poll() is None:
        child.send_signal(stop)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    # Whatever the server started in its own process group (Ray's workers, HAProxy, uvicorn
    # workers) goes with it: the group id is the server's own pid.
    with suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    log(f"stopped {name} (pid {child.pid})")


def wait_ready(url: str, child: subprocess.Popen[bytes]) -> None:
    timeout_s = START_TIMEOUT_S
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"server exited with {child.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout_s}s")


def peer_python(peer: str) -> Path:
    """The peer's venv interpreter, creating the venv on first use."""
    venv = VENVS / peer
    python = venv / "bin" / "python"
    marker = venv / ".rayship-bench-ready"
    if not marker.exists():
        log(f"installing {' '.join(PEER_PACKAGES[peer])} into {venv} (first run only)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES[peer]], check=True
        )
        marker.write_text(" ".join(PEER_PACKAGES[peer]))
    return python


# --- servers ----------------------------------------------------------------------------------


def rayship_yaml(
    workdir: Path, name: str, model_dir: Path, version: str, batching: bool = False
) -> Path:
    spec = [
        "apiVersion: serving.rayship.io/v1alpha1",
        "kind: ModelDeployment",
        "metadata:",
        f"  name: {name}",
        "spec:",
        "  model:",
        "    format: onnx",
        f"    storageUri: {model_dir.as_uri()}",
        f'    version: "{version}"',
    ]
    if batching:
        spec += [
            "  batching:",
            f"    maxBatchSize: {BATCH_SIZE}",
            f"    batchWaitTimeoutMs: {BATCH_WAIT_MS}",
        ]
    path = workdir / f"{name}.yaml"
    path.write_text("\n".join(spec) + "\n")
    return path


@contextmanager
def rayship(workdir: Path, yamls: list[Path], optimized: bool) -> Iterator[str]:
    """`rayship serve` (local mode); yields its base URL."""
    port = free_port()
    env = dict(os.environ, RAY_SERVE_THROUGHPUT_OPTIMIZED="1" if optimized else "0")
    if not optimized:
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "0"
    command = [
        *(str(REPO / ".venv/bin/rayship"), "serve", *map(str, yamls)),
        *("--port", str(port), "--grpc-port", "0"),
    ]
    name = "rayship-tp" if optimized else "rayship-default"
    with process(name, command, env, workdir) as child:
        wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", child)
        yield f"http://127.0.0.1:{port}"


@contextmanager
def kserve(
    workdir: Path, model_file: Path, grpc_port: int | None = None, model_name: str = "iris"
) -> Iterator[str]:
    """KServe's model server serving `model_file` as `model_name`; yields its base URL. Its
    gRPC server runs on `grpc_port` when one is given (bench/grpc_bench.py), else not at all."""
    port = free_port()
    command = [
        str(peer_python("kserve")),
        str(BENCH / "peers" / "kserve_server.py"),
        "--model_name",
        model_name,
        "--model_path",
        str(model_file),
        "--http_port",
        str(port),
        "--grpc_port",
        str(grpc_port or free_port()),
        "--enable_grpc",
        "true" if grpc_port else "false",
        "--enable_latency_logging",
        "false",
        "--configure_logging",
        "false",
    ]
    with process("kserve", command, dict(os.environ), workdir) as child:
        wait_ready(f"http://127.0.0.1:{port}/v2/models/{model_name}/ready", child)
        yield f"http://127.0.0.1:{port}"


@contextmanager
def mlserver(
    workdir: Path, model_file: Path, grpc_port: int | None = None, model_name: str = "iris"
) -> Iterator[str]:
    """MLServer with one worker serving `model_file` as `model_name`; yields its base URL. Its
    gRPC server listens on `grpc_port` (bench/grpc_bench.py), or on a free port nobody calls."""
    port = free_port()
    root = workdir / "mlserver"
    model = root / model_name
    model.mkdir(parents=True, exist_ok=True)
    shutil.copy(BENCH / "peers" / "mlserver_model.py", model / "mlserver_model.py")
    settings = {
        "http_port": port,
        "grpc_port": grpc_port or free_port(),
        "metrics_port": free_port(),
        "host": "127.0.0.1",
        "parallel_workers": 1,
        "metrics_endpoint": None,
        "debug": False,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    (model / "model-settings.json").write_text(
        json.dumps(
            {
                "name": model_name,
                "implementation": "mlserver_model.OnnxModel",
                "parameters": {"uri": str(model_file)},
            }
        )
    )
    mlserver_bin = peer_python("mlserver").parent / "mlserver"
    command = [str(mlserver_bin), "start", str(root)]
    with process("mlserver", command, dict(os.environ), model) as child:
        wait_ready(f"http://127.0.0.1:{port}/v2/models/{model_name}/ready", child)
        yield f"http://127.0.0.1:{port}"


@contextmanager
def trivial() -> Iterator[str]:
    port = free_port()
    command = [sys.executable, str(BENCH / "trivial_server.py"), str(port)]
    workdir = Path(tempfile.gettempdir())
    with process("trivial", command, dict(os.environ), workdir, stop=signal.SIGTERM) as child:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/"


# --- report -----------------------------------------------------------------------------------


def table(title: str, figures: list[Figure], floor: float, peers: tuple[str, ...]) -> str:
    """Markdown: figures with ratios to the best peer (same format and concurrency) and floor."""
    best: dict[tuple[str, int], Figure] = {}
    for figure in figures:
        if figure.server in peers:
            key = (figure.fmt, figure.concurrency)
            if key not in best or figure.rps > best[key].rps:
                best[key] = figure
    best_json = {c: f for (fmt, c), f in best.items() if fmt == "json"}
    lines = [
        f"### {title} (in-process floor: {floor:.1f} us/call = {1e6 / floor:,.0f} calls/s)",
        "",
        "| server | body | conc. | req/s | p50 ms | p99 ms | req/s ÷ best peer | "
        "p50 ÷ best peer | req/s ÷ floor | p50 ÷ floor | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for figure in figures:
        peer = best.get((figure.fmt, figure.concurrency)) or best_json.get(figure.concurrency)
        vs_peer = f"{figure.rps / peer.rps:.2f}" if peer else "-"
        p50_peer = f"{figure.p50_ms / peer.p50_ms:.2f}" if peer else "-"
        lines.append(
            f"| {figure.server} | {figure.fmt} | {figure.concurrency} | {figure.rps:,.0f} | "
            f"{figure.p50_ms:.2f} | {figure.p99_ms:.2f} | {vs_peer} | {p50_peer} | "
            f"{figure.rps * floor / 1e6:.3f} | {figure.p50_ms * 1000 / floor:.0f} | "
            f"{figure.errors} |"
        )
    return "\n".join(lines)


@dataclass
class Run:
    """What one invocation measures, and where."""

    seconds: float
    parts: set[str]
    formats: list[str]
    workdir: Path


def run_iris(run: Run, iris_dir: Path) -> tuple[list[Figure], list[Figure]]:
    """The generator's ceiling, then every server on the iris model."""
    iris_file = iris_dir / "2" / "model.onnx"
    rows = np.array([IRIS_ROW], dtype=np.float32)
    expected = reference(iris_file, {"input": rows})
    bodies = {"json": json_body("input", rows), "binary": binary_body("input", rows)}
    figures: list[Figure] = []
    generator: list[Figure] = []
    if "generator" in run.parts:
        with trivial() as url:
            generator = measure(
                "wrk vs trivial server", url, bodies["json"], run.seconds, run.workdir
            )

    def drive(server: str, url: str, formats: list[str]) -> None:
        for fmt in formats:
            check_answer(url, bodies[fmt], expected)
            figures.extend(measure(server, url, bodies[fmt], run.seconds, run.workdir))

    iris_yaml = rayship_yaml(run.workdir, "iris", iris_dir, "2")
    for optimized, part in ((False, "rayship-default"), (True, "rayship-tp")):
        if part in run.parts:
            with rayship(run.workdir, [iris_yaml], optimized) as base:
                drive(part, f"{base}/v2/models/iris/infer", run.formats)
                drive(f"{part} /versions/2", f"{base}/v2/models/iris/versions/2/infer", run.formats)
    if "kserve" in run.parts:
        with kserve(run.workdir, iris_file) as base:
            drive("kserve", f"{base}/v2/models/iris/infer", run.formats)
    if "mlserver" in run.parts:
        with mlserver(run.workdir, iris_file) as base:
            drive("mlserver", f"{base}/v2/models/iris/infer", ["json"])  # no binary extension
    return generator, figures


def run_cnn(run: Run, cnn_dir: Path, image: np.ndarray) -> tuple[list[Figure], list[Figure]]:
    """The CNN on Rayship, without and with dynamic batching, binary bodies: closed loop (wrk)
    and open loop (perf_analyzer)."""
    cnn_file = cnn_dir / "1" / "model.onnx"
    expected = reference(cnn_file, {"image": image})
    body = binary_body("image", image)
    yamls = [
        rayship_yaml(run.workdir, "cnn", cnn_dir, "1"),
        rayship_yaml(run.workdir, "cnn-batched", cnn_dir, "1", batching=True),
    ]
    # Triton's shapes leave the batch dimension out when max_batch_size > 0 (batching on).
    shapes = {"cnn": "image:1,3,32,32", "cnn-batched": "image:3,32,32"}
    figures: list[Figure] = []
    open_figures: list[Figure] = []
    with rayship(run.workdir, yamls, optimized=True) as base:
        for name in ("cnn", "cnn-batched"):
            url = f"{base}/v2/models/{name}/infer"
            check_answer(url, body, expected)
            figures += measure(f"rayship-tp {name}", url, body, run.seconds, run.workdir)
            open_figures += [
                open_loop(base, name, shapes[name], rate, run) for rate in OPEN_LOOP_RATES
            ]
    return figures, open_figures


def open_loop_table(figures: list[Figure]) -> str:
    """Markdown: perf_analyzer's open-loop figures."""
    lines = [
        "| model | offered req/s | served req/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {f.server} | {f.concurrency} | {f.rps:,.0f} | {f.p50_ms:.2f} | {f.p99_ms:.2f} |"
        for f in figures
    ]
    return "\n".join(lines)


def batching_summary(figures: list[Figure], open_figures: list[Figure], batch_us: float) -> str:
    bound = BATCH_WAIT_MS + batch_us / 1000
    lines = [
        f"batching: maxBatchSize {BATCH_SIZE}, batchWaitTimeoutMs {BATCH_WAIT_MS}; one batch of "
        f"{BATCH_SIZE} computes in {batch_us / 1000:.2f} ms in-process, so the p99 goal is "
        f"<= {bound:.2f} ms"
    ]
    plain = {f.concurrency: f for f in figures if f.server.endswith(" cnn")}
    for figure in figures:
        if figure.server.endswith("batched") and figure.concurrency in plain:
            ratio = figure.rps / plain[figure.concurrency].rps
            lines.append(
                f"  c={figure.concurrency:<3} batched/unbatched req/s {ratio:.2f}, "
                f"p99 {figure.p99_ms:.2f} ms (closed loop)"
            )
    for figure in open_figures:
        if figure.server.startswith("rayship-tp cnn-batched"):
            verdict = "within" if figure.p99_ms <= bound else "above"
            lines.append(
                f"  {figure.concurrency} req/s offered: p99 {figure.p99_ms:.2f} ms, {verdict} "
                f"the goal (open loop)"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s per point instead of 5")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per point")
    parser.add_argument(
        "--only",
        default="generator,rayship-default,rayship-tp,kserve,mlserver,cnn",
        help="comma-separated parts to run",
    )
    parser.add_argument("--formats", default="json,binary")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        log("wrk is missing: apt-get install wrk")
        return 2
    sys.path.insert(0, str(BENCH))  # bench/ only, never the repository root
    import models

    run = Run(
        seconds=args.seconds or (2.0 if args.quick else 5.0),
        parts=set(args.only.split(",")),
        formats=args.formats.split(","),
        workdir=Path(tempfile.mkdtemp(prefix="rayship-bench-")),
    )
    iris_dir = models.build_iris(run.workdir / "models")
    cnn_dir = models.build_cnn(run.workdir / "models")
    image = np.random.default_rng(0).random((1, *models.CNN_SHAPE), dtype=np.float32)
    cnn_file = cnn_dir / "1" / "model.onnx"
    iris_floor = floor_us(iris_dir / "2" / "model.onnx", {"input": np.array([IRIS_ROW], "f4")})
    cnn_floor = floor_us(cnn_file, {"image": image}, calls=300)
    batch_us = floor_us(cnn_file, {"image": np.repeat(image, BATCH_SIZE, axis=0)}, calls=30)
    log(
        f"floor: iris {iris_floor:.1f} us/call, cnn {cnn_floor:.0f} us/call, "
        f"cnn batch of {BATCH_SIZE} {batch_us:.0f} us/call"
    )

    generator, figures = run_iris(run, iris_dir)
    cnn_figures, open_figures = run_cnn(run, cnn_dir, image) if "cnn" in run.parts else ([], [])

    print(f"\nwrk ceiling against a trivial asyncio server ({run.seconds:.0f} s per point):")
    for figure in generator:
        print(f"  c={figure.concurrency:<3} {figure.rps:8,.0f} req/s  p50 {figure.p50_ms:.2f} ms")
    if figures:
        print("\n" + table("iris ONNX classifier", figures, iris_floor, PEERS))
    if cnn_figures:
        print("\n" + table("CNN, binary body, closed loop (wrk)", cnn_figures, cnn_floor, ()))
        print("\n### CNN, binary body, open loop (perf_analyzer)\n")
        print(open_loop_table(open_figures))
        print("\n" + batching_summary(cnn_figures, open_figures, batch_us))
    if args.json:
        everything = [*generator, *figures, *cnn_figures, *open_figures]
        args.json.write_text(json.dumps([figure.__dict__ for figure in everything], indent=1))
    shutil.rmtree(run.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
