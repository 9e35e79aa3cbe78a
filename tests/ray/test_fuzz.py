"""A bounded fuzz of the whole V2 REST surface on a real local Ray, behind Serve's ingress.

Hypothesis drives every method on every V2 URL shape (valid and arbitrary model names and
versions) with inference bodies built from the Open Inference Protocol's REST schema, mutated
ones, the binary extension with right and wrong header lengths, gzip/deflate bodies (valid and
corrupt) and random bytes. Whatever it sends, Rayship must answer below 500 (except a model that
legitimately fails) with a V2 error body on 4xx/5xx, and must keep serving afterwards.
Hand-made hostile cases pin the exact status and the field the error names.

Runs are derandomized with no example database, so CI sees the same requests every run, and
sized so the module, deploy included, stays within about three minutes on a 2-core machine.
"""

from __future__ import annotations

import copy
import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import onnxruntime
import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from rayship_predictors.v2.datatypes import V2_TO_NUMPY
from support.http import http_call
from support.models import FAILING_PREDICTOR, model_deployment, python_model, route
from support.ray_cluster import ServeCluster
from unit.test_codec_properties import (
    SETTINGS,
    SHAPES,
    WILD_VALUES,
    length_prefixed,
    values_of,
)

pytestmark = pytest.mark.ray

SMALL_BODY_LIMIT = 4096  # RAYSHIP_MAX_REQUEST_BYTES of the fragile model only
REQUEST_TIMEOUT_S = 30  # a request still unanswered by then counts as a hang
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
MODEL_FAILURE = "model 'fragile' version '1' failed: ZeroDivisionError"
FUZZ = settings(SETTINGS, max_examples=800)  # the codec properties' settings, more examples


@pytest.fixture(scope="module")
def served(
    serve_cluster: ServeCluster, example_models: Path, echo_model: Path, tmp_path_factory: Any
) -> ServeCluster:
    """iris (versions 1 and 2 live, traffic on 2), echo, and a fragile model with a small body
    limit: the same set as test_v2_protocol, less the model that never gets traffic."""
    fragile = python_model(tmp_path_factory.mktemp("fragile"), "fragile", FAILING_PREDICTOR)

    def python(name: str, folder: Path, predictor: str) -> Any:
        model = {"format": "python", "storageUri": folder.as_uri()}
        return model_deployment(name, {"model": {**model, "python": {"predictorClass": predictor}}})

    iris_uri = (example_models / "iris-onnx").as_uri()
    iris = model_deployment("iris", {"model": {"format": "onnx", "storageUri": iris_uri}})
    serve_cluster.deploy(
        [
            route(iris, {"2": 100}, live=["1", "2"]),
            route(python("echo", echo_model, "predictor:Echo"), {"1": 100}),
            route(
                python("fragile", fragile, "predictor:Fragile"),
                {"1": 100},
                environment={"RAYSHIP_MAX_REQUEST_BYTES": str(SMALL_BODY_LIMIT)},
            ),
        ]
    )
    return serve_cluster


# --- requests and the invariants every answer keeps ------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One HTTP request as the fuzz sends it; its repr is the reproducer a failure reports."""

    method: str
    path: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        body = None if self.body is None else self.body[:400]
        more = "" if self.body is None or len(self.body) <= 400 else f" (+{len(self.body) - 400})"
        return f"{self.method} {self.path} headers={dict(self.headers)} body={body!r}{more}"


