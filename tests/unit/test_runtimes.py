"""The runtimes on the example models that `examples/build_models.py` builds (the
`example_models` fixture): results must equal a reference computed without the runtime, and
every load failure must be a RuntimeLoadError naming the file or class and the version folder."""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from rayship import manifest
from rayship.spec import OnnxOptions, PythonOptions, PytorchOptions, RuntimeSpec, TensorDecl
from rayship.storage.uris import parse_model_uri
from rayship_predictors.dataplane import check_parameters
from rayship_predictors.errors import BadRequest, ModelFailure
from rayship_predictors.runtimes.base import Parameters, TensorSpec
from rayship_predictors.runtimes.errors import RuntimeLoadError
from rayship_predictors.runtimes.loader import load_runtime
from support.models import build_models

IRIS_INPUTS = (TensorDecl("input", "FP32", (-1, 4)),)
IRIS_OUTPUTS = (TensorDecl("probabilities", "FP32", (-1, 3)), TensorDecl("label", "INT64", (-1,)))
IRIS_CLASS = PytorchOptions(model_class="iris_net:IrisNet", init_args={"hidden": 16})
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def spec(format: Any, **fields: Any) -> RuntimeSpec:
    return RuntimeSpec(format=format, **fields)


def iris_batch() -> np.ndarray:
    features, _ = build_models.iris_samples(per_class=5, seed=7)
    return features  # type: ignore[no-any-return]


def write_predictor(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "predictor.py").write_text(source)
    return folder


# --- onnx ---------------------------------------------------------------------------------


def test_onnx_metadata_comes_from_the_model(example_models: Path) -> None:
    runtime = load_runtime(spec("onnx"), example_models / "iris-onnx" / "1", use_gpu=False)

    assert runtime.platform == "onnxruntime_onnx"
    assert runtime.inputs == [TensorSpec("input", "FP32", (-1, 4))]
    assert runtime.outputs == [
        TensorSpec("probabilities", "FP32", (-1, 3)),
        TensorSpec("label", "INT64", (-1,)),
    ]


@pytest.mark.parametrize("version", [1, 2])
def test_onnx_infer_equals_numpy_reference(example_models: Path, version: int) -> None:
    runtime = load_runtime(spec("onnx"), example_models / "iris-onnx" / str(version), use_gpu=False)
    x = iris_batch()

    result = runtime.infer({"input": x}, {})

    weights, bias = build_models.iris_onnx_weights(version)
    logits = x.astype(np.float64) @ weights + bias
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    assert result["probabilities"].dtype == np.float32
    np.testing.assert_allclose(result["probabilities"], expected, rtol=1e-4, atol=1e-6)
    assert result["label"].dtype == np.int64
    np.testing.assert_array_equal(result["label"], logits.argmax(axis=1))


def test_onnx_versions_differ_and_latest_names_two(example_models: Path) -> None:
    one = load_runtime(spec("onnx"), example_models / "iris-onnx" / "1", use_gpu=False)
    two = load_runtime(spec("onnx"), example_models / "iris-onnx" / "2", use_gpu=False)
    x = iris_batch()

    assert not np.allclose(
        one.infer({"input": x}, {})["probabilities"], two.infer({"input": x}, {})["probabilities"]
    )
    assert (example_models / "iris-onnx" / "latest").read_text() == "2"


def test_onnx_declarations_that_agree_are_accepted(example_models: Path) -> None:
    declared = spec("onnx", inputs=IRIS_INPUTS, outputs=IRIS_OUTPUTS)

    runtime = load_runtime(declared, example_models / "iris-onnx" / "1", use_gpu=False)

    assert [t.name for t in runtime.outputs] == ["probabilities", "label"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"inputs": (TensorDecl("input", "FP32", (-1, 5)),)},
            "spec.model.inputs 'input' is FP32 [-1, 5]",
        ),
        ({"inputs": (TensorDecl("input", "FP64", (-1, 4)),)}, "spec.model.inputs 'input' is FP64"),
        (
            {"outputs": (TensorDecl("probabilities", "FP32", (-1, 3)),)},
            "spec.model.outputs declares",
        ),
    ],
)
def test_onnx_declarations_that_contradict_the_model_fail(
    example_models: Path, fields: dict[str, Any], message: str
) -> None:
    folder = example_models / "iris-onnx" / "1"

    with pytest.raises(RuntimeLoadError, match=re.escape(message)) as raised:
        load_runtime(spec("onnx", **fields), folder, use_gpu=False)

    assert str(folder / "model.onnx") in str(raised.value)


