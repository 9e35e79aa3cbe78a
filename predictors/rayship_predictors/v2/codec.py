"""The V2 (Open Inference Protocol) REST wire codec, with Triton's binary tensor data extension.

Its tensor checks (datatype, shape, binary data, numeric ranges, output selection) are public:
`rayship_predictors.v2.grpc_codec` decodes gRPC messages with the same ones, so both transports
refuse the same tensors with the same words.

Pure functions between HTTP bodies and numpy arrays, with no I/O and no Ray, so the transport
stays a thin layer and every wire rule is unit-tested here. Anything a client can get wrong
becomes `BadRequest` naming the offending tensor: no numpy or orjson exception escapes a decode.

We own this codec instead of using KServe's `kserve.protocol.infer_type` for conformance and
speed, both measured by bench/codec_bench.py. Binary tensors are zero-copy `np.frombuffer`
views over the request body (so they are read-only) where their data is aligned for their
dtype, and aligned read-only copies where not (see `array_from_binary`); JSON tensors go
through one `np.asarray` call, and responses are serialized by orjson straight from numpy. Only
BYTES tensors are walked element by element, because their layout is per element.

Shapes: a declared shape is accepted exactly when numpy can hold an array of it, so that no
reshape can fail after the checks. numpy caps the number of dimensions (64 since numpy 2.0, 32
before) and refuses any shape whose nonzero dimensions times the item size exceed the largest
intp (2**63 - 1 bytes on 64-bit hosts), even when another dimension is 0: `[0, 2**60]` of UINT8
is an empty tensor like any other, `[0, 2**40, 2**40]` is refused as too large. Every other
dimension must then match the data in the body, which bounds the tensor by the body's size.

Non-finite floats: JSON has no NaN or infinity, and the V2 spec does not say how to send them.
JSON responses write them as the bare tokens `NaN`, `Infinity` and `-Infinity`, as Triton does
(its TritonJson writer sets rapidjson's kWriteNanAndInfFlag) and as tritonclient.http reads
back (it parses with python-rapidjson, which accepts those tokens), so the same float arrives;
strict JSON parsers refuse them, and a client that needs strict JSON asks for binary outputs.
Requests cannot use those tokens in JSON `data`: orjson, our parser, refuses them as malformed
JSON, so non-finite inputs travel as binary data.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import orjson

from rayship_predictors.errors import BadRequest, ModelFailure
from rayship_predictors.v2.datatypes import V2_TO_NUMPY, v2_datatype_of

# Binary tensor data is little-endian whatever the host. On little-endian hosts these equal the
# native dtypes, so `frombuffer` and `ascontiguousarray` below never copy.
_WIRE_DTYPES: dict[str, np.dtype[Any]] = {
    name: dtype.newbyteorder("<") for name, dtype in V2_TO_NUMPY.items() if name != "BYTES"
}
# Each binary BYTES element is a 4-byte little-endian unsigned length, then that many bytes.
_LENGTH_PREFIX = struct.Struct("<I")
# What `np.asarray` may infer from JSON data for each kind of target dtype: inferring first
# (rather than passing `dtype=`) is what lets strings, nulls and fractions for integers be
# rejected instead of silently coerced.
_ALLOWED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}
_KIND_NOUNS = {"b": "true/false", "i": "integers", "u": "integers", "f": "numbers"}
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# The binary tensor data extension's framing: how tensors travel, consumed here. They are kept
# out of the parameters the model sees, so a model gets the same parameters whether a client
# sent JSON or binary tensors, and requests that differ only in framing can share a batch.
_BINARY_OUTPUT = "binary_data_output"
_BINARY_SIZE = "binary_data_size"
# numpy's NPY_MAXDIMS, which numpy does not export.
_MAX_DIMS = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32
# The most bytes numpy lets an array's nonzero dimensions span, whatever its size.
_MAX_BYTES = int(np.iinfo(np.intp).max)
_FLOAT_TOKENS = {"nan": b"NaN", "inf": b"Infinity", "-inf": b"-Infinity"}
_JSON_WHITESPACE = " \t\n\r"

JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
"""A value as parsed from JSON: what `parameters` hold."""


@dataclass(frozen=True)
class RequestedOutput:
    """One entry of the request's `outputs`; `binary` is its `parameters.binary_data`.

    `binary` is None when the client did not say, so the request-level `binary_data_output`
    applies; an explicit value overrides it, as Triton does.
    """

    name: str
    binary: bool | None


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request; arrays already have the declared shape and dtype.

    `input_datatypes` keeps the declared V2 datatype so the data plane can check it against the
    model (an object array alone cannot say it was BYTES). `outputs` is None when the client
    asked for every output (no `outputs`, or an empty list). `parameters` (the request's) and
    `input_parameters` (each input's, for inputs that have any) are as the client sent them,
    less the binary extension's framing (`binary_data_output`, `binary_data_size`), which this
    codec consumes.
    """

    id: str | None
    parameters: dict[str, JSON]
    inputs: dict[str, np.ndarray]
    input_datatypes: dict[str, str]
    outputs: tuple[RequestedOutput, ...] | None
    binary_output: bool
    input_parameters: dict[str, dict[str, JSON]]


