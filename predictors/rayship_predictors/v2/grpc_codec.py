"""The V2 gRPC wire codec: ModelInferRequest bytes to `InferRequest`, outputs to ModelInferResponse.

Every tensor check is the REST codec's own (`rayship_predictors.v2.codec`): the same datatypes,
shapes, binary layouts and numeric ranges are refused with the same words, each naming its
input, so a tensor is valid over gRPC exactly when it is valid over REST. What differs is only
the framing: gRPC tensors arrive either all in `raw_input_contents` (laid out as the binary
tensor extension lays out binary data) or each in the typed field of `InferTensorContents` that
its datatype names, and parameters are `InferParameter` oneofs rather than JSON values.

Responses always carry `raw_output_contents`, as Triton's do: tritonclient and perf_analyzer
read them, and they cost one copy per output where typed contents would cost a Python object
per element.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from google.protobuf.message import DecodeError

from rayship_predictors.errors import BadRequest
from rayship_predictors.v2 import codec
from rayship_predictors.v2.proto import inference_pb2 as pb

ParameterMap = Mapping[str, pb.InferParameter]

CONTENTS_FIELD = {
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
"""The typed field of `InferTensorContents` each datatype travels in (the V2 gRPC spec); FP16
has none and travels only as raw contents."""


def parse_infer_request(body: bytes) -> pb.ModelInferRequest:
    """The ModelInferRequest in `body`; bytes that are no such message are the client's fault."""
    try:
        return pb.ModelInferRequest.FromString(body)
    except DecodeError as error:
        raise BadRequest(f"the request is not a ModelInferRequest: {error}") from None


def decode_infer_request(body: bytes) -> codec.InferRequest:
    """Decode a serialized ModelInferRequest under the REST codec's rules."""
    message = parse_infer_request(body)
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise BadRequest(
            f"the request has {len(message.inputs)} inputs but {len(raw)} raw_input_contents; "
            "raw contents need one entry per input, in input order"
        )
    if not message.inputs:
        raise BadRequest("the request: 'inputs' must be a non-empty list")
    arrays: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    input_parameters: dict[str, dict[str, codec.JSON]] = {}
    for index, tensor in enumerate(message.inputs):
        name = tensor.name
        if not name:
            raise BadRequest(f"inputs[{index}]: 'name' must be a non-empty string")
        if name in arrays:
            raise BadRequest(f"input '{name}' appears twice")
        where = f"input '{name}'"
        codec.known_datatype(where, tensor.datatype)
        shape = codec.declared_shape(list(tensor.shape), where, tensor.datatype)
        if raw:
            if tensor.HasField("contents"):
                raise BadRequest(
                    f"{where}: has contents while the request uses raw_input_contents; "
                    "use one or the other for every input"
                )
            arrays[name] = codec.array_from_binary(
                where, tensor.datatype, shape, memoryview(raw[index]), "its raw_input_contents size"
            )
        else:
            arrays[name] = _from_contents(where, tensor.datatype, shape, tensor.contents)
        datatypes[name] = tensor.datatype
        if tensor.parameters:
            input_parameters[name] = parameters_of(tensor.parameters, where)
    return codec.InferRequest(
        id=message.id or None,
        parameters=parameters_of(message.parameters, "the request"),
        inputs=arrays,
        input_datatypes=datatypes,
        outputs=_requested_outputs(message),
        binary_output=True,
        input_parameters=input_parameters,
    )


def _from_contents(
    where: str, datatype: str, shape: tuple[int, ...], contents: pb.InferTensorContents
) -> np.ndarray:
    """An input's typed contents as an array of its declared datatype and shape."""
    field = CONTENTS_FIELD.get(datatype)
    filled = [descriptor.name for descriptor, _ in contents.ListFields()]
    if field is None:
        raise BadRequest(f"{where}: {datatype} has no typed contents; send it as raw contents")
    stray = [name for name in filled if name != field]
    if stray:
        raise BadRequest(f"{where}: {datatype} data goes in contents.{field}, not {stray[0]}")
    values = getattr(contents, field)
    if datatype == "BYTES":
        codec.check_count(where, shape, len(values))
        return np.array(list(values), dtype=np.object_).reshape(shape)
    array = codec.numeric_array(where, datatype, list(values))
    codec.check_count(where, shape, array.size)
    return array.reshape(shape)


def _requested_outputs(
    message: pb.ModelInferRequest,
) -> tuple[codec.RequestedOutput, ...] | None:
    """The request's `outputs`; none means every output, as in REST."""
    requested: dict[str, codec.RequestedOutput] = {}
    for index, output in enumerate(message.outputs):
        if not output.name:
            raise BadRequest(f"outputs[{index}]: 'name' must be a non-empty string")
        if output.name in requested:
            raise BadRequest(f"output '{output.name}' is requested twice")
        requested[output.name] = codec.RequestedOutput(name=output.name, binary=True)
    return tuple(requested.values()) or None


def parameters_of(parameters: ParameterMap, where: str) -> dict[str, codec.JSON]:
    """`InferParameter`s as the JSON values a model gets over REST."""
    values: dict[str, codec.JSON] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is None:
            raise BadRequest(f"{where}: parameter '{key}' has no value")
        values[key] = getattr(parameter, choice)
    return values


def encode_infer_response(
    model_name: str,
    model_version: str,
    request: codec.InferRequest,
    outputs: Mapping[str, np.ndarray],
) -> bytes:
    """A serialized ModelInferResponse with the requested outputs as raw contents."""
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request.id or ""
    )
    for name, value, _ in codec.selected_outputs(outputs, request.outputs, True):
        array = codec.output_array(name, value)
        datatype = codec.output_datatype(name, array)
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(bytes(codec.binary_chunk(name, datatype, array)))
    return response.SerializeToString()


def decode_infer_response(body: bytes) -> tuple[pb.ModelInferResponse, dict[str, np.ndarray]]:
    """A serialized ModelInferResponse with raw output contents (as `encode_infer_response`
    writes them) and its outputs as arrays: how the prediction log reads one back."""
    response = pb.ModelInferResponse.FromString(body)
    arrays: dict[str, np.ndarray] = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        where = f"output '{tensor.name}'"
        codec.known_datatype(where, tensor.datatype)
        shape = codec.declared_shape(list(tensor.shape), where, tensor.datatype)
        arrays[tensor.name] = codec.array_from_binary(
            where, tensor.datatype, shape, memoryview(raw), "its raw_output_contents size"
        )
    return response, arrays