@dataclass(frozen=True)
class Answer:
    """What came back; its repr stays short enough to read in a failure report."""

    status: int
    headers: dict[str, str]
    body: bytes

    def __repr__(self) -> str:
        return f"{self.status} {self.headers.get('content-type')} {self.body[:400]!r}"

    def error(self) -> str:
        """The message of a V2 error body, after checking that the body is exactly one."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        document = json.loads(self.body)
        assert isinstance(document, dict), self
        assert set(document) == {"error"}, self
        assert isinstance(document["error"], str), self
        assert "Traceback" not in document["error"], self
        return document["error"]


def send(served: ServeCluster, sent: Sent) -> Answer:
    """`sent`, answered; a timeout or a dropped connection raises, failing the test."""
    status, headers, body = http_call(
        served.url + sent.path, sent.method, sent.body, dict(sent.headers), REQUEST_TIMEOUT_S
    )
    return Answer(status, headers, body)


def from_ingress(answer: Answer) -> bool:
    """Whether HAProxy (or the replica's HTTP server) answered instead of Rayship.

    Rayship answers only JSON or binary tensor data; the ingress answers malformed or
    unroutable HTTP with text/plain or HTML pages, which are not V2 errors and not ours.
    """
    content_type = answer.headers.get("content-type", "")
    return 400 <= answer.status < 500 and content_type.startswith(("text/plain", "text/html"))


def model_of(path: str) -> str | None:
    """The model a path names, as Rayship reads it (percent-decoded)."""
    parts = unquote(path.partition("?")[0]).split("/")
    return parts[3] if parts[:3] == ["", "v2", "models"] and len(parts) > 3 else None


def check_answer(sent: Sent, answer: Answer) -> None:
    """Below 500 unless the fragile model legitimately failed; every Rayship error a V2 body;
    405 says what is allowed. The ingress's own pages are left to the caller to count."""
    if from_ingress(answer):
        return
    if answer.status >= 500:
        failed = answer.status == 500 and model_of(sent.path) == "fragile"
        assert failed, f"{sent!r} -> {answer}"
        assert MODEL_FAILURE in answer.error(), f"{sent!r} -> {answer}"
    if sent.method == "HEAD":  # no body, by HTTP
        return
    if answer.status >= 400:
        answer.error()
    if answer.status == 405:
        assert answer.headers.get("allow"), answer
    if answer.status == 200 and answer.headers.get("content-type") == "application/json":
        assert isinstance(json.loads(answer.body), dict), answer


def fuzz_once(served: ServeCluster, sent: Sent) -> None:
    """One generated request: sent, checked, and counted in Hypothesis' statistics when the
    ingress answered it (run with --hypothesis-show-statistics to see which)."""
    note(repr(sent))
    answer = send(served, sent)
    note(f"-> {answer}")
    if from_ingress(answer):
        event(f"ingress answered {answer.status}: {answer.body[:60]!r}")
    check_answer(sent, answer)


# --- strategies: the REST surface --------------------------------------------------------------

MODELS = ("iris", "echo", "fragile")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
# Segments sent as they are: dot segments, encoded dots and slashes, NUL, invalid UTF-8.
RAW_SEGMENTS = ("..", ".", "%2e%2e", "%2E%2e%2F..", "%00", "%2F", "%252e", "%ff%fe", "ir%69s", "")
SEGMENTS = st.one_of(
    st.sampled_from(MODELS),
    st.sampled_from(RAW_SEGMENTS),
    st.text(max_size=20).map(lambda text: quote(text, safe="")),
    st.text(min_size=100, max_size=300).map(lambda text: quote(text, safe="")),
    st.integers(300, 4000).map(lambda length: "m" * length),
)
VERSIONS = st.one_of(st.sampled_from(["1", "2", "9", "01", "-1", "latest"]), SEGMENTS)
SERVER_PATHS = ("/v2", "/v2/", "/v2/health/live", "/v2/health/ready", "/v2/health", "/v2/models")
MODEL_SUFFIXES = ("", "/", "/ready", "/infer", "/config", "/stats", "/infer/", "/ready/x")
ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
HEADERS = st.lists(
    st.one_of(
        st.tuples(
            st.just("Prefer"),
            st.one_of(st.sampled_from(["respond-async", "respond-async, wait=2", "wait=1"]), ASCII),
        ),
        st.tuples(st.just("Authorization"), st.one_of(st.just("Bearer x"), ASCII)),
        st.tuples(st.just("Inference-Header-Content-Length"), ASCII),
        st.tuples(st.just("Content-Type"), ASCII),
    ),
    max_size=3,
    unique_by=lambda header: header[0],
).map(tuple)


@st.composite
def paths(draw: st.DrawFn) -> str:
    """A URL of the V2 REST API: server, model, model version, or asynchronous job."""
    kind = draw(st.sampled_from(["server", "model", "version", "job"]))
    if kind == "server":
        return draw(st.sampled_from(SERVER_PATHS))
    path = f"/v2/models/{draw(SEGMENTS)}"
    if kind == "version" or (kind == "job" and draw(st.booleans())):
        path += f"/versions/{draw(VERSIONS)}"
    if kind == "job":
        return f"{path}/jobs/{draw(SEGMENTS)}"
    return path + draw(st.sampled_from(MODEL_SUFFIXES)) + draw(st.sampled_from(["", "?x=1"]))


# --- strategies: inference bodies --------------------------------------------------------------


def finite_values_of(datatype: str) -> st.SearchStrategy[Any]:
    """JSON values valid for `datatype`: the codec tests' values without NaN or infinities,
    which JSON cannot carry."""
    if V2_TO_NUMPY[datatype].kind == "f":
        width = min(V2_TO_NUMPY[datatype].itemsize * 8, 64)
        return st.floats(width=width, allow_nan=False, allow_infinity=False)
    return values_of(datatype)


@st.composite
def tensors(
    draw: st.DrawFn, name: str, datatype: str, shape: list[int]
) -> tuple[dict[str, Any], bytes]:
    """One valid input, as JSON `data` or (returned apart) binary tensor data."""
    count = int(np.prod(shape))
    values = draw(st.lists(finite_values_of(datatype), min_size=count, max_size=count))
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    if not draw(st.booleans()):
        tensor["data"] = values
        return tensor, b""
    if datatype == "BYTES":
        payload = length_prefixed([value.encode() for value in values])
    else:
        payload = np.array(values, V2_TO_NUMPY[datatype].newbyteorder("<")).tobytes()
    tensor["parameters"] = {"binary_data_size": len(payload)}
    return tensor, payload


@st.composite
def valid_requests(draw: st.DrawFn, model: str) -> tuple[dict[str, Any], bytes]:
    """A request the model accepts (the fragile one may still fail on a negative input): its
    JSON document and the binary part that follows it, empty when all inputs are JSON."""
    rows = draw(st.integers(0, 3))
    if model == "iris":
        specs = [("input", "FP32", [rows, 4])]
        outputs = ["probabilities", "label"]
    elif model == "fragile":
        specs = [("x", "FP32", [rows])]
        outputs = ["y"]
    else:
        specs = [(f"in_{t}", t, [rows, draw(st.integers(0, 2))]) for t in sorted(V2_TO_NUMPY)]
        outputs = [f"out_{t}" for t in V2_TO_NUMPY]
    drawn = [draw(tensors(*spec)) for spec in specs]
    document: dict[str, Any] = {"inputs": [tensor for tensor, _ in drawn]}
    if draw(st.booleans()):
        document["id"] = draw(st.text(max_size=10))
    if draw(st.booleans()):
        document["parameters"] = draw(
            st.dictionaries(st.text(max_size=5), st.one_of(st.booleans(), st.integers(), ASCII))
        )
    if draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(outputs), unique=True))
        document["outputs"] = [
            {"name": name, "parameters": {"binary_data": draw(st.booleans())}} for name in chosen
        ]
    return document, b"".join(payload for _, payload in drawn)