@dataclass
class _BinaryPart:
    """A cursor over the bytes after the JSON header, consumed by inputs in request order."""

    body: bytes
    offset: int
    present: bool

    def take(self, where: str, size: int) -> memoryview:
        """The next `size` bytes, for one input: a view, not a copy."""
        left = len(self.body) - self.offset
        if not self.present and size:
            raise BadRequest(
                f"{where}: parameters.binary_data_size is {size} but the request has no binary "
                "part (is the Inference-Header-Content-Length header missing?)"
            )
        if size > left:
            raise BadRequest(
                f"{where}: binary_data_size {size} overruns the binary part, "
                f"which has only {left} bytes left"
            )
        start = self.offset
        self.offset += size
        return memoryview(self.body)[start : self.offset]


def decode_request(body: bytes, header_length: int | None) -> InferRequest:
    """Decode a V2 REST inference request body.

    `header_length` is the Inference-Header-Content-Length header: the JSON header is that
    many leading bytes and binary tensor data follows; None means the whole body is JSON.
    """
    document = _json_header(body, header_length)
    binary = _BinaryPart(
        body=body,
        offset=len(body) if header_length is None else header_length,
        present=header_length is not None,
    )
    inputs = _decode_inputs(document.get("inputs"), binary)
    if binary.offset != len(body):
        raise BadRequest(
            f"the binary part has {len(body) - binary.offset} bytes after the last binary input"
        )
    parameters = _optional_object(document, "parameters", "the request")
    binary_output = _optional_bool(parameters, _BINARY_OUTPUT, "the request") or False
    return InferRequest(
        id=_optional_str(document, "id", "the request"),
        parameters=_without(parameters, _BINARY_OUTPUT),
        inputs=inputs.arrays,
        input_datatypes=inputs.datatypes,
        outputs=_requested_outputs(document.get("outputs")),
        binary_output=binary_output,
        input_parameters=inputs.parameters,
    )


