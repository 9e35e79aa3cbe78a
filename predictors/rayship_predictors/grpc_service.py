"""The V2 gRPC service, `inference.GRPCInferenceService`, on Serve's gRPC ingress.

Serve's gRPC servers (the replicas' own in throughput-optimized mode, else its proxy) call a
deployment method named after the gRPC method, with the request and a `grpc_context`. Each
method here turns its request into the same `Call` a REST request becomes, hands it to the
deployment's `route_request`, and turns the `Reply` back into the protocol's response. So a gRPC
request meets the same traffic table, canary split, version URLs, bearer tokens, metrics,
traces and tensor checks as a REST one, with nothing written twice: ModelInfer's body is the
serialized ModelInferRequest itself, which the answering version decodes (`Call.grpc`).

`add_inference_service` is the servicer function Serve's `grpc_options` names. It registers the
service under the protocol's method paths with no (de)serializers, so requests reach the
methods as raw bytes and go on to another application unparsed, and responses leave as the
bytes the answering version encoded.

Routing: Serve's ingress picks an application by an `application` metadata key that V2 clients
never send. `rayship.haproxy` sends every gRPC call without one to the server application
(`ServerInfo`), which routes by `model_name` and `model_version` in the message, as `/v2` does
for REST; HAProxy also sends a ModelInfer straight to the version application that owns its
model (`rayship.haproxy`'s `grpc_model_routes`), the way REST's model URL reaches it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc
import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from rayship.contract import MODELS_PATH, VERSIONS_PATH
from rayship_predictors.dataplane import Call, Reply
from rayship_predictors.errors import BadRequest, InferenceError
from rayship_predictors.http import failure_reply
from rayship_predictors.v2 import grpc_codec
from rayship_predictors.v2.proto import inference_pb2 as pb

SERVICE = "inference.GRPCInferenceService"
METHODS = (
    "ServerLive",
    "ServerReady",
    "ServerMetadata",
    "ModelReady",
    "ModelMetadata",
    "ModelConfig",
    "ModelInfer",
)
"""The service's unary methods that Rayship answers (the V2 protocol's and Triton's
ModelConfig); any other method of the service is UNIMPLEMENTED."""

STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
"""The gRPC status of each V2 REST error status; any other is INTERNAL."""

NOT_READY = 503

M = TypeVar("M", bound=Message)
ModelRequest = pb.ModelReadyRequest | pb.ModelMetadataRequest | pb.ModelConfigRequest


def add_inference_service(servicer: Any, server: grpc.aio.Server) -> None:
    """Register the V2 service on `server` (Serve's `grpc_servicer_functions` entry)."""
    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name)) for name in METHODS
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


class RawMessage:
    """An encoded response: Serve serializes what a method returns with `SerializeToString`."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data


EMPTY = RawMessage(b"")


class GrpcContext(Protocol):
    """What the methods use of Serve's `RayServegRPCContext`."""

    def invocation_metadata(self) -> list[tuple[str, str]]: ...

    def set_code(self, code: grpc.StatusCode) -> None: ...

    def set_details(self, details: str) -> None: ...


