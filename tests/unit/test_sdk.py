"""The SDK for python predictors, through the real python runtime and an in-process data plane.

Parameters and optional inputs are checked as a client meets them (V2 request bodies in, V2
replies or BadRequest out); every example in the SDK's docstring and in the README runs here;
and the data plane's thread pool is shown to keep the event loop free, to bound how many calls
run at once, and to await async predictors on the loop. Overlap is proven by barriers and
events the calls wait on, never by timing them.
"""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import orjson
import pytest
import tritonclient.http as triton_http
from aiohttp import web

from rayship.spec import PythonOptions, RuntimeSpec
from rayship_predictors import sdk
from rayship_predictors.dataplane import VersionDataPlane, check_parameters
from rayship_predictors.errors import BadRequest, ModelFailure
from rayship_predictors.runtimes.base import Parameters, TensorSpec
from rayship_predictors.runtimes.errors import RuntimeLoadError
from rayship_predictors.runtimes.loader import load_runtime
from rayship_predictors.settings import PredictorSettings
from rayship_predictors.v2 import codec
from rayship_predictors.v2.codec import JSON

README = Path(__file__).resolve().parents[2] / "README.md"
WAIT_S = 30  # how long a call waits for a partner before the test fails; never reached if right

# A predictor that reports what `predict` received, as JSON in one BYTES output.
SEEN = """
import json
import numpy as np
from rayship_predictors.sdk import Parameter, Predictor, Tensor


def seen(inputs, **context):
    arrays = {{name: array.tolist() for name, array in inputs.items()}}
    report = json.dumps({{"inputs": arrays, **context}}).encode()
    return {{"seen": np.array([report], dtype=object)}}


class Model(Predictor):
    inputs = (
        Tensor("x", "FP32", (-1,)),
        Tensor("threshold", "FP32", (1,), optional=True, default=[0.5]),
        Tensor("mask", "BOOL", (-1,), optional=True),
    )
    outputs = (Tensor("seen", "BYTES", (1,)),)
    parameters = (
        Parameter("top_k", int, 5),
        Parameter("scale", float, 1.0),
        Parameter("tags", list, []),
    )

    {predict}
"""
SIGNATURES = {
    "inputs": ("def predict(self, inputs):\n        return seen(inputs)", set()),
    "parameters": (
        "def predict(self, inputs, parameters):\n"
        "        return seen(inputs, parameters=parameters)",
        {"parameters"},
    ),
    "input_parameters": (
        "def predict(self, inputs, *, input_parameters):\n"
        "        return seen(inputs, input_parameters=input_parameters)",
        {"input_parameters"},
    ),
    "kwargs": (
        "def predict(self, inputs, **context):\n        return seen(inputs, **context)",
        {
            "parameters",
            "input_parameters",
        },
    ),
    "async": (
        "async def predict(self, inputs, parameters, input_parameters):\n"
        "        return seen(inputs, parameters=parameters, input_parameters=input_parameters)",
        {"parameters", "input_parameters"},
    ),
}
DEFAULTS = {"top_k": 5, "scale": 1.0, "tags": []}


