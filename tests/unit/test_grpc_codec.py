"""The V2 gRPC wire codec against a real client's generated code: tritonclient's own messages
(`tritonclient.grpc.service_pb2`, generated from Triton's proto) build our requests and parse
our responses, so passing means the wire formats agree, not just that our proto agrees with
itself. Every tensor rule the gRPC codec shares with the REST codec must refuse the same tensor
with the same words over both transports; the framing rules are gRPC's own."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.grpc._utils import _get_inference_request

from rayship_predictors.errors import BadRequest
from rayship_predictors.v2 import codec, grpc_codec
from rayship_predictors.v2.codec import RequestedOutput
from rayship_predictors.v2.datatypes import V2_TO_NUMPY
from rayship_predictors.v2.proto import inference_pb2 as pb

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

# The typed field of InferTensorContents each datatype travels in, as the V2 gRPC spec's
# table gives it (written out here, not taken from the codec under test); FP16 has none.
TYPED_FIELD = {
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
TYPED_DATATYPES = sorted(TYPED_FIELD)

X = "input 'x'"
GRPC_SIZE = "its raw_input_contents size"
REST_SIZE = "binary_data_size"


def length_prefixed(*items: bytes) -> bytes:
    return b"".join(len(item).to_bytes(4, "little") + item for item in items)


def raw_bytes(datatype: str, array: np.ndarray) -> bytes:
    """An array as binary tensor data: little-endian, BYTES elements length-prefixed."""
    if datatype == "BYTES":
        return length_prefixed(*array.ravel().tolist())
    return np.ascontiguousarray(array, dtype=V2_TO_NUMPY[datatype].newbyteorder("<")).tobytes()


def client_request(
    arrays: dict[str, np.ndarray],
    outputs: list[str] | None = None,
    request_id: str = "",
    parameters: dict[str, Any] | None = None,
) -> triton_pb.ModelInferRequest:
    """A ModelInferRequest exactly as tritonclient.grpc builds it: raw contents, in its own
    generated message class."""
    inputs = []
    for name, array in arrays.items():
        datatype = (
            "BYTES" if array.dtype == np.object_ else triton_grpc.np_to_triton_dtype(array.dtype)
        )
        infer_input = triton_grpc.InferInput(name, list(array.shape), datatype)
        infer_input.set_data_from_numpy(array)
        inputs.append(infer_input)
    requested = [triton_grpc.InferRequestedOutput(name) for name in outputs or []]
    return _get_inference_request(
        model_name="m",
        inputs=inputs,
        model_version="1",
        request_id=request_id,
        outputs=requested or None,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters=parameters,
    )


def typed_request(arrays: dict[str, tuple[str, np.ndarray]]) -> triton_pb.ModelInferRequest:
    """A ModelInferRequest with typed contents, built with tritonclient's generated messages
    (its client has no helper for them); values are (datatype, array)."""
    request = triton_pb.ModelInferRequest(model_name="m")
    for name, (datatype, array) in arrays.items():
        tensor = request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        tensor.contents.SetInParent()
        getattr(tensor.contents, TYPED_FIELD[datatype]).extend(array.ravel().tolist())
    return request


def one_input(
    datatype: str,
    shape: list[int],
    *,
    raw: bytes | None = None,
    name: str = "x",
    **contents: list[Any],
) -> bytes:
    """A serialized one-input ModelInferRequest: raw contents when `raw` is given, else the
    typed `contents` fields named."""
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    if raw is not None:
        request.raw_input_contents.append(raw)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    return request.SerializeToString()


def rest_input(
    datatype: str, shape: list[int], *, binary: bytes | None = None, **spec: Any
) -> tuple[bytes, int | None]:
    """A one-input REST body: JSON `data` in `spec`, or `binary` data after the JSON."""
    tensor: dict[str, Any] = {"name": "x", "datatype": datatype, "shape": shape, **spec}
    if binary is None:
        return orjson.dumps({"inputs": [tensor]}), None
    tensor["parameters"] = {"binary_data_size": len(binary)}
    header = orjson.dumps({"inputs": [tensor]})
    return header + binary, len(header)


def grpc_refusal(body: bytes) -> str:
    with pytest.raises(BadRequest) as caught:
        grpc_codec.decode_infer_request(body)
    assert caught.value.status == 400
    return caught.value.message


def rest_refusal(body: bytes, header_length: int | None) -> str:
    with pytest.raises(BadRequest) as caught:
        codec.decode_request(body, header_length)
    return caught.value.message


def decoded(request: Any) -> codec.InferRequest:
    """A request message (ours or tritonclient's) decoded from its wire bytes."""
    return grpc_codec.decode_infer_request(request.SerializeToString())


def infer_request(
    outputs: tuple[RequestedOutput, ...] | None = None, request_id: str | None = "req-1"
) -> codec.InferRequest:
    return codec.InferRequest(
        id=request_id,
        parameters={},
        inputs={},
        input_datatypes={},
        outputs=outputs,
        binary_output=True,
        input_parameters={},
    )


def client_result(body: bytes) -> tuple[triton_pb.ModelInferResponse, triton_grpc.InferResult]:
    """Our response as tritonclient reads it: its own message class, then its InferResult."""
    response = triton_pb.ModelInferResponse.FromString(body)
    return response, triton_grpc.InferResult(response)


def assert_same(datatype: str, got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    if datatype == "BYTES":
        assert got.ravel().tolist() == expected.ravel().tolist()
    else:
        assert got.dtype == expected.dtype
        # Bit patterns, so -0.0 and the float extremes must survive exactly.
        assert got.tobytes() == expected.tobytes()


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", DATATYPES)
def test_raw_contents_from_tritonclient_round_trip_every_datatype(datatype: str) -> None:
    sample = SAMPLES[datatype]
    request = decoded(client_request({"x": sample}))

    assert request.input_datatypes == {"x": datatype}
    assert request.inputs["x"].dtype == V2_TO_NUMPY[datatype]
    assert_same(datatype, request.inputs["x"], sample)

    body = grpc_codec.encode_infer_response("m", "1", request, {"y": request.inputs["x"]})
    response, result = client_result(body)
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("y", datatype, [2, 3])
    ]
    assert_same(datatype, result.as_numpy("y"), sample)


@pytest.mark.parametrize("datatype", TYPED_DATATYPES)
def test_typed_contents_round_trip_every_datatype_that_has_them(datatype: str) -> None:
    sample = SAMPLES[datatype]
    request = decoded(typed_request({"x": (datatype, sample)}))

    assert request.input_datatypes == {"x": datatype}
    assert request.inputs["x"].dtype == V2_TO_NUMPY[datatype]
    assert_same(datatype, request.inputs["x"], sample)

    body = grpc_codec.encode_infer_response("m", "1", request, {"y": request.inputs["x"]})
    assert_same(datatype, client_result(body)[1].as_numpy("y"), sample)


def test_fp16_has_no_typed_contents_and_is_told_to_send_raw() -> None:
    refusal = f"{X}: FP16 has no typed contents; send it as raw contents"
    assert grpc_refusal(one_input("FP16", [2], fp32_contents=[0.5, 1.5])) == refusal
    assert grpc_refusal(one_input("FP16", [2], int_contents=[1, 2])) == refusal
    assert grpc_refusal(one_input("FP16", [0])) == refusal  # no contents at all: still typed


@pytest.mark.parametrize("datatype", DATATYPES)
@pytest.mark.parametrize("shape", [[0], [0, 3], [2, 0, 4], [3, 0], [0, 2**40]], ids=str)
def test_shapes_with_a_zero_dimension_round_trip(datatype: str, shape: list[int]) -> None:
    empty = np.empty(shape, dtype=V2_TO_NUMPY[datatype])
    bodies = [one_input(datatype, shape, raw=b"")]
    if datatype in TYPED_FIELD:
        bodies.append(one_input(datatype, shape))
    for body in bodies:
        request = grpc_codec.decode_infer_request(body)
        array = request.inputs["x"]
        assert array.shape == tuple(shape)
        assert array.dtype == V2_TO_NUMPY[datatype]

        response = grpc_codec.encode_infer_response("m", "1", request, {"y": array})
        assert_same(datatype, client_result(response)[1].as_numpy("y"), empty)


@pytest.mark.parametrize("datatype", ["FP32", "BYTES", "BOOL"])
def test_a_scalar_shape_holds_one_element(datatype: str) -> None:
    scalar = np.array(SAMPLES[datatype].ravel()[0], dtype=V2_TO_NUMPY[datatype])
    for body in (
        one_input(datatype, [], raw=raw_bytes(datatype, scalar)),
        typed_request({"x": (datatype, scalar)}).SerializeToString(),
    ):
        request = grpc_codec.decode_infer_request(body)
        assert_same(datatype, request.inputs["x"], scalar)
        response = grpc_codec.encode_infer_response("m", "1", request, {"y": request.inputs["x"]})
        assert_same(datatype, client_result(response)[1].as_numpy("y"), scalar)


def test_bytes_with_empty_and_binary_elements_round_trip() -> None:
    items = np.array([b"", b"\x00", b"\xff\xfe\x80", b"", "é".encode(), b"\x00" * 70000], object)
    for request in (
        decoded(client_request({"x": items})),
        decoded(typed_request({"x": ("BYTES", items)})),
        grpc_codec.decode_infer_request(one_input("BYTES", [6], raw=length_prefixed(*items))),
    ):
        assert request.inputs["x"].dtype == np.object_
        assert request.inputs["x"].tolist() == items.tolist()
        response = grpc_codec.encode_infer_response("m", "1", request, {"y": request.inputs["x"]})
        assert client_result(response)[1].as_numpy("y").tolist() == items.tolist()


def test_bytes_of_only_empty_elements_round_trip() -> None:
    items = np.array([b"", b"", b""], dtype=object)
    request = decoded(client_request({"x": items}))
    assert request.inputs["x"].tolist() == [b"", b"", b""]
    response = grpc_codec.encode_infer_response("m", "1", request, {"y": request.inputs["x"]})
    assert client_result(response)[1].as_numpy("y").tolist() == [b"", b"", b""]


def test_several_raw_inputs_keep_request_order_and_are_read_only_views() -> None:
    arrays = {"c": SAMPLES["INT32"], "a": SAMPLES["BYTES"], "b": SAMPLES["FP16"]}
    request = decoded(client_request(arrays))

    assert list(request.inputs) == ["c", "a", "b"]
    for name, array in arrays.items():
        assert_same(request.input_datatypes[name], request.inputs[name], array)
    assert not request.inputs["c"].flags.writeable


def test_response_carries_model_version_and_id_and_only_raw_contents() -> None:
    outputs = {"p": SAMPLES["FP32"], "s": SAMPLES["BYTES"]}

    response, _ = client_result(
        grpc_codec.encode_infer_response("iris", "2", infer_request(), outputs)
    )

    assert (response.model_name, response.model_version, response.id) == ("iris", "2", "req-1")
    assert len(response.raw_output_contents) == 2
    assert all(not output.HasField("contents") for output in response.outputs)
    assert response.raw_output_contents[0] == SAMPLES["FP32"].astype("<f4").tobytes()
    assert response.raw_output_contents[1] == length_prefixed(*SAMPLES["BYTES"].ravel().tolist())
    no_id, _ = client_result(
        grpc_codec.encode_infer_response("iris", "2", infer_request(request_id=None), outputs)
    )
    assert no_id.id == ""


def test_str_outputs_go_out_as_utf8_bytes() -> None:
    texts = np.array(["é", "", "ok"])
    _, result = client_result(
        grpc_codec.encode_infer_response("m", "1", infer_request(), {"y": texts})
    )
    assert result.as_numpy("y").tolist() == ["é".encode(), b"", b"ok"]


def test_request_id_model_and_version_of_a_tritonclient_request() -> None:
    request = decoded(client_request({"x": SAMPLES["FP32"]}, request_id="abc"))
    assert request.id == "abc"
    assert request.outputs is None  # every output
    assert request.binary_output is True
    assert request.parameters == {}
    assert request.input_parameters == {}
    assert decoded(client_request({"x": SAMPLES["FP32"]})).id is None


# --- the rules shared with REST -------------------------------------------------------------

FP32_SIX = SAMPLES["FP32"].astype("<f4").tobytes()

SHARED_RULES = [
    pytest.param(
        one_input("FP32", [2, 3], raw=FP32_SIX[:20]),
        rest_input("FP32", [2, 3], binary=FP32_SIX[:20]),
        f"{X}: shape [2,3] of FP32 needs 24 bytes of binary data, {GRPC_SIZE} is 20",
        id="raw-size-short",
    ),
    pytest.param(
        one_input("INT64", [2], raw=b"\x00" * 24),
        rest_input("INT64", [2], binary=b"\x00" * 24),
        f"{X}: shape [2] of INT64 needs 16 bytes of binary data, {GRPC_SIZE} is 24",
        id="raw-size-long",
    ),
    pytest.param(
        one_input("BOOL", [3], raw=b"\x01\x00\x02"),
        rest_input("BOOL", [3], binary=b"\x01\x00\x02"),
        f"{X}: binary BOOL elements must be bytes 0 or 1",
        id="bool-byte-2",
    ),
    pytest.param(
        one_input("BOOL", [1], raw=b"\xff"),
        rest_input("BOOL", [1], binary=b"\xff"),
        f"{X}: binary BOOL elements must be bytes 0 or 1",
        id="bool-byte-255",
    ),
    pytest.param(
        one_input("INT8", [2], int_contents=[1, 200]),
        rest_input("INT8", [2], data=[1, 200]),
        f"{X}: a value is out of range for INT8",
        id="int8-over",
    ),
    pytest.param(
        one_input("INT8", [1], int_contents=[-129]),
        rest_input("INT8", [1], data=[-129]),
        f"{X}: a value is out of range for INT8",
        id="int8-under",
    ),
    pytest.param(
        one_input("UINT16", [1], uint_contents=[70000]),
        rest_input("UINT16", [1], data=[70000]),
        f"{X}: a value is out of range for UINT16",
        id="uint16-over",
    ),
    pytest.param(
        one_input("FP32", [-1, 3], raw=FP32_SIX),
        rest_input("FP32", [-1, 3], binary=FP32_SIX),
        f"{X}: shape [-1,3] has a negative dimension",
        id="negative-dim-raw",
    ),
    pytest.param(
        one_input("FP32", [3, -2], fp32_contents=[1.0] * 6),
        rest_input("FP32", [3, -2], data=[1.0] * 6),
        f"{X}: shape [3,-2] has a negative dimension",
        id="negative-dim-typed",
    ),
    pytest.param(
        one_input("FP32", [1] * 65, raw=FP32_SIX[:4]),
        rest_input("FP32", [1] * 65, binary=FP32_SIX[:4]),
        f"{X}: shape has 65 dimensions; numpy arrays have at most 64",
        id="too-many-dims",
    ),
    pytest.param(
        one_input("UINT8", [0, 2**40, 2**40], raw=b""),
        rest_input("UINT8", [0, 2**40, 2**40], binary=b""),
        f"{X}: shape [0,{2**40},{2**40}] of UINT8 is too large for numpy",
        id="too-large",
    ),
    pytest.param(
        one_input("FP8", [1], raw=b"\x00"),
        rest_input("FP8", [1], binary=b"\x00"),
        f"{X}: unknown datatype 'FP8'; expected one of {', '.join(V2_TO_NUMPY)}",
        id="unknown-datatype",
    ),
    pytest.param(
        one_input("", [1], raw=b"\x00"),
        rest_input("", [1], binary=b"\x00"),
        f"{X}: unknown datatype ''",
        id="empty-datatype",
    ),
    pytest.param(
        one_input("FP32", [2, 3], fp32_contents=[1.0] * 5),
        rest_input("FP32", [2, 3], data=[1.0] * 5),
        f"{X}: shape [2,3] needs 6 elements, got 5",
        id="typed-count",
    ),
    pytest.param(
        one_input("BYTES", [3], bytes_contents=[b"a", b"b"]),
        rest_input("BYTES", [3], data=["a", "b"]),
        f"{X}: shape [3] needs 3 elements, got 2",
        id="typed-bytes-count",
    ),
    pytest.param(
        one_input("BYTES", [3], raw=length_prefixed(b"ab", b"c")),
        rest_input("BYTES", [3], binary=length_prefixed(b"ab", b"c")),
        f"{X}: shape [3] needs 3 elements, got 2",
        id="raw-bytes-count",
    ),
    pytest.param(
        one_input("BYTES", [2], raw=length_prefixed(b"ab") + b"\x01\x00"),
        rest_input("BYTES", [2], binary=length_prefixed(b"ab") + b"\x01\x00"),
        f"{X}: BYTES element 1 has a truncated length prefix",
        id="bytes-prefix-truncated",
    ),
    pytest.param(
        one_input("BYTES", [2], raw=length_prefixed(b"ab") + (7).to_bytes(4, "little") + b"c"),
        rest_input("BYTES", [2], binary=length_prefixed(b"ab") + (7).to_bytes(4, "little") + b"c"),
        f"{X}: BYTES element 1 declares 7 bytes but only 1 remain",
        id="bytes-length-overruns",
    ),
    pytest.param(
        one_input("", [1], raw=b"\x00", name=""),
        rest_input("INT8", [1], binary=b"\x00", name=""),
        "inputs[0]: 'name' must be a non-empty string",
        id="empty-input-name",
    ),
]


@pytest.mark.parametrize(("grpc_body", "rest_body", "expected"), SHARED_RULES)
def test_a_tensor_is_refused_over_grpc_as_over_rest(
    grpc_body: bytes, rest_body: tuple[bytes, int | None], expected: str
) -> None:
    over_grpc = grpc_refusal(grpc_body)
    over_rest = rest_refusal(*rest_body)

    assert over_grpc.startswith(expected), over_grpc
    # The only difference allowed is what the client calls the tensor's data size.
    assert over_grpc == over_rest.replace(REST_SIZE, GRPC_SIZE)


def test_duplicates_are_refused_over_grpc_as_over_rest() -> None:
    twice = pb.ModelInferRequest(model_name="m")
    for value in (1, 2):
        twice.inputs.add(name="x", datatype="INT8", shape=[1]).contents.int_contents.append(value)
    rest_twice = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [v]} for v in (1, 2)]}
    )
    assert grpc_refusal(twice.SerializeToString()) == rest_refusal(rest_twice, None)
    assert rest_refusal(rest_twice, None) == "input 'x' appears twice"

    asked_twice = pb.ModelInferRequest.FromString(one_input("INT8", [1], int_contents=[1]))
    asked_twice.outputs.add(name="y")
    asked_twice.outputs.add(name="y")
    rest_asked_twice = orjson.dumps(
        {
            "inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}],
            "outputs": [{"name": "y"}, {"name": "y"}],
        }
    )
    assert grpc_refusal(asked_twice.SerializeToString()) == "output 'y' is requested twice"
    assert rest_refusal(rest_asked_twice, None) == "output 'y' is requested twice"

    unnamed = pb.ModelInferRequest.FromString(one_input("INT8", [1], int_contents=[1]))
    unnamed.outputs.add(name="")
    assert grpc_refusal(unnamed.SerializeToString()) == (
        "outputs[0]: 'name' must be a non-empty string"
    )


