"""The data plane of one loaded model version: decode, validate, infer, encode.

Plain Python with no Ray in it: the Serve deployments in `app.py` are the transport around it,
and the tests drive it directly. Every client mistake becomes an `InferenceError` subclass with
the status the V2 protocol gives it; a runtime exception becomes `ModelFailure` (500) naming
the model and version, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rayship_predictors import batching
from rayship_predictors.errors import BadRequest, InferenceError, ModelFailure
from rayship_predictors.runtimes.base import Runtime, TensorSpec
from rayship_predictors.v2 import codec

logger = logging.getLogger(__name__)

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"

# Triton's model configuration names the backend apart from the platform.
TRITON_BACKENDS = {
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "pytorch": "pytorch",
    "python": "python",
}


@dataclass(frozen=True)
class Reply:
    """What the transport sends back: status, body and, for binary bodies, the JSON length."""

    status: int
    body: bytes
    header_length: int | None = None

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
        return cls(error.status, codec.error_body(error.message))


def triton_type(datatype: str) -> str:
    """Triton's `data_type` for a V2 datatype: `TYPE_FP32`; BYTES is `TYPE_STRING`."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def check_inputs(model: str, specs: list[TensorSpec], request: codec.InferRequest) -> None:
    """Refuse inputs the model does not take, missing inputs, wrong datatypes and shapes."""
    expected = {spec.name: spec for spec in specs}
    for name in request.inputs:
        if name not in expected:
            raise BadRequest(
                f"unknown input {name!r} for model {model!r}; it takes {sorted(expected)}"
            )
    for name, spec in expected.items():
        if name not in request.inputs:
            raise BadRequest(f"input {name!r} of model {model!r} is missing")
        datatype = request.input_datatypes[name]
        if datatype != spec.datatype:
            raise BadRequest(
                f"input {name!r}: datatype {datatype} given, model takes {spec.datatype}"
            )
        shape = request.inputs[name].shape
        if spec.shape and not _shape_fits(shape, spec.shape):
            raise BadRequest(
                f"input {name!r}: shape {list(shape)} does not fit the model's {list(spec.shape)}"
            )


def _shape_fits(shape: tuple[int, ...], declared: tuple[int, ...]) -> bool:
    """True when `shape` has the declared rank and every fixed dimension matches."""
    return len(shape) == len(declared) and all(
        want in (-1, got) for got, want in zip(shape, declared, strict=True)
    )


class VersionDataPlane:
    """Decode -> validate -> infer -> encode for one loaded version of a model."""

    def __init__(self, model_name: str, version: str, runtime: Runtime) -> None:
        self.model_name = model_name
        self.version = version
        self.runtime = runtime
        self._output_names = {spec.name for spec in runtime.outputs}

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
        full shapes, -1 marking variable dimensions.
        """
        batched = max_batch_size > 0

        def tensor(spec: TensorSpec) -> dict[str, object]:
            dims = list(spec.shape[1:] if batched else spec.shape)
            return {"name": spec.name, "data_type": triton_type(spec.datatype), "dims": dims}

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
        """A decoded request, checked against the model's inputs and outputs."""
        request = codec.decode_request(body, header_length)
        check_inputs(self.model_name, self.runtime.inputs, request)
        for output in request.outputs or ():
            if output.name not in self._output_names:
                raise BadRequest(
                    f"unknown output {output.name!r} for model {self.model_name!r}; "
                    f"it has {sorted(self._output_names)}"
                )
        return request

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The runtime's outputs; any exception it raises becomes a ModelFailure."""
        try:
            return self.runtime.infer(inputs)
        except InferenceError:
            raise
        except Exception as error:
            logger.exception("model %s version %s failed", self.model_name, self.version)
            raise ModelFailure(
                f"model {self.model_name!r} version {self.version!r} failed: "
                f"{type(error).__name__}: {error}"
            ) from None

    def run_batch(self, requests: list[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """Outputs for several requests, stacked into one runtime call where shapes allow."""
        if len(requests) > 1 and len({batching.batch_key(inputs) for inputs in requests}) == 1:
            try:
                stacked, sizes = batching.stack(requests)
            except ValueError:
                return [self.run(inputs) for inputs in requests]
            return batching.split(self.run(stacked), sizes)
        return [self.run(inputs) for inputs in requests]

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

    def infer(self, body: bytes, header_length: int | None) -> Reply:
        """One request end to end, without batching."""
        request = self.decode(body, header_length)
        return self.encode(request, self.run(request.inputs))
