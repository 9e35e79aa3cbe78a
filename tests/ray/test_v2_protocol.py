"""V2 Open Inference Protocol conformance on a real local Ray, with real V2 clients.

tritonclient's HTTP client (JSON and the binary extension) and raw HTTP call models deployed
through local mode's compose-and-PUT path; results are compared with the runtime run in-process.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from support.http import http_call
from support.models import (
    FAILING_PREDICTOR,
    V2_DATATYPES,
    model_deployment,
    python_model,
    route,
)
from support.ray_cluster import ServeCluster

pytestmark = pytest.mark.ray

IRIS_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
SMALL_BODY_LIMIT = 4096


@pytest.fixture(scope="module")
def served(
    serve_cluster: ServeCluster, example_models: Path, echo_model: Path, tmp_path_factory: Any
) -> ServeCluster:
    """iris (versions 1 and 2, traffic on 2), echo, a fragile model and one with no traffic."""
    fragile = python_model(tmp_path_factory.mktemp("fragile"), "fragile", FAILING_PREDICTOR)
    iris = model_deployment(
        "iris",
        {"model": {"format": "onnx", "storageUri": (example_models / "iris-onnx").as_uri()}},
    )
    echo = model_deployment(
        "echo",
        {
            "model": {
                "format": "python",
                "storageUri": echo_model.as_uri(),
                "python": {"predictorClass": "predictor:Echo"},
            }
        },
    )
    failing = model_deployment(
        "fragile",
        {
            "model": {
                "format": "python",
                "storageUri": fragile.as_uri(),
                "python": {"predictorClass": "predictor:Fragile"},
            }
        },
    )
    pending = model_deployment(
        "pending",
        {"model": {"format": "onnx", "storageUri": (example_models / "iris-onnx").as_uri()}},
    )
    small_limit = {"RAYSHIP_MAX_REQUEST_BYTES": str(SMALL_BODY_LIMIT)}
    serve_cluster.deploy(
        [
            route(iris, {"2": 100}, live=["1", "2"]),
            route(echo, {"1": 100}),
            route(failing, {"1": 100}, environment=small_limit),
            route(pending, {}, live=["1"]),
        ]
    )
    return serve_cluster


@pytest.fixture
def client(served: ServeCluster) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=served.address)


def in_process(example_models: Path, version: str, rows: np.ndarray) -> list[np.ndarray]:
    """The floor: the same file run by ONNX Runtime in this process."""
    session = onnxruntime.InferenceSession(
        str(example_models / "iris-onnx" / version / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": rows}), strict=True))


def http(
    served: ServeCluster, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """A raw HTTP call; returns status, headers and body, whatever the status."""
    return http_call(served.url + path, method, body, headers)


def infer_json(served: ServeCluster, path: str, payload: Any) -> tuple[int, Any]:
    status, _, body = http(served, "POST", path, json.dumps(payload).encode())
    return status, json.loads(body)


# --- server and model endpoints ---------------------------------------------------------------


def test_server_metadata_and_health(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "rayship"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_lists_live_versions_and_tensors(
    client: triton.InferenceServerClient,
) -> None:
    metadata = client.get_model_metadata("iris")
    assert metadata["name"] == "iris"
    assert metadata["versions"] == ["1", "2"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert {output["name"] for output in metadata["outputs"]} == {"probabilities", "label"}
    versioned = client.get_model_metadata("iris", model_version="1")
    assert versioned["versions"] == ["1", "2"]
    assert versioned["name"] == "iris"


def test_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", model_version="1")
    assert not client.is_model_ready("iris", model_version="9")
    assert not client.is_model_ready("nobody")
    assert not client.is_model_ready("pending")


# --- inference ---------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("version", ["1", "2"])
def test_iris_matches_the_runtime_in_process(
    client: triton.InferenceServerClient, example_models: Path, binary: bool, version: str
) -> None:
    given = triton.InferInput("input", list(IRIS_ROWS.shape), "FP32")
    given.set_data_from_numpy(IRIS_ROWS, binary_data=binary)
    wanted = [
        triton.InferRequestedOutput("probabilities", binary_data=binary),
        triton.InferRequestedOutput("label", binary_data=binary),
    ]
    result = client.infer("iris", [given], model_version=version, outputs=wanted)
    expected = in_process(example_models, version, IRIS_ROWS)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"])
    np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])
    assert result.get_response()["model_version"] == version


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_from_tritonclient(
    client: triton.InferenceServerClient, example_models: Path, algorithm: str
) -> None:
    """tritonclient's request compression sets Content-Encoding; the answer must not change."""
    given = triton.InferInput("input", list(IRIS_ROWS.shape), "FP32")
    given.set_data_from_numpy(IRIS_ROWS, binary_data=True)

    result = client.infer("iris", [given], request_compression_algorithm=algorithm)

    expected = in_process(example_models, "2", IRIS_ROWS)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"])


