"""How large tensors cross Serve applications: Serve's gRPC transport or Ray's object store.

    .venv/bin/python bench/handle_transport_bench.py     # about 4 minutes; --rounds

A request that is not served by the version owning the model URL (a canary split through the
`/v2` server app, a sibling's `/versions/<v>`) crosses a DeploymentHandle. In throughput mode
Serve sends handle calls over its own gRPC transport, whose 4 MiB receive limit Rayship raises
(`rayship.local.serve_environment`); Ray's actor calls pass large arguments through the object
store instead. Rayship's default takes gRPC for bodies up to 1 MiB and the object store above
(`rayship_predictors.app.BY_REFERENCE_BYTES`); the other mode sends every handle call as an
actor call (`RAY_SERVE_USE_GRPC_BY_DEFAULT=0`). Each mode gets a local Ray of its own serving
an identity model twice: `direct` (one
version, the model URL goes straight to its replica: the baseline) and `split` (two versions
50/50, so every request crosses a handle). It prints the median time of a binary request and
answer of 1, 10 and 60 MB through each path, and the handle's cost as the ratio to `direct` in
the same Ray. Only ratios within one run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tritonclient.http as triton

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests")]

from rayship.local import LocalRay, deploy, free_port  # noqa: E402
from rayship.serveconfig import IngressOptions  # noqa: E402
from support.models import IDENTITY_PREDICTOR, model_deployment, python_model, route  # noqa: E402

SIZES_MB = (1, 10, 60)
MODES = {
    "default: gRPC, over 1 MiB by reference": {},
    "every call by reference (actor calls)": {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "0"},
}


def identity_model(root: Path) -> dict[str, object]:
    folder = python_model(root, "identity", IDENTITY_PREDICTOR)
    shutil.copytree(folder / "1", folder / "2")
    return {
        "format": "python",
        "storageUri": folder.as_uri(),
        "python": {"predictorClass": "predictor:Identity"},
    }


def median_seconds(client: triton.InferenceServerClient, model: str, mb: int, rounds: int) -> float:
    """Median time of one binary request and answer of `mb` megabytes."""
    values = np.arange(mb * 1_000_000 // 4, dtype=np.float32)
    given = triton.InferInput("x", [values.size], "FP32")
    given.set_data_from_numpy(values, binary_data=True)
    wanted = [triton.InferRequestedOutput("y", binary_data=True)]
    client.infer(model, [given], outputs=wanted)  # warm the path
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        client.infer(model, [given], outputs=wanted)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(extra_env: dict[str, str], model: dict[str, object], rounds: int) -> dict[str, float]:
    """(path, size) -> median seconds, in a local Ray started with `extra_env`."""
    saved = dict(os.environ)
    os.environ.update(extra_env)
    try:
        with LocalRay() as dashboard:
            http = IngressOptions("127.0.0.1", free_port())
            deploy(
                dashboard,
                [
                    route(model_deployment("direct", {"model": model}), {"1": 100}),
                    route(model_deployment("split", {"model": model}), {"1": 50, "2": 50}),
                ],
                http,
                300,
            )
            client = triton.InferenceServerClient(f"127.0.0.1:{http.port}", network_timeout=300)
            return {
                f"{path} {mb}": median_seconds(client, path, mb, rounds)
                for mb in SIZES_MB
                for path in ("direct", "split")
            }
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed requests per point")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        model = identity_model(Path(root))
        results = {name: measure(env, model, args.rounds) for name, env in MODES.items()}
    header = f"{'handle transport':48} {'MB':>4} {'direct ms':>10} {'split ms':>10}"
    print(f"{header} {'split/direct':>13}")
    for name, result in results.items():
        for mb in SIZES_MB:
            direct, split = result[f"direct {mb}"], result[f"split {mb}"]
            print(
                f"{name:48} {mb:>4} {direct * 1000:>10.1f} {split * 1000:>10.1f} "
                f"{split / direct:>13.2f}"
            )


if __name__ == "__main__":
    main()
