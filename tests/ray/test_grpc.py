"""The V2 gRPC service (`inference.GRPCInferenceService`) on a real local Ray, with real clients.

tritonclient.grpc, a stub calling the service with hand-made ModelInferRequests, and Triton's
perf_analyzer talk to Serve's gRPC ingress (`ServeCluster.grpc_address`) through HAProxy, as
they would to Triton. What the REST conformance suite (test_v2_protocol.py) pins is pinned here
over gRPC: every datatype round-trips, as raw and as typed contents; outputs, parameters and
request ids reach the model and come back; errors are gRPC status codes whose message names the
input; versions, canary splits, bearer tokens, dynamic batching and large tensors behave as over
REST; a version switch under load fails no call; and a ModelInfer takes HAProxy's direct route
to the version application that owns its model (checked through HAProxy's own counters).
"""

from __future__ import annotations

import dataclasses
import json
import queue
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from support.haproxy_counts import HAProxyCounts
from support.models import (
    BATCH_PROBE_PREDICTOR,
    V2_DATATYPES,
    model_deployment,
    python_model,
    route,
)
from support.perf_analyzer import perf_analyzer
from support.ray_cluster import ServeCluster
from support.traffic import SteadyLoad, grpc_client

pytestmark = pytest.mark.ray

TOKEN = "token-grpc"
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
IRIS_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
TYPED_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The typed field of `InferTensorContents` of each datatype (the V2 gRPC spec; FP16 has none)."""

MIRROR_PREDICTOR = '''
import json

import numpy as np
from rayship_predictors.sdk import Parameter, Predictor, Tensor

DATATYPES = {datatypes!r}


class Mirror(Predictor):
    """Every input back as the output of its datatype (empty when left out), and `seen`: what
    reached predict. Raises when the request's parameter `fail` is true."""

    inputs = tuple(Tensor(f"in_{{t}}", t, (-1, -1), optional=True) for t in DATATYPES)
    outputs = (
        *(Tensor(f"out_{{t}}", t, (-1, -1)) for t in DATATYPES),
        Tensor("seen", "BYTES", (1,)),
    )
    parameters = (Parameter("top_k", int, 5),)

    def predict(self, inputs, parameters, input_parameters):
        if parameters.get("fail"):
            raise ZeroDivisionError("asked to fail")
        seen = {{
            "parameters": parameters,
            "input_parameters": input_parameters,
            "given": sorted(inputs),
        }}
        answer = {{f"out_{{t}}": inputs.get(f"in_{{t}}", np.zeros((0, 0))) for t in DATATYPES}}
        answer["seen"] = np.array([json.dumps(seen).encode()], dtype=object)
        return answer