def load(folder: Path, source: str, cls: str = "Model") -> Any:
    """The python runtime for `source` written as `folder/predictor.py`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictor.py").write_text(textwrap.dedent(source))
    model = RuntimeSpec(format="python", python=PythonOptions(predictor_class=f"predictor:{cls}"))
    return load_runtime(model, folder, use_gpu=False)


def plane_of(runtime: Any, threads: int = 2) -> VersionDataPlane:
    return VersionDataPlane("m", "1", runtime, threads)


def seen_plane(tmp_path: Path, signature: str = "parameters") -> VersionDataPlane:
    return plane_of(load(tmp_path / signature, SEEN.format(predict=SIGNATURES[signature][0])))


def call(plane: VersionDataPlane, document: dict[str, Any]) -> dict[str, Any]:
    """The JSON reply to a JSON request body."""
    reply = asyncio.run(plane.infer(orjson.dumps(document), None))
    result: dict[str, Any] = orjson.loads(reply.body)
    return result


def tensor(name: str, datatype: str, data: list[Any], **fields: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": [len(data)], "data": data, **fields}


def seen(reply: dict[str, Any]) -> dict[str, Any]:
    (output,) = reply["outputs"]
    result: dict[str, Any] = json.loads(output["data"][0])
    return result


X = tensor("x", "FP32", [1, 2])


# --- parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize("signature", sorted(SIGNATURES))
def test_predict_gets_what_its_signature_names(tmp_path: Path, signature: str) -> None:
    plane = seen_plane(tmp_path, signature)

    got = seen(
        call(
            plane,
            {
                "parameters": {"top_k": 2, "note": "as sent"},
                "inputs": [{**X, "parameters": {"unit": "cm"}}],
            },
        )
    )

    names = SIGNATURES[signature][1]
    assert set(got) - {"inputs"} == names
    if "parameters" in names:
        assert got["parameters"] == {**DEFAULTS, "top_k": 2, "note": "as sent"}
    if "input_parameters" in names:
        assert got["input_parameters"] == {"x": {"unit": "cm"}}


def test_declared_parameters_get_their_defaults(tmp_path: Path) -> None:
    got = seen(call(seen_plane(tmp_path), {"inputs": [X]}))

    assert got["parameters"] == DEFAULTS


def test_a_float_parameter_takes_a_json_integer_as_a_float(tmp_path: Path) -> None:
    plane = seen_plane(tmp_path)

    got = seen(call(plane, {"parameters": {"scale": 2}, "inputs": [X]}))

    assert got["parameters"]["scale"] == 2.0
    assert isinstance(got["parameters"]["scale"], float)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("top_k", "five", "parameter 'top_k': expected an integer, got \"five\""),
        ("top_k", 2.5, "parameter 'top_k': expected an integer, got 2.5"),
        ("top_k", True, "parameter 'top_k': expected an integer, got true"),
        ("top_k", None, "parameter 'top_k': expected an integer, got null"),
        ("scale", "1", "parameter 'scale': expected a number, got \"1\""),
        ("tags", {"a": 1}, "parameter 'tags': expected a list, got {\"a\":1}"),
        ("tags", "x" * 100, "parameter 'tags': expected a list, got \"" + "x" * 59 + "..."),
    ],
)
def test_a_wrong_typed_parameter_is_a_bad_request_naming_it(
    tmp_path: Path, name: str, value: JSON, message: str
) -> None:
    plane = seen_plane(tmp_path)

    with pytest.raises(BadRequest) as raised:
        call(plane, {"parameters": {name: value}, "inputs": [X]})

    assert raised.value.status == 400
    assert raised.value.message == message


def test_binary_framing_parameters_stay_with_the_codec(tmp_path: Path) -> None:
    """tritonclient adds `binary_data_output` and `binary_data_size`; they still work, and the
    predictor sees only the parameters the client chose."""
    plane = seen_plane(tmp_path, "kwargs")
    given = triton_http.InferInput("x", [2], "FP32")
    given.set_data_from_numpy(np.array([1, 2], np.float32), binary_data=True)
    body, length = triton_http.InferenceServerClient.generate_request_body(
        [given], parameters={"top_k": 1}
    )

    reply = asyncio.run(plane.infer(body, length))

    assert reply.header_length is not None  # binary_data_output: the answer is binary
    result = triton_http.InferenceServerClient.parse_response_body(
        reply.body, header_length=reply.header_length
    )
    got = json.loads(result.as_numpy("seen")[0])
    assert got["parameters"] == {**DEFAULTS, "top_k": 1}
    assert got["input_parameters"] == {}
    assert got["inputs"]["x"] == [1, 2]


def test_a_required_parameter_must_be_given() -> None:
    specs = [sdk.Parameter("prompt", str)]

    with pytest.raises(BadRequest, match="parameter 'prompt' is required"):
        check_parameters(specs, {})
    assert check_parameters(specs, {"prompt": "hi", "other": 1}) == {"prompt": "hi", "other": 1}


def test_each_request_gets_its_own_copy_of_a_default() -> None:
    specs = [sdk.Parameter("tags", list, ["a"])]

    tags: Any = check_parameters(specs, {})["tags"]
    tags.append("b")

    assert check_parameters(specs, {}) == {"tags": ["a"]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("n", tuple, ()), "parameter 'n': type must be one of bool, int, float, str, list, dict"),
        (("n", int, "5"), "parameter 'n': default '5' is not an integer"),
        (("n", int, True), "parameter 'n': default True is not an integer"),
    ],
)
def test_a_parameter_declaration_is_checked_where_it_is_written(
    args: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        sdk.Parameter(*args)


# --- optional inputs ------------------------------------------------------------------------


def test_a_missing_optional_input_gets_its_default_or_stays_absent(tmp_path: Path) -> None:
    got = seen(call(seen_plane(tmp_path), {"inputs": [X]}))

    assert got["inputs"] == {"x": [1, 2], "threshold": [0.5]}


def test_a_given_optional_input_is_checked_like_any_other(tmp_path: Path) -> None:
    plane = seen_plane(tmp_path)
    mask = tensor("mask", "BOOL", [True, False])

    got = seen(call(plane, {"inputs": [X, tensor("threshold", "FP32", [0.25]), mask]}))

    assert got["inputs"] == {"x": [1, 2], "threshold": [0.25], "mask": [True, False]}
    with pytest.raises(BadRequest, match=r"input 'threshold': shape \[2\] does not fit"):
        call(plane, {"inputs": [X, tensor("threshold", "FP32", [1, 2])]})


def test_a_missing_required_input_is_still_a_bad_request_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="input 'x' of model 'm' is missing"):
        call(seen_plane(tmp_path), {"inputs": [tensor("threshold", "FP32", [0.9])]})


def test_metadata_and_config_mark_optional_inputs(tmp_path: Path) -> None:
    plane = seen_plane(tmp_path)

    assert plane.metadata()["inputs"] == [
        {"name": "x", "datatype": "FP32", "shape": [-1]},
        {"name": "threshold", "datatype": "FP32", "shape": [1], "optional": True},
        {"name": "mask", "datatype": "BOOL", "shape": [-1], "optional": True},
    ]
    config_inputs: Any = plane.triton_config()["input"]
    assert [t.get("optional", False) for t in config_inputs] == [False, True, True]


def test_a_default_is_an_array_of_the_datatype_no_request_can_change() -> None:
    spec = sdk.Tensor("t", "FP16", (-1, 2), optional=True, default=[[1, 2]])

    assert isinstance(spec.default, np.ndarray)
    assert spec.default.dtype == np.float16
    assert not spec.default.flags.writeable
    assert spec == sdk.Tensor("t", "FP16", (-1, 2), optional=True)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"default": [1.0]}, "tensor 't': a default needs optional=True"),
        ({"optional": True, "default": [1.0, 2.0]}, "default of shape [2] does not fit [1]"),
        ({"optional": True, "default": ["x"]}, "tensor 't': default is not FP32"),
    ],
)
def test_a_bad_default_fails_where_the_tensor_is_declared(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        sdk.Tensor("t", "FP32", (1,), **fields)


def test_a_bytes_default_holds_bytes() -> None:
    with pytest.raises(ValueError, match="a BYTES default holds bytes"):
        sdk.Tensor("t", "BYTES", (1,), optional=True, default=["text"])
    assert sdk.Tensor("t", "BYTES", (1,), optional=True, default=[b"text"]).default is not None


def test_outputs_cannot_be_optional(tmp_path: Path) -> None:
    source = SEEN.format(predict="def predict(self, inputs):\n        return seen(inputs)")
    source = source.replace('Tensor("seen", "BYTES", (1,))', 'Tensor("seen", "BYTES", (1,), True)')

    with pytest.raises(RuntimeLoadError, match="output 'seen' is optional; only inputs can be"):
        load(tmp_path / "1", source)


@pytest.mark.parametrize(
    "predict",
    [
        "def predict(self, inputs, options):\n        return {}",
        "def predict(self):\n        return {}",
        "def predict(self, *, inputs):\n        return {}",
    ],
)
def test_a_predict_that_cannot_be_called_fails_the_load(tmp_path: Path, predict: str) -> None:
    with pytest.raises(RuntimeLoadError, match="it must take the inputs first, then only"):
        load(tmp_path / "1", SEEN.format(predict=predict))


def test_declared_parameters_must_be_sdk_parameters(tmp_path: Path) -> None:
    source = SEEN.format(predict="def predict(self, inputs):\n        return seen(inputs)")

    with pytest.raises(RuntimeLoadError, match=r"parameters must hold sdk\.Parameter values"):
        load(tmp_path / "1", source.replace('Parameter("top_k", int, 5)', '("top_k", int, 5)'))


def test_an_async_predictor_also_answers_a_synchronous_infer(tmp_path: Path) -> None:
    runtime = load(tmp_path / "1", SEEN.format(predict=SIGNATURES["async"][0]))

    result = runtime.infer({"x": np.ones(1, np.float32)}, Parameters({"a": 1}, {"x": {"b": 2}}))

    got = json.loads(result["seen"][0])
    assert (got["parameters"], got["input_parameters"]) == ({"a": 1}, {"x": {"b": 2}})


# --- the examples in the docs ---------------------------------------------------------------


def docstring_examples() -> Iterator[str]:
    """The indented code blocks of the SDK's module docstring."""
    doc = sdk.__doc__ or ""
    for block in re.findall(r"\n\n((?:    .*\n|\n)+)", doc):
        yield textwrap.dedent(block)


