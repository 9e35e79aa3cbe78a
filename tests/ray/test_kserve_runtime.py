"""KServe custom predictors on a real local Ray, behind Rayship's own codec and routes.

The predictors of tests/support/kserve_models.py are deployed through local mode's
compose-and-PUT path, like every other model, and called with tritonclient (JSON and the binary
extension) and raw HTTP: their answers, their V2 errors, and versions, a canary split and
batching, which apply to them as to any runtime.
"""

from __future__ import annotations

import http.client
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from support.kserve_models import (
    AVERAGER,
    AVERAGER_SPEC,
    SCALER,
    SCALER_SPEC,
    SHOUTER,
    SHOUTER_SPEC,
    kserve_version,
)
from support.models import model_deployment, route
from support.ray_cluster import ServeCluster

pytestmark = pytest.mark.ray

X = np.array([0.5, 1.0, 4.0], dtype=np.float32)
FACTORS = {"1": 2.0, "2": 3.0}  # factor.txt of each scaler version


def kserve(name: str, root: Path, fields: dict[str, Any], **spec: Any) -> Any:
    return model_deployment(
        name, {"model": {"format": "kserve", "storageUri": root.as_uri(), **fields}, **spec}
    )


@pytest.fixture(scope="module")
def served(serve_cluster: ServeCluster, tmp_path_factory: pytest.TempPathFactory) -> ServeCluster:
    """scaler (versions 1 and 2, traffic split 50/50), shouter (batched), averager."""
    scaler = tmp_path_factory.mktemp("scaler")
    for version, factor in FACTORS.items():
        kserve_version(scaler / version, SCALER, **{"factor.txt": str(factor)})
    shouter = kserve_version(tmp_path_factory.mktemp("shouter") / "1", SHOUTER).parent
    averager = kserve_version(tmp_path_factory.mktemp("averager") / "1", AVERAGER).parent
    batching = {"maxBatchSize": 8, "batchWaitTimeoutMs": 50}
    serve_cluster.deploy(
        [
            route(kserve("scaler", scaler, SCALER_SPEC), {"1": 50, "2": 50}),
            route(kserve("shouter", shouter, SHOUTER_SPEC, batching=batching), {"1": 100}),
            route(kserve("averager", averager, AVERAGER_SPEC), {"1": 100}),
        ]
    )
    return serve_cluster


@pytest.fixture
def client(served: ServeCluster) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=served.address)


def post(served: ServeCluster, path: str, payload: Any) -> tuple[int, Any]:
    """A raw HTTP POST of a JSON body, as curl sends one: the status and the JSON answer."""
    connection = http.client.HTTPConnection(served.http.host, served.http.port, timeout=60)
    try:
        body = json.dumps(payload)
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def scaler_request(values: list[float], **parameters: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "id": "r1",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [len(values)], "data": values}],
    }
    if parameters:
        request["parameters"] = parameters
    return request


def test_metadata_comes_from_the_spec_or_the_models_own_hooks(
    client: triton.InferenceServerClient,
) -> None:
    scaler = client.get_model_metadata("scaler", model_version="2")
    assert scaler["platform"] == "kserve"
    assert scaler["versions"] == ["1", "2"]
    assert scaler["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1]}]
    averager = client.get_model_metadata("averager")
    assert averager["inputs"] == [{"name": "rows", "datatype": "FP64", "shape": [-1, -1]}]
    assert averager["outputs"] == [{"name": "mean", "datatype": "FP64", "shape": [-1]}]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("version", ["1", "2"])
def test_tritonclient_gets_each_versions_answer(
    client: triton.InferenceServerClient, binary: bool, version: str
) -> None:
    given = triton.InferInput("x", list(X.shape), "FP32")
    given.set_data_from_numpy(X, binary_data=binary)
    wanted = [
        triton.InferRequestedOutput("y", binary_data=binary),
        triton.InferRequestedOutput("served_by", binary_data=binary),
    ]

    result = client.infer("scaler", [given], model_version=version, outputs=wanted)

    np.testing.assert_array_equal(result.as_numpy("y"), X * FACTORS[version])
    assert result.get_response()["model_version"] == version
    # made with its V2 name and loaded once, as KServe's server would have it
    assert [bytes(v) if binary else v.encode() for v in result.as_numpy("served_by")] == [
        b"scaler",
        b"1",
    ]


def test_raw_http_with_request_parameters(served: ServeCluster) -> None:
    status, body = post(
        served, "/v2/models/scaler/versions/1/infer", scaler_request([1, 2], scale=10)
    )

    assert status == 200
    assert body["id"] == "r1"
    assert body["outputs"][0] == {"name": "y", "datatype": "FP32", "shape": [2], "data": [10, 20]}


def test_invalid_input_is_a_400_naming_the_model_and_the_reason(served: ServeCluster) -> None:
    status, body = post(served, "/v2/models/scaler/versions/2/infer", scaler_request([-1]))

    assert status == 400
    assert body == {"error": "model 'scaler' refused the input: x must not be negative"}


def test_a_model_exception_is_a_500_naming_the_model(served: ServeCluster) -> None:
    status, body = post(served, "/v2/models/scaler/versions/2/infer", scaler_request([13]))

    assert status == 500
    assert "'scaler'" in body["error"]
    assert "13 reached a division" in body["error"]
    assert "Traceback" not in body["error"]
    assert post(served, "/v2/models/scaler/versions/2/infer", scaler_request([1]))[0] == 200


def test_the_canary_split_reaches_both_versions(served: ServeCluster) -> None:
    answers = Counter(
        post(served, "/v2/models/scaler/infer", scaler_request([1]))[1]["model_version"]
        for _ in range(30)
    )

    assert set(answers) == {"1", "2"}  # each missing from 30 tries: 2 in a billion


def test_async_handlers_with_batching_answer_each_request(served: ServeCluster) -> None:
    def shout(word: str) -> tuple[int, Any]:
        request = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2],
                               "data": [word, "\u00e9t\u00e9"]}]}  # fmt: skip
        return post(served, "/v2/models/shouter/infer", request)

    words = [f"word{i}" for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(shout, words))

    for word, (status, body) in zip(words, answers, strict=True):
        assert status == 200
        assert body["outputs"][0]["data"] == [word.upper() + "!", "\u00c9T\u00c9!"]


def test_a_dict_answer(client: triton.InferenceServerClient) -> None:
    rows = np.array([[1.0, 2.0], [1.0, 1.0 / 3.0]])
    given = triton.InferInput("rows", list(rows.shape), "FP64")
    given.set_data_from_numpy(rows)

    result = client.infer("averager", [given])

    np.testing.assert_array_equal(result.as_numpy("mean"), [1.5, 0.667])