# --- gRPC's own framing rules ---------------------------------------------------------------


def two_inputs() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="a", datatype="INT32", shape=[1])
    request.inputs.add(name="b", datatype="INT32", shape=[1])
    return request


def test_raw_contents_need_one_entry_per_input() -> None:
    short = two_inputs()
    short.raw_input_contents.append(b"\x01\x00\x00\x00")
    assert grpc_refusal(short.SerializeToString()) == (
        "the request has 2 inputs but 1 raw_input_contents; "
        "raw contents need one entry per input, in input order"
    )
    extra = two_inputs()
    extra.raw_input_contents.extend([b"\x01\x00\x00\x00"] * 3)
    assert "has 2 inputs but 3 raw_input_contents" in grpc_refusal(extra.SerializeToString())
    none = pb.ModelInferRequest(model_name="m", raw_input_contents=[b"\x00"])
    assert "has 0 inputs but 1 raw_input_contents" in grpc_refusal(none.SerializeToString())


def test_raw_contents_cannot_mix_with_typed_contents() -> None:
    mixed = two_inputs()
    mixed.inputs[1].contents.int_contents.append(2)
    mixed.raw_input_contents.extend([b"\x01\x00\x00\x00", b"\x02\x00\x00\x00"])

    assert grpc_refusal(mixed.SerializeToString()) == (
        "input 'b': has contents while the request uses raw_input_contents; "
        "use one or the other for every input"
    )