def readme_examples() -> Iterator[str]:
    section = README.read_text().partition("### Writing a Python predictor")[2]
    section = section.partition("\n## ")[0]
    yield from re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def example(source: str, tmp_path: Path) -> VersionDataPlane:
    """A data plane serving the example's class."""
    (cls,) = re.findall(r"class (\w+)\(Predictor\)", source)
    return plane_of(load(tmp_path / cls, source, cls))


def outputs(plane: VersionDataPlane, document: dict[str, Any]) -> dict[str, Any]:
    """The `data` of each output, by name, that `plane` answers `document` with."""
    return {output["name"]: output["data"] for output in call(plane, document)["outputs"]}


def check_upper(source: str, tmp_path: Path) -> None:
    text = tensor("text", "BYTES", ["ab", "Cd"])
    assert outputs(example(source, tmp_path), {"inputs": [text]}) == {"text": ["AB", "CD"]}


def check_embed(source: str, tmp_path: Path) -> None:
    """Against a real HTTP endpoint on loopback, which the example reads from endpoint.txt."""

    async def embed(request: web.Request) -> web.Response:
        texts = (await request.json())["texts"]
        return web.json_response({"vectors": [[len(t), 1.5] for t in texts]})

    async def scenario() -> dict[str, Any]:
        app = web.Application()
        app.router.add_post("/embed", embed)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            host, port = runner.addresses[0][:2]
            folder = tmp_path / "Embed"
            folder.mkdir()
            (folder / "endpoint.txt").write_text(f"http://{host}:{port}/embed\n")
            plane = example(source, tmp_path)
            document = {"inputs": [tensor("text", "BYTES", ["abc", "de"])]}
            reply = await plane.infer(orjson.dumps(document), None)
            result: dict[str, Any] = orjson.loads(reply.body)
            return result
        finally:
            await runner.cleanup()

    (output,) = asyncio.run(scenario())["outputs"]
    assert (output["shape"], output["data"]) == ([2, 2], [3, 1.5, 2, 1.5])


