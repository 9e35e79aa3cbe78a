"""The sentence embedder and the text classifier examples on a real Serve, deployed from their
YAMLs in examples/ (storageUri pointed at the `example_models` build): plain JSON as curl sends
it and tritonclient's binary BYTES give the same vectors, Korean included, and batching, which
the embedder's YAML turns on, cannot change them."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
import yaml
from tritonclient.utils import InferenceServerException

from support.models import model_deployment, route
from support.ray_cluster import ServeCluster

pytestmark = pytest.mark.ray

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Each English text with a paraphrase and an unrelated text after it, then the same in Korean.
TEXTS = [
    "The weather is lovely today.",
    "It is sunny and warm today.",
    "Our team won the football match.",
    "오늘 날씨가 정말 좋네요.",
    "오늘은 날씨가 아주 맑아요.",
    "축구 경기에서 우리 팀이 이겼다.",
]
HELD_OUT = {
    "The goalkeeper saved a penalty in the final.": "sports",
    "Tomorrow will be rainy and windy.": "weather",
    "오늘 오후에 비가 많이 온다.": "weather",
    "이 라면은 정말 맵고 맛있다.": "food",
}


def example_spec(name: str, example_models: Path) -> dict[str, Any]:
    """The spec of examples/<name>.yaml, serving the session's build of the model."""
    spec: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())["spec"]
    spec["model"]["storageUri"] = (example_models / name).as_uri()
    return spec


@pytest.fixture(scope="module")
def served(serve_cluster: ServeCluster, example_models: Path) -> ServeCluster:
    serve_cluster.deploy(
        [
            route(model_deployment(name, example_spec(name, example_models)), {"1": 100})
            for name in ("sentence-embedder", "text-classifier")
        ]
    )
    return serve_cluster


@pytest.fixture
def client(served: ServeCluster) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=served.address, network_timeout=120)


def infer_json(served: ServeCluster, model: str, texts: list[str]) -> dict[str, np.ndarray]:
    """The outputs of a plain JSON request, as `curl -d` sends it, as arrays of their shape."""
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)],
                        "data": texts}]}  # fmt: skip
    request = urllib.request.Request(
        f"{served.url}/v2/models/{model}/infer", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        outputs = json.loads(response.read())["outputs"]
    return {out["name"]: np.array(out["data"]).reshape(out["shape"]) for out in outputs}


def embed_json(served: ServeCluster, texts: list[str]) -> np.ndarray:
    return infer_json(served, "sentence-embedder", texts)["embedding"]


def binary_texts(texts: list[bytes]) -> triton.InferInput:
    given = triton.InferInput("text", [len(texts)], "BYTES")
    given.set_data_from_numpy(np.array(texts, dtype=object), binary_data=True)
    return given


def test_json_and_binary_requests_get_the_same_vectors(
    served: ServeCluster, client: triton.InferenceServerClient
) -> None:
    from_json = embed_json(served, TEXTS)

    result = client.infer(
        "sentence-embedder",
        [binary_texts([text.encode() for text in TEXTS])],
        outputs=[triton.InferRequestedOutput("embedding", binary_data=True)],
    )

    from_binary = result.as_numpy("embedding")
    assert from_binary.dtype == np.float32
    assert from_binary.shape == from_json.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(from_binary, from_json, atol=1e-6)  # JSON carries float32 as is
    np.testing.assert_allclose(np.linalg.norm(from_binary, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("first", [0, 3], ids=["en", "ko"])
def test_a_paraphrase_is_nearer_than_an_unrelated_text(served: ServeCluster, first: int) -> None:
    vector, near, far = embed_json(served, TEXTS[first : first + 3])

    assert vector @ near > vector @ far + 0.2, (vector @ near, vector @ far)


def test_concurrent_single_requests_equal_one_batched_request(served: ServeCluster) -> None:
    """With batching on, the single requests share calls (padded to their longest text)."""
    items = TEXTS * 3
    with ThreadPoolExecutor(len(items)) as pool:
        singles = list(pool.map(lambda text: embed_json(served, [text]), items))

    np.testing.assert_allclose(np.concatenate(singles), embed_json(served, items), atol=1e-5)


def test_metadata_and_config_show_the_vector_width_and_batching(
    client: triton.InferenceServerClient,
) -> None:
    metadata = client.get_model_metadata("sentence-embedder")
    assert metadata["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]
    config = client.get_model_config("sentence-embedder")
    assert config["max_batch_size"] == 16
    assert config["output"] == [{"name": "embedding", "data_type": "TYPE_FP32", "dims": [384]}]


def test_text_that_is_not_utf8_is_a_400_naming_it(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match=r"text\[1\] is not valid UTF-8"):
        client.infer("sentence-embedder", [binary_texts([b"fine", b"\xff\xfe"])])


def test_classifier_labels_held_out_sentences(served: ServeCluster) -> None:
    outputs = infer_json(served, "text-classifier", list(HELD_OUT))

    assert outputs["label"].tolist() == list(HELD_OUT.values())
    assert ((outputs["score"] > 1 / 3) & (outputs["score"] <= 1)).all(), outputs["score"]
