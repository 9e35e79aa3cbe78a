"""What the predict thread pool does to throughput: one data plane, in-process, many requests.

    .venv/bin/python bench/predict_bench.py     # about 3 minutes; --seconds, --rounds

A version replica answers requests on one asyncio event loop and runs each synchronous runtime
call in a pool of RAYSHIP_PREDICT_THREADS threads (0: on the loop itself). This drives the
replica's own data plane (`VersionDataPlane.infer`, decode -> infer -> encode) with a closed
loop of concurrent asyncio clients, no HTTP and no Ray, so the only variable is where `infer`
runs: inline on the loop, or in a pool of 1, 2 or 4 threads. Each is measured with ONNX
Runtime's intra-op threads on every core (its own default) and with one per call, on:

- cnn: the CPU-bound small CNN of bench/models.py (about 1 ms a call), binary request bodies;
- iris: the microsecond-scale iris classifier, where the hop to a thread is most of the cost.

Every point is measured once per round, the rounds interleaved, and the median kept, so load
from other processes that comes and goes spreads over all points alike. It prints requests per
second, its ratio to inline, and the mean latency a client sees, which in a closed loop is
clients / throughput (Little's law). Per-request clocks would mislead here: inline, a request's
coroutine only starts once the loop is free, so its wait for the requests ahead of it never
shows. Only ratios within one run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import tritonclient.http as triton_http

from rayship.spec import OnnxOptions, RuntimeSpec
from rayship_predictors.dataplane import VersionDataPlane
from rayship_predictors.runtimes.loader import load_runtime

BENCH = Path(__file__).resolve().parent
POOLS = (0, 1, 2, 4)  # RAYSHIP_PREDICT_THREADS; 0 is inline, on the event loop
INTRA_OP = (os.cpu_count() or 1, 1)  # spec.model.onnx.intraOpThreads: every core, or one
CLIENTS = 8  # concurrent requests in flight, as from a replica's router


@dataclass(frozen=True)
class Case:
    """A model folder and one request body for it."""

    name: str
    folder: Path
    body: bytes
    header_length: int | None


def binary_request(name: str, array: np.ndarray) -> tuple[bytes, int | None]:
    """A request body as tritonclient sends it, tensor as binary data."""
    given = triton_http.InferInput(name, list(array.shape), "FP32")
    given.set_data_from_numpy(array, binary_data=True)
    body, header_length = triton_http.InferenceServerClient.generate_request_body([given])
    return body, header_length


def cases(models: ModuleType, root: Path) -> list[Case]:
    """The CNN and iris built under `root` (`models` is bench/models.py)."""
    rng = np.random.default_rng(0)
    image = rng.random((1, *models.CNN_SHAPE), dtype=np.float32)
    iris = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    return [
        Case("cnn", models.build_cnn(root) / "1", *binary_request(models.CNN_INPUT, image)),
        Case("iris", models.build_iris(root) / "2", *binary_request("input", iris)),
    ]


async def drive(plane: VersionDataPlane, case: Case, seconds: float) -> float:
    """Requests per second answered to CLIENTS coroutines, each sending the next request when
    the last is answered."""
    answered = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal answered
        while time.perf_counter() < deadline:
            reply = await plane.infer(case.body, case.header_length)
            assert reply.status == 200
            answered += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return answered / (time.perf_counter() - started)


def plane(case: Case, intra_op: int, threads: int) -> VersionDataPlane:
    """A warm data plane: the session has run and the pool's threads exist."""
    runtime = load_runtime(
        RuntimeSpec(format="onnx", onnx=OnnxOptions(intra_op_threads=intra_op)),
        case.folder,
        use_gpu=False,
    )
    warm = VersionDataPlane(case.name, "1", runtime, threads)
    asyncio.run(drive(warm, case, 0.5))
    return warm


def mode(threads: int) -> str:
    return "inline" if threads == 0 else f"pool {threads}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per point and round")
    parser.add_argument("--rounds", type=int, default=3, help="the median of this many is kept")
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} CPUs, {CLIENTS} concurrent requests, {args.rounds} rounds of "
        f"{args.seconds:g} s a point; load average {os.getloadavg()[0]:.1f} at the start"
    )
    sys.path.insert(0, str(BENCH))  # bench/ only, never the repository root
    import models

    with tempfile.TemporaryDirectory() as root:
        for case in cases(models, Path(root)):
            points = [(i, t) for i in INTRA_OP for t in POOLS]
            planes = {point: plane(case, *point) for point in points}
            rates: dict[tuple[int, int], list[float]] = {point: [] for point in points}
            for _ in range(args.rounds):
                for point in points:
                    rates[point].append(asyncio.run(drive(planes[point], case, args.seconds)))
            print(f"\n{case.name}")
            print("intra-op | where    |    req/s | / inline | mean latency ms")
            for intra_op, threads in points:
                rate = statistics.median(rates[intra_op, threads])
                inline = statistics.median(rates[intra_op, 0])
                print(
                    f"{intra_op:>8} | {mode(threads):<8} | {rate:8,.0f} | "
                    f"{rate / inline:8.2f} | {CLIENTS / rate * 1000:15.2f}"
                )
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