@pytest.mark.parametrize(
    ("datatype", "field", "values"),
    [
        ("INT8", "int64_contents", [1]),
        ("INT64", "int_contents", [1]),
        ("UINT32", "int_contents", [1]),
        ("FP32", "fp64_contents", [1.0]),
        ("FP64", "fp32_contents", [1.0]),
        ("BOOL", "int_contents", [1]),
        ("BYTES", "int_contents", [1]),
        ("INT32", "bytes_contents", [b"1"]),
    ],
)
def test_a_typed_field_must_match_the_datatype(
    datatype: str, field: str, values: list[Any]
) -> None:
    wrong = pb.ModelInferRequest.FromString(one_input(datatype, [1]))
    getattr(wrong.inputs[0].contents, field).extend(values)
    assert grpc_refusal(wrong.SerializeToString()) == (
        f"{X}: {datatype} data goes in contents.{TYPED_FIELD[datatype]}, not {field}"
    )
    # Also beside the right field: the stray one is not silently ignored.
    getattr(wrong.inputs[0].contents, TYPED_FIELD[datatype]).extend(
        SAMPLES[datatype].ravel()[:1].tolist()
    )
    assert f"not {field}" in grpc_refusal(wrong.SerializeToString())


def test_a_duplicate_input_is_refused_with_raw_contents_too() -> None:
    twice = two_inputs()
    twice.inputs[1].name = "a"
    twice.raw_input_contents.extend([b"\x01\x00\x00\x00", b"\x02\x00\x00\x00"])
    assert grpc_refusal(twice.SerializeToString()) == "input 'a' appears twice"


