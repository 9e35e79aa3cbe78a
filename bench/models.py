"""Models for bench/server_bench.py, built deterministically (fixed seed, no downloads).

- iris: the example ONNX classifier (examples/build_models.py), a microsecond-scale model
  where the serving overhead is everything;
- cnn: a small convolutional classifier on 3x32x32 images (two strided convolutions, then a
  2048x4096 dense layer), heavy enough per call that stacking requests pays.

examples/build_models.py is a script, not a package: examples/ goes on sys.path and it imports
as `build_models`, as in the tests. Never the repository root: its `operator/` folder would
shadow the standard library's `operator`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.append(str(Path(__file__).resolve().parents[1] / "examples"))
import build_models

CNN_INPUT = "image"
CNN_SHAPE = (3, 32, 32)
CNN_HIDDEN = 4096
CNN_CLASSES = 10


def build_iris(root: Path) -> Path:
    """`root/iris-onnx/{1,2}/model.onnx`; returns the model folder."""
    built: Path = build_models.build_iris_onnx(root)
    return built


def _conv(name: str, rng: np.random.Generator, out_ch: int, in_ch: int) -> list[TensorProto]:
    weight = rng.normal(0, (2 / (in_ch * 9)) ** 0.5, (out_ch, in_ch, 3, 3)).astype(np.float32)
    bias = np.zeros(out_ch, np.float32)
    return [
        numpy_helper.from_array(weight, f"{name}_w"),
        numpy_helper.from_array(bias, f"{name}_b"),
    ]


def cnn_graph(seed: int = 0) -> onnx.ModelProto:
    """image [N,3,32,32] -> conv 3x3/2 (16) -> conv 3x3/2 (32) -> dense 4096 -> 10 -> softmax."""
    rng = np.random.default_rng(seed)
    flat = 32 * 8 * 8
    dense1 = rng.normal(0, (2 / flat) ** 0.5, (flat, CNN_HIDDEN)).astype(np.float32)
    dense2 = rng.normal(0, (1 / CNN_HIDDEN) ** 0.5, (CNN_HIDDEN, CNN_CLASSES)).astype(np.float32)
    initializers = [
        *_conv("conv1", rng, 16, 3),
        *_conv("conv2", rng, 32, 16),
        numpy_helper.from_array(dense1, "dense1_w"),
        numpy_helper.from_array(np.zeros(CNN_HIDDEN, np.float32), "dense1_b"),
        numpy_helper.from_array(dense2, "dense2_w"),
        numpy_helper.from_array(np.zeros(CNN_CLASSES, np.float32), "dense2_b"),
    ]
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}
    nodes = [
        helper.make_node("Conv", [CNN_INPUT, "conv1_w", "conv1_b"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "conv2_w", "conv2_b"], ["c2"], **conv),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "dense1_w"], ["m1"]),
        helper.make_node("Add", ["m1", "dense1_b"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["h"]),
        helper.make_node("MatMul", ["h", "dense2_w"], ["m2"]),
        helper.make_node("Add", ["m2", "dense2_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "bench_cnn",
        [helper.make_tensor_value_info(CNN_INPUT, TensorProto.FLOAT, ["batch", *CNN_SHAPE])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CNN_CLASSES])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_cnn(root: Path) -> Path:
    """`root/cnn/1/model.onnx`; returns the model folder."""
    folder = root / "cnn" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(cnn_graph(), folder / "model.onnx")
    return root / "cnn"