def test_onnx_missing_file_names_file_and_folder(example_models: Path) -> None:
    folder = example_models / "iris-onnx" / "1"
    wrong_file = spec("onnx", onnx=OnnxOptions(file="nope.onnx"))

    with pytest.raises(RuntimeLoadError, match=f"onnx: nope.onnx not found in {folder}"):
        load_runtime(wrong_file, folder, use_gpu=False)


def test_onnx_rejects_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a protobuf")

    with pytest.raises(RuntimeLoadError, match=f"onnx: cannot load {tmp_path / 'model.onnx'}"):
        load_runtime(spec("onnx"), tmp_path, use_gpu=False)


def test_onnx_string_tensors_travel_as_bytes(tmp_path: Path) -> None:
    """onnxruntime wants `str` and would turn `bytes` into "b'...'"; V2 BYTES are `bytes`."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["echo"])],
        "echo",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["n"])],
        [helper.make_tensor_value_info("echo", TensorProto.STRING, ["n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, tmp_path / "model.onnx")
    runtime = load_runtime(spec("onnx"), tmp_path, use_gpu=False)
    text = np.array(["é".encode(), b""], dtype=object)

    assert runtime.inputs == [TensorSpec("text", "BYTES", (-1,))]
    assert list(runtime.infer({"text": text}, {})["echo"]) == ["é".encode(), b""]
    with pytest.raises(BadRequest, match="UTF-8"):
        runtime.infer({"text": np.array([b"\xff"], dtype=object)}, {})


def test_missing_version_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(RuntimeLoadError, match=f"version folder {tmp_path / '9'} does not exist"):
        load_runtime(spec("onnx"), tmp_path / "9", use_gpu=False)


# --- pytorch ------------------------------------------------------------------------------


def iris_reference(folder: Path) -> dict[str, np.ndarray]:
    """The trained net run directly: the class from src/, the weights from the version folder."""
    import torch

    net = build_models.iris_net_class()(hidden=16)
    net.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    with torch.inference_mode():
        probabilities, label = net.eval()(torch.from_numpy(iris_batch()))
    return {"probabilities": probabilities.numpy(), "label": label.numpy()}


def test_pytorch_state_dict_equals_module(example_models: Path) -> None:
    folder = example_models / "iris-torch" / "1"
    model = spec("pytorch", pytorch=IRIS_CLASS, inputs=IRIS_INPUTS, outputs=IRIS_OUTPUTS)

    runtime = load_runtime(model, folder, use_gpu=False)
    result = runtime.infer({"input": iris_batch()}, {})

    assert runtime.platform == "pytorch"
    assert runtime.inputs == [TensorSpec("input", "FP32", (-1, 4))]
    expected = iris_reference(folder)
    np.testing.assert_allclose(result["probabilities"], expected["probabilities"], rtol=1e-6)
    np.testing.assert_array_equal(result["label"], expected["label"])
    assert result["label"].dtype == np.int64


def test_torchscript_equals_module(example_models: Path) -> None:
    model = spec("pytorch", inputs=IRIS_INPUTS, outputs=IRIS_OUTPUTS)

    runtime = load_runtime(model, example_models / "iris-torchscript" / "1", use_gpu=False)
    result = runtime.infer({"input": iris_batch()}, {})

    assert runtime.platform == "pytorch_libtorch"
    expected = iris_reference(example_models / "iris-torch" / "1")
    np.testing.assert_allclose(result["probabilities"], expected["probabilities"], rtol=1e-6)
    np.testing.assert_array_equal(result["label"], expected["label"])


def test_pytorch_accepts_read_only_inputs_and_casts_to_declared_outputs(
    example_models: Path,
) -> None:
    outputs = (IRIS_OUTPUTS[0], TensorDecl("label", "INT32", (-1,)))
    model = spec("pytorch", pytorch=IRIS_CLASS, inputs=IRIS_INPUTS, outputs=outputs)
    runtime = load_runtime(model, example_models / "iris-torch" / "1", use_gpu=False)
    x = iris_batch()
    x.flags.writeable = False  # as decoded from a request buffer

    result = runtime.infer({"input": x}, {})

    assert result["label"].dtype == np.int32


@pytest.mark.parametrize("missing", ["inputs", "outputs"])
def test_pytorch_requires_declared_tensors(example_models: Path, missing: str) -> None:
    fields = {"inputs": IRIS_INPUTS, "outputs": IRIS_OUTPUTS}
    del fields[missing]

    with pytest.raises(RuntimeLoadError, match=f"spec.model.{missing} is required"):
        load_runtime(
            spec("pytorch", **fields), example_models / "iris-torchscript" / "1", use_gpu=False
        )


@pytest.mark.parametrize(
    ("model_class", "message"),
    [
        ("net:Iris", "model class 'net:Iris' not importable from {folder}: No module named 'net'"),
        ("iris_net:Nope", "model class 'iris_net:Nope' not found: module 'iris_net' \\({folder}"),
        ("iris_net:torch", "model class 'iris_net:torch' is not a class"),
        ("numpy:ndarray", "model class 'numpy:ndarray' is not a torch.nn.Module"),
    ],
)
def test_pytorch_bad_model_class_is_named(
    example_models: Path, model_class: str, message: str
) -> None:
    folder = example_models / "iris-torch" / "1"
    model = spec(
        "pytorch",
        pytorch=PytorchOptions(model_class=model_class),
        inputs=IRIS_INPUTS,
        outputs=IRIS_OUTPUTS,
    )

    with pytest.raises(RuntimeLoadError, match=message.format(folder=folder)):
        load_runtime(model, folder, use_gpu=False)


def test_pytorch_weights_that_do_not_fit_the_class_are_named(example_models: Path) -> None:
    folder = example_models / "iris-torch" / "1"
    options = PytorchOptions(model_class="iris_net:IrisNet", init_args={"hidden": 5})
    model = spec("pytorch", pytorch=options, inputs=IRIS_INPUTS, outputs=IRIS_OUTPUTS)

    with pytest.raises(
        RuntimeLoadError, match=f"cannot load {folder / 'model.pt'} into 'iris_net:IrisNet'"
    ):
        load_runtime(model, folder, use_gpu=False)


def test_a_state_dict_without_model_class_says_what_is_missing(example_models: Path) -> None:
    model = spec("pytorch", inputs=IRIS_INPUTS, outputs=IRIS_OUTPUTS)

    with pytest.raises(
        RuntimeLoadError, match=re.escape("a state_dict needs spec.model.pytorch.modelClass")
    ):
        load_runtime(model, example_models / "iris-torch" / "1", use_gpu=False)


def test_pytorch_without_torch_says_what_to_install(
    example_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    model = spec("pytorch", inputs=IRIS_INPUTS, outputs=IRIS_OUTPUTS)

    with pytest.raises(RuntimeLoadError, match=re.escape("pip install 'rayship[torch]'")):
        load_runtime(model, example_models / "iris-torchscript" / "1", use_gpu=False)


# --- python -------------------------------------------------------------------------------

IMAGE_CLASSIFIER = PythonOptions(predictor_class="digits:DigitClassifier")
DIGIT_OUTPUTS = ["label", "probability"]


@pytest.fixture(scope="module")
def digit_classifier(example_models: Path) -> Any:
    """The image-classifier example, loaded once: its net is the same for every test."""
    folder = example_models / "image-classifier" / "1"
    return load_runtime(spec("python", python=IMAGE_CLASSIFIER), folder, use_gpu=False)


def classify(
    runtime: Any, images: list[bytes], image_parameters: dict[str, Any] | None = None, **given: Any
) -> dict[str, np.ndarray]:
    """The classifier's answer, its declared parameters defaulted as the data plane does."""
    parameters = check_parameters(runtime.parameters, given)
    per_input = {"image": image_parameters} if image_parameters else {}
    return runtime.infer(  # type: ignore[no-any-return]
        {"image": np.array(images, dtype=object)}, Parameters(parameters, per_input)
    )