def test_an_empty_input_name_is_refused_by_position() -> None:
    unnamed = two_inputs()
    unnamed.inputs[1].name = ""
    unnamed.raw_input_contents.extend([b"\x01\x00\x00\x00", b"\x02\x00\x00\x00"])
    assert grpc_refusal(unnamed.SerializeToString()) == (
        "inputs[1]: 'name' must be a non-empty string"
    )


@pytest.mark.parametrize(
    "body",
    [b"\xff\xff\xff", b"\x0a\x05ab", b"\x2a\x80", b"\x0b"],
    ids=["bad-tag", "truncated-string", "truncated-length", "group-start"],
)
def test_bytes_that_are_no_model_infer_request_are_refused(body: bytes) -> None:
    assert grpc_refusal(body).startswith("the request is not a ModelInferRequest: ")
    with pytest.raises(BadRequest, match="not a ModelInferRequest"):
        grpc_codec.parse_infer_request(body)


def test_a_request_without_inputs_is_refused() -> None:
    assert grpc_refusal(b"") == "the request: 'inputs' must be a non-empty list"
    assert grpc_refusal(pb.ModelInferRequest(model_name="m").SerializeToString()) == (
        "the request: 'inputs' must be a non-empty list"
    )


# --- parameters -----------------------------------------------------------------------------