MUTATIONS = ("drop", "wild", "shape", "datatype", "nan", "nest", "duplicate", "outputs", "params")


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any]) -> dict[str, Any]:
    """`document` with one thing wrong: a field missing or of the wrong type, a shape from the
    codec tests' hostile dimensions, a NaN token, deep nesting, a duplicate input."""
    document = copy.deepcopy(document)
    tensor = draw(st.sampled_from(document["inputs"]))
    kind = draw(st.sampled_from(MUTATIONS))
    if kind == "drop":
        target = draw(st.sampled_from([document, tensor]))
        target.pop(draw(st.sampled_from(sorted(target))))
    elif kind == "wild":
        key = draw(st.sampled_from(["inputs", "id", "outputs", "name", "datatype", "shape"]))
        target = document if key in ("inputs", "id", "outputs") else tensor
        target[key] = draw(WILD_VALUES)
    elif kind == "shape":
        tensor["shape"] = draw(SHAPES)
    elif kind == "datatype":
        tensor["datatype"] = draw(st.one_of(st.sampled_from(sorted(V2_TO_NUMPY)), ASCII))
    elif kind == "nan":
        tensor["data"] = [float("nan"), float("inf"), *tensor.get("data", [])]
    elif kind == "nest":
        for _ in range(draw(st.integers(1, 300))):
            tensor["data"] = [tensor.get("data", [])]
    elif kind == "duplicate":
        document["inputs"].append(tensor)
    elif kind == "outputs":
        document["outputs"] = draw(st.lists(st.fixed_dictionaries({"name": ASCII}), max_size=3))
    else:
        target = draw(st.sampled_from([document, tensor]))
        target["parameters"] = draw(WILD_VALUES)
    return document