def check_top_k(source: str, tmp_path: Path) -> None:
    plane = example(source, tmp_path)
    logits = {"name": "logits", "datatype": "FP32", "shape": [1, 4], "data": [1, 4, 2, 3]}
    assert outputs(plane, {"inputs": [logits]})["indices"] == [1, 3, 2]
    got = outputs(plane, {"parameters": {"top_k": 1}, "inputs": [logits]})
    assert got["indices"] == [1]
    assert got["scores"][0] > 0.5
    with pytest.raises(BadRequest) as raised:
        call(plane, {"parameters": {"top_k": "five"}, "inputs": [logits]})
    assert f"`{raised.value.message}`" in (sdk.__doc__ or "")


def check_threshold(source: str, tmp_path: Path) -> None:
    plane = example(source, tmp_path)
    scores = tensor("scores", "FP32", [0.2, 0.7])
    assert outputs(plane, {"inputs": [scores]}) == {"hits": [False, True]}
    low = tensor("threshold", "FP32", [0.1])
    mask = tensor("mask", "BOOL", [True, False])
    assert outputs(plane, {"inputs": [scores, low, mask]}) == {"hits": [True, False]}


def check_scorer(source: str, tmp_path: Path) -> None:
    plane = example(source, tmp_path)
    features = {"name": "features", "datatype": "FP32", "shape": [2, 4], "data": [1] * 4 + [0] * 4}
    got = outputs(plane, {"inputs": [features]})
    assert got == {"score": [1.0, 0.0], "passed": [True, False]}
    weights = tensor("weights", "FP32", [0, 0, 0, 0.5])
    got = outputs(plane, {"parameters": {"cutoff": 0.4}, "inputs": [features, weights]})
    assert got == {"score": [0.5, 0.0], "passed": [True, False]}
    with pytest.raises(BadRequest) as raised:
        call(plane, {"parameters": {"cutoff": "high"}, "inputs": [features]})
    assert f"`{raised.value.message}`" in README.read_text()