def test_unversioned_url_follows_the_traffic(
    client: triton.InferenceServerClient, example_models: Path
) -> None:
    given = triton.InferInput("input", list(IRIS_ROWS.shape), "FP32")
    given.set_data_from_numpy(IRIS_ROWS)
    result = client.infer("iris", [given], request_id="req-7")
    assert result.get_response()["model_version"] == "2"
    assert result.get_response()["id"] == "req-7"
    expected = in_process(example_models, "2", IRIS_ROWS)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"])


def _every_datatype() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    arrays: dict[str, np.ndarray] = {}
    for datatype in V2_DATATYPES:
        if datatype == "BOOL":
            arrays[datatype] = rng.integers(0, 2, (2, 3)).astype(bool)
        elif datatype == "BYTES":
            words = [b"alpha", b"", "\u00e9t\u00e9".encode(), b"x" * 40, b"beta", b"gamma"]
            arrays[datatype] = np.array(words, dtype=object).reshape(2, 3)
        else:
            dtype = triton_dtype(datatype)
            arrays[datatype] = (rng.random((2, 3)) * 100).astype(dtype)
    return arrays


def triton_dtype(datatype: str) -> Any:
    from tritonclient.utils import triton_to_np_dtype

    return triton_to_np_dtype(datatype)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_round_trips(client: triton.InferenceServerClient, binary: bool) -> None:
    arrays = _every_datatype()
    inputs = []
    for datatype, array in arrays.items():
        given = triton.InferInput(f"in_{datatype}", list(array.shape), datatype)
        given.set_data_from_numpy(array, binary_data=binary)
        inputs.append(given)
    outputs = [triton.InferRequestedOutput(f"out_{t}", binary_data=binary) for t in arrays]
    result = client.infer("echo", inputs, outputs=outputs)
    for datatype, array in arrays.items():
        got = result.as_numpy(f"out_{datatype}")
        assert got.shape == array.shape, datatype
        if datatype == "BYTES":  # tritonclient hands JSON BYTES back as str
            as_bytes = [item.encode() if isinstance(item, str) else item for item in got.flat]
            assert as_bytes == list(array.flat)
        else:
            assert got.dtype == array.dtype, datatype
            np.testing.assert_array_equal(got, array)


def test_output_selection_and_per_output_binary(client: triton.InferenceServerClient) -> None:
    given = triton.InferInput("input", list(IRIS_ROWS.shape), "FP32")
    given.set_data_from_numpy(IRIS_ROWS, binary_data=False)
    result = client.infer(
        "iris", [given], outputs=[triton.InferRequestedOutput("label", binary_data=True)]
    )
    response = result.get_response()
    assert [output["name"] for output in response["outputs"]] == ["label"]
    assert response["outputs"][0]["parameters"]["binary_data_size"] == 16
    assert result.as_numpy("label").shape == (2,)


def test_nested_json_data_equals_flat(served: ServeCluster) -> None:
    nested = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4],
                          "data": IRIS_ROWS.tolist()}]}  # fmt: skip
    flat = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4],
                        "data": IRIS_ROWS.ravel().tolist()}]}  # fmt: skip
    status_nested, nested_body = infer_json(served, "/v2/models/iris/infer", nested)
    status_flat, flat_body = infer_json(served, "/v2/models/iris/infer", flat)
    assert status_nested == status_flat == 200
    assert nested_body["outputs"] == flat_body["outputs"]


def test_parameters_are_accepted(served: ServeCluster) -> None:
    payload = {
        "id": "p",
        "parameters": {"trace": True, "priority": 3},
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                    "data": [1, 2, 3, 4], "parameters": {"note": "x"}}],
    }  # fmt: skip
    status, body = infer_json(served, "/v2/models/iris/infer", payload)
    assert status == 200
    assert body["id"] == "p"


