"""The V2 gRPC service: Rayship against KServe's and MLServer's gRPC servers, same run, same model.

    .venv/bin/python bench/grpc_bench.py            # three rounds, about 8 minutes
    .venv/bin/python bench/grpc_bench.py --quick --rounds 1

Each server serves the example iris ONNX model (bench/models.py) on a loopback port, answers one
ModelInfer checked against ONNX Runtime in-process (through tritonclient's gRPC client), then is
driven by ghz (`scripts/ghz`, built on first use) at concurrency 1, 8 and 32 over one HTTP/2
connection, with raw tensor contents as Triton's gRPC clients send them, after a one-second
warm-up. perf_analyzer cannot drive the peers over gRPC: it asks for Triton's ModelConfig, which
neither implements. ghz reads the service from the V2 proto, which it is handed as
`v2/proto/inference.proto` under the protocol's package with the service added. The peers run
in virtual environments of their own (bench/server_bench.py makes them: kserve==0.21.0 with
`--enable_grpc`, mlserver==1.7.1 with its gRPC port).

Rayship is measured three ways, one `rayship serve` each, to say what each hop costs:

- `rayship`: as local mode starts it. HAProxy reads the model name at the start of each
  ModelInfer and sends it to the replica of the version that owns the model (one hop).
- `rayship via /v2`: the same server, with the `application: rayship` metadata that sends a call
  to the server application first, which forwards it to the version through a handle: the way
  a canary split (and any message HAProxy cannot read) goes.
- `rayship, Serve's gRPC proxy`: HAProxy off (RAY_SERVE_ENABLE_HA_PROXY=0), so Serve's own
  Python gRPC proxy takes every call; it routes only by the `application` metadata, which
  ghz sends here (`iris@1`).

The servers take turns, round after round (`--rounds`, 3 by default); each figure is the
round with the median throughput for that server and concurrency. A peer's failed calls are
counted in the table; one failed call of Rayship's fails the bench. The machine is shared and
noisy: only ratios measured in the same run mean anything.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from models import build_iris  # bench/models.py: the example model, built here
from server_bench import (
    IRIS_ROW,
    REPO,
    free_port,
    kserve,
    log,
    mlserver,
    process,
    rayship_yaml,
    reference,
    wait_ready,
)

CONCURRENCY = (1, 8, 32)
BASELINE = "kserve"
PROTO = REPO / "predictors" / "rayship_predictors" / "v2" / "proto" / "inference.proto"
SERVICE = "inference.GRPCInferenceService"
SERVICE_BLOCK = f"""
service {SERVICE.split(".")[1]} {{
  rpc ModelInfer(ModelInferRequest) returns (ModelInferResponse) {{}}
}}
"""
REQUEST = {
    "model_name": "iris",
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4]}],
    "raw_input_contents": [
        base64.b64encode(np.array([IRIS_ROW], dtype=np.float32).tobytes()).decode()
    ],
}


@dataclass(frozen=True)
class Setup:
    """One server as measured: its gRPC address and the metadata each call carries."""

    name: str
    address: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Figure:
    setup: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    failed: int


def ghz(setup: Setup, concurrency: int, seconds: float, proto: Path) -> dict[str, Any]:
    """One closed-loop ghz run against `setup`: its JSON report."""
    command = [
        str(REPO / "scripts" / "ghz"),
        *("--insecure", "--proto", str(proto), "--call", f"{SERVICE}.ModelInfer"),
        *("--data", json.dumps(REQUEST), "--format", "json"),
        *("--concurrency", str(concurrency), "--duration", f"{seconds}s"),
        *("--duration-stop", "wait"),  # calls in flight at the end finish, not cut
        *("--metadata", json.dumps(setup.metadata)),
        setup.address,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ghz failed on {setup.name}:\n{result.stdout}{result.stderr}")
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def point(setup: Setup, concurrency: int, seconds: float, proto: Path) -> Figure:
    """Throughput and latency at `concurrency`, after a one-second warm-up."""
    ghz(setup, concurrency, 1.0, proto)
    report = ghz(setup, concurrency, seconds, proto)
    failed = sum(
        count for code, count in report.get("statusCodeDistribution", {}).items() if code != "OK"
    )
    if failed and setup.name.startswith("rayship"):
        codes = report["statusCodeDistribution"]
        raise RuntimeError(f"{setup.name}: {failed} calls failed: {codes}")
    latency = {p["percentage"]: p["latency"] / 1e6 for p in report["latencyDistribution"]}
    figure = Figure(setup.name, concurrency, report["rps"], latency[50], latency[99], failed)
    log(
        f"{setup.name:<30} c={concurrency:<3} {figure.rps:8.0f} req/s  "
        f"p50 {figure.p50_ms:6.2f} ms  p99 {figure.p99_ms:6.2f} ms  failed {failed}"
    )
    return figure


def check_answer(setup: Setup, expected: np.ndarray) -> None:
    """One ModelInfer through tritonclient's gRPC client must give ONNX Runtime's label."""
    client = grpcclient.InferenceServerClient(setup.address)
    flower = grpcclient.InferInput("input", [1, 4], "FP32")
    flower.set_data_from_numpy(np.array([IRIS_ROW], dtype=np.float32))
    response = client.infer("iris", [flower], headers=setup.metadata).get_response()
    (index,) = [i for i, tensor in enumerate(response.outputs) if tensor.name == "label"]
    if response.raw_output_contents:  # Triton's way, and Rayship's
        got = np.frombuffer(response.raw_output_contents[index], dtype=np.int64)
    else:  # typed contents (KServe, MLServer), which tritonclient's as_numpy cannot read
        got = np.array(response.outputs[index].contents.int64_contents)
    if got.tolist() != expected.ravel().tolist():
        raise RuntimeError(f"{setup.name} answered {got}, expected {expected}")


def service_proto(workdir: Path) -> Path:
    """The V2 proto as ghz reads it: Rayship's messages under the protocol's package, with the
    service that `rayship_predictors.grpc_service` registers by hand."""
    text = PROTO.read_text().replace("package rayship.v2;", "package inference;")
    path = workdir / "grpc_predict_v2.proto"
    path.write_text(text + SERVICE_BLOCK)
    return path


@contextmanager
def rayship(workdir: Path, yaml_file: Path, haproxy: bool) -> Iterator[str]:
    """`rayship serve` in local mode; yields its gRPC address."""
    port, grpc_port = free_port(), free_port()
    env = dict(os.environ)
    if not haproxy:
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "0"
    command = [
        str(REPO / ".venv/bin/rayship"),
        *("serve", str(yaml_file), "--port", str(port), "--grpc-port", str(grpc_port)),
    ]
    name = "rayship" if haproxy else "rayship-serve-proxy"
    with process(name, command, env, workdir) as child:
        wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", child)
        yield f"127.0.0.1:{grpc_port}"


@contextmanager
def peer(
    start: Callable[..., AbstractContextManager[str]], workdir: Path, model_file: Path
) -> Iterator[str]:
    """A peer as bench/server_bench.py starts it, with its gRPC server on; yields that address."""
    grpc_port = free_port()
    with start(workdir, model_file, grpc_port):
        yield f"127.0.0.1:{grpc_port}"


def measure(setups: list[Setup], seconds: float, proto: Path, expected: np.ndarray) -> list[Figure]:
    for setup in setups:
        check_answer(setup, expected)
    return [
        point(setup, concurrency, seconds, proto) for setup in setups for concurrency in CONCURRENCY
    ]


def table(figures: list[Figure]) -> str:
    """Markdown: each figure with its ratios to KServe's at the same concurrency."""
    baseline = {f.concurrency: f for f in figures if f.setup == BASELINE}
    lines = [
        "| server | conc. | req/s | p50 ms | p99 ms | req/s ÷ KServe | p50 ÷ KServe | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for figure in figures:
        peer = baseline.get(figure.concurrency)
        rps = f"{figure.rps / peer.rps:.2f}" if peer else "-"
        p50 = f"{figure.p50_ms / peer.p50_ms:.2f}" if peer else "-"
        lines.append(
            f"| {figure.setup} | {figure.concurrency} | {figure.rps:,.0f} | "
            f"{figure.p50_ms:.2f} | {figure.p99_ms:.2f} | {rps} | {p50} | {figure.failed} |"
        )
    return "\n".join(lines)


def one_round(workdir: Path, seconds: float) -> list[Figure]:
    """Every server started, measured at every concurrency and stopped, one after another."""
    iris_dir = build_iris(workdir / "models")
    model_file = iris_dir / "1" / "model.onnx"
    yaml_file = rayship_yaml(workdir, "iris", iris_dir, "1")
    proto = service_proto(workdir)
    label = reference(model_file, {"input": np.array([IRIS_ROW], dtype=np.float32)})["label"]
    figures: list[Figure] = []
    with peer(kserve, workdir, model_file) as address:
        figures += measure([Setup("kserve", address)], seconds, proto, label)
    with peer(mlserver, workdir, model_file) as address:
        figures += measure([Setup("mlserver", address)], seconds, proto, label)
    with rayship(workdir, yaml_file, haproxy=True) as address:
        setups = [
            Setup("rayship", address),
            Setup("rayship via /v2", address, {"application": "rayship"}),
        ]
        figures += measure(setups, seconds, proto, label)
    with rayship(workdir, yaml_file, haproxy=False) as address:
        proxy = Setup("rayship, Serve's gRPC proxy", address, {"application": "iris@1"})
        figures += measure([proxy], seconds, proto, label)
    return figures


def medians(rounds: list[list[Figure]]) -> list[Figure]:
    """Per server and concurrency, the round with the median throughput (its latencies too)."""
    chosen = []
    for position in range(len(rounds[0])):
        same = sorted((figures[position] for figures in rounds), key=lambda f: f.rps)
        chosen.append(same[len(same) // 2])
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s per point instead of 5")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, reported by median")
    args = parser.parse_args()
    seconds = 2.0 if args.quick else 5.0
    rounds = []
    for number in range(args.rounds):
        log(f"round {number + 1} of {args.rounds}")
        with tempfile.TemporaryDirectory(prefix="rayship-grpc-bench-") as folder:
            rounds.append(one_round(Path(folder), seconds))
    print(table(medians(rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
