"""Python predictors on a real Serve: parameters, optional inputs, and predict off the event loop.

Overlap is read from the (start, end) intervals each call records in its reply, never from how
long the test took: calls that must run at once wait for each other at a barrier, and a slow
call waits until a fast one releases it, so if the replica ran them one after the other they
would time out instead of answering.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from support.http import post_json
from support.models import model_deployment, python_model, route
from support.ray_cluster import ServeCluster

pytestmark = pytest.mark.ray

THREADS = 4  # RAYSHIP_PREDICT_THREADS of the synchronous gate's replica
RELEASE_TRIES = 200  # release attempts while the held call has not started yet

GATES = """
import asyncio
import threading
import time

import numpy as np
from rayship_predictors.sdk import Parameter, Predictor, Tensor

WAIT_S = 60


def reply(start, end, ok):
    return {"start": [start], "end": [end], "ok": [ok]}


class Gate(Predictor):
    '''Records when predict ran. meet=N: wait until N calls are inside predict at once.
    hold: wait until a `release` call frees it. release: free a held call; `ok` says one was.'''

    inputs = (Tensor("x", "FP32", (-1,)),)
    outputs = (
        Tensor("start", "FP64", (1,)),
        Tensor("end", "FP64", (1,)),
        Tensor("ok", "BOOL", (1,)),
    )
    parameters = (
        Parameter("meet", int, 0),
        Parameter("hold", bool, False),
        Parameter("release", bool, False),
    )

    def load(self, path):
        self.lock = threading.Lock()
        self.barriers = {}
        self.holding = threading.Event()
        self.released = threading.Event()

    def predict(self, inputs, parameters):
        start = time.monotonic()
        ok = True
        if parameters["meet"]:
            with self.lock:
                barrier = self.barriers.setdefault(
                    parameters["meet"], threading.Barrier(parameters["meet"], timeout=WAIT_S)
                )
            barrier.wait()
        if parameters["hold"]:
            self.released.clear()
            self.holding.set()
            ok = self.released.wait(WAIT_S)
            self.holding.clear()
        end = time.monotonic()
        if parameters["release"]:
            ok = self.holding.is_set()
            if ok:
                self.released.set()
        return reply(start, end, ok)


class AsyncGate(Gate):
    '''The same, as an async predictor waiting on the replica's event loop.'''

    def load(self, path):
        self.barriers = {}
        self.holding = asyncio.Event()
        self.released = asyncio.Event()

    async def predict(self, inputs, parameters):
        start = time.monotonic()
        ok = True
        if parameters["meet"]:
            meet = parameters["meet"]
            barrier = self.barriers.setdefault(meet, asyncio.Barrier(meet))
            async with asyncio.timeout(WAIT_S):
                await barrier.wait()
        if parameters["hold"]:
            self.released.clear()
            self.holding.set()
            try:
                async with asyncio.timeout(WAIT_S):
                    await self.released.wait()
            except TimeoutError:
                ok = False
            self.holding.clear()
        end = time.monotonic()
        if parameters["release"]:
            ok = self.holding.is_set()
            if ok:
                self.released.set()
        return reply(start, end, ok)
"""

REFLECT = """
import json

import numpy as np
from rayship_predictors.sdk import Parameter, Predictor, Tensor


class Reflect(Predictor):
    '''Answers with the parameters and the names of the inputs predict received.'''

    inputs = (
        Tensor("text", "BYTES", (-1,)),
        Tensor("threshold", "FP32", (1,), optional=True, default=[0.5]),
        Tensor("mask", "BOOL", (-1,), optional=True),
    )
    outputs = (Tensor("reflected", "BYTES", (1,)), Tensor("threshold", "FP32", (1,)))
    parameters = (Parameter("top_k", int, 5),)

    def predict(self, inputs, parameters, input_parameters):
        seen = {
            "parameters": parameters,
            "input_parameters": input_parameters,
            "given": sorted(inputs),
        }
        return {
            "reflected": np.array([json.dumps(seen).encode()], dtype=object),
            "threshold": inputs["threshold"],
        }
"""


def python_spec(folder: Path, predictor_class: str) -> dict[str, Any]:
    return {
        "model": {
            "format": "python",
            "storageUri": folder.as_uri(),
            "python": {"predictorClass": f"predictor:{predictor_class}"},
        }
    }


@pytest.fixture(scope="module")
def served(serve_cluster: ServeCluster, tmp_path_factory: Any) -> ServeCluster:
    """The synchronous gate (THREADS threads), the async gate, and the reflecting model."""
    gates = python_model(tmp_path_factory.mktemp("gates"), "gates", GATES)
    reflect = python_model(tmp_path_factory.mktemp("reflect"), "reflect", REFLECT)
    threads = {"RAYSHIP_PREDICT_THREADS": str(THREADS)}
    serve_cluster.deploy(
        [
            route(model_deployment("gate", python_spec(gates, "Gate")), {"1": 100}, None, threads),
            route(model_deployment("gate-async", python_spec(gates, "AsyncGate")), {"1": 100}),
            route(model_deployment("reflect", python_spec(reflect, "Reflect")), {"1": 100}),
        ]
    )
    return serve_cluster


@pytest.fixture
def client(served: ServeCluster) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=served.address, network_timeout=120)


def post(served: ServeCluster, model: str, document: dict[str, Any]) -> tuple[int, Any]:
    """Status and JSON body of a raw JSON inference request, whatever the status."""
    return post_json(f"{served.url}/v2/models/{model}/infer", document)


def gate(served: ServeCluster, model: str, **parameters: Any) -> dict[str, Any]:
    """One gate call's recorded start, end and ok."""
    x = {"name": "x", "datatype": "FP32", "shape": [1], "data": [0]}
    status, body = post(served, model, {"parameters": parameters, "inputs": [x]})
    assert status == 200, body
    return {output["name"]: output["data"][0] for output in body["outputs"]}