# --- errors ------------------------------------------------------------------------------------


def _iris_input(**overrides: Any) -> dict[str, Any]:
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
    tensor.update(overrides)
    return {"inputs": [tensor]}


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/v2/models/iris/infer", _iris_input(datatype="FP64"), 400, "datatype FP64"),
        ("/v2/models/iris/infer", _iris_input(shape=[2, 4]), 400, "input 'input'"),
        ("/v2/models/iris/infer", _iris_input(name="petals"), 400, "unknown input 'petals'"),
        ("/v2/models/iris/infer", _iris_input(shape=[1, 5], data=[1] * 5), 400, "shape [1, 5]"),
        ("/v2/models/iris/infer", _iris_input(data=["a", "b", "c", "d"]), 400, "input 'input'"),
        ("/v2/models/iris/infer", _iris_input(datatype="FP128"), 400, "FP128"),
        ("/v2/models/iris/infer", {"inputs": []}, 400, "inputs"),
        ("/v2/models/iris/infer", {**_iris_input(), "outputs": [{"name": "x"}]}, 400, "'x'"),
        ("/v2/models/nobody/infer", _iris_input(), 404, "model 'nobody' not found"),
        ("/v2/models/iris/versions/9/infer", _iris_input(), 404, "no live version '9'"),
        ("/v2/models/pending/infer", _iris_input(), 503, "is not ready yet"),
    ],
)
def test_bad_requests_get_v2_errors(
    served: ServeCluster, path: str, body: Any, status: int, says: str
) -> None:
    got_status, headers, raw = http(served, "POST", path, json.dumps(body).encode())
    assert got_status == status
    assert headers["content-type"].startswith("application/json")
    error = json.loads(raw)
    assert set(error) == {"error"}
    assert says in error["error"]
    assert "Traceback" not in error["error"]


def test_malformed_json_is_a_400(served: ServeCluster) -> None:
    status, _, raw = http(served, "POST", "/v2/models/iris/infer", b'{"inputs": [')
    assert status == 400
    assert "JSON" in json.loads(raw)["error"]


def _binary_request(
    declared: int, payload: bytes, header_length: int | None = None
) -> tuple[bytes, str]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [1, 4],
                    "parameters": {"binary_data_size": declared},
                }
            ]
        }
    ).encode()
    length = len(header) if header_length is None else header_length
    return header + payload, str(length)


@pytest.mark.parametrize(
    ("declared", "payload", "header_length"),
    [
        (16, np.ones(3, np.float32).tobytes(), None),  # truncated binary payload
        (16, np.ones(5, np.float32).tobytes(), None),  # trailing bytes nobody claimed
        (12, np.ones(3, np.float32).tobytes(), None),  # size does not fit the shape
        (16, np.ones(4, np.float32).tobytes(), 10_000),  # header length beyond the body
    ],
    ids=["truncated", "too-long", "size-vs-shape", "header-length"],
)
def test_bad_binary_framing_is_a_400(
    served: ServeCluster, declared: int, payload: bytes, header_length: int | None
) -> None:
    body, length = _binary_request(declared, payload, header_length)
    status, _, raw = http(
        served, "POST", "/v2/models/iris/infer", body, **{"Inference-Header-Content-Length": length}
    )
    assert status == 400
    assert json.loads(raw)["error"]


def test_oversized_body_is_refused_and_serving_goes_on(served: ServeCluster) -> None:
    big = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2000],
                                  "data": [1.0] * 2000}]}).encode()  # fmt: skip
    assert len(big) > SMALL_BODY_LIMIT
    status, _, raw = http(served, "POST", "/v2/models/fragile/infer", big)
    assert status == 413
    assert "exceeds" in json.loads(raw)["error"]
    small = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}
    status, body = infer_json(served, "/v2/models/fragile/infer", small)
    assert (status, body["outputs"][0]["data"]) == (200, [2.0, 4.0])


