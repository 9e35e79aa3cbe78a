"""Model folders built for tests (no downloads): the examples' builders plus test-only models.

The example builders live in examples/build_models.py, a script, not a package: examples/ goes
on sys.path and tests use it as `support.models.build_models`. Never the repository root: its
operator/ folder would shadow the standard library's `operator` module.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rayship import manifest
from rayship.serveconfig import LiveVersion, ModelRouting
from rayship.storage import ModelStore

sys.path.append(str(Path(__file__).resolve().parents[2] / "examples"))
import build_models

V2_DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
)  # fmt: skip

ECHO_PREDICTOR = '''
import numpy as np
from rayship_predictors.sdk import Predictor, Tensor

DATATYPES = {datatypes!r}

class Echo(Predictor):
    """Returns every input as the output of the same datatype: a conformance probe."""

    inputs = tuple(Tensor(f"in_{{t}}", t, (-1, -1)) for t in DATATYPES)
    outputs = tuple(Tensor(f"out_{{t}}", t, (-1, -1)) for t in DATATYPES)

    def predict(self, inputs):
        return {{f"out_{{t}}": inputs[f"in_{{t}}"] for t in DATATYPES}}
'''

FAILING_PREDICTOR = '''
import numpy as np
from rayship_predictors.sdk import Predictor, Tensor

class Fragile(Predictor):
    """Fails on negative input, the way a genuine model bug would."""

    inputs = (Tensor("x", "FP32", (-1,)),)
    outputs = (Tensor("y", "FP32", (-1,)),)

    def predict(self, inputs):
        if (inputs["x"] < 0).any():
            raise ZeroDivisionError("negative input reached a division")
        return {"y": inputs["x"] * 2}
'''

# Echoes x as y: for tests and benches that move bytes, not compute.
IDENTITY_PREDICTOR = """
from rayship_predictors.sdk import Predictor, Tensor


class Identity(Predictor):
    inputs = (Tensor("x", "FP32", (-1,)),)
    outputs = (Tensor("y", "FP32", (-1,)),)

    def predict(self, inputs):
        return {"y": inputs["x"]}
"""

BATCH_PROBE_PREDICTOR = '''
import numpy as np
from rayship_predictors.sdk import Predictor, Tensor

class BatchProbe(Predictor):
    """Doubles x and reports how many rows the call that served it held."""

    inputs = (Tensor("x", "FP32", (-1, 2)),)
    outputs = (Tensor("y", "FP32", (-1, 2)), Tensor("rows", "INT64", (-1,)))

    def predict(self, inputs):
        x = inputs["x"]
        return {"y": x * 2, "rows": np.full(len(x), len(x), dtype=np.int64)}
'''


ENVIRONMENT_REQUIREMENT = "pyjokes==0.8.3"  # pure Python, tiny, absent from the test environment

ENVIRONMENT_PREDICTOR = '''
import json
import os
from importlib.metadata import version

import numpy as np
import pyjokes

from rayship_predictors.sdk import Predictor, Tensor


class Reporter(Predictor):
    """Answers with what spec.runtimeEnv gave it: pyjokes, which only its `pip` installs,
    and the variables named in `names`."""

    inputs = (Tensor("names", "BYTES", (-1,)),)
    outputs = (Tensor("report", "BYTES", (-1,)),)

    def predict(self, inputs):
        report = {"pyjokes": version("pyjokes"), "joke": bool(pyjokes.get_joke())}
        report.update({n.decode(): os.environ.get(n.decode()) for n in inputs["names"]})
        return {"report": np.array([json.dumps(report).encode()], dtype=object)}
'''


def environment_report(
    base_url: str, model: str, names: list[str], timeout_s: float = 60
) -> dict[str, Any]:
    """Ask an `ENVIRONMENT_PREDICTOR` model for pyjokes' version and the variables `names`.

    Asked again until it answers or `timeout_s` passes: the ingress may route a new
    application a moment after Serve reports it running.
    """
    body = {"inputs": [{"name": "names", "datatype": "BYTES", "shape": [len(names)],
                        "data": names}]}  # fmt: skip
    url = f"{base_url}/v2/models/{model}/infer"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, json.dumps(body).encode(), timeout=30) as response:
                answer = json.loads(response.read())
            break
        except urllib.error.HTTPError as error:
            failure = f"{model}: {error}: {error.read().decode()}"
        except OSError as error:
            failure = f"{model}: {error}"
        if time.monotonic() > deadline:
            raise AssertionError(failure)
        time.sleep(0.5)
    report: dict[str, Any] = json.loads(answer["outputs"][0]["data"][0])
    return report


def python_model(root: Path, name: str, source: str, module: str = "predictor") -> Path:
    """A one-version python-runtime model folder `root/name/1/<module>.py`."""
    folder = root / name / "1"
    folder.mkdir(parents=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    return root / name


def model_deployment(name: str, spec: dict[str, object]) -> manifest.ModelDeployment:
    """A validated ModelDeployment named `name` with the given spec."""
    return manifest.parse(
        {
            "apiVersion": "serving.rayship.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def route(
    md: manifest.ModelDeployment,
    traffic: dict[str, int],
    live: list[str] | None = None,
    environment: dict[str, str] | None = None,
) -> ModelRouting:
    """Routing for `md` with the given live versions (digests from storage) and split."""
    store = ModelStore(md.spec.storage)
    versions = live if live is not None else list(traffic)
    resolved = [store.resolve(md.spec.model.storage_uri, v) for v in versions]
    return ModelRouting(
        md,
        tuple(LiveVersion(r.version, r.digest) for r in resolved),
        tuple(traffic.items()),
        environment=environment or {},
    )


@pytest.fixture(scope="session")
def example_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every example model, built once per session into a temporary folder."""
    root = tmp_path_factory.mktemp("example-models")
    build_models.build_all(root)
    return root


@pytest.fixture(scope="session")
def echo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A python model echoing one input of every V2 datatype."""
    return python_model(
        tmp_path_factory.mktemp("echo"), "echo", ECHO_PREDICTOR.format(datatypes=V2_DATATYPES)
    )
