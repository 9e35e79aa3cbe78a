"""The V2 REST wire codec against real client bytes: tritonclient encodes our requests and
parses our responses, so passing means a Triton client interoperates, not just that we agree
with ourselves. Every malformed request must become BadRequest naming what is wrong."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import np_to_triton_dtype

from rayship_predictors.errors import BadRequest, ModelFailure
from rayship_predictors.v2 import codec
from rayship_predictors.v2.codec import RequestedOutput
from rayship_predictors.v2.datatypes import V2_TO_NUMPY

# One [2, 3] sample per datatype, with the extreme values that break naive conversions.
SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 255, 7], [1, 2, 3]], dtype=np.uint8),
    "UINT16": np.array([[0, 65535, 7], [1, 2, 3]], dtype=np.uint16),
    "UINT32": np.array([[0, 2**32 - 1, 7], [1, 2, 3]], dtype=np.uint32),
    "UINT64": np.array([[0, 2**64 - 1, 7], [1, 2, 3]], dtype=np.uint64),
    "INT8": np.array([[-128, 127, 0], [1, -2, 3]], dtype=np.int8),
    "INT16": np.array([[-(2**15), 2**15 - 1, 0], [1, -2, 3]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 2**31 - 1, 0], [1, -2, 3]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 2**63 - 1, 0], [1, -2, 3]], dtype=np.int64),
    "FP16": np.array([[0.1, -65504, 6e-8], [1.5, -0.0, 3.25]], dtype=np.float16),
    "FP32": np.array([[0.1, -3.4e38, 1e-45], [1.5, -0.0, 3.25]], dtype=np.float32),
    "FP64": np.array([[0.1, -1.7e308, 5e-324], [1.5, -0.0, 3.25]], dtype=np.float64),
    "BYTES": np.array([[b"a", b"", "é".encode()], [b"x" * 300, b"\x00\x01", b"zz"]], dtype=object),
}
DATATYPES = sorted(SAMPLES)
SIZE_48 = {"binary_data_size": 48}
NOT_UTF8 = np.array([b"\xff\xfe", b"ok", b"\x80"], dtype=object)


def client_request(
    arrays: dict[str, tuple[np.ndarray, bool]],
    outputs: list[triton_http.InferRequestedOutput] | None = None,
    request_id: str = "",
) -> tuple[bytes, int | None]:
    """A request body exactly as tritonclient sends it; values are (array, as binary)."""
    inputs = []
    for name, (array, binary) in arrays.items():
        infer_input = triton_http.InferInput(
            name, list(array.shape), np_to_triton_dtype(array.dtype)
        )
        infer_input.set_data_from_numpy(array, binary_data=binary)
        inputs.append(infer_input)
    body, header_length = triton_http.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, request_id=request_id
    )
    return body, header_length


def client_parse(body: bytes, header_length: int | None) -> triton_http.InferResult:
    """Our response as tritonclient reads it."""
    return triton_http.InferenceServerClient.parse_response_body(body, header_length=header_length)


def raw(document: Any, binary: bytes | None = None) -> tuple[bytes, int | None]:
    """A hand-written request: JSON, then binary data if any (with its header length)."""
    header = orjson.dumps(document)
    if binary is None:
        return header, None
    return header + binary, len(header)


def one_input(**fields: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", **fields}]}


def length_prefixed(*items: bytes) -> bytes:
    return b"".join(len(item).to_bytes(4, "little") + item for item in items)


def encode(
    outputs: dict[str, np.ndarray],
    requested: tuple[RequestedOutput, ...] | None = None,
    binary_output: bool = False,
) -> tuple[bytes, int | None]:
    return codec.encode_response("m", "1", "req-1", outputs, requested, binary_output)


def assert_same(datatype: str, got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    if datatype == "BYTES":
        assert got.ravel().tolist() == expected.ravel().tolist()
    else:
        assert got.dtype == expected.dtype
        # Bit patterns, so -0.0 and the float extremes must survive exactly.
        assert got.tobytes() == expected.tobytes()


# --- requests -------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_request_from_tritonclient_decodes_every_datatype(datatype: str, binary: bool) -> None:
    sample = SAMPLES[datatype]
    body, header_length = client_request({"x": (sample, binary)})

    request = codec.decode_request(body, header_length)

    assert request.input_datatypes == {"x": datatype}
    assert request.inputs["x"].dtype == V2_TO_NUMPY[datatype]
    assert_same(datatype, request.inputs["x"], sample)


def test_binary_bytes_input_keeps_bytes_that_are_not_utf8() -> None:
    body, header_length = client_request({"s": (NOT_UTF8, True)})

    request = codec.decode_request(body, header_length)

    assert request.inputs["s"].tolist() == NOT_UTF8.tolist()


@pytest.mark.parametrize("spaces", range(8))
def test_binary_inputs_are_read_only_aligned_and_views_where_the_body_allows(spaces: int) -> None:
    """Each offset of FP64 data (8-byte items) from the body's start: a view where aligned, an
    aligned copy elsewhere, read-only either way, the same bits both ways."""
    sample = SAMPLES["FP64"]
    header = orjson.dumps(one_input(datatype="FP64", shape=[2, 3], parameters=SIZE_48))
    body = header + b" " * spaces + sample.tobytes()
    header_length = len(header) + spaces

    array = codec.decode_request(body, header_length).inputs["x"]

    start = np.frombuffer(body, dtype=np.uint8).ctypes.data + header_length
    assert array.flags.aligned
    assert not array.flags.writeable
    assert np.shares_memory(array, np.frombuffer(body, dtype=np.uint8)) == (start % 8 == 0)
    assert_same("FP64", array, sample)


def test_json_and_binary_inputs_mix_and_keep_request_order() -> None:
    arrays = {
        "c": (SAMPLES["INT32"], True),
        "a": (SAMPLES["BYTES"], False),
        "b": (SAMPLES["BYTES"], True),
        "d": (SAMPLES["FP16"], True),
    }
    body, header_length = client_request(arrays)

    request = codec.decode_request(body, header_length)

    assert list(request.inputs) == ["c", "a", "b", "d"]
    for name, (array, _) in arrays.items():
        assert_same(request.input_datatypes[name], request.inputs[name], array)


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "expected"),
    [
        ("INT32", [2, 2], [1, 2, 3, 4], [[1, 2], [3, 4]]),
        ("INT32", [2, 2], [[1, 2], [3, 4]], [[1, 2], [3, 4]]),
        ("FP32", [1, 2, 2], [[[1.5, 2], [3, 4]]], [[[1.5, 2], [3, 4]]]),
        # Only the row-major order counts, not how the client grouped the elements.
        ("FP32", [2, 2], [[1, 2, 3, 4]], [[1, 2], [3, 4]]),
        ("BOOL", [2, 1], [[True], [False]], [[True], [False]]),
        ("BYTES", [2, 2], [["a", "b"], ["c", "d"]], [[b"a", b"b"], [b"c", b"d"]]),
        ("BYTES", [3], [["a"], [["b"]], "c"], [b"a", b"b", b"c"]),
        ("FP64", [0, 3], [], np.zeros((0, 3))),
    ],
)
def test_json_data_may_be_flat_or_nested(
    datatype: str, shape: list[int], data: list[Any], expected: Any
) -> None:
    request = codec.decode_request(*raw(one_input(datatype=datatype, shape=shape, data=data)))

    array = request.inputs["x"]
    assert array.shape == tuple(shape)
    assert array.dtype == V2_TO_NUMPY[datatype]
    assert array.tolist() == np.asarray(expected, dtype=array.dtype).tolist()


def test_request_id_parameters_and_outputs_are_decoded() -> None:
    outputs = [
        triton_http.InferRequestedOutput("y", binary_data=False),
        triton_http.InferRequestedOutput("z", binary_data=True),
    ]
    body, header_length = client_request(
        {"x": (SAMPLES["FP32"], True)}, outputs=outputs, request_id="abc"
    )

    request = codec.decode_request(body, header_length)

    assert request.id == "abc"
    assert request.outputs == (RequestedOutput("y", False), RequestedOutput("z", True))
    assert request.binary_output is False


def test_tritonclient_without_outputs_asks_for_all_outputs_in_binary() -> None:
    body, header_length = client_request({"x": (SAMPLES["FP32"], False)})

    request = codec.decode_request(body, header_length)

    assert request.outputs is None
    assert request.binary_output is True
    assert request.id is None


def test_custom_parameters_from_tritonclient_arrive_as_sent() -> None:
    custom = {"top_k": 3, "scale": 0.5, "tags": ["a", {"b": None}], "greedy": True}
    given = triton_http.InferInput("x", [2, 3], "FP32")
    given.set_data_from_numpy(SAMPLES["FP32"], binary_data=True)
    body, header_length = triton_http.InferenceServerClient.generate_request_body(
        [given], parameters=custom, priority=2
    )

    request = codec.decode_request(body, header_length)

    assert request.parameters == {**custom, "priority": 2}
    assert request.binary_output is True  # tritonclient's own, consumed here
    assert request.input_parameters == {}  # binary_data_size was the input's only parameter


def test_input_parameters_are_kept_per_input_less_binary_framing() -> None:
    document = {
        "parameters": {"binary_data_output": True, "note": "kept"},
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [2], "data": [1, 2],
             "parameters": {"unit": "cm", "scale": [1, 2]}},
            {"name": "b", "datatype": "FP32", "shape": [2],
             "parameters": {"binary_data_size": 8, "unit": "mm"}},
            {"name": "c", "datatype": "FP32", "shape": [2],
             "parameters": {"binary_data_size": 8}},
            {"name": "d", "datatype": "FP32", "shape": [2], "data": [5, 6], "parameters": {}},
        ],
    }  # fmt: skip

    request = codec.decode_request(*raw(document, FP32_PAIR * 2))

    assert request.parameters == {"note": "kept"}
    assert request.binary_output is True
    assert request.input_parameters == {
        "a": {"unit": "cm", "scale": [1, 2]},
        "b": {"unit": "mm"},
    }
    assert request.inputs["c"].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ([{"name": "y"}], (RequestedOutput("y", None),)),
        ([{"name": "y", "parameters": {"binary_data": False}}], (RequestedOutput("y", False),)),
        ([], None),
        (None, None),
    ],
)
def test_requested_outputs_say_binary_only_when_the_client_did(
    outputs: Any, expected: tuple[RequestedOutput, ...] | None
) -> None:
    document = {**one_input(datatype="INT8", shape=[1], data=[1]), "outputs": outputs}

    request = codec.decode_request(*raw(document))

    assert request.outputs == expected
    assert request.parameters == {}
    assert request.binary_output is False


# --- request errors -------------------------------------------------------------------------

X = "input 'x'"
FP32_PAIR = np.array([1, 2], dtype="<f4").tobytes()

BAD_REQUESTS = [
    pytest.param(b"{not json", None, ["malformed"], id="malformed-json"),
    pytest.param(b"[]", None, ["must be an object"], id="not-an-object"),
    pytest.param(
        *raw({"id": 1, **one_input(datatype="INT8", shape=[1], data=[1])}),
        ["'id'", "string"],
        id="id-not-string",
    ),
    pytest.param(*raw({}), ["'inputs'", "non-empty list"], id="inputs-missing"),
    pytest.param(*raw({"inputs": []}), ["'inputs'", "non-empty list"], id="inputs-empty"),
    pytest.param(*raw({"inputs": [5]}), ["inputs[0]", "object"], id="input-not-object"),
    pytest.param(*raw({"inputs": [{"shape": [1]}]}), ["inputs[0]", "'name'"], id="no-name"),
    pytest.param(*raw(one_input(shape=[1], data=[1])), [X, "'datatype'"], id="no-datatype"),
    pytest.param(
        *raw(one_input(datatype="FP8", shape=[1], data=[1])),
        [X, "unknown datatype 'FP8'", "FP32"],
        id="unknown-datatype",
    ),
    pytest.param(*raw(one_input(datatype="FP32", data=[1])), [X, "'shape'"], id="no-shape"),
    pytest.param(
        *raw(one_input(datatype="FP32", shape=["2"], data=[1, 2])),
        [X, "'shape'"],
        id="shape-not-ints",
    ),
    pytest.param(
        *raw(one_input(datatype="FP32", shape=[True], data=[1])),
        [X, "'shape'"],
        id="shape-bool",
    ),
    pytest.param(
        *raw(one_input(datatype="FP32", shape=[-1, 3], data=[1, 2, 3])),
        [X, "shape [-1,3] has a negative dimension"],
        id="negative-dim",
    ),
    pytest.param(
        *raw(one_input(datatype="FP32", shape=[2, 3], data=[1, 2, 3, 4, 5])),
        ["input 'x': shape [2,3] needs 6 elements, got 5"],
        id="count-mismatch",
    ),
    pytest.param(
        *raw(one_input(datatype="BYTES", shape=[3], data=["a", "b"])),
        [X, "shape [3] needs 3 elements, got 2"],
        id="bytes-count-mismatch",
    ),
    pytest.param(
        *raw(one_input(datatype="FP32", shape=[1])),
        [X, "neither 'data' nor parameters.binary_data_size"],
        id="no-data",
    ),
    pytest.param(
        *raw(one_input(datatype="FP32", shape=[1], data=5)),
        [X, "'data' must be a list"],
        id="data-not-list",
    ),
    pytest.param(
        *raw(
            one_input(datatype="FP32", shape=[2], data=[1, 2], parameters={"binary_data_size": 8}),
            FP32_PAIR,
        ),
        [X, "both"],
        id="data-and-binary",
    ),
    pytest.param(
        *raw(one_input(datatype="FP32", shape=[2], parameters={"binary_data_size": -8}), b""),
        [X, "non-negative integer"],
        id="binary-size-negative",
    ),
    pytest.param(
        *raw(one_input(datatype="FP32", shape=[2], parameters={"binary_data_size": "8"}), b""),
        [X, "non-negative integer"],
        id="binary-size-not-int",
    ),
    pytest.param(
        *raw(one_input(datatype="FP32", shape=[3], parameters={"binary_data_size": 8}), FP32_PAIR),
        [X, "needs 12 bytes", "binary_data_size is 8"],
        id="binary-size-mismatch",
    ),
    pytest.param(
        *raw(
            one_input(datatype="FP32", shape=[2], parameters={"binary_data_size": 8}),
            FP32_PAIR[:4],
        ),
        [X, "overruns", "only 4 bytes left"],
        id="binary-truncated",
    ),
    pytest.param(
        *raw(
            one_input(datatype="FP32", shape=[2], parameters={"binary_data_size": 8}),
            FP32_PAIR + b"\x00",
        ),
        ["1 bytes after the last binary input"],
        id="binary-too-long",
    ),
    pytest.param(
        orjson.dumps(one_input(datatype="FP32", shape=[2], parameters={"binary_data_size": 8})),
        None,
        [X, "no binary part", "Inference-Header-Content-Length"],
        id="binary-without-header-length",
    ),
    pytest.param(b'{"inputs": []}', 99, ["Inference-Header-Content-Length is 99"], id="hl-big"),
    pytest.param(b'{"inputs": []}', -1, ["Inference-Header-Content-Length is -1"], id="hl-neg"),
    pytest.param(b'{"inputs": []}', 5, ["malformed"], id="hl-cuts-json"),
    pytest.param(
        *raw(
            {
                "inputs": [
                    {"name": "x", "datatype": "INT8", "shape": [1], "data": [1]},
                    {"name": "x", "datatype": "INT8", "shape": [1], "data": [2]},
                ]
            }
        ),
        [X, "twice"],
        id="duplicate-input",
    ),
    pytest.param(
        *raw(
            one_input(datatype="BYTES", shape=[2], parameters={"binary_data_size": 11}),
            length_prefixed(b"ab") + (7).to_bytes(4, "little") + b"c",
        ),
        [X, "BYTES element 1 declares 7 bytes but only 1 remain"],
        id="bytes-length-overruns",
    ),
    pytest.param(
        *raw(
            one_input(datatype="BYTES", shape=[2], parameters={"binary_data_size": 8}),
            length_prefixed(b"ab") + b"\x01\x00",
        ),
        [X, "BYTES element 1 has a truncated length prefix"],
        id="bytes-prefix-truncated",
    ),
    pytest.param(
        *raw(
            one_input(datatype="BYTES", shape=[3], parameters={"binary_data_size": 11}),
            length_prefixed(b"ab", b"c"),
        ),
        [X, "shape [3] needs 3 elements, got 2"],
        id="bytes-binary-count",
    ),
    pytest.param(
        *raw(
            one_input(datatype="BOOL", shape=[2], parameters={"binary_data_size": 2}), b"\x01\x02"
        ),
        [X, "0 or 1"],
        id="bool-binary-not-0-1",
    ),
    pytest.param(
        *raw(one_input(datatype="FP32", shape=[2], data=[1, "a"])),
        [X, "FP32 data must be numbers"],
        id="fp32-string",
    ),
    pytest.param(
        *raw(one_input(datatype="FP32", shape=[1], data=["1.5"])),
        [X, "FP32 data must be numbers"],
        id="fp32-numeric-string",
    ),
    pytest.param(
        *raw(one_input(datatype="FP64", shape=[2], data=[1.0, None])),
        [X, "FP64 data must be numbers"],
        id="fp64-null",
    ),
    pytest.param(
        *raw(one_input(datatype="FP32", shape=[1], data=[True])),
        [X, "FP32 data must be numbers"],
        id="fp32-bool",
    ),
    pytest.param(
        *raw(one_input(datatype="INT32", shape=[2], data=[1, 1.5])),
        [X, "INT32 data must be integers"],
        id="int32-fraction",
    ),
    pytest.param(
        *raw(one_input(datatype="BOOL", shape=[2], data=[1, 0])),
        [X, "BOOL data must be true/false"],
        id="bool-numbers",
    ),
    pytest.param(
        *raw(one_input(datatype="INT32", shape=[2], data=[{"a": 1}, 2])),
        [X, "INT32 data must be integers"],
        id="int32-object",
    ),
    pytest.param(
        *raw(one_input(datatype="FP32", shape=[3], data=[[1, 2], [3]])),
        [X, "evenly nested"],
        id="ragged",
    ),
    pytest.param(
        *raw(one_input(datatype="UINT8", shape=[2], data=[0, 256])),
        [X, "out of range for UINT8"],
        id="uint8-overflow",
    ),
    pytest.param(
        *raw(one_input(datatype="INT8", shape=[1], data=[-129])),
        [X, "out of range for INT8"],
        id="int8-underflow",
    ),
    pytest.param(
        *raw(one_input(datatype="UINT64", shape=[1], data=[-1])),
        [X, "out of range for UINT64"],
        id="uint64-negative",
    ),
    pytest.param(
        *raw(one_input(datatype="INT64", shape=[1], data=[2**63])),
        [X, "out of range for INT64"],
        id="int64-overflow",
    ),
    pytest.param(
        *raw(one_input(datatype="INT64", shape=[2], data=[-1, 2**63])),
        [X, "out of range for INT64"],
        id="int64-overflow-mixed",
    ),
    pytest.param(
        *raw(one_input(datatype="UINT64", shape=[2], data=[-1, 2**63])),
        [X, "out of range for UINT64"],
        id="uint64-negative-mixed",
    ),
    pytest.param(
        *raw(one_input(datatype="UINT64", shape=[2], data=[2**63, 0.5])),
        [X, "UINT64 data must be integers"],
        id="uint64-fraction-mixed",
    ),
    pytest.param(
        *raw(one_input(datatype="FP16", shape=[1], data=[1e6])),
        [X, "out of range for FP16"],
        id="fp16-overflow",
    ),
    pytest.param(
        *raw(one_input(datatype="BYTES", shape=[2], data=["a", 1])),
        [X, "BYTES data must be strings"],
        id="bytes-number",
    ),
    pytest.param(
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [NaN]}]}',
        None,
        ["malformed"],
        id="nan-token-in-json-data",
    ),
    pytest.param(
        *raw({**one_input(datatype="INT8", shape=[1], data=[1]), "parameters": []}),
        ["'parameters'", "object"],
        id="parameters-not-object",
    ),
    pytest.param(
        *raw(one_input(datatype="INT8", shape=[1], data=[1], parameters=5)),
        [X, "'parameters'"],
        id="input-parameters-not-object",
    ),
    pytest.param(
        *raw(
            {
                **one_input(datatype="INT8", shape=[1], data=[1]),
                "parameters": {"binary_data_output": "yes"},
            }
        ),
        ["'binary_data_output'", "true or false"],
        id="binary-data-output-not-bool",
    ),
    pytest.param(
        *raw({**one_input(datatype="INT8", shape=[1], data=[1]), "outputs": {"name": "y"}}),
        ["'outputs'", "list"],
        id="outputs-not-list",
    ),
    pytest.param(
        *raw({**one_input(datatype="INT8", shape=[1], data=[1]), "outputs": [{"name": ""}]}),
        ["outputs[0]", "'name'"],
        id="output-no-name",
    ),
    pytest.param(
        *raw({**one_input(datatype="INT8", shape=[1], data=[1]), "outputs": [{"name": "y"}] * 2}),
        ["output 'y'", "twice"],
        id="output-twice",
    ),
    pytest.param(
        *raw(
            {
                **one_input(datatype="INT8", shape=[1], data=[1]),
                "outputs": [{"name": "y", "parameters": {"binary_data": 1}}],
            }
        ),
        ["output 'y'", "'binary_data'"],
        id="output-binary-not-bool",
    ),
]


@pytest.mark.parametrize(("body", "header_length", "fragments"), BAD_REQUESTS)
def test_malformed_request_is_bad_request_naming_the_problem(
    body: bytes, header_length: int | None, fragments: list[str]
) -> None:
    with pytest.raises(BadRequest) as caught:
        codec.decode_request(body, header_length)

    assert caught.value.status == 400
    for fragment in fragments:
        assert fragment in caught.value.message


# --- request shapes -------------------------------------------------------------------------

FRAMINGS = ["json-flat", "json-nested", "binary"]


def shaped(datatype: str, shape: list[Any], framing: str, count: int) -> tuple[bytes, int | None]:
    """A one-input request declaring `shape` and carrying `count` elements in `framing`.

    Written by the standard json module, which (unlike orjson) writes integers of any size.
    """
    spec: dict[str, Any] = {"name": "x", "datatype": datatype, "shape": shape}
    if framing == "binary":
        if datatype == "BYTES":
            payload = length_prefixed(b"a") * count
        else:
            payload = bytes(V2_TO_NUMPY[datatype].itemsize * count)
        spec["parameters"] = {"binary_data_size": len(payload)}
        header = json.dumps({"inputs": [spec]}).encode()
        return header + payload, len(header)
    elements = [{"BYTES": "a", "BOOL": True}.get(datatype, 1)] * count
    spec["data"] = elements if framing == "json-flat" else [elements]
    return json.dumps({"inputs": [spec]}).encode(), None


BAD_SHAPES = [
    pytest.param([0, 2**63], 0, "is too large for numpy", id="zero-beside-2**63"),
    pytest.param([0, 2**40, 2**40], 0, "is too large for numpy", id="zero-beside-2**80"),
    pytest.param([0, 2**62], 0, "is too large for numpy", id="zero-beside-2**62"),
    pytest.param([2**31, 2**31, 2], 0, "is too large for numpy", id="2**63-elements"),
    pytest.param([1] * 65, 1, "65 dimensions; numpy arrays have at most 64", id="65-dims"),
    pytest.param([0] * 65, 0, "65 dimensions; numpy arrays have at most 64", id="65-zeros"),
    pytest.param([2, -1], 0, "has a negative dimension", id="negative"),
    pytest.param([0, -(2**63)], 0, "has a negative dimension", id="zero-beside-negative"),
    # orjson reads integers beyond 64 bits as floats, so this one is not an integer either.
    pytest.param([0, 2**64], 0, "'shape' must be a list of integers", id="zero-beside-2**64"),
    pytest.param([2, 1.0], 2, "'shape' must be a list of integers", id="float-dimension"),
    pytest.param([True, 1], 1, "'shape' must be a list of integers", id="bool-dimension"),
    pytest.param([2**20, 2**20], 3, "needs", id="more-than-the-body-carries"),
]


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
@pytest.mark.parametrize(("shape", "count", "fragment"), BAD_SHAPES)
def test_shape_numpy_cannot_hold_is_bad_request_naming_the_input(
    shape: list[Any], count: int, fragment: str, datatype: str, framing: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        codec.decode_request(*shaped(datatype, shape, framing, count))

    assert caught.value.message.startswith("input 'x': ")
    assert fragment in caught.value.message


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize(
    ("datatype", "shape"),
    [
        ("UINT8", [0, 2**62]),
        ("UINT8", [0, 2**63 - 1]),
        ("BOOL", [2**61, 0, 2]),
        ("FP64", [0, 2**60 - 1]),
        ("BYTES", [2**30, 0, 2**29]),
        ("FP32", [1] * 64),
        ("BYTES", [0] * 64),
    ],
)
def test_shape_numpy_holds_is_accepted_also_empty_beside_huge_dimensions(
    datatype: str, shape: list[int], framing: str
) -> None:
    request = codec.decode_request(*shaped(datatype, shape, framing, math.prod(shape)))

    assert request.inputs["x"].shape == tuple(shape)
    assert request.inputs["x"].dtype == V2_TO_NUMPY[datatype]


@pytest.mark.parametrize("request_id", ["", "é-ü"], ids=["ascii", "multibyte"])
def test_binary_body_without_header_length_says_the_header_is_missing(request_id: str) -> None:
    body, header_length = client_request(
        {"x": (SAMPLES["FP32"], True), "s": (NOT_UTF8, True)}, request_id=request_id
    )

    with pytest.raises(BadRequest) as caught:
        codec.decode_request(body, None)

    assert caught.value.message == (
        "the body is not JSON; a binary tensor body needs the Inference-Header-Content-Length "
        "header giving the length of its JSON part "
        f"(this body's JSON part seems to be its first {header_length} bytes)"
    )


def test_binary_body_of_text_bytes_without_header_length_says_the_header_is_missing() -> None:
    body, header_length = raw(
        one_input(datatype="UINT8", shape=[2], parameters={"binary_data_size": 2}), b"ab"
    )

    with pytest.raises(BadRequest) as caught:
        codec.decode_request(body, None)

    assert "Inference-Header-Content-Length" in caught.value.message
    assert f"first {header_length} bytes" in caught.value.message


@pytest.mark.parametrize(
    "body",
    [b'{"inputs": [', b"[1]\x00\x01", b'"text"\x80', b"\x80\x00{}", b"[" * 100_000],
    ids=["truncated", "array-prefix", "string-prefix", "binary-first", "deep-nesting"],
)
def test_body_without_a_json_object_prefix_is_plain_malformed_json(body: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        codec.decode_request(body, None)

    assert "malformed" in caught.value.message


# --- responses ------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_response_parses_in_tritonclient_for_every_datatype(datatype: str, binary: bool) -> None:
    sample = SAMPLES[datatype]

    body, header_length = encode({"y": sample}, binary_output=binary)

    assert (header_length is not None) is binary
    output = client_parse(body, header_length).get_output("y")
    assert output["datatype"] == datatype
    assert output["shape"] == [2, 3]
    assert ("data" in output) is not binary
    got = client_parse(body, header_length).as_numpy("y")
    if datatype == "BYTES" and not binary:
        # JSON carries text, which tritonclient hands back as str.
        got = np.array([item.encode() for item in got.ravel()], dtype=object).reshape(2, 3)
    assert_same(datatype, got, sample)


def test_binary_bytes_output_carries_bytes_that_are_not_utf8() -> None:
    body, header_length = encode({"s": NOT_UTF8}, binary_output=True)

    assert client_parse(body, header_length).as_numpy("s").tolist() == NOT_UTF8.tolist()


def test_json_bytes_output_that_is_not_utf8_asks_for_binary() -> None:
    with pytest.raises(BadRequest) as caught:
        encode({"s": NOT_UTF8})

    assert "output 's'" in caught.value.message
    assert "binary_data" in caught.value.message


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array(["é", "b"]), [b"\xc3\xa9", b"b"]),
        (np.array([b"a", b"bc"]), [b"a", b"bc"]),
        (np.array(["é", b"\xff"], dtype=object), [b"\xc3\xa9", b"\xff"]),
    ],
    ids=["numpy-str", "numpy-bytes", "object-mixed"],
)
def test_str_and_bytes_arrays_travel_as_bytes(array: np.ndarray, expected: list[bytes]) -> None:
    body, header_length = encode({"s": array}, binary_output=True)

    result = client_parse(body, header_length)
    assert result.get_output("s")["datatype"] == "BYTES"
    assert result.as_numpy("s").tolist() == expected


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4).T,
        np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
        np.arange(12, dtype=np.float64)[::3],
        np.array(7, dtype=np.int64),
        np.zeros((0, 4), dtype=np.float16),
    ],
    ids=["transposed", "fortran", "strided", "scalar", "empty"],
)
def test_any_memory_layout_is_sent_row_major(array: np.ndarray, binary: bool) -> None:
    body, header_length = encode({"y": array}, binary_output=binary)

    got = client_parse(body, header_length).as_numpy("y")
    assert got.shape == array.shape
    assert got.tolist() == array.tolist()


def test_response_header_names_model_version_id_and_parameters() -> None:
    body, header_length = codec.encode_response(
        "m", "3", "req-9", {"y": SAMPLES["INT8"]}, None, False, {"note": "x"}
    )

    assert header_length is None
    document = orjson.loads(body)
    assert document["model_name"] == "m"
    assert document["model_version"] == "3"
    assert document["id"] == "req-9"
    assert document["parameters"] == {"note": "x"}
    assert document["outputs"][0]["data"] == SAMPLES["INT8"].ravel().tolist()


def test_response_omits_what_is_unknown() -> None:
    body, _ = codec.encode_response("m", None, None, {"y": SAMPLES["INT8"]}, None, False)

    assert set(orjson.loads(body)) == {"model_name", "outputs"}


def test_requested_outputs_are_selected_in_the_order_asked() -> None:
    outputs: dict[str, np.ndarray] = {n: SAMPLES["INT32"] + i for i, n in enumerate("abc")}
    requested = (RequestedOutput("c", None), RequestedOutput("a", None))

    body, header_length = encode(outputs, requested)

    result = client_parse(body, header_length)
    assert [output["name"] for output in result.get_response()["outputs"]] == ["c", "a"]
    assert result.as_numpy("c").tolist() == outputs["c"].tolist()


@pytest.mark.parametrize(
    ("binary_output", "per_output", "expect_binary"),
    [
        (False, None, False),
        (True, None, True),
        (False, True, True),
        (True, False, False),
    ],
)
def test_per_output_binary_data_overrides_the_request_default(
    binary_output: bool, per_output: bool | None, expect_binary: bool
) -> None:
    requested = (RequestedOutput("a", per_output), RequestedOutput("b", None))
    outputs = {"a": SAMPLES["FP16"], "b": SAMPLES["FP32"]}

    body, header_length = encode(outputs, requested, binary_output)

    result = client_parse(body, header_length)
    a, b = result.get_response()["outputs"]
    assert ("parameters" in a) is expect_binary
    assert ("parameters" in b) is binary_output
    assert (header_length is not None) is (expect_binary or binary_output)
    assert_same("FP16", result.as_numpy("a"), outputs["a"])
    assert_same("FP32", result.as_numpy("b"), outputs["b"])


def test_binary_part_is_each_binary_output_in_output_order() -> None:
    outputs: dict[str, np.ndarray] = {"a": np.array([1, 2], np.int32), "b": np.array([3], np.uint8)}
    requested = (RequestedOutput("b", True), RequestedOutput("a", True))

    body, header_length = encode(outputs, requested)

    assert header_length is not None
    header = orjson.loads(body[:header_length])
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [1, 8]
    assert body[header_length:] == b"\x03" + np.array([1, 2], dtype="<i4").tobytes()


def test_unknown_requested_output_is_bad_request_naming_it() -> None:
    with pytest.raises(BadRequest) as caught:
        encode({"y": SAMPLES["INT8"]}, (RequestedOutput("nope", None),))

    assert "'nope'" in caught.value.message


@pytest.mark.parametrize(
    ("output", "fragment"),
    [
        (np.array([1 + 2j]), "complex128"),
        (np.array([b"a", 5], dtype=object), "got int"),
        (np.array([1.5], dtype=">f4"), ">f4"),
        ([1.5, 2.5], "must be a numpy array, got list"),
        (None, "must be a numpy array, got NoneType"),
        (np.array(["ok", "\ud800"], dtype=object), "lone surrogate"),
        (np.array(["\ud800"]), "lone surrogate"),
    ],
    ids=[
        "complex",
        "object-int",
        "big-endian",
        "list",
        "none",
        "object-surrogate",
        "str-surrogate",
    ],
)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_output_the_protocol_cannot_carry_is_a_model_failure(
    output: Any, fragment: str, binary: bool
) -> None:
    with pytest.raises(ModelFailure) as caught:
        encode({"y": output}, binary_output=binary)

    assert "output 'y'" in caught.value.message
    assert fragment in caught.value.message


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(
    "output",
    [np.float32(1.5), np.ma.masked_array([1, 2], mask=[False, True])],
    ids=["numpy-scalar", "masked-array"],
)
def test_numpy_scalars_and_array_subclasses_go_out_as_plain_arrays(
    output: Any, binary: bool
) -> None:
    body, header_length = encode({"y": output}, binary_output=binary)

    got = client_parse(body, header_length).as_numpy("y")
    assert got.shape == np.shape(output)
    assert got.tolist() == np.asarray(output).tolist()


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
def test_non_finite_json_outputs_are_tokens_tritonclient_reads_back(datatype: str) -> None:
    array = np.array([[np.nan, np.inf, 0.1], [-np.inf, -0.0, np.nan]], dtype=V2_TO_NUMPY[datatype])

    body, header_length = encode({"y": array})

    assert header_length is None
    assert b"[NaN,Infinity,0.1,-Infinity,-0.0,NaN]" in body.replace(b"0.099975586", b"0.1")
    got = client_parse(body, header_length).as_numpy("y")
    assert got.dtype == array.dtype
    np.testing.assert_array_equal(got, array)
    assert np.signbit(got).tolist() == np.signbit(array).tolist()


def test_decode_then_encode_echoes_the_request() -> None:
    outputs = [triton_http.InferRequestedOutput("x", binary_data=False)]
    body, header_length = client_request(
        {"x": (SAMPLES["FP64"], True)}, outputs=outputs, request_id="id-7"
    )
    request = codec.decode_request(body, header_length)

    reply, reply_header_length = codec.encode_response(
        "m", "1", request.id, request.inputs, request.outputs, request.binary_output
    )

    result = client_parse(reply, reply_header_length)
    assert result.get_response()["id"] == "id-7"
    assert_same("FP64", result.as_numpy("x"), SAMPLES["FP64"])


# --- other bodies ---------------------------------------------------------------------------


def test_error_body_is_the_v2_error_object() -> None:
    assert orjson.loads(codec.error_body("input 'x': \"bad\"")) == {"error": "input 'x': \"bad\""}


def test_encode_json_serializes_numpy_values() -> None:
    body = codec.encode_json({"shape": [1, 2], "values": np.array([1.5, 2.5], dtype=np.float32)})

    assert orjson.loads(body) == {"shape": [1, 2], "values": [1.5, 2.5]}