def framed(
    document: dict[str, Any], payload: bytes, header_length: str | None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers carrying `document` and its binary part; `header_length` "right"
    sends the true Inference-Header-Content-Length, anything else is sent as given."""
    header = json.dumps(document).encode()
    headers: dict[str, str] = {}
    if header_length == "right":
        headers["Inference-Header-Content-Length"] = str(len(header))
    elif header_length is not None:
        headers["Inference-Header-Content-Length"] = header_length
    return header + payload, headers


ENCODINGS = ("gzip", "deflate", "x-gzip", "corrupt", "truncated", "br")


def content_encoded(body: bytes, encoding: str) -> tuple[bytes, str]:
    """`body` under a Content-Encoding: valid gzip or zlib, or broken data labelled gzip."""
    if encoding in ("gzip", "x-gzip"):
        return gzip.compress(body), encoding
    if encoding == "deflate":
        return zlib.compress(body), encoding
    if encoding == "corrupt":
        return b"\x1f\x8b\x08\x00" + body, "gzip"
    if encoding == "truncated":
        return gzip.compress(body)[:-6], "gzip"
    return body, encoding


@st.composite
def inference_calls(draw: st.DrawFn) -> Sent:
    """POST to an infer URL: valid, mutated or random bodies, in any framing and encoding."""
    model = draw(st.sampled_from(MODELS))
    version = draw(st.sampled_from(["", "/versions/1", "/versions/2"] if model == "iris" else [""]))
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "random"]))
    headers: dict[str, str] = {}
    if kind == "random":
        body = draw(st.binary(max_size=300))
        if draw(st.booleans()):
            headers["Inference-Header-Content-Length"] = str(draw(st.integers(-2, 400)))
    else:
        document, payload = draw(valid_requests(model))
        if kind == "mutated":
            document = draw(mutated(document))
        lengths = ["right", "0", "-1", "abc", str(2**70)]
        wrong = draw(st.sampled_from(lengths) | st.integers(1, 100).map(str))
        length = "right" if payload and draw(st.integers(0, 3)) else (wrong if payload else None)
        body, headers = framed(document, payload, length)
    encoding = draw(st.sampled_from(("none",) * 4 + ENCODINGS))
    if encoding != "none":
        body, headers["Content-Encoding"] = content_encoded(body, encoding)
    return Sent("POST", f"/v2/models/{model}{version}/infer", body, tuple(headers.items()))


@st.composite
def surface_calls(draw: st.DrawFn) -> Sent:
    """Any method on any V2 URL, with no body, a JSON inference request, or random bytes."""
    method = draw(st.sampled_from(METHODS))
    path = draw(paths())
    body_kind = draw(st.sampled_from(["none", "none", "request", "bytes"]))
    body = None
    if body_kind == "request":
        body = json.dumps(draw(valid_requests(draw(st.sampled_from(MODELS))))[0]).encode()
    elif body_kind == "bytes":
        body = draw(st.binary(max_size=100))
    return Sent(method, path, body, draw(HEADERS))


# --- the fuzz ----------------------------------------------------------------------------------


@FUZZ
@given(sent=surface_calls())
def test_any_method_on_any_url_gets_a_v2_answer(served: ServeCluster, sent: Sent) -> None:
    fuzz_once(served, sent)


@settings(FUZZ, max_examples=1500)
@given(sent=inference_calls())
def test_any_inference_body_gets_a_v2_answer(served: ServeCluster, sent: Sent) -> None:
    fuzz_once(served, sent)


# --- hand-made hostile cases -------------------------------------------------------------------


def iris(**changes: Any) -> dict[str, Any]:
    """A valid one-row iris request, with `changes` made to its input."""
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": IRIS_ROWS[0]}
    return {"inputs": [{**tensor, **changes}]}


def js(document: Any) -> bytes:
    return json.dumps(document).encode()


def fragile_padded(size: int) -> bytes:
    """A valid fragile request padded with JSON whitespace to exactly `size` bytes."""
    return js({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [2]}]}).ljust(
        size
    )


def bytes_overrun() -> tuple[bytes, str]:
    """An echo request whose one BYTES element's length prefix (100) overruns its 4 bytes."""
    payload = (100).to_bytes(4, "little") + b"abcd"
    tensor = {"name": "in_BYTES", "datatype": "BYTES", "shape": [1],
              "parameters": {"binary_data_size": len(payload)}}  # fmt: skip
    header = js({"inputs": [tensor]})
    return header + payload, str(len(header))


def iris_binary() -> bytes:
    """A one-row iris request with its input as binary data; the header length is the test's."""
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 4],
              "parameters": {"binary_data_size": 16}}  # fmt: skip
    return js({"inputs": [tensor]}) + np.array(IRIS_ROWS[0], np.float32).tobytes()


