"""HTTP details of the V2 REST transport, kept apart from the data plane.

Each Serve deployment declares its routes as a table (relative path -> method -> handler) and
hands every request to `serve_http`, which reads the body under a size limit (the deployment's
`PredictorSettings.max_request_bytes`, passed in), parses the binary-extension header and the
`Prefer` header (RFC 7240's `respond-async` and `wait`), dispatches the resulting `Call`, and
turns any failure into a V2 error body.

A body that arrives in several chunks is joined into one `bytes`, its one copy here; the join
also lays it out so that its binary tensor data starts aligned (`join_aligned`), which lets the
codec hand runtimes views of it rather than copies.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from rayship_predictors.dataplane import Call, Reply
from rayship_predictors.errors import BadRequest, InferenceError, NotFound

logger = logging.getLogger(__name__)

HEADER_LENGTH = "inference-header-content-length"
RESPOND_ASYNC = "respond-async"
CLIENT_CLOSED_REQUEST = 499  # the status proxies log for a client that left (nginx's)

Handler = Callable[[Call], Awaitable[Reply]]
RouteTable = Mapping[str, Mapping[str, Handler]]


class PayloadTooLarge(InferenceError):
    """The body is larger than RAYSHIP_MAX_REQUEST_BYTES (413), before or after decompression."""

    status = 413


class UnsupportedEncoding(InferenceError):
    """A `Content-Encoding` other than gzip, deflate or identity (415)."""

    status = 415


ALIGNMENT = 8
"""The largest item size of a V2 numeric datatype. A `bytes` object's data is 16-byte aligned in
CPython, so binary data starting a multiple of this into the body is aligned for every dtype."""

DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS}
"""zlib window settings per `Content-Encoding`: gzip's header and trailer, or zlib's (HTTP's
`deflate` is the zlib format, RFC 9110)."""


def relative_path(request: Request) -> str:
    """The path below the application's route prefix, without a trailing slash."""
    path: str = request.scope.get("path", "")
    root: str = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.rstrip("/")


def header_length(value: str | None) -> int | None:
    """The Inference-Header-Content-Length value, or None when the body is plain JSON."""
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise BadRequest(
            f"Inference-Header-Content-Length must be an integer, got {value!r}"
        ) from None
    if length < 0:
        raise BadRequest(f"Inference-Header-Content-Length must not be negative, got {length}")
    return length


def async_wait(prefer_headers: list[str]) -> float | None:
    """The seconds a client asking `Prefer: respond-async` will wait, else None.

    RFC 7240: preferences are comma-separated tokens, possibly over several headers, with
    optional `;`-parameters; `wait=<seconds>` is a preference of its own. A preference the
    server cannot read is ignored rather than refused, so a bad `wait` counts as no wait.
    """
    tokens = {}
    for header in prefer_headers:
        for preference in header.split(","):
            name, _, value = preference.split(";")[0].strip().partition("=")
            tokens[name.strip().lower()] = value.strip().strip('"')
    if RESPOND_ASYNC not in tokens:
        return None
    wait = tokens.get("wait", "0")
    return float(wait) if wait.isascii() and wait.isdigit() else 0.0