class InferenceService:
    """The V2 gRPC methods of a deployment that routes `Call`s (a mixin of `ServerInfo` and
    `ModelVersion`). `grpc_path_root` is where model paths start for its `route_request`:
    `ServerInfo` routes paths below `/v2`, a version application the whole URL path."""

    grpc_path_root = ""
    route_request: Callable[[Call], Awaitable[Reply]]

    async def ServerLive(self, body: bytes, grpc_context: GrpcContext) -> RawMessage:
        reply = await self._route(grpc_context, "GET", self.grpc_path_root + "/health/live")
        return _respond(grpc_context, reply, lambda doc: pb.ServerLiveResponse(live=doc["live"]))

    async def ServerReady(self, body: bytes, grpc_context: GrpcContext) -> RawMessage:
        reply = await self._route(grpc_context, "GET", self.grpc_path_root + "/health/ready")
        return _respond(grpc_context, reply, lambda doc: pb.ServerReadyResponse(ready=doc["ready"]))

    async def ServerMetadata(self, body: bytes, grpc_context: GrpcContext) -> RawMessage:
        reply = await self._route(grpc_context, "GET", self.grpc_path_root)
        return _respond(grpc_context, reply, lambda doc: _parsed(doc, pb.ServerMetadataResponse()))

    async def ModelReady(self, body: bytes, grpc_context: GrpcContext) -> RawMessage:
        reply = await self._model_get(grpc_context, pb.ModelReadyRequest, body, "/ready")
        if reply.status == NOT_READY:  # the model exists and is not ready: an answer, no error
            return RawMessage(pb.ModelReadyResponse(ready=False).SerializeToString())
        return _respond(grpc_context, reply, lambda doc: pb.ModelReadyResponse(ready=doc["ready"]))

    async def ModelMetadata(self, body: bytes, grpc_context: GrpcContext) -> RawMessage:
        reply = await self._model_get(grpc_context, pb.ModelMetadataRequest, body, "")
        return _respond(grpc_context, reply, lambda doc: _parsed(doc, pb.ModelMetadataResponse()))

    async def ModelConfig(self, body: bytes, grpc_context: GrpcContext) -> RawMessage:
        reply = await self._model_get(grpc_context, pb.ModelConfigRequest, body, "/config")
        return _respond(grpc_context, reply, _config_response)

    async def ModelInfer(self, body: bytes, grpc_context: GrpcContext) -> RawMessage:
        try:
            request = grpc_codec.parse_infer_request(body)
            path = self._model_path(request.model_name, request.model_version, "/infer")
        except InferenceError as error:
            return _failed(grpc_context, Reply.error(error))
        reply = await self._route(grpc_context, "POST", path, body, grpc=True)
        if reply.status != 200:
            return _failed(grpc_context, reply)
        return RawMessage(reply.body)

    async def _model_get(
        self, grpc_context: GrpcContext, request_type: type[ModelRequest], body: bytes, rest: str
    ) -> Reply:
        """The Reply to a GET of the model (or version) a ModelReady, ModelMetadata or
        ModelConfig request names, `rest` below its URL."""
        request = request_type()
        try:
            request.ParseFromString(body)
        except DecodeError as error:
            return Reply.error(BadRequest(f"the request is not a {request_type.__name__}: {error}"))
        try:
            path = self._model_path(request.name, request.version, rest)
        except BadRequest as error:
            return Reply.error(error)
        return await self._route(grpc_context, "GET", path)

    def _model_path(self, name: str, version: str, rest: str) -> str:
        """The REST path of a model (or version) URL; a name or version holding a slash names
        no model (REST could not name it in one path segment either)."""
        for field, value in (("model name", name), ("model version", version)):
            if "/" in value:
                raise BadRequest(f"{field} {value!r} must not contain '/'")
        versioned = f"{VERSIONS_PATH}{version}" if version else ""
        return f"{self.grpc_path_root}{MODELS_PATH}{name}{versioned}{rest}"

    async def _route(
        self,
        grpc_context: GrpcContext,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        grpc: bool = False,
    ) -> Reply:
        """The Reply to one call, failures included."""
        metadata = dict(grpc_context.invocation_metadata())
        call = Call(
            method,
            path,
            body,
            authorization=metadata.get("authorization"),
            traceparent=metadata.get("traceparent"),
            tracestate=metadata.get("tracestate"),
            request_id=metadata.get("x-request-id"),
            grpc=grpc,
        )
        try:
            return await self.route_request(call)
        except Exception as error:
            return failure_reply(error, f"{SERVICE} {method} {path}")


def _respond(
    grpc_context: GrpcContext, reply: Reply, message_of: Callable[[Any], Message]
) -> RawMessage:
    """The response message built from a JSON reply, or the reply's failure as a status."""
    if reply.status != 200:
        return _failed(grpc_context, reply)
    return RawMessage(message_of(orjson.loads(reply.body)).SerializeToString())


def _failed(grpc_context: GrpcContext, reply: Reply) -> RawMessage:
    """Set the gRPC status of a failed reply, with its V2 error message as the details."""
    grpc_context.set_code(STATUS_CODES.get(reply.status, grpc.StatusCode.INTERNAL))
    try:
        message = str(orjson.loads(reply.body)["error"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = reply.body.decode(errors="replace")
    grpc_context.set_details(message)
    return EMPTY


def _parsed(document: dict[str, Any], message: M) -> M:
    """A JSON reply as the protocol's message (same field names); fields it lacks are left
    out rather than refused, so metadata may carry more than the message holds."""
    return json_format.ParseDict(document, message, ignore_unknown_fields=True)


def _config_response(document: dict[str, Any]) -> pb.ModelConfigResponse:
    """Triton's model configuration: its version policy names versions as int64s, so a
    version that is not one, written as such, leaves the policy out."""
    versions = document.get("version_policy", {}).get("specific", {}).get("versions", [])
    if not all(_is_int64(str(version)) for version in versions):
        document = {key: value for key, value in document.items() if key != "version_policy"}
    return pb.ModelConfigResponse(config=_parsed(document, pb.ModelConfig()))


def _is_int64(text: str) -> bool:
    """Whether `text` is a non-negative int64 written plainly (no sign, no other digits)."""
    return text.isascii() and text.isdigit() and str(int(text)) == text and int(text) < 2**63
