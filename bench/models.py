"""Models for the benches, built deterministically (fixed seed, no downloads).

- iris: the example ONNX classifier (examples/build_models.py), a microsecond-scale model
  where the serving overhead is everything;
- cnn: a small convolutional classifier on 3x32x32 images (two strided convolutions, then a
  2048x4096 dense layer), heavy enough per call that stacking requests pays;
- heavy: a deeper one on 3x64x64 images (eight convolutions, most at full or half resolution),
  about 10 ms a call: a CPU-bound model for bench/cpu_models_bench.py.

examples/build_models.py is a script, not a package: examples/ goes on sys.path and it imports
as `build_models`, as in the tests. Never the repository root: its `operator/` folder would
shadow the standard library's `operator`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
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
HEAVY_SHAPE = (3, 64, 64)


@dataclass(frozen=True)
class ConvNet:
    """A convolutional classifier: 3x3 convolutions (out channels, stride), each with a ReLU,
    then a dense hidden layer and a softmax over CNN_CLASSES."""

    name: str
    shape: tuple[int, int, int]
    convs: tuple[tuple[int, int], ...]
    hidden: int


# The small CNN: about 0.7 ms a call on two cores, most of it the 2048x4096 dense layer.
CNN = ConvNet("bench_cnn", CNN_SHAPE, ((16, 2), (32, 2)), CNN_HIDDEN)
# The heavy one: about 10 ms a call, nearly all of it in full-resolution convolutions (compute
# bound, unlike the CNN's memory-bound dense layer), with a 48 KiB binary request body.
HEAVY = ConvNet(
    "bench_heavy",
    HEAVY_SHAPE,
    ((64, 1), (64, 1), (128, 2), (128, 1), (128, 1), (256, 2), (256, 1), (256, 2)),
    512,
)


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


def _flat_size(net: ConvNet) -> int:
    """Features after the convolutions (padding 1, so each stride divides height and width)."""
    _, height, width = net.shape
    for _, stride in net.convs:
        height, width = -(-height // stride), -(-width // stride)
    return net.convs[-1][0] * height * width


def conv_graph(net: ConvNet, seed: int = 0) -> onnx.ModelProto:
    """image [N,*shape] -> convolutions -> dense `hidden` -> CNN_CLASSES -> softmax."""
    rng = np.random.default_rng(seed)
    flat = _flat_size(net)
    dense1 = rng.normal(0, (2 / flat) ** 0.5, (flat, net.hidden)).astype(np.float32)
    dense2 = rng.normal(0, (1 / net.hidden) ** 0.5, (net.hidden, CNN_CLASSES)).astype(np.float32)
    initializers: list[TensorProto] = []
    nodes = []
    previous, channels = CNN_INPUT, net.shape[0]
    for index, (out_ch, stride) in enumerate(net.convs, start=1):
        conv = f"conv{index}"
        initializers += _conv(conv, rng, out_ch, channels)
        weights = [previous, f"{conv}_w", f"{conv}_b"]
        options = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [stride, stride]}
        nodes += [
            helper.make_node("Conv", weights, [f"c{index}"], **options),
            helper.make_node("Relu", [f"c{index}"], [f"r{index}"]),
        ]
        previous, channels = f"r{index}", out_ch
    initializers += [
        numpy_helper.from_array(dense1, "dense1_w"),
        numpy_helper.from_array(np.zeros(net.hidden, np.float32), "dense1_b"),
        numpy_helper.from_array(dense2, "dense2_w"),
        numpy_helper.from_array(np.zeros(CNN_CLASSES, np.float32), "dense2_b"),
    ]
    nodes += [
        helper.make_node("Flatten", [previous], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "dense1_w"], ["m1"]),
        helper.make_node("Add", ["m1", "dense1_b"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["h"]),
        helper.make_node("MatMul", ["h", "dense2_w"], ["m2"]),
        helper.make_node("Add", ["m2", "dense2_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        net.name,
        [helper.make_tensor_value_info(CNN_INPUT, TensorProto.FLOAT, ["batch", *net.shape])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CNN_CLASSES])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_net(root: Path, folder_name: str, net: ConvNet) -> Path:
    """`root/<folder_name>/1/model.onnx`; returns the model folder."""
    folder = root / folder_name / "1"
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(conv_graph(net), folder / "model.onnx")
    return root / folder_name


def build_cnn(root: Path) -> Path:
    """`root/cnn/1/model.onnx`; returns the model folder."""
    return build_net(root, "cnn", CNN)


def build_heavy(root: Path) -> Path:
    """`root/heavy/1/model.onnx`; returns the model folder."""
    return build_net(root, "heavy", HEAVY)