def digit_files(image_format: str = "PNG", invert: bool = False) -> list[bytes]:
    """The held-out digits as image files: sklearn's bright on dark, or inverted (the way ink
    on paper looks)."""
    pixels, _ = build_models.held_out_digits()
    return [build_models.encode_image(255 - p if invert else p, image_format) for p in pixels]


def accuracy(result: dict[str, np.ndarray]) -> float:
    """How many of the held-out digits the best label of `result` names right."""
    _, labels = build_models.held_out_digits()
    expected = np.array([str(label).encode() for label in labels], dtype=object)
    return float(np.mean(result["label"][:, 0] == expected))


@pytest.mark.parametrize(
    ("image_format", "invert"),
    [("PNG", False), ("PNG", True), ("JPEG", False), ("JPEG", True)],
    ids=["png", "png-ink-on-paper", "jpeg", "jpeg-ink-on-paper"],
)
def test_digit_classifier_reads_held_out_digits(
    digit_classifier: Any, image_format: str, invert: bool
) -> None:
    files = digit_files(image_format, invert)

    result = classify(digit_classifier, files)

    assert digit_classifier.platform == "python"
    assert digit_classifier.inputs == [TensorSpec("image", "BYTES", (-1,))]
    assert [t.name for t in digit_classifier.outputs] == DIGIT_OUTPUTS
    assert result["label"].shape == result["probability"].shape == (len(files), 5)
    assert result["probability"].dtype == np.float32
    assert accuracy(result) >= 0.9, f"{accuracy(result):.1%} right on the held-out digits"
    assert (np.diff(result["probability"], axis=1) <= 0).all(), "best first"
    assert all(len(set(row)) == 5 for row in result["label"])


