"""The HTTP transport's own rules: compressed bodies (undone, bounded), 405s with `Allow`, and
large binary bodies joined once with their binary data aligned, over a real uvicorn."""

from __future__ import annotations

import asyncio
import gzip
import logging
import pickle
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton_http
import uvicorn
from starlette.requests import Request
from tritonclient.utils import np_to_triton_dtype

from rayship_predictors.dataplane import Call, Reply
from rayship_predictors.errors import BadRequest, InferenceError
from rayship_predictors.http import (
    ALIGNMENT,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedEncoding,
    decode_body,
    find_handler,
    join_aligned,
    serve_http,
)
from rayship_predictors.v2 import codec

BODY = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}'
LIMIT = 1024


@pytest.mark.parametrize(
    ("encoding", "compressed"),
    [
        (None, BODY),
        ("identity", BODY),
        ("gzip", gzip.compress(BODY)),
        ("GZip ", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),
    ],
)
def test_compressed_bodies_are_read(encoding: str | None, compressed: bytes) -> None:
    assert decode_body(compressed, encoding, LIMIT) == BODY


def test_a_zip_bomb_is_refused_with_413_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 KB that inflate to 64 MiB

    with pytest.raises(PayloadTooLarge, match="exceeds 1024 bytes once decompressed"):
        decode_body(bomb, "gzip", LIMIT)


@pytest.mark.parametrize(
    ("encoding", "body", "error", "said"),
    [
        ("gzip", b"not gzip at all", BadRequest, "not valid gzip data"),
        ("gzip", gzip.compress(BODY)[:-12], BadRequest, "ends before its gzip data does"),
        ("br", BODY, UnsupportedEncoding, "Content-Encoding 'br' is not supported"),
    ],
)
def test_bad_encodings_are_client_errors(
    encoding: str, body: bytes, error: type[InferenceError], said: str
) -> None:
    with pytest.raises(error, match=said) as raised:
        decode_body(body, encoding, LIMIT)
    assert 400 <= raised.value.status < 500


def test_a_405_says_which_methods_are_allowed() -> None:
    async def handler(call: object) -> object:
        raise AssertionError("not called")

    with pytest.raises(MethodNotAllowed) as raised:
        find_handler({"/infer": {"POST": handler}}, "GET", "/infer")  # type: ignore[dict-item]

    assert raised.value.status == 405
    assert raised.value.headers == (("Allow", "POST"),)


def test_errors_keep_their_headers_across_a_handle() -> None:
    """A DeploymentHandle pickles what a version raises back to the `/v2` server app."""
    error = MethodNotAllowed("GET not allowed on /infer; use POST", (("Allow", "POST"),))

    copied = pickle.loads(pickle.dumps(error))

    assert (type(copied), copied.message, copied.headers) == (
        MethodNotAllowed,
        error.message,
        error.headers,
    )


def test_a_client_that_leaves_mid_body_is_no_failure(caplog: pytest.LogCaptureFixture) -> None:
    """Starlette raises ClientDisconnect while the body is read; it is not logged as an error."""
    messages = iter([{"type": "http.request", "body": b"{", "more_body": True}])

    async def receive() -> dict[str, object]:
        return next(messages, {"type": "http.disconnect"})

    scope = {"type": "http", "method": "POST", "path": "/v2/models/m/infer", "headers": []}

    async def dispatch(call: Call) -> Reply:
        raise AssertionError("never dispatched")

    response = asyncio.run(serve_http(Request(scope, receive), dispatch, LIMIT))

    assert response.status_code == 499
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --- large binary bodies: joined once, binary data aligned ---------------------------------

# Inputs of odd sizes and every item size, so no input after the first starts aligned by luck.
ODD_INPUTS = {
    "half": np.arange(3, dtype=np.float16),
    "wide": np.linspace(-1, 1, 5, dtype=np.float64),
    "text": np.array([b"a", b"\xff\x00", b""], dtype=object),
    "bytes": np.arange(7, dtype=np.uint8),
    "image": np.random.default_rng(0).random((3, 5), dtype=np.float32),
}


def triton_body(arrays: dict[str, np.ndarray], request_id: str) -> tuple[bytes, int]:
    """tritonclient's binary body for `arrays`; the id's length moves where the binary part
    starts."""
    inputs = []
    for name, array in arrays.items():
        given = triton_http.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        given.set_data_from_numpy(array, binary_data=True)
        inputs.append(given)
    body, header_length = triton_http.InferenceServerClient.generate_request_body(
        inputs, request_id=request_id
    )
    assert header_length is not None
    return body, header_length


