"""The kserve runtime in-process: KServe custom predictors (tests/support/kserve_models.py) loaded
from a version folder and called as the data plane calls them, with `infer_async` on an event
loop. Answers must be what the predictor computes, client mistakes a BadRequest, model mistakes
a ModelFailure naming the model, and load failures a RuntimeLoadError naming class and folder."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rayship import manifest
from rayship.spec import KserveOptions, RuntimeSpec, TensorDecl
from rayship_predictors.errors import BadRequest, ModelFailure
from rayship_predictors.runtimes.base import Parameters, TensorSpec
from rayship_predictors.runtimes.errors import RuntimeLoadError
from rayship_predictors.runtimes.kserve import KserveRuntime
from rayship_predictors.runtimes.loader import load_runtime
from support.kserve_models import (
    AVERAGER,
    AVERAGER_SPEC,
    SCALER,
    SCALER_SPEC,
    SHOUTER,
    SHOUTER_SPEC,
    kserve_version,
)
from support.models import build_models, model_deployment

pytestmark = pytest.mark.kserve_inprocess

X = np.array([0.5, 1.0, 4.0], dtype=np.float32)


def runtime_spec(fields: dict[str, Any]) -> RuntimeSpec:
    """`spec.model` fields as they reach a replica: validated by the CRD, then typed."""
    deployment = model_deployment(
        "m", {"model": {"format": "kserve", "storageUri": "s3://models/m", **fields}}
    )
    return deployment.spec.model.runtime


def load(folder: Path, fields: dict[str, Any], name: str = "scaler") -> KserveRuntime:
    runtime = load_runtime(runtime_spec(fields), folder, use_gpu=False, model_name=name)
    assert isinstance(runtime, KserveRuntime)
    return runtime


def infer(
    runtime: KserveRuntime, inputs: dict[str, np.ndarray], parameters: Any = None
) -> dict[str, np.ndarray]:
    return asyncio.run(
        runtime.infer_async(inputs, Parameters() if parameters is None else parameters)
    )


@pytest.fixture
def scaler(tmp_path: Path) -> KserveRuntime:
    return load(kserve_version(tmp_path / "1", SCALER, **{"factor.txt": "3"}), SCALER_SPEC)


# --- the predictor as KServe's documentation writes it --------------------------------------


def test_docs_style_predictor_answers_with_its_outputs(scaler: KserveRuntime) -> None:
    result = infer(scaler, {"x": X})

    assert scaler.platform == "kserve"
    assert scaler.inputs == [TensorSpec("x", "FP32", (-1,))]
    assert [spec.name for spec in scaler.outputs] == ["y", "served_by"]
    assert result["y"].dtype == np.float32
    np.testing.assert_array_equal(result["y"], X * 3)
    # made with the model name, loaded once; BYTES answers travel as the model gave them
    assert list(result["served_by"]) == ["scaler", "1"]


def test_request_parameters_reach_the_model(scaler: KserveRuntime) -> None:
    result = infer(scaler, {"x": X}, Parameters({"scale": 10}))

    np.testing.assert_array_equal(result["y"], X * 10)


def test_the_sync_entry_gives_the_same_answer(scaler: KserveRuntime) -> None:
    result = scaler.infer({"x": X}, Parameters({"scale": 2}))

    np.testing.assert_array_equal(result["y"], X * 2)


def test_invalid_input_is_a_bad_request_naming_model_and_reason(scaler: KserveRuntime) -> None:
    with pytest.raises(BadRequest) as refused:
        infer(scaler, {"x": np.array([-1.0], dtype=np.float32)})

    assert refused.value.status == 400
    assert refused.value.message == "model 'scaler' refused the input: x must not be negative"


def test_a_model_exception_reaches_the_data_plane_as_it_is(scaler: KserveRuntime) -> None:
    """The data plane turns it into a 500 naming model and version, and logs its traceback."""
    with pytest.raises(ZeroDivisionError, match="13 reached a division"):
        infer(scaler, {"x": np.array([13.0], dtype=np.float32)})


def test_a_class_that_loads_itself_is_not_loaded_again(tmp_path: Path) -> None:
    """KServe's documented pattern: `self.load()` in the constructor, and no second load."""
    source = SCALER.replace("self.loads = 0", "self.loads = 0\n        self.load()")
    folder = kserve_version(tmp_path / "1", source, **{"factor.txt": "1"})

    result = infer(load(folder, SCALER_SPEC), {"x": X})

    assert list(result["served_by"]) == ["scaler", "1"]


def test_versions_in_one_process_each_get_their_own_class(tmp_path: Path) -> None:
    runtimes = [
        load(kserve_version(tmp_path / v, SCALER, **{"factor.txt": v}), SCALER_SPEC)
        for v in ("2", "5")
    ]

    answers = [infer(r, {"x": X})["y"] for r in runtimes]

    np.testing.assert_array_equal(answers, [X * 2, X * 5])
    assert "predictor" not in sys.modules


