"""Cold start of a 1 GB model version: from S3 to Ready, against boto3 downloading the same files.

    .venv/bin/python bench/cold_start_bench.py               # 3 rounds, 5-9 minutes
    .venv/bin/python bench/cold_start_bench.py --quick       # 1 round of a 256 MB model

It builds an ONNX model whose weights (four float32 matrices, about 1 GB in all) lie in four
external-data files beside `model.onnx`, uploads it as version `1` of an S3 prefix on moto's
server (loopback), and starts the parts the operator bench runs on (`operator_bench.real_parts`:
the test control plane, a local Ray with Serve, the operator as a subprocess), with
$RAYSHIP_CACHE_DIR pointing the Ray node's replicas at a cache folder of the bench's own.
Each round then times, with every cache empty at its start:

- (a) boto3 alone with its default settings (`download_file`, one object after another): the
  baseline of the issue;
- (a2) the fastest plain download found on this server: boto3, one GET per object, all objects
  at once (moto reads a whole object for every ranged GET, so on moto fewer, larger GETs win);
- (b) Rayship's fetch alone: `ModelStore.fetch` into an empty cache;
- (c) the user's path: `kubectl apply` of a ModelDeployment naming the version until its Ready
  condition is True (the replica fetches the version into the node's cache and loads it);
- (d) a second replica on the same node: `kubectl patch` to `replicas: 2` until the status shows
  two ready replicas. The GETs moto logged for the version's objects during the step prove
  whether it downloaded anything (it should not: the cache already holds the version);
- (e) the floor of (c): apply to Ready of the tiny iris model, the operator and Serve's own time
  (timed before (c); one untimed iris apply before the first round warms the operator and Ray).

It prints medians and the ratios of (b), (c) and (c - e) to (a) and (a2). Figures on a shared
2-core machine are noisy; only ratios within one run mean much.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import onnx
from boto3.s3.transfer import TransferConfig
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from operator_bench import delete, log, real_parts

from e2e.conftest import Stack
from rayship.storage import ModelStore

NAMESPACE_TIMEOUT_S = 300
VERSION = "1"
FILES = 4
SINGLE_GET = TransferConfig(multipart_threshold=1 << 40)
"""A boto3 setting that never splits an object into ranged GETs."""


def build_big_onnx(folder: Path, total_mb: int) -> Path:
    """An ONNX model of FILES chained square MatMuls whose float32 weights, `total_mb` in all,
    lie in one external-data file each; written without holding them in a protobuf."""
    side = int((total_mb * 2**20 / FILES / 4) ** 0.5)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    weights = []
    for index in range(FILES):
        name = f"w{index}"
        matrix = rng.random((side, side), dtype=np.float32) * np.float32(2.0 / side)
        (folder / f"{name}.bin").write_bytes(matrix.tobytes())
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[side, side])
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", f"{name}.bin"), ("length", str(matrix.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        weights.append(tensor)
    names = ["input", *(f"h{index}" for index in range(FILES - 1)), "output"]
    nodes = [
        helper.make_node("MatMul", [names[index], f"w{index}"], [names[index + 1]])
        for index in range(FILES)
    ]
    graph = helper.make_graph(
        nodes,
        "cold-start",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, side])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, side])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(folder / "model.onnx"))
    return folder


def upload(stack: Stack, folder: Path, uri: str) -> None:
    """Upload every file of `folder` as version VERSION of `uri` (boto3 multipart uploads)."""
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    for path in sorted(folder.iterdir()):
        stack.s3.client.upload_file(str(path), bucket, f"{prefix}/{VERSION}/{path.name}")


def plain_download(stack: Stack, uri: str, target: Path, at_once: bool) -> None:
    """boto3 alone: its default settings one object after another, or one GET per object
    with every object at once."""
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    client = boto3.session.Session().client(
        "s3", endpoint_url=stack.s3.endpoint_url, region_name="us-east-1"
    )
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{VERSION}/")["Contents"]
    target.mkdir(parents=True)

    def one(key: str) -> None:
        config = SINGLE_GET if at_once else None
        client.download_file(bucket, key, str(target / key.rsplit("/", 1)[1]), Config=config)

    if at_once:
        with ThreadPoolExecutor(len(listed)) as pool:
            list(pool.map(one, [obj["Key"] for obj in listed]))
    else:
        for obj in listed:
            one(obj["Key"])


def timed(action: Callable[[], object]) -> float:
    """Seconds `action` took."""
    start = time.monotonic()
    action()
    return time.monotonic() - start


def gets_logged(stack: Stack, uri: str) -> int:
    """GET requests moto's log holds so far for the objects of version VERSION of `uri`."""
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    # moto's log colours 206 answers, so the line's quote may sit before an escape sequence
    pattern = re.compile(rf"GET /{re.escape(bucket)}/{re.escape(prefix)}/{VERSION}/[^ ?]+ HTTP")
    return len(pattern.findall(stack.s3.log_path.read_text(errors="replace")))


@dataclass
class Round:
    """Seconds of every measurement of one round, and the GETs the second replica made."""

    seconds: dict[str, float]
    cold_gets: int
    second_gets: int


def deployment(stack: Stack, name: str, uri: str) -> dict[str, Any]:
    """A ModelDeployment of version VERSION of `uri`, small in CPUs so two replicas fit."""
    return stack.model_deployment(name, uri, VERSION, resources={"cpu": 0.25})


