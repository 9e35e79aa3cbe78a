"""Time and probe V2 REST codecs: Rayship's own, and KServe's `kserve.protocol.infer_type`.

Each case is one request body made by tritonclient (so both codecs see the same real client
bytes), decoded to numpy, echoed back as the response and encoded: the work a server's codec
does per request. KServe is measured only when importable, since it cannot share Rayship's venv:

    .venv/bin/python bench/codec_bench.py                       # Rayship only
    ~/.cache/rayship/venvs/kserve/bin/python bench/codec_bench.py  # both, plus conformance

The conformance probes send each codec requests the protocol allows and report what a Triton
client would get back. Findings are written up in bench/README-codec.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import tritonclient.http as triton_http
from tritonclient.utils import np_to_triton_dtype

try:
    from rayship_predictors.v2 import codec as rayship_codec
except ImportError:  # the KServe venv: import the predictors from this checkout instead
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "predictors"))
    from rayship_predictors.v2 import codec as rayship_codec

from rayship_predictors.errors import BadRequest

Reply = tuple[bytes, int | None]


class Codec(Protocol):
    name: str

    def echo(self, body: bytes, header_length: int | None) -> Reply:
        """Decode a request and encode its inputs back as same-named outputs."""
        ...

    def is_client_error(self, error: Exception) -> bool:
        """Whether the server would answer `error` with a 4xx rather than a 500."""
        ...


class Rayship:
    name = "rayship"

    def echo(self, body: bytes, header_length: int | None) -> Reply:
        request = rayship_codec.decode_request(body, header_length)
        return rayship_codec.encode_response(
            "m", "1", request.id, request.inputs, request.outputs, request.binary_output
        )

    def is_client_error(self, error: Exception) -> bool:
        return isinstance(error, BadRequest)


class KServe:
    """KServe 0.21 as its REST server drives it (kserve/protocol/rest/v2_endpoints.py).

    A JSON body goes through FastAPI's pydantic `InferenceRequest`, a body with binary data
    through `InferRequest.from_bytes`; the response through `InferResponse.to_rest`. Its JSON
    dict is serialized here with plain orjson, skipping the pydantic re-validation and FastAPI
    rendering the real server adds, so KServe's JSON figures are a lower bound.
    """

    name = "kserve"

    def __init__(self) -> None:
        import orjson
        from kserve.errors import InvalidInput  # type: ignore[import-not-found]
        from kserve.protocol import infer_type  # type: ignore[import-not-found]
        from kserve.protocol.rest.v2_datamodels import InferenceRequest  # type: ignore[import-not-found]
        from kserve.utils.numpy_codec import from_np_dtype  # type: ignore[import-not-found]

        self._dumps = orjson.dumps
        self._types = infer_type
        self._pydantic_request = InferenceRequest
        self._from_np_dtype = from_np_dtype
        self._client_errors = (InvalidInput,)

    def echo(self, body: bytes, header_length: int | None) -> Reply:
        types = self._types
        if header_length is None:
            parsed = self._pydantic_request.model_validate_json(body)
            request = types.InferRequest.from_inference_request(parsed, "m")
        else:
            request = types.InferRequest.from_bytes(body, header_length, "m")
        outputs = []
        for infer_input in request.inputs:
            array = infer_input.as_numpy()
            datatype = self._from_np_dtype(array.dtype)
            outputs.append(
                types.InferOutput(infer_input.name, list(array.shape), datatype, data=array)
            )
        response = types.InferResponse(
            response_id=request.id,
            model_name="m",
            infer_outputs=outputs,
            use_binary_outputs=request.use_binary_outputs,
            requested_outputs=request.request_outputs,
        )
        result, json_length = response.to_rest()
        if json_length is None:
            return self._dumps(result), None
        return result, json_length

    def is_client_error(self, error: Exception) -> bool:
        return isinstance(error, self._client_errors)


def client_request(array: np.ndarray, binary: bool) -> Reply:
    """tritonclient's body for input "x"; JSON requests ask for a JSON output back."""
    infer_input = triton_http.InferInput("x", list(array.shape), np_to_triton_dtype(array.dtype))
    infer_input.set_data_from_numpy(array, binary_data=binary)
    outputs = None if binary else [triton_http.InferRequestedOutput("x", binary_data=False)]
    body, header_length = triton_http.InferenceServerClient.generate_request_body(
        [infer_input], outputs=outputs
    )
    return body, header_length


def words(count: int) -> np.ndarray:
    return np.array([f"token-{index}".encode() for index in range(count)], dtype=object)


RNG = np.random.default_rng(0)
# name: (tensor, sent as binary)
CASES: dict[str, tuple[np.ndarray, bool]] = {
    "FP32 [1,4] JSON": (RNG.random((1, 4), dtype=np.float32), False),
    "FP32 [1,4] binary": (RNG.random((1, 4), dtype=np.float32), True),
    "FP32 [64,4] JSON": (RNG.random((64, 4), dtype=np.float32), False),
    "FP32 [1,150528] binary": (RNG.random((1, 3 * 224 * 224), dtype=np.float32), True),
    "BYTES x8 JSON": (words(8), False),
    "BYTES x8 binary": (words(8), True),
}


def microseconds_per_call(codec: Codec, body: bytes, header_length: int | None) -> float:
    """Best of several repeats, so scheduler noise on a shared machine does not count."""
    timer = timeit.Timer(lambda: codec.echo(body, header_length))
    calls, _ = timer.autorange()
    return min(timer.repeat(repeat=7, number=calls)) / calls * 1e6


