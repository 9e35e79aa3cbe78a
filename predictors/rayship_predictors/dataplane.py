"""The data plane of one loaded model version: decode, validate, infer, encode.

Plain Python with no Ray in it: the Serve deployments in `app.py` are the transport around it,
and the tests drive it directly. Every client mistake becomes an `InferenceError` subclass with
the status the V2 protocol gives it; a runtime exception becomes `ModelFailure` (500) naming
the model and version, never a traceback.

Decoding and encoding run on the caller's event loop; the runtime call never blocks it. A
runtime with `infer_async` is awaited there; any other runs `infer` in this data plane's
bounded thread pool, so one slow call leaves the loop free to take and answer other requests.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from rayship_predictors import batching
from rayship_predictors.errors import BadRequest, InferenceError, ModelFailure
from rayship_predictors.runtimes.base import (
    REQUIRED,
    AsyncInfer,
    DeclaresParameters,
    Parameters,
    ParameterSpec,
    Runtime,
    TensorSpec,
)
from rayship_predictors.v2 import codec, grpc_codec

logger = logging.getLogger(__name__)

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"

Outcome = dict[str, np.ndarray] | InferenceError
"""What one request of a batch ended in: its outputs, or the failure its client gets."""

# Triton's model configuration names the backend apart from the platform.
TRITON_BACKENDS = {
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "pytorch": "pytorch",
    "python": "python",
}


@dataclass(frozen=True)
class Call:
    """One request as the deployments route it, over HTTP or through a DeploymentHandle.

    `respond_async` is the client's `Prefer: respond-async` wait in seconds, None when it asked
    for none, and `authorization` its `Authorization` header (kept out of `repr`, so out of
    logs): both travel with the call, so a version reached through `/v2` (a canary split)
    decides as the one owning the model URL would. So do the W3C trace context headers
    (`traceparent`, `tracestate`), making the version that answers a child of the caller's
    trace however many hops it took, and `X-Request-Id`, which names the call in its
    prediction log records. `grpc` says the body is a serialized ModelInferRequest of the V2
    gRPC service rather than a REST body; its answer is then a serialized ModelInferResponse.
    """

    method: str
    path: str
    body: bytes = b""
    header_length: int | None = None
    respond_async: float | None = None
    authorization: str | None = field(default=None, repr=False)
    traceparent: str | None = None
    tracestate: str | None = None
    request_id: str | None = None
    grpc: bool = False


@dataclass(frozen=True)
class Reply:
    """What the transport sends back: status, body, for binary bodies the JSON length, and any
    other headers the answer needs (`Location` of an accepted job)."""

    status: int
    body: bytes
    header_length: int | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def content_type(self) -> str:
        """JSON unless the body carries binary tensor data."""
        return JSON if self.header_length is None else OCTET_STREAM

    @classmethod
    def json(cls, payload: object, status: int = 200) -> Reply:
        """A JSON reply."""
        return cls(status, codec.encode_json(payload))

    @classmethod
    def error(cls, error: InferenceError) -> Reply:
        """The V2 error body for a failure."""
        return cls(error.status, codec.error_body(error.message), headers=error.headers)


def triton_type(datatype: str) -> str:
    """Triton's `data_type` for a V2 datatype: `TYPE_FP32`; BYTES is `TYPE_STRING`."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def check_inputs(
    model: str, specs: list[TensorSpec], request: codec.InferRequest
) -> dict[str, np.ndarray]:
    """The request's inputs with defaults for optional ones left out; refuse unknown or missing
    inputs, wrong datatypes and shapes."""
    expected = {spec.name: spec for spec in specs}
    for name in request.inputs:
        if name not in expected:
            raise BadRequest(
                f"unknown input {name!r} for model {model!r}; it takes {sorted(expected)}"
            )
    inputs = dict(request.inputs)
    for name, spec in expected.items():
        if name not in request.inputs:
            if not spec.optional:
                raise BadRequest(f"input {name!r} of model {model!r} is missing")
            if spec.default is not None:
                inputs[name] = np.asarray(spec.default)
            continue
        datatype = request.input_datatypes[name]
        if datatype != spec.datatype:
            raise BadRequest(
                f"input {name!r}: datatype {datatype} given, model takes {spec.datatype}"
            )
        shape = request.inputs[name].shape
        if not spec.accepts(shape):
            raise BadRequest(
                f"input {name!r}: shape {list(shape)} does not fit the model's {list(spec.shape)}"
            )
    return inputs


