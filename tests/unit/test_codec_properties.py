"""Property tests of the V2 REST codec: whatever a client sends, decoding ends in a request or a
4xx InferenceError, never any other exception; whatever a model returns, encoding ends in a body
or an InferenceError; and valid tensors survive tritonclient -> decode -> encode -> tritonclient.

Runs are derandomized (the same examples every run, so CI is reproducible) and bounded so the
file stays within seconds on a small machine.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import tritonclient.http as triton_http
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rayship_predictors.errors import InferenceError
from rayship_predictors.v2 import codec
from rayship_predictors.v2.codec import InferRequest
from rayship_predictors.v2.datatypes import V2_TO_NUMPY, v2_datatype_of

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DATATYPES = sorted(V2_TO_NUMPY)
FRAMINGS = ["json-flat", "json-nested", "binary"]
# Dimensions around every limit: numpy's intp and uint64, and beyond; and negatives.
HUGE_DIMS = [2**31, 2**40, 2**61, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70]
DIMS = st.one_of(st.integers(0, 3), st.sampled_from(HUGE_DIMS), st.integers(-(2**64), -1))
SHAPES = st.one_of(
    st.lists(DIMS, max_size=6),
    st.lists(st.integers(0, 1), min_size=60, max_size=70),  # around numpy's 64 dimensions
    st.lists(DIMS, max_size=70),
)
# The most elements a generated request carries, so bodies stay small.
MAX_COUNT = 64
WILD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),  # NaN and infinities too: json.dumps writes them as bare tokens
    st.text(max_size=3),
    st.lists(st.integers(0, 3), max_size=2),
)


def values_of(datatype: str) -> st.SearchStrategy[Any]:
    """JSON values a well-meaning client would send for `datatype`."""
    if datatype == "BYTES":
        return st.text(max_size=4)
    dtype = V2_TO_NUMPY[datatype]
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind == "f":
        return st.floats(width=min(dtype.itemsize * 8, 64))
    limits = np.iinfo(dtype)
    return st.integers(int(limits.min), int(limits.max))


def count_for(shape: list[int]) -> int | None:
    """How many elements `shape` needs, when a generated body can carry them."""
    if any(dim < 0 for dim in shape):
        return None
    needed = math.prod(shape)
    return needed if needed <= MAX_COUNT else None


def nested(values: list[Any], shape: list[int], depth: int) -> list[Any]:
    """`values` grouped as `shape` says when it fits, else wrapped in `depth` lists."""
    if count_for(shape) == len(values) and 0 not in shape and len(shape) <= 64:
        grouped: list[Any] = np.array(values, dtype=object).reshape(shape).tolist()
        return grouped
    for _ in range(depth):
        values = [values]
    return values


def length_prefixed(items: list[bytes]) -> bytes:
    return b"".join(len(item).to_bytes(4, "little") + item for item in items)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, int | None, str, list[int]]:
    """A one-input request body of any datatype, shape and framing, mostly well-formed."""
    datatype = draw(st.sampled_from(DATATYPES))
    shape = draw(SHAPES)
    framing = draw(st.sampled_from(FRAMINGS))
    count = count_for(shape)
    if count is None or draw(st.integers(0, 9)) == 0:  # sometimes the wrong count
        count = draw(st.integers(0, 3))
    spec: dict[str, Any] = {"name": "x", "datatype": datatype, "shape": shape}
    if framing == "binary":
        payload = draw(binary_payload(datatype, count))
        spec["parameters"] = {"binary_data_size": len(payload)}
        header = json.dumps({"inputs": [spec]}).encode()
        return header + payload, len(header), datatype, shape
    elements = WILD_VALUES if draw(st.integers(0, 4)) == 0 else values_of(datatype)
    values = draw(st.lists(elements, min_size=count, max_size=count))
    if framing == "json-nested":
        values = nested(values, shape, draw(st.integers(1, 70)))
    spec["data"] = values
    return json.dumps({"inputs": [spec]}).encode(), None, datatype, shape


def binary_payload(datatype: str, count: int) -> st.SearchStrategy[bytes]:
    """`count` elements of binary tensor data: raw for numbers, length-prefixed for BYTES."""
    if datatype == "BYTES":
        items = st.lists(st.binary(max_size=4), min_size=count, max_size=count)
        return items.map(length_prefixed)
    size = count * V2_TO_NUMPY[datatype].itemsize
    return st.binary(min_size=size, max_size=size)


def decode_or_client_error(body: bytes, header_length: int | None) -> InferRequest | None:
    """The decoded request, or None after checking that the refusal is a client error."""
    outcome = decode_or_refusal(body, header_length)
    if isinstance(outcome, InferRequest):
        return outcome
    assert 400 <= outcome.status < 500, outcome.message
    return None


def decode_or_refusal(body: bytes, header_length: int | None) -> InferRequest | InferenceError:
    """What decoding ends in; any exception but an InferenceError fails the test."""
    try:
        return codec.decode_request(body, header_length)
    except InferenceError as error:
        return error


def numpy_holds(shape: list[int], datatype: str) -> bool:
    """numpy's own verdict on an empty shape: allocating a zero-size array costs nothing."""
    try:
        np.empty(shape, dtype=V2_TO_NUMPY[datatype])
    except (ValueError, OverflowError):
        return False
    return True