# --- async handlers, BYTES, dict answers, KServe's metadata hooks ---------------------------


def test_async_load_preprocess_and_predict(tmp_path: Path) -> None:
    runtime = load(kserve_version(tmp_path / "1", SHOUTER), SHOUTER_SPEC, name="shouter")
    text = np.array([b"hi", "\u00e9".encode(), b"\xff"], dtype=object)

    result = infer(runtime, {"text": text})

    # str for UTF-8 (as KServe decodes BYTES), bytes where KServe would have failed
    assert list(result["text"]) == [b"HI!", "\u00c9!".encode(), b"\xff!"]


def test_a_dict_answer_and_tensors_from_get_input_types(tmp_path: Path) -> None:
    runtime = load(kserve_version(tmp_path / "1", AVERAGER), AVERAGER_SPEC, name="averager")
    rows = np.array([[1.0, 2.0], [1.0, 1.0 / 3.0]])

    result = infer(runtime, {"rows": rows})

    assert runtime.inputs == [TensorSpec("rows", "FP64", (-1, -1))]
    assert runtime.outputs == [TensorSpec("mean", "FP64", (-1,))]
    np.testing.assert_array_equal(result["mean"], [1.5, 0.667])  # the sync postprocess rounded


def test_spec_declarations_win_over_get_input_types(tmp_path: Path) -> None:
    fields = {**AVERAGER_SPEC, "inputs": [{"name": "rows", "datatype": "FP64", "shape": [1, 2]}]}

    runtime = load(kserve_version(tmp_path / "1", AVERAGER), fields)

    assert runtime.inputs == [TensorSpec("rows", "FP64", (1, 2))]
    assert runtime.outputs == [TensorSpec("mean", "FP64", (-1,))]


def test_each_inputs_parameters_reach_its_infer_input(tmp_path: Path) -> None:
    source = SCALER.replace(
        'get("scale", self.factor)', 'get("scale", payload.inputs[0].parameters["scale"])'
    )
    runtime = load(kserve_version(tmp_path / "1", source, **{"factor.txt": "1"}), SCALER_SPEC)

    result = infer(runtime, {"x": X}, Parameters({}, inputs={"x": {"scale": 7}}))

    np.testing.assert_array_equal(result["y"], X * 7)


# --- answers that do not fit the declared outputs --------------------------------------------


def answering(tmp_path: Path, answer: str) -> KserveRuntime:
    """A model whose predict returns the Python expression `answer` (x is the input array)."""
    source = f"""
        import numpy as np
        from kserve import Model
        from kserve.protocol.infer_type import InferOutput, InferResponse

        class Answer(Model):
            def predict(self, payload, headers=None):
                x = payload.inputs[0].as_numpy()
                return {answer}
    """
    fields = {**SCALER_SPEC, "kserve": {"modelClass": "predictor:Answer"}}
    fields["outputs"] = [{"name": "y", "datatype": "FP32", "shape": [-1]}]
    return load(kserve_version(tmp_path / "1", source), fields, name="answer")


def y_output(name: str = "y", datatype: str = "FP32", shape: str = "list(x.shape)") -> str:
    return f'InferOutput(name="{name}", shape={shape}, datatype="{datatype}", data=x)'


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("x", "model 'answer' returned ndarray, not an InferResponse or a V2 response dict"),
        ('{"predictions": x.tolist()}', "returned a dict that is not a V2 response"),
        (
            f'InferResponse("1", "answer", [{y_output()}, {y_output("z")}])',
            "model 'answer' returned outputs ['z'] it does not declare; its outputs are ['y']",
        ),
        ('InferResponse("1", "answer", [])', "model 'answer' returned no ['y']"),
        (
            f'InferResponse("1", "answer", [{y_output(shape="[7]")}])',
            "model 'answer': output 'y' does not fit its datatype FP32 and shape [7]",
        ),
        (
            f'InferResponse("1", "answer", [{y_output(datatype="BYTES")}])',
            "model 'answer': output 'y' is not FP32",
        ),
    ],
)
def test_answers_that_do_not_fit_are_model_failures(
    tmp_path: Path, answer: str, message: str
) -> None:
    runtime = answering(tmp_path, answer)
    x = np.array([1.0, 2.0], dtype=np.float32)
    if "BYTES" in answer:
        x = np.array(["a", "b"], dtype=object)  # BYTES the model returns, never FP32

    with pytest.raises(ModelFailure, match=re.escape(message)) as failed:
        infer(runtime, {"x": x})

    assert failed.value.status == 500


def test_other_datatypes_are_cast_to_the_declared_one(tmp_path: Path) -> None:
    runtime = answering(tmp_path, f'InferResponse("1", "answer", [{y_output(datatype="FP64")}])')

    result = infer(runtime, {"x": np.array([1.5], dtype=np.float32)})

    assert result["y"].dtype == np.float32
    assert list(result["y"]) == [1.5]