def check_parameters(
    specs: Sequence[ParameterSpec], given: Mapping[str, codec.JSON]
) -> dict[str, codec.JSON]:
    """`given` with declared parameters type-checked and defaulted; others pass untouched.

    Defaults are copied per request, so a predictor changing a list default changes only its own.
    """
    checked = dict(given)
    for spec in specs:
        if spec.name in given:
            checked[spec.name] = spec.parse(given[spec.name])
        elif spec.default is REQUIRED:
            raise BadRequest(f"parameter {spec.name!r} is required")
        else:
            checked[spec.name] = copy.deepcopy(spec.default)
    return checked


def _parameters_of(request: codec.InferRequest) -> Parameters:
    """What a runtime's `infer` gets as `parameters` for `request`."""
    return Parameters(request.parameters, request.input_parameters)


def _same_call(a: codec.InferRequest, b: codec.InferRequest) -> bool:
    """Whether two requests can share one runtime call: stackable inputs, equal parameters."""
    return (
        batching.batch_key(a.inputs) == batching.batch_key(b.inputs)
        and a.parameters == b.parameters
        and a.input_parameters == b.input_parameters
    )


class VersionDataPlane:
    """Decode -> validate -> infer -> encode for one loaded version of a model.

    `threads` sizes the pool that synchronous `infer` calls run in (`PredictorSettings.
    predict_threads`); 0 runs them on the event loop itself.
    """

    def __init__(self, model_name: str, version: str, runtime: Runtime, threads: int) -> None:
        self.model_name = model_name
        self.version = version
        self.runtime = runtime
        self._output_names = {spec.name for spec in runtime.outputs}
        self._parameters = runtime.parameters if isinstance(runtime, DeclaresParameters) else ()
        self._infer_async = runtime.infer_async if isinstance(runtime, AsyncInfer) else None
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix=f"predict-{model_name}")
            if threads
            else None
        )

    def metadata(self) -> dict[str, object]:
        """V2 model metadata for this version."""
        return {
            "name": self.model_name,
            "versions": [self.version],
            "platform": self.runtime.platform,
            "inputs": [spec.to_metadata() for spec in self.runtime.inputs],
            "outputs": [spec.to_metadata() for spec in self.runtime.outputs],
        }

    def triton_config(
        self, max_batch_size: int = 0, batch_wait_ms: float = 0.0
    ) -> dict[str, object]:
        """The version described as Triton's model configuration (model_config.proto as JSON).

        Triton's clients (perf_analyzer, `get_model_config`) read it before they infer. With
        dynamic batching on, `max_batch_size` is the batch limit and `dims` leave out the first
        (batch) dimension, as Triton's do; otherwise `max_batch_size` is 0 and `dims` are the
        full shapes, -1 marking variable dimensions. Optional inputs say `optional: true`, as in
        Triton's ModelInput (left out when false, as protobuf's JSON leaves out defaults).
        """
        batched = max_batch_size > 0

        def tensor(spec: TensorSpec) -> dict[str, object]:
            dims = list(spec.shape[1:] if batched else spec.shape)
            config: dict[str, object] = {
                "name": spec.name,
                "data_type": triton_type(spec.datatype),
                "dims": dims,
            }
            if spec.optional:
                config["optional"] = True
            return config

        config: dict[str, object] = {
            "name": self.model_name,
            "platform": self.runtime.platform,
            "backend": TRITON_BACKENDS.get(self.runtime.platform, self.runtime.platform),
            "version_policy": {"specific": {"versions": [self.version]}},
            "max_batch_size": max_batch_size,
            "input": [tensor(spec) for spec in self.runtime.inputs],
            "output": [tensor(spec) for spec in self.runtime.outputs],
        }
        if batched:
            config["dynamic_batching"] = {
                "max_queue_delay_microseconds": round(batch_wait_ms * 1000)
            }
        return config

    def decode(self, body: bytes, header_length: int | None) -> codec.InferRequest:
        """A decoded request, checked against the model's inputs, outputs and parameters, with
        defaults for the optional inputs and declared parameters it left out."""
        return self._checked(codec.decode_request(body, header_length))

    def decode_call(self, call: Call) -> codec.InferRequest:
        """`decode` for a call over either transport."""
        if call.grpc:
            return self._checked(grpc_codec.decode_infer_request(call.body))
        return self.decode(call.body, call.header_length)

    def _checked(self, request: codec.InferRequest) -> codec.InferRequest:
        """`request` checked against the model, with its defaults filled in."""
        inputs = check_inputs(self.model_name, self.runtime.inputs, request)
        for output in request.outputs or ():
            if output.name not in self._output_names:
                raise BadRequest(
                    f"unknown output {output.name!r} for model {self.model_name!r}; "
                    f"it has {sorted(self._output_names)}"
                )
        parameters = check_parameters(self._parameters, request.parameters)
        return replace(request, inputs=inputs, parameters=parameters)

    async def run(self, request: codec.InferRequest) -> dict[str, np.ndarray]:
        """The runtime's outputs for one decoded request."""
        return await self._call(request.inputs, _parameters_of(request))

    async def run_batch(self, requests: list[codec.InferRequest]) -> list[Outcome]:
        """Outputs (or the failure) of each of several requests: one runtime call when their
        inputs stack and their parameters agree, else a call each, running side by side.

        A stacked call that fails is run again request by request, so one client's bad input
        fails only that client's request, with indices counted within it.
        """
        first = requests[0]
        if len(requests) > 1 and all(_same_call(first, other) for other in requests[1:]):
            try:
                stacked, sizes = batching.stack([request.inputs for request in requests])
            except ValueError:
                pass  # no shared batch dimension: fall through to a call each
            else:
                try:
                    return list(
                        batching.split(await self._call(stacked, _parameters_of(first)), sizes)
                    )
                except InferenceError:
                    pass  # find out whose request it was: fall through to a call each
        return list(await asyncio.gather(*(self._outcome(request) for request in requests)))

    async def _outcome(self, request: codec.InferRequest) -> Outcome:
        """One request's outputs, or the client-facing failure it ended in."""
        try:
            return await self.run(request)
        except InferenceError as error:
            return error

    async def _call(
        self, inputs: Mapping[str, np.ndarray], parameters: Parameters
    ) -> dict[str, np.ndarray]:
        """One runtime call, off the event loop; any exception but an InferenceError becomes a
        ModelFailure."""
        try:
            if self._infer_async is not None:
                return await self._infer_async(inputs, parameters)
            if self._pool is None:
                return self.runtime.infer(inputs, parameters)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self.runtime.infer, inputs, parameters)
        except InferenceError:
            raise
        except Exception as error:
            logger.exception("model %s version %s failed", self.model_name, self.version)
            raise ModelFailure(
                f"model {self.model_name!r} version {self.version!r} failed: "
                f"{type(error).__name__}: {error}"
            ) from None

    def encode(self, request: codec.InferRequest, outputs: Mapping[str, np.ndarray]) -> Reply:
        """The V2 response for `request`'s outputs."""
        body, header_length = codec.encode_response(
            self.model_name,
            self.version,
            request.id,
            outputs,
            request.outputs,
            request.binary_output,
        )
        return Reply(200, body, header_length)

    def encode_call(
        self, call: Call, request: codec.InferRequest, outputs: Mapping[str, np.ndarray]
    ) -> Reply:
        """`encode` for a call over either transport."""
        if call.grpc:
            body = grpc_codec.encode_infer_response(self.model_name, self.version, request, outputs)
            return Reply(200, body)
        return self.encode(request, outputs)

    async def infer(self, body: bytes, header_length: int | None) -> Reply:
        """One request end to end, without batching."""
        request = self.decode(body, header_length)
        return self.encode(request, await self.run(request))