async def read_chunks(request: Request, limit: int) -> list[bytes]:
    """The request body as it arrived, refused early when it announces or reaches more than
    `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return chunks


def join_aligned(chunks: list[bytes], header_length: int | None) -> tuple[bytes, int | None]:
    """One body from `chunks` and its header length, with up to ALIGNMENT - 1 spaces after the
    JSON header so that the binary data after it starts aligned.

    JSON allows whitespace after a value, so the header says the same. Only a body in several
    chunks is laid out so: its join copies every byte anyway, while a body in one chunk is used
    as it came, and the codec copies what of it is misaligned (no dearer than a join). Before,
    every binary tensor at an odd offset reached the runtime misaligned, which ONNX Runtime took
    3-6.5 ms over for a 10 MB batch against 0.15 ms aligned.
    """
    pad = -(header_length or 0) % ALIGNMENT
    size = sum(len(chunk) for chunk in chunks)
    if len(chunks) == 1 or header_length is None or not pad or header_length > size:
        # (A header length past the end is refused by the codec, which names both lengths.)
        return b"".join(chunks), header_length
    head, tail = _split(chunks, header_length)
    return b"".join([*head, b" " * pad, *tail]), header_length + pad


def _split(chunks: list[bytes], offset: int) -> tuple[list[memoryview], list[memoryview]]:
    """Views of the first `offset` bytes of `chunks` and of the rest, without copying."""
    views = [memoryview(chunk) for chunk in chunks]
    for index, view in enumerate(views):
        if offset <= len(view):
            return [*views[:index], view[:offset]], [view[offset:], *views[index + 1 :]]
        offset -= len(view)
    return views, []


def encoding_name(encoding: str | None) -> str:
    """A `Content-Encoding` value as DECODERS names it; `identity` when there is none."""
    return (encoding or "identity").strip().lower()


def decode_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body with its `Content-Encoding` undone, refused past `limit` bytes decompressed.

    tritonclient compresses requests when asked (`request_compression_algorithm`); the limit
    holds after decompression, so a small compressed body cannot expand into gigabytes.
    """
    name = encoding_name(encoding)
    if name == "identity":
        return body
    if name not in DECODERS:
        raise UnsupportedEncoding(
            f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none",
            (("Accept-Encoding", "gzip, deflate"),),
        )
    decompressor = zlib.decompressobj(DECODERS[name])
    try:
        decoded = decompressor.decompress(body, limit + 1)
    except zlib.error as error:
        raise BadRequest(f"the body is not valid {name} data: {error}") from None
    if len(decoded) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes once decompressed")
    if not decompressor.eof:
        raise BadRequest(f"the body ends before its {name} data does")
    return decoded


def find_handler(routes: RouteTable, method: str, path: str) -> Handler:
    """The handler for (method, path), or 404/405 as V2 errors."""
    methods = routes.get(path)
    if methods is None:
        raise NotFound(f"no route {path or '/'}")
    handler = methods.get(method)
    if handler is None:
        allowed = ", ".join(methods)
        raise MethodNotAllowed(
            f"{method} not allowed on {path or '/'}; use {allowed}", (("Allow", allowed),)
        )
    return handler


class MethodNotAllowed(InferenceError):
    """A known route called with the wrong method (405)."""

    status = 405


def to_response(reply: Reply) -> Response:
    """A Starlette response for a data-plane reply."""
    headers = dict(reply.headers)
    if reply.header_length is not None:
        headers["Inference-Header-Content-Length"] = str(reply.header_length)
    return Response(reply.body, reply.status, headers=headers, media_type=reply.content_type)


async def serve_http(
    request: Request,
    dispatch: Callable[[Call], Awaitable[Reply]],
    body_limit: int,
) -> Response:
    """Run one HTTP request through `dispatch`, mapping every failure to a V2 error body."""
    try:
        body, length = await request_body(request, body_limit)
        call = Call(
            request.method,
            relative_path(request),
            body,
            length,
            async_wait(request.headers.getlist("prefer")),
            request.headers.get("authorization"),
            request.headers.get("traceparent"),
            request.headers.get("tracestate"),
            request.headers.get("x-request-id"),
        )
        reply = await dispatch(call)
    except ClientDisconnect:
        # The client left while sending its body: nobody to answer, and nothing failed.
        logger.debug("client disconnected during %s %s", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    except Exception as error:
        reply = failure_reply(error, f"{request.method} {request.url.path}")
    return to_response(reply)


async def request_body(request: Request, limit: int) -> tuple[bytes, int | None]:
    """The body of a POST or PUT (empty otherwise), decompressed or aligned, and its
    Inference-Header-Content-Length."""
    length = header_length(request.headers.get(HEADER_LENGTH))
    if request.method not in ("POST", "PUT"):
        return b"", length
    chunks = await read_chunks(request, limit)
    encoding = request.headers.get("content-encoding")
    if encoding_name(encoding) == "identity":
        return join_aligned(chunks, length)
    return decode_body(b"".join(chunks), encoding, limit), length


def failure_reply(error: Exception, serving: str) -> Reply:
    """The V2 error reply for a failure while `serving` a request: a client-facing one as it
    is, anything else logged with its traceback and answered without it."""
    if isinstance(error, InferenceError):
        return Reply.error(error)
    logger.error("unexpected failure serving %s", serving, exc_info=error)
    return Reply.error(InferenceError("internal error; see the replica's log"))
