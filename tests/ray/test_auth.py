"""Bearer tokens on a real Serve: the model URL, a canary split through `/v2`, and what stays
open (readiness, health, models without tokens). Tokens reach the replicas as local mode and
the operator hand them over: in `ModelRouting.tokens`, composed into hashes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from support.http import http_call
from support.models import model_deployment, route
from support.ray_cluster import ServeCluster

pytestmark = pytest.mark.ray

TOKENS = ("token-old", "token-new")  # two at once: a rotation in progress
ROW = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}
BODY = json.dumps({"inputs": [ROW]}).encode()


@pytest.fixture(scope="module")
def served(serve_cluster: ServeCluster, example_models: Path) -> ServeCluster:
    """`guarded` (one version), `guarded-canary` (split 50/50) and `open`, all iris."""
    iris = {"format": "onnx", "storageUri": (example_models / "iris-onnx").as_uri()}
    guarded = route(model_deployment("guarded", {"model": iris}), {"2": 100})
    canary = route(model_deployment("guarded-canary", {"model": iris}), {"1": 50, "2": 50})
    serve_cluster.deploy(
        [
            dataclasses.replace(guarded, tokens=TOKENS),
            dataclasses.replace(canary, tokens=TOKENS),
            route(model_deployment("open", {"model": iris}), {"2": 100}),
        ]
    )
    return serve_cluster


def infer(served: ServeCluster, model: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return http_call(f"{served.url}/v2/models/{model}/infer", "POST", BODY, headers)


@pytest.mark.parametrize("model", ["guarded", "guarded-canary"])
def test_no_or_a_wrong_token_is_401_with_a_v2_body(served: ServeCluster, model: str) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dG9rZW4="}):
        status, reply_headers, body = infer(served, model, **headers)
        assert status == 401, body
        assert reply_headers["www-authenticate"].startswith("Bearer")
        assert model in json.loads(body)["error"]
    status, _, body = http_call(f"{served.url}/v2/models/{model}")  # metadata too
    assert status == 401


@pytest.mark.parametrize("model", ["guarded", "guarded-canary"])
@pytest.mark.parametrize("token", TOKENS)
def test_each_accepted_token_passes(served: ServeCluster, model: str, token: str) -> None:
    for _ in range(4):  # both versions of the canary
        status, _, body = infer(served, model, Authorization=f"Bearer {token}")
        assert status == 200, body
        assert json.loads(body)["outputs"][1]["data"] == [0]


def test_tritonclient_sends_the_token_as_a_header(served: ServeCluster) -> None:
    client = triton.InferenceServerClient(url=served.address)
    given = triton.InferInput("input", [1, 4], "FP32")
    given.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], np.float32), binary_data=True)

    result = client.infer("guarded", [given], headers={"Authorization": f"Bearer {TOKENS[1]}"})

    assert result.as_numpy("label").tolist() == [0]
    with pytest.raises(InferenceServerException, match="needs a bearer token"):
        client.infer("guarded", [given])


def test_readiness_health_and_open_models_need_no_token(served: ServeCluster) -> None:
    client = triton.InferenceServerClient(url=served.address)

    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("guarded")
    assert client.is_model_ready("guarded-canary")
    assert infer(served, "open")[0] == 200