def bench(codecs: list[Codec]) -> None:
    header = f"{'case':<24}" + "".join(f"{c.name + ' us':>14}" for c in codecs)
    if len(codecs) == 2:
        header += f"{'ours/kserve':>14}"
    print(header)
    for case, (array, binary) in CASES.items():
        request = client_request(array, binary)
        for codec in codecs:  # time only codecs that answer correctly
            verdict = probe(codec, request, echoes(array))
            if verdict != "yes":
                raise SystemExit(f"{codec.name} fails {case}: {verdict}")
        times = [microseconds_per_call(c, *request) for c in codecs]
        row = f"{case:<24}" + "".join(f"{t:>14.1f}" for t in times)
        if len(times) == 2:
            row += f"{times[0] / times[1]:>14.3g}"
        print(row)


# --- conformance ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A request the protocol allows, and what the Triton client must get back."""

    question: str
    request: Reply
    expect: Callable[[triton_http.InferResult, int | None], bool]


def raw(document: dict[str, Any], binary: bytes | None = None) -> Reply:
    header = json.dumps(document).encode()
    return (header, None) if binary is None else (header + binary, len(header))


def echoes(expected: np.ndarray) -> Callable[[triton_http.InferResult, int | None], bool]:
    def check(result: triton_http.InferResult, _: int | None) -> bool:
        got = result.as_numpy("x")
        return (
            got is not None
            and got.shape == expected.shape
            and as_bytes(got.ravel().tolist()) == as_bytes(expected.ravel().tolist())
        )

    return check


def as_bytes(values: list[Any]) -> list[Any]:
    """BYTES elements as bytes: JSON replies carry them as text, which tritonclient keeps."""
    return [value.encode() if isinstance(value, str) else value for value in values]


def binary_echo_of(expected: np.ndarray) -> Callable[[triton_http.InferResult, int | None], bool]:
    def check(result: triton_http.InferResult, header_length: int | None) -> bool:
        return header_length is not None and echoes(expected)(result, header_length)

    return check


FP16 = np.array([[0.1, 2.5]], dtype=np.float16)
NOT_UTF8 = np.array([b"\xff\xfe", b"ok"], dtype=object)
JSON_OUT = [{"name": "x", "parameters": {"binary_data": False}}]
PROBES = [
    Probe(
        "nested JSON data [[1,2],[3,4]]",
        raw(
            {
                "inputs": [
                    {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]}
                ],
                "outputs": JSON_OUT,
            }
        ),
        echoes(np.array([[1, 2], [3, 4]], dtype=np.float32)),
    ),
    Probe("FP16 binary in and out", client_request(FP16, binary=True), binary_echo_of(FP16)),
    Probe(
        "FP16 as JSON numbers in and out (Triton refuses; Rayship allows)",
        client_request(FP16, binary=False),
        echoes(FP16),
    ),
    Probe(
        "BYTES binary, not UTF-8, in and out",
        client_request(NOT_UTF8, binary=True),
        binary_echo_of(NOT_UTF8),
    ),
    Probe(
        "binary outputs + Inference-Header-Content-Length",
        client_request(np.arange(4, dtype=np.int32), binary=True),
        binary_echo_of(np.arange(4, dtype=np.int32)),
    ),
    Probe(
        "binary_data_output=true applies to requested outputs without binary_data",
        raw(
            {
                "inputs": [{"name": "x", "shape": [2], "datatype": "INT32", "data": [1, 2]}],
                "outputs": [{"name": "x"}],
                "parameters": {"binary_data_output": True},
            }
        ),
        binary_echo_of(np.array([1, 2], dtype=np.int32)),
    ),
    Probe(
        "response without request id omits id (no null)",
        client_request(np.arange(2, dtype=np.int32), binary=False),
        lambda result, _: "id" not in result.get_response(),
    ),
]
# Requests that are wrong: the client must get a 4xx, not a 500.
BAD_REQUESTS = {
    "shape [2,3] with 5 elements": raw(
        {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]}
    ),
    "binary part shorter than binary_data_size": raw(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 8},
                }
            ]
        },
        b"\x00\x00\x80\x3f",
    ),
    "FP32 data ['a']": raw(
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}]}
    ),
    "unknown datatype FP8": raw(
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP8", "data": [1]}]}
    ),
}


def probe(codec: Codec, request: Reply, expect: Callable[..., bool]) -> str:
    try:
        reply, header_length = codec.echo(*request)
        result = triton_http.InferenceServerClient.parse_response_body(
            reply, header_length=header_length
        )
        return "yes" if expect(result, header_length) else "no (wrong reply)"
    except Exception as error:  # a probe reports whatever the codec raises
        return f"no ({type(error).__name__}: {str(error)[:60]})"


def rejects(codec: Codec, request: Reply) -> str:
    try:
        codec.echo(*request)
    except Exception as error:  # a probe reports whatever the codec raises
        status = "4xx" if codec.is_client_error(error) else "500"
        return f"{status} ({type(error).__name__})"
    return "accepted"


def conformance(codecs: list[Codec]) -> None:
    print()
    for item in PROBES:
        print(
            f"{item.question}: "
            + "; ".join(f"{c.name} {probe(c, item.request, item.expect)}" for c in codecs)
        )
    for question, request in BAD_REQUESTS.items():
        print(f"{question}: " + "; ".join(f"{c.name} {rejects(c, request)}" for c in codecs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-timing", action="store_true", help="only the conformance probes")
    arguments = parser.parse_args()
    codecs: list[Codec] = [Rayship()]
    try:
        codecs.append(KServe())
    except ImportError:
        print("kserve is not importable here: timing Rayship alone", file=sys.stderr)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")
    if not arguments.no_timing:
        bench(codecs)
    conformance(codecs)


if __name__ == "__main__":
    main()