CHECKS = {
    "Upper": check_upper,
    "Embed": check_embed,
    "TopK": check_top_k,
    "Threshold": check_threshold,
    "Scorer": check_scorer,
}


@pytest.mark.parametrize(
    "source",
    [*docstring_examples(), *readme_examples()],
    ids=lambda source: re.findall(r"class (\w+)", source)[0],
)
def test_every_documented_example_runs(source: str, tmp_path: Path) -> None:
    (name,) = re.findall(r"class (\w+)\(Predictor\)", source)
    CHECKS[name](source, tmp_path)


def test_the_docs_show_every_style() -> None:
    """Synchronous, async, with parameters, with optional inputs: each has its example."""
    examples = "\n".join(docstring_examples())
    assert "    def predict(self, inputs):" in examples
    assert "async def predict(" in examples
    assert "def predict(self, inputs, parameters):" in examples
    assert "optional=True" in examples
    assert set(sdk.__all__) == {"JSON", "BadRequest", "Parameter", "Predictor", "Tensor"}


# --- predict off the event loop -------------------------------------------------------------


class Probe:
    """A runtime whose every call first runs `hook(inputs, parameters)`, then echoes x."""

    platform = "probe"
    inputs: ClassVar = [TensorSpec("x", "FP32", (-1,))]
    outputs: ClassVar = [TensorSpec("y", "FP32", (-1,))]

    def __init__(self, hook: Any = None) -> None:
        self.hook = hook
        self.threads: list[int] = []
        self.calls: list[tuple[int, dict[str, JSON]]] = []

    def infer(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, JSON]
    ) -> dict[str, np.ndarray]:
        self.threads.append(threading.get_ident())
        self.calls.append((len(inputs["x"]), dict(parameters)))
        if self.hook is not None:
            self.hook(inputs, parameters)
        return {"y": inputs["x"]}


def body(*values: float, **parameters: JSON) -> bytes:
    return orjson.dumps({"parameters": parameters, "inputs": [tensor("x", "FP32", list(values))]})


def test_calls_run_side_by_side_in_the_pool() -> None:
    """Four calls wait for each other at a barrier: only four threads at once get them past."""
    barrier = threading.Barrier(4, timeout=WAIT_S)
    plane = plane_of(Probe(lambda inputs, parameters: barrier.wait()), threads=4)

    async def four() -> list[Any]:
        return await asyncio.gather(*(plane.infer(body(i), None) for i in range(4)))

    replies = asyncio.run(four())

    assert [orjson.loads(r.body)["outputs"][0]["data"] for r in replies] == [[0], [1], [2], [3]]


def test_a_slow_call_leaves_the_loop_free_for_a_fast_one() -> None:
    """The slow call waits until the fast one, on the same data plane, has been answered."""
    fast_answered = threading.Event()
    released: list[bool] = []

    slow_started = threading.Event()

    def hold(inputs: Mapping[str, np.ndarray], parameters: Mapping[str, JSON]) -> None:
        if parameters.get("slow"):
            slow_started.set()
            released.append(fast_answered.wait(WAIT_S))

    plane = plane_of(Probe(hold), threads=2)

    async def scenario() -> None:
        slow = asyncio.ensure_future(plane.infer(body(1, slow=True), None))
        await asyncio.to_thread(slow_started.wait, WAIT_S)
        await plane.infer(body(2), None)
        fast_answered.set()
        await slow

    asyncio.run(scenario())

    assert released == [True]


def test_no_more_calls_run_at_once_than_the_pool_has_threads() -> None:
    """Pairs meet at a barrier (so two do run at once); a count of those inside never passes 2.

    The pause before the barrier gives a pool with more threads time to let a third call in.
    """
    barrier = threading.Barrier(2, timeout=WAIT_S)
    lock = threading.Lock()
    inside = [0]
    peak = [0]

    def crowd(inputs: Mapping[str, np.ndarray], parameters: Mapping[str, JSON]) -> None:
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.01)
        barrier.wait()
        with lock:
            inside[0] -= 1

    plane = plane_of(Probe(crowd), threads=2)

    async def eight() -> None:
        await asyncio.gather(*(plane.infer(body(i), None) for i in range(8)))

    asyncio.run(eight())

    assert peak[0] == 2


