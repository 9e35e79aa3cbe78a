"""The V2 gRPC methods (`InferenceService`) between a gRPC context and `route_request`.

The deployment is stood in for by `Routed`, whose `route_request` is a small real async
function: it records the `Call` each method makes and answers with a given `Reply` (or raises
a given exception), as `ServerInfo` and `ModelVersion` do. The gRPC context is a tiny object
recording the status code and details a method sets, as Serve's `RayServegRPCContext` would.
Responses are read back with tritonclient's own generated messages, so they are checked on
the wire a Triton client reads, not only against our proto.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import orjson
import pytest
from google.protobuf.message import Message
from tritonclient.grpc import service_pb2 as triton_pb

from rayship_predictors.dataplane import Call, Reply
from rayship_predictors.errors import BadRequest, NotFound, NotReady
from rayship_predictors.grpc_service import (
    METHODS,
    SERVICE,
    InferenceService,
    RawMessage,
    add_inference_service,
)
from rayship_predictors.v2 import codec
from rayship_predictors.v2.proto import inference_pb2 as pb


class Context:
    """What a method sees of Serve's gRPC context: the call's metadata, and where its status
    goes."""

    def __init__(self, metadata: list[tuple[str, str]] | None = None) -> None:
        self.metadata = metadata or []
        self.codes: list[grpc.StatusCode] = []
        self.details: list[str] = []

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def set_code(self, code: grpc.StatusCode) -> None:
        self.codes.append(code)

    def set_details(self, details: str) -> None:
        self.details.append(details)


class Routed(InferenceService):
    """A stand-in for the Serve deployment: `route_request` records each call and answers."""

    def __init__(self, answer: Reply | Exception, root: str = "") -> None:
        self.answer = answer
        self.calls: list[Call] = []
        self.grpc_path_root = root

    async def route_request(self, call: Call) -> Reply:
        self.calls.append(call)
        await asyncio.sleep(0)  # a real await, as a handle call would be
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def invoke(
    service: InferenceService,
    method: str,
    body: bytes = b"",
    metadata: list[tuple[str, str]] | None = None,
) -> tuple[bytes, Context]:
    """Call one gRPC method as Serve does: the request's bytes and a context; the bytes Serve
    would send back (`SerializeToString` of what the method returns)."""
    context = Context(metadata)
    response = asyncio.run(getattr(service, method)(body, context))
    assert isinstance(response, RawMessage)
    return response.SerializeToString(), context


def json_reply(document: Any) -> Reply:
    return Reply(200, orjson.dumps(document))


def error_reply(status: int, message: str) -> Reply:
    return Reply(status, codec.error_body(message))


MODEL_REQUESTS: dict[str, type[Message]] = {
    "ModelReady": pb.ModelReadyRequest,
    "ModelMetadata": pb.ModelMetadataRequest,
    "ModelConfig": pb.ModelConfigRequest,
}


def request_body(method: str, name: str = "iris", version: str = "") -> bytes:
    """A well-formed request of `method` naming the model `name` (and `version`)."""
    if method == "ModelInfer":
        message = pb.ModelInferRequest(model_name=name, model_version=version)
        message.inputs.add(name="x", datatype="INT8", shape=[1]).contents.int_contents.append(1)
        return message.SerializeToString()
    if method in MODEL_REQUESTS:
        return MODEL_REQUESTS[method](name=name, version=version).SerializeToString()
    return b""


# --- failures as gRPC status ----------------------------------------------------------------

STATUSES = [
    (400, grpc.StatusCode.INVALID_ARGUMENT),
    (401, grpc.StatusCode.UNAUTHENTICATED),
    (403, grpc.StatusCode.PERMISSION_DENIED),
    (404, grpc.StatusCode.NOT_FOUND),
    (405, grpc.StatusCode.UNIMPLEMENTED),
    (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (415, grpc.StatusCode.INVALID_ARGUMENT),
    (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (499, grpc.StatusCode.CANCELLED),
    (500, grpc.StatusCode.INTERNAL),
    (502, grpc.StatusCode.INTERNAL),
    (503, grpc.StatusCode.UNAVAILABLE),
    (504, grpc.StatusCode.DEADLINE_EXCEEDED),
    (418, grpc.StatusCode.INTERNAL),
]


@pytest.mark.parametrize(
    ("method", "status", "code"),
    [
        pytest.param(method, status, code, id=f"{method}-{status}")
        for method in METHODS
        for status, code in STATUSES
        # A model that is not ready is an answer, not an error (tested below).
        if (method, status) != ("ModelReady", 503)
    ],
)
def test_an_http_status_becomes_its_grpc_code_with_the_v2_message(
    method: str, status: int, code: grpc.StatusCode
) -> None:
    message = f"model 'iris' said {status}: \"quoted\" and é"
    service = Routed(error_reply(status, message))

    body, context = invoke(service, method, request_body(method))

    assert context.codes == [code]
    assert context.details == [message]
    assert body == b""


@pytest.mark.parametrize("method", METHODS)
def test_an_error_body_that_is_not_v2_json_is_the_details_as_text(method: str) -> None:
    service = Routed(Reply(500, b"upstream went away \xff"))

    _, context = invoke(service, method, request_body(method))

    assert context.codes == [grpc.StatusCode.INTERNAL]
    assert context.details == ["upstream went away \ufffd"]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BadRequest("input 'x' appears twice"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFound("model 'nope' not found"), grpc.StatusCode.NOT_FOUND),
        (NotReady("model 'iris' is loading"), grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_an_inference_error_raised_by_the_route_keeps_its_status_and_message(
    error: Exception, code: grpc.StatusCode
) -> None:
    _, context = invoke(Routed(error), "ModelInfer", request_body("ModelInfer"))

    assert context.codes == [code]
    assert context.details == [str(error)]


@pytest.mark.parametrize("method", METHODS)
def test_an_unexpected_exception_is_internal_without_its_traceback(
    method: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "secret-token-in-the-exception"
    service = Routed(RuntimeError(secret))

    with caplog.at_level(logging.ERROR):
        body, context = invoke(service, method, request_body(method))

    assert context.codes == [grpc.StatusCode.INTERNAL]
    assert context.details == ["internal error; see the replica's log"]
    assert body == b""
    # The traceback goes to the replica's log, not to the client.
    assert any(record.exc_info and secret in str(record.exc_info[1]) for record in caplog.records)
    assert all(secret not in detail and "Traceback" not in detail for detail in context.details)


@pytest.mark.parametrize("method", ["ModelReady", "ModelMetadata", "ModelConfig"])
@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x0a\x05ab", b"\x0b"])
def test_a_malformed_model_request_is_invalid_argument_and_not_routed(
    method: str, body: bytes
) -> None:
    service = Routed(json_reply({"ready": True}))

    response, context = invoke(service, method, body)

    assert context.codes == [grpc.StatusCode.INVALID_ARGUMENT]
    assert context.details[0].startswith(f"the request is not a {method}Request: ")
    assert response == b""
    assert service.calls == []


def test_a_malformed_model_infer_request_is_invalid_argument_and_not_routed() -> None:
    service = Routed(Reply(200, b"never"))

    response, context = invoke(service, "ModelInfer", b"\xff\xff\xff")

    assert context.codes == [grpc.StatusCode.INVALID_ARGUMENT]
    assert context.details[0].startswith("the request is not a ModelInferRequest: ")
    assert response == b""
    assert service.calls == []


# --- answers --------------------------------------------------------------------------------


def test_model_ready_answers_not_ready_on_503_and_not_found_on_404() -> None:
    ready, context = invoke(Routed(json_reply({"name": "iris", "ready": True})), "ModelReady",
                            request_body("ModelReady"))  # fmt: skip
    assert triton_pb.ModelReadyResponse.FromString(ready).ready is True
    assert context.codes == []

    loading = Routed(Reply.error(NotReady("model 'iris' is loading")))
    not_ready, context = invoke(loading, "ModelReady", request_body("ModelReady"))
    assert triton_pb.ModelReadyResponse.FromString(not_ready).ready is False
    assert context.codes == []
    assert context.details == []

    unknown = Routed(Reply.error(NotFound("model 'nope' not found")))
    missing, context = invoke(unknown, "ModelReady", request_body("ModelReady", "nope"))
    assert missing == b""
    assert context.codes == [grpc.StatusCode.NOT_FOUND]
    assert context.details == ["model 'nope' not found"]


def test_server_live_ready_and_metadata_parse_as_tritonclients_messages() -> None:
    live, _ = invoke(Routed(json_reply({"live": True})), "ServerLive")
    assert triton_pb.ServerLiveResponse.FromString(live).live is True
    ready, _ = invoke(Routed(json_reply({"ready": False})), "ServerReady")
    assert triton_pb.ServerReadyResponse.FromString(ready).ready is False

    document = {
        "name": "rayship",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data", "model_configuration"],
        "not_in_the_message": {"ignored": True},
    }
    metadata, context = invoke(Routed(json_reply(document)), "ServerMetadata")

    parsed = triton_pb.ServerMetadataResponse.FromString(metadata)
    assert (parsed.name, parsed.version) == ("rayship", "0.1.0")
    assert list(parsed.extensions) == ["binary_tensor_data", "model_configuration"]
    assert context.codes == []


def test_model_metadata_parses_as_tritonclients_message() -> None:
    document = {
        "name": "iris",
        "versions": ["1", "v2"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4], "optional": True}],
        "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]}],
    }

    body, context = invoke(
        Routed(json_reply(document)), "ModelMetadata", request_body("ModelMetadata")
    )

    parsed = triton_pb.ModelMetadataResponse.FromString(body)
    assert context.codes == []
    assert (parsed.name, list(parsed.versions), parsed.platform) == (
        "iris",
        ["1", "v2"],
        "onnxruntime_onnx",
    )
    assert [(t.name, t.datatype, list(t.shape)) for t in parsed.inputs] == [("x", "FP32", [-1, 4])]
    assert [(t.name, t.datatype, list(t.shape)) for t in parsed.outputs] == [
        ("label", "BYTES", [-1])
    ]


def triton_config(version: Any, batched: bool = True) -> dict[str, Any]:
    """A model configuration as `VersionDataPlane.triton_config` writes it."""
    config: dict[str, Any] = {
        "name": "iris",
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"specific": {"versions": [version]}},
        "max_batch_size": 8 if batched else 0,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4], "optional": True}],
        "output": [{"name": "label", "data_type": "TYPE_STRING", "dims": [1]}],
    }
    if batched:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": 2500}
    return config


def config_of(document: dict[str, Any]) -> Any:
    body, context = invoke(Routed(json_reply(document)), "ModelConfig", request_body("ModelConfig"))
    assert context.codes == [], context.details
    return triton_pb.ModelConfigResponse.FromString(body).config


@pytest.mark.parametrize(("version", "expected"), [("2", [2]), ("0", [0]), (3, [3])])
def test_model_config_keeps_an_integer_version_policy(version: Any, expected: list[int]) -> None:
    config = config_of(triton_config(version))

    assert config.HasField("version_policy")
    assert list(config.version_policy.specific.versions) == expected


@pytest.mark.parametrize("version", ["v1", "1.0", "-1", "2024-01-01", "1e3", " 1"])
def test_model_config_drops_a_version_policy_that_is_not_an_integer(version: str) -> None:
    config = config_of(triton_config(version))

    assert not config.HasField("version_policy")
    assert config.name == "iris"  # the rest is kept


@pytest.mark.parametrize("version", ["99999999999999999999", "²"])
def test_model_config_drops_a_version_policy_of_digits_that_are_no_int64(version: str) -> None:
    config = config_of(triton_config(version))

    assert not config.HasField("version_policy")


def test_model_config_parses_as_tritonclients_model_config() -> None:
    config = config_of(triton_config("7"))

    assert (config.name, config.platform, config.backend) == (
        "iris",
        "onnxruntime_onnx",
        "onnxruntime",
    )
    assert config.max_batch_size == 8
    assert config.dynamic_batching.max_queue_delay_microseconds == 2500
    assert [(t.name, t.data_type, list(t.dims), t.optional) for t in config.input] == [
        ("x", triton_pb.model__config__pb2.TYPE_FP32, [4], True)
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("label", triton_pb.model__config__pb2.TYPE_STRING, [1])
    ]
    unbatched = config_of(triton_config("7", batched=False))
    assert unbatched.max_batch_size == 0
    assert not unbatched.HasField("dynamic_batching")


def test_model_infer_answers_the_bytes_the_version_encoded() -> None:
    encoded = pb.ModelInferResponse(
        model_name="iris", model_version="2", id="r"
    ).SerializeToString()
    service = Routed(Reply(200, encoded))
    body = request_body("ModelInfer")

    response, context = invoke(service, "ModelInfer", body)

    assert response == encoded
    assert context.codes == []
    (call,) = service.calls
    assert call.body == body  # the version decodes the message itself
    assert call.grpc is True
    assert call.method == "POST"
    assert call.header_length is None


# --- the calls each method makes ------------------------------------------------------------

PATHS = [
    ("ServerLive", "", "", "GET", "/health/live"),
    ("ServerReady", "", "", "GET", "/health/ready"),
    ("ServerMetadata", "", "", "GET", ""),
    ("ModelReady", "iris", "", "GET", "/models/iris/ready"),
    ("ModelReady", "iris", "v2", "GET", "/models/iris/versions/v2/ready"),
    ("ModelMetadata", "iris", "", "GET", "/models/iris"),
    ("ModelMetadata", "iris", "v2", "GET", "/models/iris/versions/v2"),
    ("ModelConfig", "iris", "", "GET", "/models/iris/config"),
    ("ModelConfig", "iris", "3", "GET", "/models/iris/versions/3/config"),
    ("ModelInfer", "iris", "", "POST", "/models/iris/infer"),
    ("ModelInfer", "iris", "v2", "POST", "/models/iris/versions/v2/infer"),
]


@pytest.mark.parametrize(("method", "name", "version", "verb", "path"), PATHS)
@pytest.mark.parametrize("root", ["", "/v2"])
def test_each_method_routes_the_path_rest_would(
    method: str, name: str, version: str, *, verb: str, path: str, root: str
) -> None:
    """Every path starts at the service's `grpc_path_root`: a version application asked for
    server paths answers NOT_FOUND rather than its model's metadata."""
    service = Routed(error_reply(404, "stop here"), root=root)

    invoke(service, method, request_body(method, name, version))

    (call,) = service.calls
    assert call.method == verb
    assert call.path == f"{root}{path}"
    assert call.grpc is (method == "ModelInfer")
    if method != "ModelInfer":
        assert call.body == b""