PARAMETERS: list[tuple[str, pb.InferParameter, Any]] = [
    ("flag", pb.InferParameter(bool_param=True), True),
    ("off", pb.InferParameter(bool_param=False), False),
    ("count", pb.InferParameter(int64_param=-(2**63)), -(2**63)),
    ("zero", pb.InferParameter(int64_param=0), 0),
    ("label", pb.InferParameter(string_param="é ok"), "é ok"),
    ("empty", pb.InferParameter(string_param=""), ""),
    ("scale", pb.InferParameter(double_param=0.25), 0.25),
    ("big", pb.InferParameter(uint64_param=2**64 - 1), 2**64 - 1),
]


def test_every_parameter_kind_becomes_its_json_value() -> None:
    request = pb.ModelInferRequest.FromString(one_input("INT8", [1], int_contents=[1]))
    for key, parameter, _ in PARAMETERS:
        request.parameters[key].CopyFrom(parameter)
        request.inputs[0].parameters[key].CopyFrom(parameter)

    decoded_request = grpc_codec.decode_infer_request(request.SerializeToString())

    expected = {key: value for key, _, value in PARAMETERS}
    assert decoded_request.parameters == expected
    assert decoded_request.input_parameters == {"x": expected}
    for key, _, value in PARAMETERS:
        got = decoded_request.parameters[key]
        assert type(got) is type(value), key
    # JSON values: what a model gets over REST serializes the same way.
    assert orjson.loads(orjson.dumps(decoded_request.parameters)) == expected