def test_digit_classifier_reads_colour_and_transparent_images(digit_classifier: Any) -> None:
    """Blue ink on yellow paper, and black ink on a transparent canvas, read as the digit."""
    pixels, _ = build_models.held_out_digits()
    ink = pixels[:, :, :, None] / 255
    paper, blue = np.array([250, 240, 160]), np.array([20, 30, 120])
    coloured = (paper + (blue - paper) * ink).astype(np.uint8)
    canvas = np.concatenate([np.zeros_like(coloured), pixels[:, :, :, None]], axis=3)

    for images in (coloured, canvas):
        result = classify(digit_classifier, [build_models.encode_image(i) for i in images])
        assert accuracy(result) >= 0.9


def test_top_k_and_confidence_threshold_shape_the_rows(digit_classifier: Any) -> None:
    files = digit_files()
    top = classify(digit_classifier, files, top_k=10)

    three = classify(digit_classifier, files, top_k=3)
    sure = classify(digit_classifier, files, top_k=3, confidence_threshold=0.6)

    np.testing.assert_array_equal(three["label"], top["label"][:, :3])
    np.testing.assert_allclose(top["probability"].sum(axis=1), 1, rtol=1e-5)
    kept = sure["probability"] >= 0.6
    assert 0 < kept[:, 0].sum() < len(files), "some rows are sure, some are not"
    assert not kept[:, 1:].any(), "two classes cannot both pass 0.6"
    np.testing.assert_array_equal(sure["label"][kept], three["label"][kept])
    assert (sure["label"][~kept] == b"").all(), "left-out classes are padding"
    assert (sure["probability"][~kept] == 0).all()
    assert sure["label"].shape == (len(files), 3), "rows keep top_k columns"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"top_k": 0}, "parameter 'top_k': must be 1..10, got 0"),
        ({"top_k": 11}, "parameter 'top_k': must be 1..10, got 11"),
        ({"confidence_threshold": 1.5}, "parameter 'confidence_threshold': must be 0..1, got 1.5"),
        ({"confidence_threshold": -1}, "parameter 'confidence_threshold': must be 0..1, got -1.0"),
    ],
)
def test_digit_classifier_parameters_out_of_range_are_bad_requests(
    digit_classifier: Any, given: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        classify(digit_classifier, digit_files()[:1], **given)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"", "image[2]: not a PNG or JPEG image (unknown file format)"),
        (b"PNG", "image[2]: not a PNG or JPEG image (unknown file format)"),
        ("truncated", "image[2]: not a PNG or JPEG image (image file is truncated"),
        ("gif", "image[2]: not a PNG or JPEG image (GIF given)"),
        ("base64", "content_type 'base64'"),
    ],
)
def test_an_undecodable_image_is_a_bad_request_naming_it(
    digit_classifier: Any, image: bytes | str, message: str
) -> None:
    files = digit_files()
    png = files[2]
    given = {
        "truncated": png[: len(png) // 2],
        "gif": build_models.encode_image(build_models.held_out_digits()[0][2], "GIF"),
        "base64": base64.b64encode(png),
    }

    with pytest.raises(BadRequest, match=re.escape(message)):
        classify(digit_classifier, [*files[:2], given.get(str(image), image)])


def test_base64_images_are_read_when_the_input_says_so(digit_classifier: Any) -> None:
    files = digit_files()
    encoded = [base64.b64encode(f) for f in files[:20]]

    result = classify(digit_classifier, encoded, {"content_type": "base64"})

    np.testing.assert_array_equal(result["label"], classify(digit_classifier, files[:20])["label"])
    with pytest.raises(BadRequest, match=re.escape("image[1]: content_type is base64 but")):
        classify(digit_classifier, [encoded[0], b"%%%"], {"content_type": "base64"})
    with pytest.raises(BadRequest, match="content_type 'hex' is not supported"):
        classify(digit_classifier, encoded, {"content_type": "hex"})


def test_an_empty_batch_answers_empty_rows(digit_classifier: Any) -> None:
    result = classify(digit_classifier, [], top_k=3)

    assert result["label"].shape == result["probability"].shape == (0, 3)


def test_spec_declarations_override_the_class(example_models: Path) -> None:
    declared = (TensorDecl("image", "BYTES", (1,)),)
    model = spec("python", python=IMAGE_CLASSIFIER, inputs=declared)

    runtime = load_runtime(model, example_models / "image-classifier" / "1", use_gpu=False)

    assert runtime.inputs == [TensorSpec("image", "BYTES", (1,))]
    assert [t.name for t in runtime.outputs] == DIGIT_OUTPUTS


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("class Echo:\n    pass\n", "'predictor:Echo' has no predict\\(inputs\\) method"),
        (
            "from rayship_predictors.sdk import Predictor\nclass Echo(Predictor):\n    pass\n",
            "'predictor:Echo' has no predict\\(inputs\\) method",
        ),
        (
            "class Echo:\n    def predict(self, inputs):\n        return inputs\n",
            "neither spec.model.inputs nor predictor class 'predictor:Echo' declares inputs",
        ),
        (
            "from rayship_predictors.sdk import Predictor, Tensor\n"
            "class Echo(Predictor):\n"
            "    inputs = outputs = (Tensor('x', 'FLOAT', (1,)),)\n"
            "    def predict(self, inputs):\n        return inputs\n",
            "inputs must hold sdk.Tensor values with a V2 datatype",
        ),
        (
            "from rayship_predictors.sdk import Predictor, Tensor\n"
            "class Echo(Predictor):\n"
            "    inputs = outputs = (Tensor('x', 'FP32', (1,)),)\n"
            "    def load(self, path):\n        raise FileNotFoundError('vocab.txt')\n"
            "    def predict(self, inputs):\n        return inputs\n",
            "'predictor:Echo' failed to load {folder}: FileNotFoundError: vocab.txt",
        ),
        (
            "import missing_dependency\n",
            "not importable from {folder}: No module named 'missing_dependency'",
        ),
        ("def broken(:\n", "not importable from {folder}: SyntaxError"),
    ],
)
def test_bad_predictor_class_fails_to_load(tmp_path: Path, source: str, message: str) -> None:
    folder = write_predictor(tmp_path / "1", source)
    model = spec("python", python=PythonOptions(predictor_class="predictor:Echo"))

    with pytest.raises(RuntimeLoadError, match=message.format(folder=folder)):
        load_runtime(model, folder, use_gpu=False)


