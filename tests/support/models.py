"""Model folders built for tests (no downloads): the examples' builders plus test-only models.

The example builders live in examples/build_models.py, which is a script, not a package, so it
is imported by file path; putting the repository root on sys.path would shadow the standard
library's `operator` module with the repo's operator/ folder.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from rayship import manifest
from rayship.serveconfig import LiveVersion, ModelRouting
from rayship.storage import ModelStore

REPO = Path(__file__).resolve().parents[2]

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


def load_examples_builder() -> ModuleType:
    """examples/build_models.py as a module."""
    spec = importlib.util.spec_from_file_location(
        "rayship_example_models", REPO / "examples" / "build_models.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    load_examples_builder().build_all(root)
    return root


@pytest.fixture(scope="session")
def echo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A python model echoing one input of every V2 datatype."""
    return python_model(
        tmp_path_factory.mktemp("echo"), "echo", ECHO_PREDICTOR.format(datatypes=V2_DATATYPES)
    )