def gzip_bomb(size: int) -> bytes:
    """`size` spaces gzipped in 1 MiB steps, so building the bomb never holds it expanded."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b" " * 2**20
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*parts, compressor.flush()])


@dataclass(frozen=True)
class Hostile:
    """One hand-made request and what Rayship must answer: `status` exact, or "4xx" for any
    client error; `says` in the V2 error body, None where there is none to read (HEAD, a
    success, the ingress's page)."""

    method: str
    path: str
    body: bytes | None
    status: int | str
    says: str | None
    headers: tuple[tuple[str, str], ...] = ()


def case(name: str, hostile: Hostile) -> Any:
    """A parameter of the hostile test, named."""
    return pytest.param(hostile, id=name)


INFER = "/v2/models/iris/infer"
FRAGILE = "/v2/models/fragile/infer"
ECHO = "/v2/models/echo/infer"
LENGTH = "Inference-Header-Content-Length"
GZIP = (("Content-Encoding", "gzip"),)
OVERRUN, OVERRUN_LENGTH = bytes_overrun()
DEEP = js(iris(data=[])).replace(b"[]", b"[" * 50_000 + b"]" * 50_000)  # 100 KB of nesting
UINT8_256 = {"inputs": [{"name": "in_UINT8", "datatype": "UINT8", "shape": [1], "data": [256]}]}
NEGATIVE = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [-1]}]}
# fmt: off
HOSTILE = [
    case("65-dims", Hostile("POST", INFER, js(iris(shape=[1] * 65)), 400,
                            "shape has 65 dimensions")),
    case("dims-0-2^63", Hostile("POST", INFER, js(iris(shape=[0, 2**63], data=[])), 400,
                                "too large for numpy")),
    case("negative-dim", Hostile("POST", INFER, js(iris(shape=[-1, 4])), 400,
                                 "negative dimension")),
    case("float-dim", Hostile("POST", INFER, js(iris(shape=[1.0, 4])), 400,
                              "'shape' must be a list of integers")),
    case("100kb-nesting", Hostile("POST", INFER, DEEP, 400, "JSON")),
    case("bytes-prefix-overrun", Hostile("POST", ECHO, OVERRUN, 400,
                                         "BYTES element 0 declares 100 bytes",
                                         ((LENGTH, OVERRUN_LENGTH),))),
    case("at-body-limit", Hostile("POST", FRAGILE, fragile_padded(SMALL_BODY_LIMIT), 200, None)),
    case("one-byte-over-limit", Hostile("POST", FRAGILE, fragile_padded(SMALL_BODY_LIMIT + 1),
                                        413, f"exceeds {SMALL_BODY_LIMIT} bytes")),
    case("gzip-bomb-small-limit", Hostile("POST", FRAGILE, gzip_bomb(2 * 2**20), 413,
                                          "once decompressed", GZIP)),
    case("gzip-bomb-default-limit", Hostile("POST", INFER, gzip_bomb(100 * 2**20), 413,
                                            "once decompressed", GZIP)),
    case("not-gzip", Hostile("POST", INFER, b"this is not gzip", 400, "not valid gzip data",
                             GZIP)),
    case("truncated-gzip", Hostile("POST", INFER, gzip.compress(js(iris()))[:-8], 400,
                                   "ends before its gzip data", GZIP)),
    case("unknown-encoding", Hostile("POST", INFER, js(iris()), 415, "'br'",
                                     (("Content-Encoding", "br"),))),
    case("invalid-utf8", Hostile("POST", INFER, js(iris()).replace(b'"input"', b'"in\xffput"'),
                                 400, "JSON")),
    case("nan-token", Hostile("POST", INFER, js(iris(data=[float("nan"), 1, 2, 3])), 400,
                              "JSON")),
    case("duplicate-input", Hostile("POST", INFER, js({"inputs": iris()["inputs"] * 2}), 400,
                                    "input 'input' appears twice")),
    case("id-not-string", Hostile("POST", INFER, js({**iris(), "id": 7}), 400,
                                  "'id' must be a string")),
    case("unknown-output", Hostile("POST", INFER, js({**iris(), "outputs": [{"name": "nope"}]}),
                                   400, "unknown output 'nope'")),
    case("parameters-not-object", Hostile("POST", INFER, js({**iris(), "parameters": [1]}), 400,
                                          "'parameters' must be an object")),
    case("datatype-not-string", Hostile("POST", INFER, js(iris(datatype=32)), 400,
                                        "'datatype' must be a string")),
    case("data-and-binary", Hostile("POST", INFER,
                                    js(iris(parameters={"binary_data_size": 16})), 400,
                                    "has both 'data' and parameters.binary_data_size")),
    case("header-length-beyond-body", Hostile("POST", INFER, iris_binary(), 400,
                                              f"{LENGTH} is 10000", ((LENGTH, "10000"),))),
    case("header-length-text", Hostile("POST", INFER, iris_binary(), 400,
                                       f"{LENGTH} must be an integer", ((LENGTH, "abc"),))),
    case("header-length-negative", Hostile("POST", INFER, iris_binary(), 400,
                                           "must not be negative", ((LENGTH, "-1"),))),
    case("uint8-256", Hostile("POST", ECHO, js(UINT8_256), 400, "out of range for UINT8")),
    case("negative-to-fragile", Hostile("POST", FRAGILE, js(NEGATIVE), 500, MODEL_FAILURE)),
    case("prefer-wait-abc", Hostile("POST", INFER, js(iris()), 200, None,
                                    (("Prefer", "respond-async, wait=abc"),))),
    case("prefer-wait-superscript", Hostile("POST", INFER, js(iris()), 200, None,
                                            (("Prefer", "respond-async, wait=\u00b2"),))),
    case("authorization-junk-on-open-model", Hostile("POST", INFER, js(iris()), 200, None,
                                                     (("Authorization", "Basic !!junk"),))),
    case("encoded-dot-dot-model", Hostile("POST", "/v2/models/%2e%2e/infer", js(iris()), 404,
                                          "model '..' not found")),
    case("encoded-dot-dot-version", Hostile("GET", "/v2/models/iris/versions/%2e%2e", None, 404,
                                            "no live version '..'")),
    case("unknown-model", Hostile("GET", "/v2/models/nobody/ready", None, 404,
                                  "model 'nobody' not found")),
    case("jobs-not-kept", Hostile("GET", "/v2/models/iris/jobs/abc", None, 404,
                                  "keeps no asynchronous jobs")),
    case("head-metadata", Hostile("HEAD", "/v2/models/iris", None, 405, None)),
    case("options-infer", Hostile("OPTIONS", INFER, None, 405, "use POST")),
    case("put-infer", Hostile("PUT", INFER, js(iris()), 405, "use POST")),
    case("delete-server", Hostile("DELETE", "/v2", None, 405, "use GET")),
    case("empty-body", Hostile("POST", INFER, b"", 400, "JSON")),
    case("inputs-object", Hostile("POST", INFER, js({"inputs": {"name": "input"}}), 400,
                                  "'inputs' must be a non-empty list")),
    case("name-of-20k", Hostile("GET", "/v2/models/" + "m" * 20_000, None, "4xx", None)),
    case("model-limit-via-server-app", Hostile("POST", "/v2/models/fr%61gile/infer",
                                               fragile_padded(SMALL_BODY_LIMIT + 1), 413,
                                               f"exceeds {SMALL_BODY_LIMIT} bytes")),
]
# fmt: on


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_request(served: ServeCluster, hostile: Hostile) -> None:
    sent = Sent(hostile.method, hostile.path, hostile.body, hostile.headers)
    answer = send(served, sent)
    if hostile.status == "4xx":
        assert 400 <= answer.status < 500, f"{sent!r} -> {answer}"
    else:
        assert answer.status == hostile.status, f"{sent!r} -> {answer}"
    if hostile.says is not None:
        assert hostile.says in answer.error(), answer
    check_answer(sent, answer)


# --- and afterwards ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_still_serving_after_the_fuzz(
    served: ServeCluster, example_models: Path, version: str
) -> None:
    """Runs last in this module: every model answers a known-good request correctly."""
    rows = np.array(IRIS_ROWS, np.float32)
    session = onnxruntime.InferenceSession(
        str(example_models / "iris-onnx" / version / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    expected = session.run(["label"], {"input": rows})[0].tolist()
    request = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4],
                           "data": IRIS_ROWS}], "outputs": [{"name": "label"}]}  # fmt: skip
    answer = send(served, Sent("POST", f"/v2/models/iris/versions/{version}/infer", js(request)))
    assert answer.status == 200, answer
    assert json.loads(answer.body)["outputs"][0]["data"] == expected
    fragile = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}
    answer = send(served, Sent("POST", "/v2/models/fragile/infer", js(fragile)))
    assert (answer.status, json.loads(answer.body)["outputs"][0]["data"]) == (200, [2.0, 4.0])
