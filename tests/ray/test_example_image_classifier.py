"""The digit classifier example on a real Serve, deployed from examples/image-classifier.yaml
(storageUri pointed at the `example_models` build) with the batching of its manifest in
manifests/examples: held-out digits sent as PNG files, by tritonclient's binary BYTES and as
base64 in plain JSON as curl sends them, must come back read right."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
import yaml

from support.http import post_json
from support.models import build_models, model_deployment, route
from support.ray_cluster import ServeCluster

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
MODEL = "image-classifier"


def yaml_spec(path: Path) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(path.read_text())["spec"]
    return spec


@pytest.fixture(scope="module")
def served(serve_cluster: ServeCluster, example_models: Path) -> ServeCluster:
    spec = yaml_spec(REPO / "examples" / f"{MODEL}.yaml")
    spec["model"]["storageUri"] = (example_models / MODEL).as_uri()
    spec["batching"] = yaml_spec(REPO / "manifests" / "examples" / f"{MODEL}.yaml")["batching"]
    serve_cluster.deploy([route(model_deployment(MODEL, spec), {"1": 100})])
    return serve_cluster


@pytest.fixture
def client(served: ServeCluster) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=served.address, network_timeout=120)


@pytest.fixture(scope="module")
def digits() -> tuple[list[bytes], np.ndarray]:
    """The held-out digits as PNG files, dark ink on light paper, and their labels."""
    pixels, labels = build_models.held_out_digits()
    files = [build_models.encode_image(255 - p) for p in pixels]
    return files, np.array([str(label).encode() for label in labels], dtype=object)


def accuracy(labels: np.ndarray, expected: np.ndarray) -> float:
    """The share of rows whose best label is the expected one."""
    return float(np.mean(labels[:, 0] == expected))


def infer_binary(
    client: triton.InferenceServerClient, files: list[bytes], **parameters: Any
) -> dict[str, np.ndarray]:
    """The outputs of a tritonclient request with the files as binary BYTES elements."""
    image = triton.InferInput("image", [len(files)], "BYTES")
    image.set_data_from_numpy(np.array(files, dtype=object), binary_data=True)
    outputs = [triton.InferRequestedOutput(n, binary_data=True) for n in ("label", "probability")]
    result = client.infer(MODEL, [image], outputs=outputs, parameters=parameters or None)
    return {name: result.as_numpy(name) for name in ("label", "probability")}


def post_base64(
    served: ServeCluster, files: list[bytes], parameters: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """Status and body of a plain JSON request carrying the files base64-encoded."""
    image = {"name": "image", "datatype": "BYTES", "shape": [len(files)],
             "data": [base64.b64encode(f).decode() for f in files],
             "parameters": {"content_type": "base64"}}  # fmt: skip
    document = {"inputs": [image], "parameters": parameters or {}}
    return post_json(f"{served.url}/v2/models/{MODEL}/infer", document)


def json_outputs(body: dict[str, Any]) -> dict[str, np.ndarray]:
    """A JSON answer's outputs as arrays of their shape, BYTES as `bytes` like tritonclient's."""
    arrays = {}
    for out in body["outputs"]:
        if out["datatype"] == "BYTES":
            data = np.array([item.encode() for item in out["data"]], dtype=object)
        else:
            data = np.array(out["data"], dtype=np.float32)
        arrays[out["name"]] = data.reshape(out["shape"])
    return arrays


def test_tritonclient_binary_png_files_are_read_right(
    client: triton.InferenceServerClient, digits: tuple[list[bytes], np.ndarray]
) -> None:
    files, expected = digits

    result = infer_binary(client, files)

    assert result["label"].shape == result["probability"].shape == (len(files), 5)
    assert accuracy(result["label"], expected) >= 0.9
    assert (np.diff(result["probability"], axis=1) <= 0).all(), "best first"


def test_json_base64_png_files_answer_as_binary_ones(
    served: ServeCluster,
    client: triton.InferenceServerClient,
    digits: tuple[list[bytes], np.ndarray],
) -> None:
    files, expected = digits

    status, body = post_base64(served, files)

    assert status == 200, body
    answer = json_outputs(body)
    assert accuracy(answer["label"], expected) >= 0.9
    binary = infer_binary(client, files)
    assert answer["label"].tolist() == binary["label"].tolist()
    np.testing.assert_allclose(answer["probability"], binary["probability"], rtol=1e-6)


def test_top_k_and_confidence_threshold_change_the_answer(
    client: triton.InferenceServerClient, digits: tuple[list[bytes], np.ndarray]
) -> None:
    files = digits[0][:40]
    every = infer_binary(client, files, top_k=10)

    sure = infer_binary(client, files, top_k=2, confidence_threshold=0.9)

    assert sure["label"].shape == (len(files), 2)
    kept = every["probability"][:, :2] >= 0.9
    assert 0 < kept.sum() < len(files), "some images are read surely, some are not"
    assert sure["label"].tolist() == np.where(kept, every["label"][:, :2], b"").tolist()
    np.testing.assert_array_equal(
        sure["probability"], np.where(kept, every["probability"][:, :2], 0)
    )


@pytest.mark.parametrize(
    ("damage", "parameters", "error"),
    [
        (True, {}, "image[1]: not a PNG or JPEG image (image file is truncated"),
        (False, {"top_k": 11}, "parameter 'top_k': must be 1..10, got 11"),
    ],
    ids=["corrupt-image", "top-k-out-of-range"],
)
def test_bad_requests_get_a_v2_error_naming_what_is_wrong(
    served: ServeCluster,
    digits: tuple[list[bytes], np.ndarray],
    damage: bool,
    parameters: dict[str, Any],
    error: str,
) -> None:
    files = digits[0][:3]
    if damage:
        files[1] = files[1][: len(files[1]) // 2]

    status, body = post_base64(served, files, parameters)

    assert status == 400, body
    assert body["error"].startswith(error)


def test_an_empty_batch_answers_empty_rows(served: ServeCluster) -> None:
    status, body = post_base64(served, [], {"top_k": 3})

    assert status == 200, body
    answer = json_outputs(body)
    assert answer["label"].shape == answer["probability"].shape == (0, 3)


def test_batched_requests_answer_as_they_would_alone(
    served: ServeCluster, digits: tuple[list[bytes], np.ndarray]
) -> None:
    """Concurrent requests with the same parameters may share a call (maxBatchSize 16); rows
    keep top_k columns, so an answer cannot depend on which images it was batched with.
    Plain JSON from threads: a tritonclient client must not be shared between threads."""
    files = digits[0][:16]

    def ask(image: bytes) -> dict[str, np.ndarray]:
        status, body = post_base64(served, [image], {"confidence_threshold": 0.5})
        assert status == 200, body
        return json_outputs(body)

    alone = [ask(f) for f in files]
    with ThreadPoolExecutor(len(files)) as pool:
        together = list(pool.map(ask, files))

    for one, batched in zip(alone, together, strict=True):
        assert batched["label"].tolist() == one["label"].tolist()
        np.testing.assert_allclose(batched["probability"], one["probability"], rtol=1e-5)