ANSWER = """
import numpy as np
from rayship_predictors.sdk import Predictor, Tensor
from helper import VALUE  # a sibling module in the version folder


class Answer(Predictor):
    inputs = (Tensor("x", "FP32", (-1,)),)
    outputs = (Tensor("y", "FP32", (-1,)),)

    def predict(self, inputs):
        return {"y": np.full(inputs["x"].shape, VALUE)}
"""


def test_versions_in_one_process_each_get_their_own_code(tmp_path: Path) -> None:
    """Two versions ship `predictor.py` and `helper.py`; neither may see the other's."""
    model = spec("python", python=PythonOptions(predictor_class="predictor:Answer"))
    runtimes = []
    for version in (1, 2):
        folder = write_predictor(tmp_path / str(version), ANSWER)
        (folder / "helper.py").write_text(f"VALUE = {version}\n")
        runtimes.append(load_runtime(model, folder, use_gpu=False))

    x = np.zeros(2, np.float32)
    assert [list(r.infer({"x": x}, {})["y"]) for r in runtimes] == [[1, 1], [2, 2]]
    assert "predictor" not in sys.modules
    assert "helper" not in sys.modules
    assert not any(str(tmp_path) in entry for entry in sys.path)


def test_the_folder_wins_over_a_module_already_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unrelated `predictor` module in the process neither hides the folder's nor is lost."""
    elsewhere = ModuleType("predictor")
    monkeypatch.setitem(sys.modules, "predictor", elsewhere)
    folder = write_predictor(
        tmp_path / "1", ANSWER.replace("from helper import VALUE", "VALUE = 7")
    )
    model = spec("python", python=PythonOptions(predictor_class="predictor:Answer"))

    runtime = load_runtime(model, folder, use_gpu=False)

    assert list(runtime.infer({"x": np.zeros(1, np.float32)}, {})["y"]) == [7]
    assert sys.modules["predictor"] is elsewhere