def apply_to_ready(stack: Stack, manifest: dict[str, Any]) -> float:
    """Seconds from `kubectl apply` of `manifest` until its Ready condition is True."""
    name = str(manifest["metadata"]["name"])
    with stack.watch_status(name) as watcher:
        applied = time.monotonic()
        stack.apply(manifest)
        return watcher.wait_ready(applied, NAMESPACE_TIMEOUT_S) - applied


def one_round(stack: Stack, uri: str, iris_uri: str, index: int, workdir: Path) -> Round:
    """Every measurement once, each from an empty cache; the node's cache is emptied first."""
    node_cache = Path(os.environ["RAYSHIP_CACHE_DIR"])
    shutil.rmtree(node_cache, ignore_errors=True)
    seconds: dict[str, float] = {}
    scratch = workdir / f"round-{index}"
    seconds["a"] = timed(lambda: plain_download(stack, uri, scratch / "a", at_once=False))
    seconds["a2"] = timed(lambda: plain_download(stack, uri, scratch / "a2", at_once=True))
    store = ModelStore(stack.s3.storage, cache_dir=scratch / "b")
    seconds["b"] = timed(lambda: store.fetch(uri, VERSION))
    shutil.rmtree(scratch)
    seconds["e"] = apply_to_ready(stack, stack.model_deployment(f"iris-{index}", iris_uri, "1"))
    delete(stack, f"iris-{index}")
    name = f"cold-{index}"
    before = gets_logged(stack, uri)
    seconds["c"] = apply_to_ready(stack, deployment(stack, name, uri))
    cold_gets = gets_logged(stack, uri) - before
    log(f"round {index}: cold start {seconds['c']:.1f} s with {cold_gets} GETs")
    before = gets_logged(stack, uri)
    since = time.monotonic()
    stack.patch(name, {"replicas": 2})
    stack.wait_for(name, lambda status: status.get("readyReplicas") == 2, NAMESPACE_TIMEOUT_S)
    seconds["d"] = time.monotonic() - since
    second_gets = gets_logged(stack, uri) - before
    log(f"round {index}: second replica {seconds['d']:.1f} s with {second_gets} GETs")
    delete(stack, name)
    return Round(seconds, cold_gets, second_gets)


LABELS = {
    "a": "(a) boto3 defaults, one object after another (baseline)",
    "a2": "(a2) boto3, one GET per object, all at once",
    "b": "(b) Rayship fetch alone (ModelStore.fetch)",
    "c": "(c) kubectl apply -> Ready (fetch + load + Serve)",
    "d": "(d) second replica on the node: patch replicas 2 -> 2 ready",
    "e": "(e) kubectl apply -> Ready, tiny iris model (floor of c)",
}


def report(rounds: list[Round], total_mb: int) -> str:
    """Median, min and max seconds per measurement, and the ratios against (a) and (a2)."""
    median = {key: statistics.median(r.seconds[key] for r in rounds) for key in LABELS}
    lines = [
        f"### Cold start ({len(rounds)} rounds, {total_mb} MB ONNX model in {FILES} files)\n",
        "| measurement | median s | min-max s | / (a) | / (a2) |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in LABELS.items():
        values = [r.seconds[key] for r in rounds]
        lines.append(
            f"| {label} | {median[key]:.2f} | {min(values):.2f}-{max(values):.2f} "
            f"| {median[key] / median['a']:.2f} | {median[key] / median['a2']:.2f} |"
        )
    beyond = median["c"] - median["e"]
    lines.append(
        f"| (c - e) cold start beyond the floor | {beyond:.2f} | "
        f"| {beyond / median['a']:.2f} | {beyond / median['a2']:.2f} |"
    )
    lines.append(
        f"\nGETs of the version's objects: cold start {[r.cold_gets for r in rounds]}, "
        f"second replica {[r.second_gets for r in rounds]} (0: served from the node's cache)"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds")
    parser.add_argument("--size-mb", type=int, default=1024, help="the model's weights in MB")
    parser.add_argument("--quick", action="store_true", help="1 round of a 256 MB model")
    args = parser.parse_args()
    repeat, total_mb = (1, 256) if args.quick else (args.repeat, args.size_mb)
    workdir = Path(tempfile.mkdtemp(prefix="rayship-cold-start-bench-"))
    os.environ["RAYSHIP_CACHE_DIR"] = str(workdir / "node-cache")  # the Ray node's replicas
    try:
        log(f"building a {total_mb} MB ONNX model")
        model = build_big_onnx(workdir / "big", total_mb)
        with real_parts(workdir) as stack:
            uri = f"s3://{stack.s3.new_bucket()}/big"
            upload(stack, model, uri)
            shutil.rmtree(model)
            iris_uri = f"s3://{stack.s3.new_bucket()}/iris"
            stack.upload_iris(iris_uri, ("1",))
            log("warming up: one iris ModelDeployment applied and deleted, untimed")
            apply_to_ready(stack, stack.model_deployment("warm-up", iris_uri, "1"))
            delete(stack, "warm-up")
            rounds = []
            for index in range(1, repeat + 1):
                log(f"round {index} of {repeat}")
                rounds.append(one_round(stack, uri, iris_uri, index, workdir))
    except BaseException:
        log(f"failed; its files (the operator's log among them) are kept in {workdir}")
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(report(rounds, total_mb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