# --- predict off the event loop -------------------------------------------------------------


@pytest.mark.parametrize(("model", "calls"), [("gate", THREADS), ("gate-async", 16)])
def test_concurrent_requests_run_at_once(served: ServeCluster, model: str, calls: int) -> None:
    """`calls` requests meet inside predict: a synchronous one on each of the replica's threads,
    async ones (more than the pool has threads) on its event loop."""
    with ThreadPoolExecutor(calls) as pool:
        replies = list(pool.map(lambda _: gate(served, model, meet=calls), range(calls)))

    latest_start = max(reply["start"] for reply in replies)
    earliest_end = min(reply["end"] for reply in replies)
    assert latest_start < earliest_end, "every interval holds the moment the last one started"


@pytest.mark.parametrize("model", ["gate", "gate-async"])
def test_a_slow_request_does_not_delay_a_fast_one(served: ServeCluster, model: str) -> None:
    """The slow call holds until a fast call on the same replica releases it: the fast one
    starts and ends inside the slow one's interval."""
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(gate, served, model, hold=True)
        for _ in range(RELEASE_TRIES):  # until the slow call is inside predict
            fast = gate(served, model, release=True)
            if fast["ok"]:
                break
            time.sleep(0.05)
        held = slow.result()

    assert fast["ok"], "the slow call never held"
    assert held["ok"], "the slow call timed out: the fast one could not run beside it"
    assert held["start"] < fast["start"] <= fast["end"] < held["end"]


# --- parameters and optional inputs ---------------------------------------------------------


def reflected(result: triton.InferResult) -> dict[str, Any]:
    seen: dict[str, Any] = json.loads(result.as_numpy("reflected")[0])
    return seen


def text_input(binary: bool) -> triton.InferInput:
    given = triton.InferInput("text", [2], "BYTES")
    given.set_data_from_numpy(np.array([b"a", b"b"], dtype=object), binary_data=binary)
    return given


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_parameters_reach_predict(
    client: triton.InferenceServerClient, binary: bool
) -> None:
    outputs = [
        triton.InferRequestedOutput(n, binary_data=binary) for n in ("reflected", "threshold")
    ]
    result = client.infer(
        "reflect",
        [text_input(binary)],
        outputs=outputs,
        parameters={"top_k": 3, "note": "kept", "weights": [0.5, {"a": None}]},
    )

    seen = reflected(result)
    assert seen["parameters"] == {"top_k": 3, "note": "kept", "weights": [0.5, {"a": None}]}
    assert seen["input_parameters"] == {}
    assert seen["given"] == ["text", "threshold"]
    assert result.as_numpy("threshold").tolist() == [0.5]


def test_raw_json_parameters_and_optional_inputs_reach_predict(served: ServeCluster) -> None:
    document = {
        "inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"],
             "parameters": {"lang": "en"}},
            {"name": "threshold", "datatype": "FP32", "shape": [1], "data": [0.25]},
            {"name": "mask", "datatype": "BOOL", "shape": [1], "data": [True]},
        ],
    }  # fmt: skip

    status, body = post(served, "reflect", document)

    assert status == 200, body
    answers = {output["name"]: output["data"] for output in body["outputs"]}
    seen = json.loads(answers["reflected"][0])
    assert seen == {
        "parameters": {"top_k": 5},
        "input_parameters": {"text": {"lang": "en"}},
        "given": ["mask", "text", "threshold"],
    }
    assert answers["threshold"] == [0.25]


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (
            {
                "parameters": {"top_k": "five"},
                "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
            },
            "parameter 'top_k': expected an integer, got \"five\"",
        ),
        (
            {"inputs": [{"name": "threshold", "datatype": "FP32", "shape": [1], "data": [0.5]}]},
            "input 'text' of model 'reflect' is missing",
        ),
    ],
    ids=["wrong-typed-parameter", "missing-required-input"],
)
def test_bad_requests_get_a_v2_error_naming_what_is_wrong(
    served: ServeCluster, document: dict[str, Any], error: str
) -> None:
    assert post(served, "reflect", document) == (400, {"error": error})


def test_tritonclient_sees_a_wrong_typed_parameter_as_an_exception(
    client: triton.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException, match="parameter 'top_k': expected an integer"):
        client.infer("reflect", [text_input(True)], parameters={"top_k": 2.5})


def test_metadata_and_config_mark_optional_inputs(client: triton.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("reflect")
    assert metadata["inputs"] == [
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
        {"name": "threshold", "datatype": "FP32", "shape": [1], "optional": True},
        {"name": "mask", "datatype": "BOOL", "shape": [-1], "optional": True},
    ]
    config = client.get_model_config("reflect")
    assert config["input"] == [
        {"name": "text", "data_type": "TYPE_STRING", "dims": [-1]},
        {"name": "threshold", "data_type": "TYPE_FP32", "dims": [1], "optional": True},
        {"name": "mask", "data_type": "TYPE_BOOL", "dims": [-1], "optional": True},
    ]