def test_zero_threads_run_the_call_on_the_event_loop() -> None:
    probe = Probe()

    async def one() -> int:
        await plane_of(probe, threads=0).infer(body(1), None)
        return threading.get_ident()

    assert probe.threads == [asyncio.run(one())]


def test_an_async_runtime_is_awaited_on_the_loop_not_in_the_pool() -> None:
    """Eight async calls meet at an asyncio barrier, with a pool of one thread."""
    barrier = asyncio.Barrier(8)

    class AsyncProbe(Probe):
        async def infer_async(
            self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, JSON]
        ) -> dict[str, np.ndarray]:
            self.threads.append(threading.get_ident())
            async with asyncio.timeout(WAIT_S):
                await barrier.wait()
            return {"y": inputs["x"] * 2}

    probe = AsyncProbe()
    plane = plane_of(probe, threads=1)

    async def eight() -> tuple[list[Any], int]:
        replies = await asyncio.gather(*(plane.infer(body(i), None) for i in range(8)))
        return replies, threading.get_ident()

    replies, loop_thread = asyncio.run(eight())

    assert probe.threads == [loop_thread] * 8
    assert [orjson.loads(r.body)["outputs"][0]["data"] for r in replies] == [
        [2 * i] for i in range(8)
    ]


def test_a_runtime_exception_is_still_a_model_failure() -> None:
    def fail(inputs: Mapping[str, np.ndarray], parameters: Mapping[str, JSON]) -> None:
        raise ZeroDivisionError("bad row")

    with pytest.raises(ModelFailure, match="model 'm' version '1' failed: ZeroDivisionError"):
        asyncio.run(plane_of(Probe(fail)).infer(body(1), None))


def decoded(plane: VersionDataPlane, *bodies: bytes) -> list[codec.InferRequest]:
    return [plane.decode(b, None) for b in bodies]


def test_a_batch_shares_one_call_only_when_parameters_agree() -> None:
    probe = Probe()
    plane = plane_of(probe)

    same = decoded(plane, body(1, k=1), body(2, 3, k=1))
    outputs = asyncio.run(plane.run_batch(same))
    assert probe.calls == [(3, {"k": 1})]
    assert [o["y"].tolist() for o in outputs] == [[1], [2, 3]]

    probe.calls.clear()
    mixed = decoded(plane, body(1, k=1), body(2, k=2))
    outputs = asyncio.run(plane.run_batch(mixed))
    assert sorted(probe.calls, key=str) == [(1, {"k": 1}), (1, {"k": 2})]
    assert [o["y"].tolist() for o in outputs] == [[1], [2]]


def test_one_bad_request_fails_only_itself_in_a_batch() -> None:
    def refuse_negatives(inputs: Mapping[str, np.ndarray], parameters: Mapping[str, JSON]) -> None:
        negative = np.flatnonzero(inputs["x"] < 0)
        if negative.size:
            raise BadRequest(f"x[{negative[0]}] is negative")

    probe = Probe(refuse_negatives)
    plane = plane_of(probe)

    outcomes = asyncio.run(plane.run_batch(decoded(plane, body(1), body(2, -3), body(4))))

    rows = [n for n, _ in probe.calls]
    assert rows[0] == 4  # stacked first, then each request on its own
    assert sorted(rows[1:]) == [1, 1, 2]
    assert outcomes[0]["y"].tolist() == [1]
    assert isinstance(outcomes[1], BadRequest)
    assert outcomes[1].message == "x[1] is negative"  # its own index, not the batch's
    assert outcomes[2]["y"].tolist() == [4]


def test_predict_threads_come_from_the_environment() -> None:
    assert PredictorSettings.from_env({}).predict_threads == 4
    assert PredictorSettings.from_env({"RAYSHIP_PREDICT_THREADS": "0"}).predict_threads == 0
    with pytest.raises(ValueError, match="RAYSHIP_PREDICT_THREADS must be 0 or more, got -1"):
        PredictorSettings.from_env({"RAYSHIP_PREDICT_THREADS": "-1"})