# --- load failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "fields", "message"),
    [
        (
            "class Scaler:\n    pass\n",
            SCALER_SPEC,
            "kserve: model class 'predictor:Scaler' is not a kserve.Model subclass",
        ),
        (
            SCALER,  # no factor.txt in the folder
            SCALER_SPEC,
            "kserve: model class 'predictor:Scaler' failed to load {folder}: "
            "FileNotFoundError: [Errno 2] No such file or directory: '{folder}/factor.txt'",
        ),
        (
            SHOUTER.replace("self.ready = True", "self.ready = False"),
            SHOUTER_SPEC,
            "'predictor:Shouter' did not become ready loading {folder}: load() must set "
            "self.ready = True",
        ),
        (
            SHOUTER.replace("self.ready = True", "raise OSError('no GPU')"),
            SHOUTER_SPEC,
            "'predictor:Shouter' failed to load {folder}: OSError: no GPU",
        ),
        (
            AVERAGER,
            {**AVERAGER_SPEC, "kserve": {"modelClass": "predictor:Nope"}},
            "kserve: model class 'predictor:Nope' not found: module 'predictor' ({folder}",
        ),
        (
            SHOUTER,
            {"kserve": {"modelClass": "predictor:Shouter"}},
            "neither spec.model.inputs nor the class's get_input_types() declares inputs; "
            "declare them in spec.model.inputs",
        ),
        (
            AVERAGER.replace('"FP64", "shape": [-1]}', '"FLOAT", "shape": [-1]}'),
            AVERAGER_SPEC,
            "get_output_types() entry {{'name': 'mean', 'datatype': 'FLOAT', 'shape': [-1]}} "
            "must be",
        ),
        (
            AVERAGER.replace("[-1, -1]", "None"),
            AVERAGER_SPEC,
            "get_input_types() entry {{'name': 'rows', 'datatype': 'FP64', 'shape': None}}",
        ),
    ],
)
def test_load_failures_name_class_and_folder(
    tmp_path: Path, source: str, fields: dict[str, Any], message: str
) -> None:
    folder = kserve_version(tmp_path / "1", source)

    with pytest.raises(RuntimeLoadError, match=re.escape(message.format(folder=folder))):
        load(folder, fields)


def test_without_kserve_options_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeLoadError, match=re.escape("spec.model.kserve.modelClass")):
        load_runtime(RuntimeSpec("kserve"), tmp_path, use_gpu=False)


def test_without_kserve_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "kserve", None)  # makes `import kserve` fail
    model = RuntimeSpec("kserve", kserve=KserveOptions("predictor:Scaler"))

    with pytest.raises(RuntimeLoadError, match=re.escape("pip install 'rayship[kserve]'")):
        load_runtime(model, tmp_path, use_gpu=False)


def test_kserve_never_reads_the_replicas_command_line(tmp_path: Path) -> None:
    """kserve parses sys.argv on import; a flag of its own with a bad value would exit."""
    script = (
        "import sys; sys.argv = ['worker', '--http_port', 'not-a-port'];"
        "from rayship_predictors.runtimes.kserve import _import_kserve;"
        "print(_import_kserve().__name__, sys.argv)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "kserve ['worker', '--http_port', 'not-a-port']"


# --- the CRD, the typed spec and the example --------------------------------------------------


def test_format_kserve_requires_the_model_class() -> None:
    with pytest.raises(manifest.ManifestError) as refused:
        model_deployment("m", {"model": {"format": "kserve", "storageUri": "s3://models/m"}})

    assert (
        "spec.model.kserve.modelClass is required when spec.model.format is 'kserve', "
        "got no spec.model.kserve"
    ) in str(refused.value)


def test_the_typed_spec_carries_the_kserve_options_to_the_runtime() -> None:
    runtime = runtime_spec(SCALER_SPEC)

    assert runtime.format == "kserve"
    assert runtime.kserve == KserveOptions(model_class="predictor:Scaler")
    assert runtime.inputs == (TensorDecl("x", "FP32", (-1,)),)


def test_the_example_answers_as_the_iris_onnx_version_1(example_models: Path) -> None:
    """examples/kserve-custom.yaml's predictor computes version 1 of the iris classifier."""
    (deployment,) = manifest.load_file(build_models.EXAMPLES / "kserve-custom.yaml")
    runtime = load_runtime(
        deployment.spec.model.runtime,
        example_models / "kserve-custom" / "1",
        use_gpu=False,
        model_name=deployment.model_name,
    )
    assert isinstance(runtime, KserveRuntime)
    features, _ = build_models.iris_samples(per_class=5, seed=7)

    result = infer(runtime, {"input": features})

    weights, bias = build_models.iris_onnx_weights(1)
    logits = features.astype(np.float64) @ weights + bias
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(result["probabilities"], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(result["label"], logits.argmax(axis=1))
    assert result["label"].dtype == np.int64
    with pytest.raises(BadRequest, match="model 'kserve-custom' refused the input"):
        infer(runtime, {"input": features[:, :3]})
