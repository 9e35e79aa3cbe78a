"""The HTTP transport's own rules: compressed bodies (undone, bounded) and 405s with `Allow`."""

from __future__ import annotations

import asyncio
import gzip
import logging
import pickle
import zlib

import pytest
from starlette.requests import Request

from rayship_predictors.dataplane import Call, Reply
from rayship_predictors.errors import BadRequest, InferenceError
from rayship_predictors.http import (
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedEncoding,
    decode_body,
    find_handler,
    serve_http,
)

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