def chunked(body: bytes, size: int) -> list[bytes]:
    return [body[start : start + size] for start in range(0, len(body), size)]


def assert_same_arrays(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(got) == list(expected)
    for name, array in expected.items():
        assert got[name].dtype == array.dtype
        assert got[name].shape == array.shape
        if array.dtype == object:
            assert got[name].tolist() == array.tolist()
        else:
            assert got[name].tobytes() == array.tobytes()


@pytest.mark.parametrize("chunk_size", [1, 7, 100, 1 << 20])
@pytest.mark.parametrize("id_length", range(8))
def test_joined_chunks_decode_byte_for_byte_with_the_binary_part_aligned(
    id_length: int, chunk_size: int
) -> None:
    body, header_length = triton_body(ODD_INPUTS, "r" * id_length)
    chunks = chunked(body, chunk_size)

    joined, length = join_aligned(chunks, header_length)

    assert length is not None
    assert orjson.loads(joined[:length]) == orjson.loads(body[:header_length])
    assert joined[length:] == body[header_length:]
    request = codec.decode_request(joined, length)
    assert_same_arrays(request.inputs, ODD_INPUTS)
    first = request.inputs["half"]
    assert first.flags.aligned
    if len(chunks) > 1:  # laid out aligned: the first binary input is a view of the body
        assert length % ALIGNMENT == 0
        assert np.shares_memory(first, np.frombuffer(joined, dtype=np.uint8))
    else:  # used as it came
        assert (joined, length) == (body, header_length)


@pytest.mark.parametrize("header_length", [None, 0, 16])
def test_bodies_without_a_misaligned_binary_part_are_joined_as_they_came(
    header_length: int | None,
) -> None:
    body = b"x" * 40

    assert join_aligned(chunked(body, 3), header_length) == (body, header_length)


def test_a_header_length_past_the_body_is_left_for_the_codec_to_refuse() -> None:
    joined, length = join_aligned([b'{"inputs"', b": []}"], 99)

    assert (joined, length) == (b'{"inputs": []}', 99)
    with pytest.raises(BadRequest, match="Inference-Header-Content-Length is 99 but the body"):
        codec.decode_request(joined, length)


@dataclass
class EchoServer:
    """uvicorn on loopback, running `serve_http` with a dispatch that echoes the inputs back
    as outputs, keeping each decoded request and the body it came from."""

    url: str
    seen: list[tuple[Call, codec.InferRequest]]


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    seen: list[tuple[Call, codec.InferRequest]] = []

    async def echo(call: Call) -> Reply:
        request = codec.decode_request(call.body, call.header_length)
        seen.append((call, request))
        body, length = codec.encode_response(
            "m", "1", request.id, request.inputs, request.outputs, request.binary_output
        )
        return Reply(200, body, length)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        response = await serve_http(Request(scope, receive), echo, 64 << 20)
        await response(scope, receive, send)

    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield EchoServer(f"127.0.0.1:{port}", seen)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.parametrize("id_length", [0, 1, 3])
def test_a_large_binary_request_over_http_round_trips_byte_for_byte(
    echo_server: EchoServer, id_length: int
) -> None:
    """tritonclient against uvicorn: a 6 MB body arrives in many chunks; every input, odd
    sizes and all, comes back bit for bit as binary outputs, and the big one, FP64 and first,
    was decoded as a view of the body (which only 8-byte alignment allows)."""
    arrays = {
        "big": np.random.default_rng(1).random(750_001, dtype=np.float64),
        **ODD_INPUTS,
    }
    client = triton_http.InferenceServerClient(echo_server.url)
    inputs = []
    for name, array in arrays.items():
        given = triton_http.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        given.set_data_from_numpy(array, binary_data=True)
        inputs.append(given)
    wanted = [triton_http.InferRequestedOutput(name, binary_data=True) for name in arrays]

    result = client.infer("m", inputs, outputs=wanted, request_id="r" * id_length)

    assert_same_arrays({name: result.as_numpy(name) for name in arrays}, arrays)
    ((call, request),) = echo_server.seen
    assert all(array.flags.aligned for array in request.inputs.values())
    assert np.shares_memory(request.inputs["big"], np.frombuffer(call.body, dtype=np.uint8))
