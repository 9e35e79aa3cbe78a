"""Large tensors through every path a request can take, not only the model's own URL.

The model URL of a version that takes all traffic goes straight to its replica; a canary split
goes through the `/v2` server app and a DeploymentHandle, and a sibling's `/versions/<v>` URL
through the owning version's handle. Handles once failed over 4 MiB (Serve's gRPC transport
default; `rayship.local.serve_environment` raises it), so each path carries 10 MB and 60 MB
both ways here, within RAYSHIP_MAX_REQUEST_BYTES (64 MiB).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tritonclient.http as triton

from support.models import IDENTITY_PREDICTOR, model_deployment, python_model, route
from support.ray_cluster import ServeCluster

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def served(serve_cluster: ServeCluster, tmp_path_factory: pytest.TempPathFactory) -> ServeCluster:
    """`split` (versions 1 and 2, 50/50) and `sibling` (all traffic on 2, 1 still live)."""
    root = python_model(tmp_path_factory.mktemp("identity"), "identity", IDENTITY_PREDICTOR)
    shutil.copytree(root / "1", root / "2")
    model = {
        "format": "python",
        "storageUri": root.as_uri(),
        "python": {"predictorClass": "predictor:Identity"},
    }
    serve_cluster.deploy(
        [
            route(model_deployment("split", {"model": model}), {"1": 50, "2": 50}),
            route(model_deployment("sibling", {"model": model}), {"2": 100}, live=["1", "2"]),
        ]
    )
    return serve_cluster


@pytest.mark.parametrize("megabytes", [10, 60])
@pytest.mark.parametrize(
    ("model", "version"),
    [("split", ""), ("sibling", "1")],
    ids=["through-a-canary-split", "through-a-sibling-version"],
)
def test_large_tensors_both_ways(
    served: ServeCluster, model: str, version: str, megabytes: int
) -> None:
    client = triton.InferenceServerClient(url=served.address, network_timeout=300)
    values = np.arange(megabytes * 1_000_000 // 4, dtype=np.float32)
    given = triton.InferInput("x", [values.size], "FP32")
    given.set_data_from_numpy(values, binary_data=True)
    wanted = [triton.InferRequestedOutput("y", binary_data=True)]

    for _ in range(2 if model == "split" else 1):  # both versions of the split, likely
        result = client.infer(model, [given], model_version=version, outputs=wanted)
        np.testing.assert_array_equal(result.as_numpy("y"), values)