def test_inputs_without_parameters_are_left_out_of_input_parameters() -> None:
    request = two_inputs()
    request.inputs[0].parameters["unit"].string_param = "cm"
    request.raw_input_contents.extend([b"\x01\x00\x00\x00", b"\x02\x00\x00\x00"])

    assert decoded(request).input_parameters == {"a": {"unit": "cm"}}


def test_tritonclient_parameters_arrive_as_sent() -> None:
    custom = {"top_k": 3, "scale": 0.5, "tag": "a", "greedy": True}
    request = client_request({"x": SAMPLES["FP32"]}, parameters=custom)
    request.parameters["priority"].uint64_param = 2

    assert decoded(request).parameters == {**custom, "priority": 2}


@pytest.mark.parametrize("where", ["request", "input"])
def test_a_parameter_without_a_value_is_refused(where: str) -> None:
    request = pb.ModelInferRequest.FromString(one_input("INT8", [1], int_contents=[1]))
    holder = request if where == "request" else request.inputs[0]
    holder.parameters["k"].SetInParent()

    assert grpc_refusal(request.SerializeToString()) == (
        f"{'the request' if where == 'request' else X}: parameter 'k' has no value"
    )


# --- requested outputs ----------------------------------------------------------------------

OUTPUTS: dict[str, np.ndarray] = {
    "a": np.arange(3, dtype=np.int32),
    "b": np.array([[1.5, -2.0]], dtype=np.float64),
    "c": np.array([b"z", b""], dtype=object),
}