'''


@pytest.fixture(scope="module")
def example_iris(example_models: Path) -> Path:
    return example_models / "iris-onnx"


@pytest.fixture(scope="module")
def deploy_all(
    serve_cluster: ServeCluster, example_iris: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[dict[str, int]], None]:
    """Deploys mirror, the batched probe, iris (versions 1 and 2 live) with the given iris
    traffic, `guarded` (iris version 2 behind a bearer token) and `pending` (iris version 1
    live with no traffic yet): Serve's PUT replaces every application, so every deploy names
    them all."""
    mirror_dir = python_model(
        tmp_path_factory.mktemp("mirror"),
        "mirror",
        MIRROR_PREDICTOR.format(datatypes=V2_DATATYPES),
    )
    probe_dir = python_model(tmp_path_factory.mktemp("probe"), "probe", BATCH_PROBE_PREDICTOR)

    def python(folder: Path, predictor: str) -> dict[str, Any]:
        return {
            "format": "python",
            "storageUri": folder.as_uri(),
            "python": {"predictorClass": f"predictor:{predictor}"},
        }

    mirror = model_deployment("mirror", {"model": python(mirror_dir, "Mirror")})
    probe = model_deployment(
        "probe",
        {
            "model": python(probe_dir, "BatchProbe"),
            "batching": {"maxBatchSize": 8, "batchWaitTimeoutMs": 20},
        },
    )
    onnx = {"format": "onnx", "storageUri": example_iris.as_uri()}
    iris = model_deployment("iris", {"model": onnx})
    guarded = route(model_deployment("guarded", {"model": onnx}), {"2": 100})
    pending = route(model_deployment("pending", {"model": onnx}), {}, live=["1"])

    def deploy(iris_traffic: dict[str, int]) -> None:
        serve_cluster.deploy(
            [
                route(mirror, {"1": 100}),
                route(probe, {"1": 100}),
                route(iris, iris_traffic, live=["1", "2"]),
                dataclasses.replace(guarded, tokens=(TOKEN,)),
                pending,
            ]
        )

    return deploy


@pytest.fixture(scope="module")
def served(
    serve_cluster: ServeCluster, deploy_all: Callable[[dict[str, int]], None]
) -> ServeCluster:
    """mirror, the batched probe, guarded and pending, each one version; iris with traffic on
    version 1 of 2."""
    deploy_all({"1": 100})
    return serve_cluster


@pytest.fixture(scope="module")
def client(served: ServeCluster) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(served.grpc_address)
    yield client
    client.close()


def channel(address: str) -> grpc.Channel:
    """A channel that takes answers of any size, as tritonclient's does."""
    unlimited = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    return grpc.insecure_channel(address, options=unlimited)


@pytest.fixture(scope="module")
def stub(served: ServeCluster) -> service_pb2_grpc.GRPCInferenceServiceStub:
    """The protocol's own stub: for requests tritonclient cannot build."""
    return service_pb2_grpc.GRPCInferenceServiceStub(channel(served.grpc_address))


@pytest.fixture(scope="module")
def send_bytes(served: ServeCluster) -> Callable[[bytes], pb.ModelInferResponse]:
    """ModelInfer with a body written by hand, byte for byte."""

    def as_written(body: bytes) -> bytes:
        return body

    return channel(served.grpc_address).unary_unary(
        INFER_METHOD,
        request_serializer=as_written,
        response_deserializer=pb.ModelInferResponse.FromString,
    )


def iris_input(rows: np.ndarray = IRIS_ROWS) -> triton.InferInput:
    given = triton.InferInput("input", list(rows.shape), "FP32")
    given.set_data_from_numpy(rows)
    return given


def in_process(example_iris: Path, version: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The floor: the same file run by ONNX Runtime in this process."""
    session = onnxruntime.InferenceSession(
        str(example_iris / version / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": rows}), strict=True))


def every_datatype() -> dict[str, np.ndarray]:
    """A 2x3 array of each V2 datatype, values spread over its range."""
    rng = np.random.default_rng(7)
    arrays: dict[str, np.ndarray] = {}
    for datatype in V2_DATATYPES:
        if datatype == "BOOL":
            arrays[datatype] = rng.integers(0, 2, (2, 3)).astype(bool)
        elif datatype == "BYTES":
            words = [b"alpha", b"", "\u00e9t\u00e9".encode(), b"x" * 40, b"\x00nul", b"gamma"]
            arrays[datatype] = np.array(words, dtype=object).reshape(2, 3)
        else:
            dtype = np.dtype(triton_to_np_dtype(datatype))
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                arrays[datatype] = rng.integers(
                    info.min, info.max, (2, 3), dtype=dtype, endpoint=True
                )
            else:
                arrays[datatype] = (rng.standard_normal((2, 3)) * 1e3).astype(dtype)
    return arrays


def assert_same(got: np.ndarray | None, sent: np.ndarray, datatype: str) -> None:
    assert got is not None, datatype
    assert got.shape == sent.shape, datatype
    if datatype == "BYTES":
        assert list(got.flat) == list(sent.flat)
    else:
        assert got.dtype == sent.dtype, datatype
        np.testing.assert_array_equal(got, sent)


def seen_by_model(result: triton.InferResult) -> dict[str, Any]:
    seen = result.as_numpy("seen")
    assert seen is not None
    answer: dict[str, Any] = json.loads(seen[0])
    return answer


def status_of(error: grpc.RpcError) -> tuple[str, str]:
    """A failed call's status code, as tritonclient writes it, and its message."""
    return str(error.code()), error.details() or ""


# --- server and model endpoints ---------------------------------------------------------------


def test_server_live_ready_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "rayship"
    assert metadata["version"]
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", model_version="1")
    assert client.is_model_ready("iris", model_version="2")
    assert client.is_model_ready("mirror")


def test_a_model_with_no_traffic_yet_is_not_ready(client: triton.InferenceServerClient) -> None:
    """Not ready is an answer, not an error; its ModelInfer is UNAVAILABLE, which clients retry."""
    assert not client.is_model_ready("pending")
    with pytest.raises(InferenceServerException) as raised:
        client.infer("pending", [iris_input()])
    assert raised.value.status() == "StatusCode.UNAVAILABLE"
    assert "is not ready yet" in str(raised.value.message())


@pytest.mark.parametrize(
    ("model", "version", "says"),
    [("nobody", "", "model 'nobody' not found"), ("iris", "9", "no live version '9'")],
)
def test_readiness_of_what_does_not_exist_is_not_found(
    client: triton.InferenceServerClient, model: str, version: str, says: str
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.is_model_ready(model, model_version=version)
    assert raised.value.status() == "StatusCode.NOT_FOUND"
    assert says in str(raised.value.message())


def test_model_metadata_lists_live_versions_and_tensors(
    client: triton.InferenceServerClient,
) -> None:
    metadata = client.get_model_metadata("iris", as_json=True)
    assert metadata["name"] == "iris"
    assert metadata["versions"] == ["1", "2"]
    assert metadata["platform"] == "onnxruntime_onnx"
    # proto3 JSON writes int64 as strings
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert {output["name"] for output in metadata["outputs"]} == {"probabilities", "label"}
    versioned = client.get_model_metadata("iris", model_version="2", as_json=True)
    assert (versioned["name"], versioned["versions"]) == ("iris", ["1", "2"])


def test_model_config_of_an_unbatched_model(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("iris").config
    assert (config.name, config.platform, config.backend) == (
        "iris",
        "onnxruntime_onnx",
        "onnxruntime",
    )
    assert list(config.version_policy.specific.versions) == [1]
    assert config.max_batch_size == 0
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("input", triton.model_config_pb2.TYPE_FP32, [-1, 4])
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("probabilities", triton.model_config_pb2.TYPE_FP32, [-1, 3]),
        ("label", triton.model_config_pb2.TYPE_INT64, [-1]),
    ]
    versioned = client.get_model_config("iris", model_version="2").config
    assert list(versioned.version_policy.specific.versions) == [2]


def test_model_config_of_a_batched_model(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("probe").config
    assert (config.platform, config.backend) == ("python", "python")
    assert config.max_batch_size == 8
    assert config.dynamic_batching.max_queue_delay_microseconds == 20000
    assert [(t.name, list(t.dims)) for t in config.input] == [("x", [2])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("y", [2]), ("rows", [])]


# --- inference ---------------------------------------------------------------------------------


def test_every_datatype_round_trips_as_raw_contents(
    client: triton.InferenceServerClient,
) -> None:
    """tritonclient's way: every tensor in `raw_input_contents`."""
    arrays = every_datatype()
    inputs = []
    for datatype, array in arrays.items():
        given = triton.InferInput(f"in_{datatype}", list(array.shape), datatype)
        given.set_data_from_numpy(array)
        inputs.append(given)
    result = client.infer("mirror", inputs)
    for datatype, array in arrays.items():
        assert_same(result.as_numpy(f"out_{datatype}"), array, datatype)
        output = result.get_output(f"out_{datatype}")
        assert output.datatype == datatype


def test_every_typed_datatype_round_trips_as_typed_contents(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    """Every tensor in the typed field of `InferTensorContents` its datatype names."""
    arrays = {t: a for t, a in every_datatype().items() if t in TYPED_CONTENTS}
    request = pb.ModelInferRequest(model_name="mirror", id="typed")
    for datatype, array in arrays.items():
        tensor = request.inputs.add(name=f"in_{datatype}", datatype=datatype, shape=array.shape)
        getattr(tensor.contents, TYPED_CONTENTS[datatype]).extend(array.ravel().tolist())

    response = stub.ModelInfer(request)

    result = triton.InferResult(response)
    for datatype, array in arrays.items():
        assert_same(result.as_numpy(f"out_{datatype}"), array, datatype)
    assert response.id == "typed"
    assert seen_by_model(result)["given"] == sorted(f"in_{t}" for t in arrays)


def test_output_selection_returns_only_the_requested_outputs(
    client: triton.InferenceServerClient,
) -> None:
    arrays = every_datatype()
    inputs = []
    for datatype in ("INT32", "FP64"):
        given = triton.InferInput(f"in_{datatype}", [2, 3], datatype)
        given.set_data_from_numpy(arrays[datatype])
        inputs.append(given)
    wanted = [triton.InferRequestedOutput("out_FP64"), triton.InferRequestedOutput("seen")]

    result = client.infer("mirror", inputs, outputs=wanted)

    response = result.get_response()
    assert [output.name for output in response.outputs] == ["out_FP64", "seen"]
    assert len(response.raw_output_contents) == 2
    assert_same(result.as_numpy("out_FP64"), arrays["FP64"], "FP64")
    assert result.as_numpy("out_INT32") is None


def test_request_and_input_parameters_reach_the_model(
    client: triton.InferenceServerClient, stub: service_pb2_grpc.GRPCInferenceServiceStub
) -> None:
    given = triton.InferInput("in_INT8", [1, 1], "INT8")
    given.set_data_from_numpy(np.ones((1, 1), np.int8))
    result = client.infer(
        "mirror",
        [given],
        parameters={"note": "kept", "flag": True, "top_k": 3, "ratio": 0.25},
        priority=7,  # tritonclient sends it as a uint64 parameter
    )
    seen = seen_by_model(result)
    assert seen["parameters"] == {
        "note": "kept",
        "flag": True,
        "top_k": 3,
        "ratio": 0.25,
        "priority": 7,
    }
    assert seen["input_parameters"] == {}

    request = pb.ModelInferRequest(model_name="mirror")
    tensor = request.inputs.add(name="in_BYTES", datatype="BYTES", shape=[1, 1])
    tensor.contents.bytes_contents.append(b"a")
    tensor.parameters["lang"].string_param = "en"
    tensor.parameters["weight"].double_param = 1.5
    seen = seen_by_model(triton.InferResult(stub.ModelInfer(request)))
    assert seen["parameters"] == {"top_k": 5}  # the declared default
    assert seen["input_parameters"] == {"in_BYTES": {"lang": "en", "weight": 1.5}}


def test_request_id_is_echoed(client: triton.InferenceServerClient) -> None:
    result = client.infer("iris", [iris_input()], request_id="req-7")
    assert result.get_response().id == "req-7"
    assert client.infer("iris", [iris_input()]).get_response().id == ""


@pytest.mark.parametrize("version", ["1", "2"])
def test_versioned_calls_reach_that_version(
    client: triton.InferenceServerClient, example_iris: Path, version: str
) -> None:
    result = client.infer("iris", [iris_input()], model_version=version)
    response = result.get_response()
    assert (response.model_name, response.model_version) == ("iris", version)
    expected = in_process(example_iris, version, IRIS_ROWS)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"])
    np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])


def test_unversioned_call_follows_the_traffic(
    client: triton.InferenceServerClient, example_iris: Path
) -> None:
    result = client.infer("iris", [iris_input()])
    assert result.get_response().model_version == "1"
    expected = in_process(example_iris, "1", IRIS_ROWS)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"])


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(
    client: triton.InferenceServerClient, example_iris: Path, algorithm: str
) -> None:
    """A compressed message hides its model name from HAProxy: it goes the server app's way."""
    result = client.infer("iris", [iris_input()], compression_algorithm=algorithm)
    expected = in_process(example_iris, "1", IRIS_ROWS)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"])


def test_concurrent_calls_form_batches(client: triton.InferenceServerClient) -> None:
    """Calls in flight together on one channel meet in the batched model's runtime calls (its
    output `rows` is the size of the call that served it), and each gets its own answer."""
    calls = 24
    answers: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
    for i in range(calls):
        given = triton.InferInput("x", [1, 2], "FP32")
        given.set_data_from_numpy(np.array([[i, -i]], np.float32))
        client.async_infer(
            "probe",
            [given],
            partial(lambda i, result, error: answers.put((i, result, error)), i),
            request_id=str(i),
        )
    rows = []
    for _ in range(calls):
        i, result, error = answers.get(timeout=60)
        assert error is None, error
        assert result.get_response().id == str(i)
        assert result.as_numpy("y").tolist() == [[2 * i, -2 * i]]
        rows.append(int(result.as_numpy("rows")[0]))
    assert 1 < max(rows) <= 8, rows


# --- errors ------------------------------------------------------------------------------------


def iris_request(
    *, raw: bytes | None = None, typed: dict[str, list[Any]] | None = None, **tensor: Any
) -> pb.ModelInferRequest:
    """A ModelInferRequest for iris with one input, by default a valid one as raw contents."""
    request = pb.ModelInferRequest(model_name=tensor.pop("model_name", "iris"))
    request.model_version = tensor.pop("model_version", "")
    fields = {"name": "input", "datatype": "FP32", "shape": [1, 4], **tensor}
    added = request.inputs.add(**fields)
    if typed is not None:
        for field, values in typed.items():
            getattr(added.contents, field).extend(values)
    else:
        request.raw_input_contents.append(
            raw if raw is not None else np.ones((1, 4), np.float32).tobytes()
        )
    return request


@pytest.mark.parametrize(
    ("request_", "status", "says"),
    [
        pytest.param(
            iris_request(datatype="FP64", raw=np.ones((1, 4)).tobytes()),
            "INVALID_ARGUMENT",
            "input 'input': datatype FP64 given, model takes FP32",
            id="wrong-datatype",
        ),
        pytest.param(
            iris_request(shape=[1, 5], raw=np.ones((1, 5), np.float32).tobytes()),
            "INVALID_ARGUMENT",
            "input 'input': shape [1, 5]",
            id="wrong-shape",
        ),
        pytest.param(
            iris_request(raw=np.ones(3, np.float32).tobytes()),
            "INVALID_ARGUMENT",
            "input 'input': shape [1,4] of FP32 needs 16 bytes",
            id="raw-contents-of-the-wrong-size",
        ),
        pytest.param(
            iris_request(name="petals"),
            "INVALID_ARGUMENT",
            "unknown input 'petals'",
            id="unknown-input",
        ),
        pytest.param(
            iris_request(datatype="FP128"),
            "INVALID_ARGUMENT",
            "input 'input': unknown datatype 'FP128'",
            id="unknown-datatype",
        ),
        pytest.param(
            iris_request(typed={"int_contents": [1, 2, 3, 4]}),
            "INVALID_ARGUMENT",
            "input 'input': FP32 data goes in contents.fp32_contents, not int_contents",
            id="typed-contents-of-another-datatype",
        ),
        pytest.param(
            iris_request(typed={"fp32_contents": [1, 2, 3]}),
            "INVALID_ARGUMENT",
            "input 'input': shape [1,4] needs 4 elements, got 3",
            id="typed-contents-of-the-wrong-count",
        ),
        pytest.param(
            iris_request(datatype="FP16", typed={"fp32_contents": [1, 2, 3, 4]}),
            "INVALID_ARGUMENT",
            "input 'input': FP16 has no typed contents",
            id="typed-fp16",
        ),
        pytest.param(
            iris_request(model_name="nobody"),
            "NOT_FOUND",
            "model 'nobody' not found",
            id="unknown-model",
        ),
        pytest.param(
            iris_request(model_version="9"),
            "NOT_FOUND",
            "model 'iris' has no live version '9'",
            id="unknown-version",
        ),
    ],
)
def test_bad_requests_get_grpc_status_codes(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    request_: pb.ModelInferRequest,
    status: str,
    says: str,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request_)
    code, details = status_of(raised.value)
    assert code == f"StatusCode.{status}"
    assert says in details
    assert "Traceback" not in details


def test_tritonclient_sees_errors_as_status_codes(client: triton.InferenceServerClient) -> None:
    given = triton.InferInput("input", [1, 4], "FP64")
    given.set_data_from_numpy(np.ones((1, 4), np.float64))
    with pytest.raises(InferenceServerException) as raised:
        client.infer("iris", [given])
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "input 'input': datatype FP64" in str(raised.value.message())

    with pytest.raises(InferenceServerException) as raised:
        client.infer("iris", [iris_input()], outputs=[triton.InferRequestedOutput("x")])
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "unknown output 'x'" in str(raised.value.message())

    with pytest.raises(InferenceServerException) as raised:
        client.infer("nobody", [iris_input()])
    assert raised.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_config("nobody")
    assert raised.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("iris", model_version="9")
    assert raised.value.status() == "StatusCode.NOT_FOUND"


def test_a_parameter_of_the_wrong_type_is_invalid(client: triton.InferenceServerClient) -> None:
    given = triton.InferInput("in_INT8", [1, 1], "INT8")
    given.set_data_from_numpy(np.ones((1, 1), np.int8))
    with pytest.raises(InferenceServerException) as raised:
        client.infer("mirror", [given], parameters={"top_k": "five"})
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "parameter 'top_k': expected an integer" in str(raised.value.message())


def test_model_failure_is_internal_and_serving_goes_on(
    client: triton.InferenceServerClient,
) -> None:
    given = triton.InferInput("in_INT8", [1, 1], "INT8")
    given.set_data_from_numpy(np.ones((1, 1), np.int8))
    with pytest.raises(InferenceServerException) as raised:
        client.infer("mirror", [given], parameters={"fail": True})
    assert raised.value.status() == "StatusCode.INTERNAL"
    message = str(raised.value.message())
    assert "model 'mirror' version '1' failed" in message
    assert "ZeroDivisionError" in message
    assert "Traceback" not in message
    assert seen_by_model(client.infer("mirror", [given]))["given"] == ["in_INT8"]


@pytest.mark.parametrize(
    "call",
    [
        lambda client: client.infer("iris/versions/2", [iris_input()]),
        lambda client: client.is_model_ready("guarded/versions/2"),
        lambda client: client.get_model_metadata("guarded", model_version="2/ready"),
    ],
    ids=["infer-name-names-a-version", "ready-name-names-a-version", "metadata-version-is-ready"],
)
def test_a_slash_in_a_name_or_version_names_nothing(
    client: triton.InferenceServerClient, call: Callable[[Any], Any]
) -> None:
    """A model is named by its name and version fields alone, as Triton does: no model is
    named `iris/versions/2` and no version `2/ready` (the last one answers the readiness
    document for metadata, which this model guards with a token, without the token)."""
    with pytest.raises(InferenceServerException) as raised:
        call(client)
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "must not contain '/'" in str(raised.value.message())


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"\xff\xff\xff", "the request is not a ModelInferRequest"),
        (b"\x0a\x04iris\xff\xff", "the request is not a ModelInferRequest"),  # routed, then bad
        (pb.ModelInferRequest(model_name="iris").SerializeToString(), "'inputs'"),
    ],
    ids=["garbage", "garbage-after-the-model-name", "no-inputs"],
)
def test_malformed_messages_are_invalid(
    send_bytes: Callable[[bytes], pb.ModelInferResponse], body: bytes, says: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        send_bytes(body)
    code, details = status_of(raised.value)
    assert code == "StatusCode.INVALID_ARGUMENT"
    assert says in details


def name_last(request: pb.ModelInferRequest) -> bytes:
    """`request` serialized with its model name written last, where HAProxy does not look."""
    rest = pb.ModelInferRequest()
    rest.CopyFrom(request)
    rest.ClearField("model_name")
    name = str(request.model_name).encode()
    assert len(name) < 128  # its length is then one byte
    return bytes(rest.SerializeToString()) + b"\x0a" + bytes([len(name)]) + name


@pytest.mark.parametrize("megabytes", [10, 60])
@pytest.mark.parametrize("way", ["direct", "sibling-version", "server-app"])
def test_large_tensors_both_ways(
    client: triton.InferenceServerClient,
    send_bytes: Callable[[bytes], pb.ModelInferResponse],
    way: str,
    megabytes: int,
) -> None:
    """Large messages on each way a ModelInfer takes, within RAYSHIP_MAX_REQUEST_BYTES (64 MiB):
    straight to the owning version (HAProxy reads the name in a message far larger than its
    buffer), through it to a sibling version (a DeploymentHandle), and through the server app."""
    rows = np.tile(IRIS_ROWS[1], (megabytes * 1_000_000 // IRIS_ROWS[1].nbytes, 1))
    version = "2" if way == "sibling-version" else ""
    alone = client.infer("iris", [iris_input(rows[:1])], model_version=version)
    if way == "server-app":
        request = iris_request(raw=rows.tobytes(), shape=list(rows.shape))
        result = triton.InferResult(send_bytes(name_last(request)))
    else:
        result = client.infer("iris", [iris_input(rows)], model_version=version)
    assert result.get_response().model_version == alone.get_response().model_version
    probabilities = result.as_numpy("probabilities")
    assert probabilities is not None
    assert probabilities.shape == (len(rows), 3)
    expected = alone.as_numpy("probabilities")
    np.testing.assert_array_equal(probabilities, np.broadcast_to(expected, probabilities.shape))


def test_over_the_body_limit_is_resource_exhausted(client: triton.InferenceServerClient) -> None:
    rows = np.ones((70_000_000 // 16, 4), np.float32)
    with pytest.raises(InferenceServerException) as raised:
        client.infer("iris", [iris_input(rows)])
    assert raised.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "request body exceeds" in str(raised.value.message())


# --- bearer tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "gzip"], ids=["direct", "through-the-server-app"])
def test_a_guarded_model_takes_its_token_as_metadata(
    client: triton.InferenceServerClient, compression: str | None
) -> None:
    """The token travels as `authorization` metadata; a compressed call reaches the model
    through the server application, which must not open what the model URL guards."""
    for headers in (None, {"authorization": "Bearer nope"}):
        with pytest.raises(InferenceServerException) as raised:
            client.infer(
                "guarded", [iris_input()], headers=headers, compression_algorithm=compression
            )
        assert raised.value.status() == "StatusCode.UNAUTHENTICATED"
        assert "guarded" in str(raised.value.message())

    result = client.infer(
        "guarded",
        [iris_input()],
        headers={"authorization": f"Bearer {TOKEN}"},
        compression_algorithm=compression,
    )
    assert result.get_response().model_version == "2"


def test_readiness_needs_no_token_and_metadata_does(client: triton.InferenceServerClient) -> None:
    assert client.is_model_ready("guarded")
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("guarded")
    assert raised.value.status() == "StatusCode.UNAUTHENTICATED"
    metadata = client.get_model_metadata("guarded", headers={"authorization": f"Bearer {TOKEN}"})
    assert metadata.name == "guarded"


# --- routing -----------------------------------------------------------------------------------


def test_model_infer_goes_straight_to_the_owning_version(
    served: ServeCluster,
    client: triton.InferenceServerClient,
    send_bytes: Callable[[bytes], pb.ModelInferResponse],
) -> None:
    """HAProxy reads the model name at the start of the message and sends the call to the
    version application that owns the model (its backend `grpc-mirror_1`); a message written
    with the model name last cannot be read that way, and the server application answers it."""
    haproxy = HAProxyCounts.serving(served.grpc_address)
    given = triton.InferInput("in_INT16", [1, 2], "INT16")
    given.set_data_from_numpy(np.array([[3, -4]], np.int16))
    calls = 10

    def call_by_name() -> list[Any]:
        return [client.infer("mirror", [given]).as_numpy("out_INT16") for _ in range(calls)]

    answers, direct = haproxy.count(call_by_name)
    assert all(answer.tolist() == [[3, -4]] for answer in answers)

    assert direct["grpc-mirror_1"] == calls, direct
    assert direct["grpc-rayship"] == 0, direct

    request = pb.ModelInferRequest(model_name="mirror", id="last")
    request.inputs.add(name="in_INT16", datatype="INT16", shape=[1, 2])
    request.raw_input_contents.append(np.array([[5, 6]], np.int16).tobytes())
    written = name_last(request)
    assert not written.startswith(b"\x0a")
    assert pb.ModelInferRequest.FromString(written) == request

    response, indirect = haproxy.count(lambda: send_bytes(written))

    assert (response.model_name, response.model_version, response.id) == ("mirror", "1", "last")
    assert triton.InferResult(response).as_numpy("out_INT16").tolist() == [[5, 6]]
    assert indirect["grpc-rayship"] == 1, indirect
    assert indirect["grpc-mirror_1"] == 0, indirect


def test_metadata_calls_go_to_the_server_application(
    served: ServeCluster, client: triton.InferenceServerClient
) -> None:
    haproxy = HAProxyCounts.serving(served.grpc_address)

    def ask() -> tuple[str, bool]:
        return client.get_model_metadata("mirror").name, client.is_model_ready("mirror")

    answered, counted = haproxy.count(ask)
    assert answered == ("mirror", True)
    assert counted["grpc-rayship"] == 2, counted
    assert counted["grpc-mirror_1"] == 0, counted


# --- perf_analyzer -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "shape", "batch"), [("iris", "input:1,4", "1"), ("probe", "x:2", "4")]
)
def test_perf_analyzer_drives_rayship_over_grpc(
    served: ServeCluster, tmp_path: Path, model: str, shape: str, batch: str
) -> None:
    """Triton's own load generator over gRPC: ModelMetadata and ModelConfig, then ModelInfer;
    for the batched model with batches of `batch` rows, as its max_batch_size allows."""
    row = perf_analyzer(
        served.grpc_address, model, "grpc", shape, tmp_path / "perf.csv", batch=batch
    )
    assert float(row["Inferences/Second"]) > 0, row


# --- traffic -------------------------------------------------------------------------------------


def test_canary_split_reaches_both_versions(
    served: ServeCluster,
    client: triton.InferenceServerClient,
    deploy_all: Callable[[dict[str, int]], None],
) -> None:
    """A split model has no owning version application: its calls go through the server
    application, which picks a version per call by the split."""
    deploy_all({"1": 50, "2": 50})
    haproxy = HAProxyCounts.serving(served.grpc_address)
    calls = 100

    def split_calls() -> Counter[str]:
        return Counter(
            client.infer("iris", [iris_input()]).get_response().model_version for _ in range(calls)
        )

    versions, counted = haproxy.count(split_calls)
    assert set(versions) == {"1", "2"}, versions
    assert 20 <= versions["2"] <= 80, versions
    assert counted["grpc-rayship"] == calls, counted


@pytest.mark.xfail(
    reason="unstable: a call during a switch can reach Serve's gRPC proxy (HAProxy's backup) "
    "before it knows the version application, which answers NOT_FOUND (one CI run in four)",
    strict=False,
)
def test_switching_versions_under_grpc_load_fails_no_call(
    served: ServeCluster, deploy_all: Callable[[dict[str, int]], None]
) -> None:
    """Traffic moves while clients call the model's unversioned ModelInfer: from version 1 to
    2 (the direct HAProxy route passes from one version application to the other), to a
    canary (the route passes to the server application) and back to 2; no call may fail."""
    deploy_all({"1": 100})
    load = SteadyLoad(served.grpc_address, "iris", rate_per_s=100, clients=4, client=grpc_client)
    with load:
        load.wait_moved(0.0, {"1"}, timeout_s=30, in_a_row=20)
        started = len(load.answers)
        for traffic in ({"2": 100}, {"1": 50, "2": 50}, {"2": 100}):
            since = time.monotonic()
            deploy_all(traffic)
            load.wait_moved(since, set(traffic), timeout_s=60, in_a_row=40)
    answers = load.answers
    failures = load.failures()
    assert not failures, (
        f"{len(failures)} of {len(answers)} calls failed, first: {[a.error for a in failures[:3]]}"
    )
    assert Counter(answer.version for answer in answers[started:]).keys() == {"1", "2"}
    assert [answer.version for answer in answers[-40:]] == ["2"] * 40
    # the direct route went with the traffic: version 2's application has it now
    client = triton.InferenceServerClient(served.grpc_address)
    _, counted = HAProxyCounts.serving(served.grpc_address).count(
        lambda: client.infer("iris", [iris_input()])
    )
    assert counted.get("grpc-iris_2") == 1, counted
    assert "grpc-iris_1" not in counted, counted