def test_model_failure_is_a_500_without_traceback(served: ServeCluster) -> None:
    bad = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, -1]}]}
    status, body = infer_json(served, "/v2/models/fragile/infer", bad)
    assert status == 500
    assert "model 'fragile' version '1' failed" in body["error"]
    assert "ZeroDivisionError" in body["error"]
    assert "Traceback" not in body["error"]
    good = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [3]}]}
    assert infer_json(served, "/v2/models/fragile/infer", good)[0] == 200
    # "see the replica's log" must be true at once, not after Serve's log buffer fills
    assert replica_log_shows("fragile@1", "ZeroDivisionError: negative input reached a division")


def replica_log_shows(app: str, text: str, within_s: float = 15) -> bool:
    """Whether `text` reaches a log file of one of `app`'s replicas within `within_s`."""
    from ray._private import worker  # the only way to the session's folder

    folder = Path(worker._global_node.get_session_dir_path()) / "logs" / "serve"
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if any(text in log.read_text() for log in folder.glob(f"replica_{app}_*.log")):
            return True
        time.sleep(0.5)
    return False


def test_wrong_method_and_unknown_route(served: ServeCluster) -> None:
    status, headers, raw = http(served, "GET", "/v2/models/iris/infer")
    assert status == 405
    assert headers["allow"] == "POST"
    assert "POST" in json.loads(raw)["error"]
    status, _, raw = http(served, "GET", "/v2/models/iris/versions/1/stats")
    assert status == 404


def test_tritonclient_sees_errors_as_exceptions(client: triton.InferenceServerClient) -> None:
    given = triton.InferInput("input", [1, 4], "FP64")
    given.set_data_from_numpy(np.ones((1, 4), np.float64))
    with pytest.raises(InferenceServerException, match="datatype FP64"):
        client.infer("iris", [given])


# --- traffic -----------------------------------------------------------------------------------


def test_canary_split_over_many_requests(served: ServeCluster, example_models: Path) -> None:
    iris = model_deployment(
        "iris",
        {"model": {"format": "onnx", "storageUri": (example_models / "iris-onnx").as_uri()}},
    )
    served.deploy([route(iris, {"1": 70, "2": 30})])
    client = triton.InferenceServerClient(url=served.address)
    given = triton.InferInput("input", [1, 4], "FP32")
    given.set_data_from_numpy(IRIS_ROWS[:1])
    versions = Counter(
        client.infer("iris", [given]).get_response()["model_version"] for _ in range(400)
    )
    assert set(versions) == {"1", "2"}
    assert 0.22 < versions["2"] / 400 < 0.38, versions


def replica_ids(served: ServeCluster, apps: list[str]) -> dict[str, set[str]]:
    """The replica ids Serve reports for each application."""
    applications = served.dashboard.applications()
    return {
        app: {
            replica["replica_id"]
            for deployment in applications[app]["deployments"].values()
            for replica in deployment["replicas"]
        }
        for app in apps
    }


def unversioned_answer(served: ServeCluster, wanted: str, timeout_s: float = 30) -> str:
    """The version answering `/v2/models/iris/infer`, once it is `wanted` (or the deadline)."""
    client = triton.InferenceServerClient(url=served.address)
    given = triton.InferInput("input", [1, 4], "FP32")
    given.set_data_from_numpy(IRIS_ROWS[:1])
    deadline = time.monotonic() + timeout_s
    while True:
        answered = str(client.infer("iris", [given]).get_response()["model_version"])
        if answered == wanted or time.monotonic() > deadline:
            return answered
        time.sleep(0.2)


def test_handing_the_model_url_between_versions_restarts_no_replica(
    served: ServeCluster, example_models: Path
) -> None:
    iris = model_deployment(
        "iris",
        {"model": {"format": "onnx", "storageUri": (example_models / "iris-onnx").as_uri()}},
    )
    served.deploy([route(iris, {"2": 100}, live=["1", "2"])])
    assert unversioned_answer(served, "2") == "2"
    before = replica_ids(served, ["iris@1", "iris@2"])
    for owner in ("1", "2"):
        served.deploy([route(iris, {owner: 100}, live=["1", "2"])])
        assert unversioned_answer(served, owner) == owner
        routes = {
            name: app["route_prefix"] for name, app in served.dashboard.applications().items()
        }
        assert routes[f"iris@{owner}"] == "/v2/models/iris"
        assert routes[f"iris@{'2' if owner == '1' else '1'}"] is None
    assert replica_ids(served, ["iris@1", "iris@2"]) == before
    assert all(before.values())