def test_requested_outputs_select_and_order_the_outputs() -> None:
    request = decoded(client_request({"x": SAMPLES["INT8"]}, outputs=["c", "a"]))
    assert request.outputs == (RequestedOutput("c", True), RequestedOutput("a", True))

    response, result = client_result(grpc_codec.encode_infer_response("m", "1", request, OUTPUTS))

    assert [output.name for output in response.outputs] == ["c", "a"]
    assert [output.datatype for output in response.outputs] == ["BYTES", "INT32"]
    assert len(response.raw_output_contents) == 2
    assert result.as_numpy("c").tolist() == [b"z", b""]
    assert_same("INT32", result.as_numpy("a"), OUTPUTS["a"])
    assert result.as_numpy("b") is None


def test_without_requested_outputs_every_output_goes_in_model_order() -> None:
    request = decoded(client_request({"x": SAMPLES["INT8"]}))

    response, result = client_result(grpc_codec.encode_infer_response("m", "1", request, OUTPUTS))

    assert [output.name for output in response.outputs] == ["a", "b", "c"]
    assert [list(output.shape) for output in response.outputs] == [[3], [1, 2], [2]]
    for output, array in zip(response.outputs, OUTPUTS.values(), strict=True):
        assert_same(output.datatype, result.as_numpy(output.name), array)


def test_an_unknown_requested_output_is_refused_when_encoding() -> None:
    request = decoded(client_request({"x": SAMPLES["INT8"]}, outputs=["a", "nope"]))

    with pytest.raises(BadRequest) as caught:
        grpc_codec.encode_infer_response("m", "1", request, OUTPUTS)

    assert caught.value.status == 400
    assert caught.value.message == (
        "requested output 'nope' is not an output of the model (it has: a, b, c)"
    )


# --- wire compatibility with tritonclient's generated messages ------------------------------


def test_our_messages_and_tritonclients_are_the_same_wire_format() -> None:
    """Field for field: what one encodes, the other decodes unchanged."""
    ours = pb.ModelInferRequest.FromString(one_input("INT8", [2], int_contents=[1, 2]))
    ours.id = "r"
    ours.model_version = "3"
    ours.parameters["p"].uint64_param = 7
    ours.inputs[0].parameters["q"].double_param = 0.5
    ours.outputs.add(name="y").parameters["classification"].int64_param = 2

    theirs = triton_pb.ModelInferRequest.FromString(ours.SerializeToString())

    assert theirs.SerializeToString(deterministic=True) == ours.SerializeToString(
        deterministic=True
    )
    assert (theirs.model_name, theirs.model_version, theirs.id) == ("m", "3", "r")
    assert list(theirs.inputs[0].contents.int_contents) == [1, 2]
    assert theirs.parameters["p"].uint64_param == 7
    assert theirs.outputs[0].parameters["classification"].int64_param == 2


def test_a_tritonclient_request_names_its_model_first_on_the_wire() -> None:
    """What HAProxy's routing relies on: field 1 (`model_name`) leads the encoding."""
    body = client_request({"x": SAMPLES["FP32"]}).SerializeToString()
    assert body.startswith(b"\x0a\x01m")
    assert decoded(client_request({"x": SAMPLES["FP32"]})).inputs["x"].shape == (2, 3)
