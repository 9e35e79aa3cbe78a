"""`GET /v2/models/<m>[/versions/<v>]/config`: the model as Triton's model configuration.

Triton's clients ask for it before they infer (perf_analyzer does so first of all), so it is
read here with tritonclient's own `get_model_config`, against Triton's model_config.proto field
names: name, platform, backend, max_batch_size, input/output with data_type and dims.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tritonclient.http as triton

from support.models import BATCH_PROBE_PREDICTOR, model_deployment, python_model, route
from support.perf_analyzer import perf_analyzer
from support.ray_cluster import ServeCluster

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def served(
    serve_cluster: ServeCluster, example_models: Path, tmp_path_factory: Any
) -> ServeCluster:
    """iris (versions 1 and 2, traffic on 2) unbatched; the batch probe with batching on."""
    probe = python_model(tmp_path_factory.mktemp("probe"), "probe", BATCH_PROBE_PREDICTOR)
    iris = model_deployment(
        "iris",
        {"model": {"format": "onnx", "storageUri": (example_models / "iris-onnx").as_uri()}},
    )
    batched = model_deployment(
        "probe",
        {
            "model": {
                "format": "python",
                "storageUri": probe.as_uri(),
                "python": {"predictorClass": "predictor:BatchProbe"},
            },
            "batching": {"maxBatchSize": 8, "batchWaitTimeoutMs": 20},
        },
    )
    serve_cluster.deploy([route(iris, {"2": 100}, live=["1", "2"]), route(batched, {"1": 100})])
    return serve_cluster


@pytest.fixture
def client(served: ServeCluster) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=served.address)


def test_unbatched_onnx_model(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("iris")
    assert config == {
        "name": "iris",
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"specific": {"versions": ["2"]}},
        "max_batch_size": 0,
        "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": [-1, 4]}],
        "output": [
            {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [-1, 3]},
            {"name": "label", "data_type": "TYPE_INT64", "dims": [-1]},
        ],
    }


def test_versioned_url_describes_that_version(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("iris", model_version="1")
    assert config["name"] == "iris"
    assert config["version_policy"] == {"specific": {"versions": ["1"]}}
    assert [tensor["name"] for tensor in config["input"]] == ["input"]


def test_batched_model_leaves_out_the_batch_dimension(
    client: triton.InferenceServerClient,
) -> None:
    config = client.get_model_config("probe")
    assert config["platform"] == "python"
    assert config["backend"] == "python"
    assert config["max_batch_size"] == 8
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 20000}
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [2]}]
    assert config["output"] == [
        {"name": "y", "data_type": "TYPE_FP32", "dims": [2]},
        {"name": "rows", "data_type": "TYPE_INT64", "dims": []},
    ]


def test_unknown_model_config_is_a_v2_404(client: triton.InferenceServerClient) -> None:
    with pytest.raises(triton.InferenceServerException, match="not found"):
        client.get_model_config("nope")


@pytest.mark.parametrize(
    ("model", "shape", "batch"), [("iris", "input:1,4", "1"), ("probe", "x:2", "4")]
)
def test_perf_analyzer_drives_rayship_unmodified(
    served: ServeCluster, tmp_path: Path, model: str, shape: str, batch: str
) -> None:
    """Triton's own load generator reads metadata and `/config`, then infers (binary tensors);
    for the batched model it sends batches of `batch` rows, as Triton's max_batch_size allows."""
    row = perf_analyzer(served.address, model, "http", shape, tmp_path / "perf.csv", batch=batch)
    assert float(row["Inferences/Second"]) > 0, row