def test_predict_must_return_every_declared_output(tmp_path: Path) -> None:
    folder = write_predictor(
        tmp_path / "1",
        ANSWER.replace('{"y"', '{"z"').replace("from helper import VALUE", "VALUE = 1"),
    )
    model = spec("python", python=PythonOptions(predictor_class="predictor:Answer"))
    runtime = load_runtime(model, folder, use_gpu=False)

    with pytest.raises(ModelFailure, match=r"predict returned no \['y'\]"):
        runtime.infer({"x": np.zeros(1, np.float32)}, {})


# --- the example deployments ----------------------------------------------------------------


@pytest.mark.parametrize(
    "yaml_file",
    [
        pytest.param(path, marks=[pytest.mark.kserve_inprocess] if "kserve" in path.name else [])
        for path in sorted(EXAMPLES.glob("*.yaml"))
    ],
    ids=lambda p: p.name,
)
def test_every_example_deployment_loads_its_built_model(
    example_models: Path, yaml_file: Path
) -> None:
    """The YAMLs' class paths and tensor declarations fit what build_models.py writes."""
    (deployment,) = manifest.load_file(yaml_file)
    model = deployment.spec.model
    folder = parse_model_uri(model.storage_uri)  # load_file made the YAML's file: URI absolute
    assert isinstance(folder, Path)
    model_root = example_models / folder.relative_to(EXAMPLES / "models")
    version = (model_root / "latest").read_text() if model.version == "latest" else model.version

    runtime = load_runtime(model.runtime, model_root / version, use_gpu=False)

    assert runtime.inputs
    assert runtime.outputs