# --- decode: anything a client sends --------------------------------------------------------


@SETTINGS
@given(requests())
def test_any_request_decodes_or_is_a_client_error(
    case: tuple[bytes, int | None, str, list[int]],
) -> None:
    body, header_length, datatype, shape = case

    request = decode_or_client_error(body, header_length)

    if request is not None:
        assert request.inputs["x"].shape == tuple(shape)
        assert request.inputs["x"].dtype == V2_TO_NUMPY[datatype]


@SETTINGS
@given(
    st.sampled_from(DATATYPES),
    st.lists(st.one_of(st.integers(0, 3), st.sampled_from(HUGE_DIMS)), max_size=8),
    st.integers(0, 8),
    st.booleans(),
)
def test_an_empty_tensor_is_accepted_exactly_when_numpy_holds_its_shape(
    datatype: str, dims: list[int], zero_at: int, binary: bool
) -> None:
    shape = [*dims[:zero_at], 0, *dims[zero_at:]]
    spec: dict[str, Any] = {"name": "x", "datatype": datatype, "shape": shape}
    if binary:
        spec["parameters"] = {"binary_data_size": 0}
    else:
        spec["data"] = []
    body = json.dumps({"inputs": [spec]}).encode()

    request = decode_or_client_error(body, len(body) if binary else None)

    assert (request is not None) is numpy_holds(shape, datatype)


@SETTINGS
@given(st.binary(max_size=64), st.one_of(st.none(), st.integers(-2, 80)))
def test_any_bytes_decode_or_are_a_client_error(body: bytes, header_length: int | None) -> None:
    decode_or_client_error(body, header_length)


# --- round trips through tritonclient -------------------------------------------------------


@st.composite
def tensors(draw: st.DrawFn, binary: bool) -> np.ndarray:
    """A valid tensor of any datatype; JSON framing cannot carry non-finite floats or non-UTF-8
    bytes, so those come only when `binary`."""
    datatype = draw(st.sampled_from(DATATYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3))
    if datatype != "BYTES":
        elements = None if binary else {"allow_nan": False, "allow_infinity": False}
        dtype = V2_TO_NUMPY[datatype]
        return draw(hnp.arrays(dtype, shape, elements=elements if dtype.kind == "f" else None))
    items = st.binary(max_size=4) if binary else st.text(max_size=4).map(str.encode)
    size = math.prod(shape)
    return np.array(draw(st.lists(items, min_size=size, max_size=size)), dtype=object).reshape(
        shape
    )