@pytest.mark.parametrize("method", METHODS)
def test_the_call_carries_the_token_trace_context_and_request_id(method: str) -> None:
    service = Routed(error_reply(404, "stop here"))
    metadata = [
        ("authorization", "Bearer abc"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("tracestate", "vendor=1"),
        ("x-request-id", "req-42"),
        ("user-agent", "grpc-python/1.85"),
        ("application", "rayship"),
    ]

    invoke(service, method, request_body(method), metadata)

    (call,) = service.calls
    assert call.authorization == "Bearer abc"
    assert call.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert call.tracestate == "vendor=1"
    assert call.request_id == "req-42"
    assert "Bearer abc" not in repr(call)


def test_a_call_without_metadata_carries_none() -> None:
    service = Routed(error_reply(404, "stop here"))

    invoke(service, "ModelInfer", request_body("ModelInfer"))

    (call,) = service.calls
    assert (call.authorization, call.traceparent, call.tracestate, call.request_id) == (
        None,
        None,
        None,
        None,
    )


# --- registration ---------------------------------------------------------------------------


class Recording:
    """A server that keeps the generic handlers it is given."""

    def __init__(self) -> None:
        self.handlers: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self.handlers.extend(handlers)


class Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata: tuple[tuple[str, str], ...] = ()


def test_add_inference_service_registers_exactly_the_methods_raw() -> None:
    servicer = Routed(json_reply({"live": True}))
    server = Recording()

    add_inference_service(servicer, server)  # type: ignore[arg-type]

    (handler,) = server.handlers
    for method in METHODS:
        found = handler.service(Details(f"/inference.GRPCInferenceService/{method}"))  # type: ignore[arg-type]
        assert found is not None, method
        assert found.unary_unary == getattr(servicer, method)
        assert (found.request_streaming, found.response_streaming) == (False, False)
        # Raw bytes in and out: Serve hands them on unparsed.
        assert found.request_deserializer is None
        assert found.response_serializer is None
    for other in ("ModelStreamInfer", "ModelStatistics", "RepositoryIndex", "Nope"):
        assert handler.service(Details(f"/inference.GRPCInferenceService/{other}")) is None  # type: ignore[arg-type]
    assert handler.service(Details("/rayship.v2.GRPCInferenceService/ModelInfer")) is None  # type: ignore[arg-type]


def test_the_methods_are_tritons_under_tritons_service_name() -> None:
    service = triton_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == SERVICE
    assert set(METHODS) <= {method.name for method in service.methods}
    for method in METHODS:
        described = service.methods_by_name[method]
        assert not described.client_streaming
        assert not described.server_streaming


def test_a_real_grpc_server_accepts_the_registration() -> None:
    async def register() -> None:
        server = grpc.aio.server()
        add_inference_service(Routed(json_reply({"live": True})), server)
        await server.stop(None)

    asyncio.run(register())