def encode_response(  # noqa: PLR0917 - the data plane calls it positionally, as specified
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: Mapping[str, np.ndarray],
    requested: tuple[RequestedOutput, ...] | None,
    binary_output: bool,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Encode a V2 REST inference response.

    Returns the body and the JSON header length for Inference-Header-Content-Length, or None
    when no output travels as binary data (the body is then plain JSON).
    """
    descriptors: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    for name, value, binary in selected_outputs(outputs, requested, binary_output):
        array = output_array(name, value)
        datatype = output_datatype(name, array)
        descriptor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": array.shape}
        if binary:
            chunk = binary_chunk(name, datatype, array)
            descriptor["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            descriptor["data"] = _json_data(name, datatype, array)
        descriptors.append(descriptor)
    document: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        document["model_version"] = model_version
    if request_id is not None:
        document["id"] = request_id
    if parameters is not None:
        document["parameters"] = dict(parameters)
    document["outputs"] = descriptors
    header = encode_json(document)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def encode_json(obj: Any) -> bytes:
    """Serialize any other JSON body (metadata, errors) the same way responses are."""
    return orjson.dumps(obj, option=_JSON_OPTIONS)


def error_body(message: str) -> bytes:
    """The V2 error body, `{"error": message}`."""
    return encode_json({"error": message})


# --- request: the JSON header ---------------------------------------------------------------


def _json_header(body: bytes, header_length: int | None) -> dict[str, Any]:
    """Parse the JSON header (the whole body without a header length) into an object."""
    if header_length is not None and not 0 <= header_length <= len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length is {header_length} but the body has {len(body)} bytes"
        )
    text = body if header_length is None else memoryview(body)[:header_length]
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        if header_length is None and (json_length := _json_prefix_length(body)) is not None:
            raise BadRequest(
                "the body is not JSON; a binary tensor body needs the "
                "Inference-Header-Content-Length header giving the length of its JSON part "
                f"(this body's JSON part seems to be its first {json_length} bytes)"
            ) from None
        raise BadRequest(f"the request JSON is malformed: {error}") from None
    if not isinstance(document, dict):
        raise BadRequest("the request JSON must be an object")
    return document


def _json_prefix_length(body: bytes) -> int | None:
    """The byte length of the JSON object `body` starts with, when more than whitespace follows.

    That is how a binary tensor body looks when the client left out its header length. Only
    called once orjson has refused the body, so the slower standard parser costs nothing on
    good requests; surrogateescape keeps the binary bytes from failing the text decode.
    """
    text = body.decode(errors="surrogateescape")
    start = len(text) - len(text.lstrip(_JSON_WHITESPACE))
    try:
        document, end = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError):  # not even a JSON prefix
        return None
    if not isinstance(document, dict) or not text[end:].strip(_JSON_WHITESPACE):
        return None
    return len(text[:end].encode(errors="surrogateescape"))


def _optional_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{where}: '{key}' must be a string, got {_json_type(value)}")
    return value


def _optional_bool(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{where}: '{key}' must be true or false, got {_json_type(value)}")
    return value


def _optional_object(obj: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: '{key}' must be an object, got {_json_type(value)}")
    return value


def _without(parameters: dict[str, JSON], key: str) -> dict[str, JSON]:
    """`parameters` less `key`; the same dict when it has no such key, as most requests."""
    if key not in parameters:
        return parameters
    return {name: value for name, value in parameters.items() if name != key}


def _required_name(spec: Any, where: str) -> str:
    """The `name` of an input or requested output, which everything else is reported under."""
    if not isinstance(spec, dict):
        raise BadRequest(f"{where} must be an object, got {_json_type(spec)}")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{where}: 'name' must be a non-empty string")
    return name


def _json_type(value: Any) -> str:
    """How JSON would call a parsed value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _requested_outputs(value: Any) -> tuple[RequestedOutput, ...] | None:
    """The request's `outputs`; absent, null or empty means every output."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadRequest(f"the request: 'outputs' must be a list, got {_json_type(value)}")
    requested: dict[str, RequestedOutput] = {}
    for index, spec in enumerate(value):
        name = _required_name(spec, f"outputs[{index}]")
        if name in requested:
            raise BadRequest(f"output '{name}' is requested twice")
        parameters = _optional_object(spec, "parameters", f"output '{name}'")
        binary = _optional_bool(parameters, "binary_data", f"output '{name}'")
        requested[name] = RequestedOutput(name=name, binary=binary)
    return tuple(requested.values()) or None


# --- request: tensors -----------------------------------------------------------------------


@dataclass
class _Inputs:
    """The request's inputs by name: arrays, declared datatypes, and parameters where given."""

    arrays: dict[str, np.ndarray]
    datatypes: dict[str, str]
    parameters: dict[str, dict[str, JSON]]


def _decode_inputs(value: Any, binary: _BinaryPart) -> _Inputs:
    """Decode every input in request order, binary ones consuming the binary part in turn."""
    if not isinstance(value, list) or not value:
        raise BadRequest("the request: 'inputs' must be a non-empty list")
    inputs = _Inputs({}, {}, {})
    for index, spec in enumerate(value):
        name = _required_name(spec, f"inputs[{index}]")
        if name in inputs.arrays:
            raise BadRequest(f"input '{name}' appears twice")
        where = f"input '{name}'"
        parameters = _optional_object(spec, "parameters", where)
        datatype, inputs.arrays[name] = _decode_input(spec, where, parameters, binary)
        inputs.datatypes[name] = datatype
        own = _without(parameters, _BINARY_SIZE)
        if own:
            inputs.parameters[name] = own
    return inputs


def _decode_input(
    spec: dict[str, Any], where: str, parameters: dict[str, JSON], binary: _BinaryPart
) -> tuple[str, np.ndarray]:
    """One input's declared datatype and its array, from `data` or from the binary part."""
    datatype = spec.get("datatype")
    if not isinstance(datatype, str):
        raise BadRequest(f"{where}: 'datatype' must be a string")
    known_datatype(where, datatype)
    shape = declared_shape(spec.get("shape"), where, datatype)
    size = parameters.get(_BINARY_SIZE)
    if size is None:
        if "data" not in spec:
            raise BadRequest(f"{where}: has neither 'data' nor parameters.binary_data_size")
        return datatype, _from_json(where, datatype, shape, spec["data"])
    if "data" in spec:
        raise BadRequest(f"{where}: has both 'data' and parameters.binary_data_size")
    if type(size) is not int or size < 0:
        raise BadRequest(f"{where}: binary_data_size must be a non-negative integer")
    return datatype, array_from_binary(
        where, datatype, shape, binary.take(where, size), "binary_data_size"
    )


def known_datatype(where: str, datatype: str) -> None:
    """Refuse a datatype the V2 protocol does not name."""
    if datatype not in V2_TO_NUMPY:
        raise BadRequest(
            f"{where}: unknown datatype '{datatype}'; expected one of {', '.join(V2_TO_NUMPY)}"
        )


def declared_shape(value: Any, where: str, datatype: str) -> tuple[int, ...]:
    """The declared shape, refused unless numpy can hold a `datatype` array of it.

    Checked before any data is read, with numpy's own rules (see the module docstring), so
    the reshapes below cannot fail, also for empty tensors with huge dimensions.
    """
    if not isinstance(value, list) or any(type(dim) is not int for dim in value):
        raise BadRequest(f"{where}: 'shape' must be a list of integers")
    if len(value) > _MAX_DIMS:
        raise BadRequest(
            f"{where}: shape has {len(value)} dimensions; numpy arrays have at most {_MAX_DIMS}"
        )
    if any(dim < 0 for dim in value):
        raise BadRequest(f"{where}: shape {_show(value)} has a negative dimension")
    span = math.prod(dim for dim in value if dim) * V2_TO_NUMPY[datatype].itemsize
    if span > _MAX_BYTES:
        raise BadRequest(
            f"{where}: shape {_show(value)} of {datatype} is too large for numpy: its nonzero "
            f"dimensions span {span} bytes, over the limit of {_MAX_BYTES} (even when another "
            "dimension is 0)"
        )
    return tuple(value)


def _show(shape: list[int] | tuple[int, ...]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def check_count(where: str, shape: tuple[int, ...], got: int) -> None:
    needed = math.prod(shape)
    if got != needed:
        raise BadRequest(f"{where}: shape {_show(shape)} needs {needed} elements, got {got}")


def _from_json(where: str, datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray:
    """A JSON `data` list, flat or nested row-major, as an array of the declared shape."""
    if not isinstance(data, list):
        raise BadRequest(f"{where}: 'data' must be a list, got {_json_type(data)}")
    if datatype == "BYTES":
        items = _utf8_items(where, data)
        check_count(where, shape, len(items))
        return np.array(items, dtype=np.object_).reshape(shape)
    array = numeric_array(where, datatype, data)
    check_count(where, shape, array.size)
    return array.reshape(shape)


def numeric_array(where: str, datatype: str, data: list[Any]) -> np.ndarray:
    """Convert JSON numbers with one vectorized call, rejecting what numpy would coerce."""
    try:
        parsed = np.asarray(data)
    except ValueError:  # ragged, or nested deeper than numpy's 64 dimensions
        raise BadRequest(
            f"{where}: 'data' must be a flat list or evenly nested lists of numbers"
        ) from None
    target = V2_TO_NUMPY[datatype]
    if parsed.size == 0:
        return parsed.astype(target)
    if parsed.dtype.kind == "f" and target.kind in "iu":
        return _exact_integers(where, datatype, data, target)
    if parsed.dtype.kind not in _ALLOWED_KINDS[target.kind]:
        raise BadRequest(f"{where}: {datatype} data must be {_KIND_NOUNS[target.kind]}")
    if target.kind in "iu" and parsed.dtype != target:
        limits = np.iinfo(target)
        if parsed.min() < limits.min or parsed.max() > limits.max:
            raise BadRequest(f"{where}: a value is out of range for {datatype}")
    with np.errstate(over="raise"):
        try:
            return parsed.astype(target, copy=False)
        except FloatingPointError:
            raise BadRequest(f"{where}: a value is out of range for {datatype}") from None


def _exact_integers(
    where: str, datatype: str, data: list[Any], target: np.dtype[Any]
) -> np.ndarray:
    """Integers that numpy could only infer as float64, losing precision.

    That happens for fractions (an error) and for a mix of negative values and values above
    the int64 range; only those rare requests pay for this per-element check.
    """
    objects = np.asarray(data, dtype=np.object_)
    if not all(type(value) is int for value in objects.ravel().tolist()):
        raise BadRequest(f"{where}: {datatype} data must be integers")
    try:
        return objects.astype(target)
    except OverflowError:
        raise BadRequest(f"{where}: a value is out of range for {datatype}") from None


def _utf8_items(where: str, data: list[Any]) -> list[bytes]:
    """Flatten (nested) JSON strings into UTF-8 bytes, without recursion on deep nesting."""
    items: list[bytes] = []
    pending: list[Iterator[Any]] = [iter(data)]
    while pending:
        for item in pending[-1]:
            if isinstance(item, list):
                pending.append(iter(item))
                break
            if not isinstance(item, str):
                raise BadRequest(f"{where}: BYTES data must be strings, got {_json_type(item)}")
            items.append(item.encode())
        else:
            pending.pop()
    return items


def array_from_binary(
    where: str, datatype: str, shape: tuple[int, ...], data: memoryview, size_name: str
) -> np.ndarray:
    """An input's binary data (its slice of the binary part, or its gRPC raw contents, whose
    size the client calls `size_name`) as a read-only array: a zero-copy view unless BYTES or
    misaligned."""
    if datatype == "BYTES":
        items = _split_length_prefixed(where, data)
        check_count(where, shape, len(items))
        return np.array(items, dtype=np.object_).reshape(shape)
    dtype = _WIRE_DTYPES[datatype]
    count = math.prod(shape)
    if len(data) != count * dtype.itemsize:
        raise BadRequest(
            f"{where}: shape {_show(shape)} of {datatype} needs {count * dtype.itemsize} bytes "
            f"of binary data, {size_name} is {len(data)}"
        )
    if datatype == "BOOL":
        raw = np.frombuffer(data, dtype=np.uint8)
        if count and raw.max() > 1:
            raise BadRequest(f"{where}: binary BOOL elements must be bytes 0 or 1")
        return raw.view(np.bool_).reshape(shape)
    return _aligned(np.frombuffer(data, dtype=dtype)).reshape(shape)


def _aligned(array: np.ndarray) -> np.ndarray:
    """`array`, or a read-only copy of it when its data is not aligned for its dtype.

    Binary data starts wherever the JSON header before it ends (`http.join_aligned` lays out
    most large bodies so that it is aligned). Runtimes are slow on misaligned arrays: ONNX
    Runtime took 3-6.5 ms over a 10 MB FP32 batch at an odd offset against 0.15 ms aligned,
    in-process, where this copy costs under 1 ms.
    """
    if array.flags.aligned:
        return array
    copied = array.copy()
    copied.flags.writeable = False
    return copied


def _split_length_prefixed(where: str, data: memoryview) -> list[bytes]:
    """Split binary BYTES data (per element: 4-byte little-endian length, then the bytes)."""
    items: list[bytes] = []
    offset = 0
    end = len(data)
    while offset < end:
        if end - offset < _LENGTH_PREFIX.size:
            raise BadRequest(f"{where}: BYTES element {len(items)} has a truncated length prefix")
        (length,) = _LENGTH_PREFIX.unpack_from(data, offset)
        offset += _LENGTH_PREFIX.size
        if length > end - offset:
            raise BadRequest(
                f"{where}: BYTES element {len(items)} declares {length} bytes but only "
                f"{end - offset} remain in its binary data"
            )
        items.append(bytes(data[offset : offset + length]))
        offset += length
    return items


# --- response -------------------------------------------------------------------------------


def selected_outputs(
    outputs: Mapping[str, np.ndarray],
    requested: tuple[RequestedOutput, ...] | None,
    binary_output: bool,
) -> list[tuple[str, np.ndarray, bool]]:
    """Which outputs go out, in which order, and whether each travels as binary data."""
    if requested is None:
        return [(name, array, binary_output) for name, array in outputs.items()]
    selection = []
    for output in requested:
        if output.name not in outputs:
            raise BadRequest(
                f"requested output '{output.name}' is not an output of the model "
                f"(it has: {', '.join(outputs)})"
            )
        binary = binary_output if output.binary is None else output.binary
        selection.append((output.name, outputs[output.name], binary))
    return selection


def output_array(name: str, value: object) -> np.ndarray:
    """The output as a plain ndarray: numpy scalars and ndarray subclasses are accepted.

    Anything else is the model's fault. Subclasses (masked arrays, matrices) become their
    base array, the only kind orjson serializes (a masked array's hidden values go out).
    """
    if not isinstance(value, np.ndarray | np.generic):
        raise ModelFailure(f"output '{name}' must be a numpy array, got {type(value).__name__}")
    return np.asarray(value)


def output_datatype(name: str, array: np.ndarray) -> str:
    """The output's V2 datatype; an unencodable dtype is the model's fault, not the client's."""
    try:
        return v2_datatype_of(array)
    except TypeError as error:
        raise ModelFailure(f"output '{name}': {error}") from None


def _json_data(
    name: str, datatype: str, array: np.ndarray
) -> np.ndarray | list[str] | orjson.Fragment:
    """A flat row-major `data` value; orjson writes numeric arrays itself.

    That includes FP16 (orjson >= 3.10, the project's floor), so FP16 goes out as JSON numbers
    without a float32 copy. Only floats holding NaN or infinities take a slower path.
    """
    if datatype == "BYTES":
        return _texts(name, array)
    flat = array.ravel()
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        return _non_finite_floats(flat)
    return flat


def _non_finite_floats(flat: np.ndarray) -> orjson.Fragment:
    """Floats with NaN or infinities, written with the tokens the module docstring explains.

    orjson writes each non-finite value as `null` (the only `null`s in a list of numbers), so
    those are swapped for tokens, in order, keeping orjson's formatting of every other value.
    """
    pieces = orjson.dumps(flat, option=_JSON_OPTIONS).split(b"null")
    tokens = [_FLOAT_TOKENS[str(value)] for value in flat[~np.isfinite(flat)].tolist()]
    written = [pieces[0]]
    for token, piece in zip(tokens, pieces[1:], strict=True):
        written += (token, piece)
    return orjson.Fragment(b"".join(written))


def _texts(name: str, array: np.ndarray) -> list[str]:
    """BYTES elements as JSON strings: str as is, bytes decoded (else binary framing is needed).

    The strings are checked for what UTF-8 cannot encode all at once, in one join, rather than
    encoded one by one: outputs of many short strings are the common case.
    """
    try:
        texts = [
            item if isinstance(item, str) else _element_bytes(name, item).decode()
            for item in array.ravel().tolist()
        ]
    except UnicodeDecodeError:
        raise BadRequest(
            f"output '{name}' holds bytes that are not valid UTF-8, which JSON cannot "
            "carry; request it with parameters.binary_data=true"
        ) from None
    _element_bytes(name, "".join(texts))  # only to raise on a lone surrogate
    return texts


def binary_chunk(name: str, datatype: str, array: np.ndarray) -> bytes | memoryview:
    """An output's binary data, whose len() is its size in bytes.

    Numeric outputs are a byte view of the C-contiguous little-endian array, so the only copy
    of their data is the final join into the body.
    """
    if datatype == "BYTES":
        return _length_prefixed(name, array)
    contiguous = np.ascontiguousarray(array, dtype=_WIRE_DTYPES[datatype])
    return contiguous.reshape(-1).view(np.uint8).data


def _length_prefixed(name: str, array: np.ndarray) -> bytes:
    parts: list[bytes] = []
    for item in array.ravel().tolist():
        data = _element_bytes(name, item)
        parts.append(_LENGTH_PREFIX.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _element_bytes(name: str, item: Any) -> bytes:
    """One BYTES element as bytes: str is UTF-8 encoded, anything else is the model's fault."""
    if isinstance(item, str):
        try:
            return item.encode()
        except UnicodeEncodeError:
            raise ModelFailure(
                f"output '{name}': a BYTES element is a str that UTF-8 cannot encode "
                "(it holds a lone surrogate)"
            ) from None
    if not isinstance(item, bytes):
        raise ModelFailure(
            f"output '{name}': BYTES elements must be bytes or str, got {type(item).__name__}"
        )
    return item