@st.composite
def client_inputs(draw: st.DrawFn) -> dict[str, tuple[np.ndarray, bool]]:
    """One to three named tensors, each as JSON or binary data."""
    names = draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=3, unique=True))
    inputs = {}
    for name in names:
        binary = draw(st.booleans())
        inputs[name] = (draw(tensors(binary)), binary)
    return inputs


def client_body(inputs: dict[str, tuple[np.ndarray, bool]]) -> tuple[bytes, int | None]:
    """The request body exactly as tritonclient would send it."""
    given_inputs = []
    for name, (array, binary) in inputs.items():
        datatype = v2_datatype_of(array)
        given = triton_http.InferInput(name, list(array.shape), datatype)
        given.set_data_from_numpy(array, binary_data=binary)
        given_inputs.append(given)
    body, header_length = triton_http.InferenceServerClient.generate_request_body(given_inputs)
    return body, header_length


def comparable(array: np.ndarray) -> tuple[tuple[int, ...], Any]:
    """Shape and values, with every NaN as the same NaN: JSON does not carry NaN payloads."""
    if array.dtype.kind == "f":
        canonical = np.where(np.isnan(array), np.nan, array).astype(array.dtype)
        return array.shape, canonical.tobytes()
    if array.dtype == np.object_:
        return array.shape, [v if isinstance(v, bytes) else v.encode() for v in array.flat]
    return array.shape, array.tobytes()


def parse(body: bytes, header_length: int | None) -> triton_http.InferResult:
    """A response as tritonclient reads it."""
    return triton_http.InferenceServerClient.parse_response_body(body, header_length=header_length)


@SETTINGS
@given(client_inputs(), st.booleans())
def test_tritonclient_tensors_round_trip_through_decode_and_encode(
    inputs: dict[str, tuple[np.ndarray, bool]], binary_output: bool
) -> None:
    request = codec.decode_request(*client_body(inputs))
    for name, (array, _) in inputs.items():
        assert request.inputs[name].dtype == array.dtype
        assert comparable(request.inputs[name]) == comparable(array)
    # Bytes that came as binary data may not be UTF-8, which only binary data carries back.
    requested = tuple(
        codec.RequestedOutput(name, binary_output or (binary and array.dtype == np.object_))
        for name, (array, binary) in inputs.items()
    )

    body, header_length = codec.encode_response("m", None, None, request.inputs, requested, False)

    result = parse(body, header_length)
    for name, (array, _) in inputs.items():
        assert comparable(result.as_numpy(name)) == comparable(array)


# --- encode: anything a model returns -------------------------------------------------------

ANY_DTYPES = st.one_of(
    hnp.scalar_dtypes(),
    hnp.byte_string_dtypes(),
    hnp.unicode_string_dtypes(),
    hnp.floating_dtypes(endianness=">"),
    hnp.integer_dtypes(endianness=">"),
)
ANY_OUTPUTS = st.one_of(
    hnp.arrays(ANY_DTYPES, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=3)),
    st.lists(WILD_VALUES, max_size=3).map(lambda items: np.array([*items, None], dtype=object)),
    WILD_VALUES,
)


@SETTINGS
@given(ANY_OUTPUTS, st.booleans())
def test_any_model_output_encodes_or_is_an_inference_error(output: Any, binary: bool) -> None:
    outcome = encode_or_refusal(output, binary)

    if isinstance(outcome, InferenceError):
        assert "output 'y'" in outcome.message
    else:
        assert parse(*outcome).as_numpy("y").shape == np.shape(output)


def encode_or_refusal(output: Any, binary: bool) -> tuple[bytes, int | None] | InferenceError:
    """What encoding one output ends in; any exception but an InferenceError fails the test."""
    try:
        return codec.encode_response("m", "1", None, {"y": output}, None, binary)
    except InferenceError as error:
        return error
