"""Build the example models into `examples/models/` (or the folder given): no downloads.

    python examples/build_models.py [OUT]

Everything is deterministic (fixed seeds, no data from outside) and takes a few seconds on a
CPU. The tests and the benchmark import it as `build_models`, with examples/ on sys.path, and
build the same models into a temporary folder.
Each model is a folder of versions, laid out as they would be under an S3 prefix.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

if TYPE_CHECKING:
    import torch

EXAMPLES = Path(__file__).resolve().parent
SRC = EXAMPLES / "src"

# Per-class means and standard deviations of Fisher's iris measurements (sepal length, sepal
# width, petal length, petal width in cm) for setosa, versicolor and virginica: enough to make
# iris-like samples without shipping or downloading the data set.
IRIS_MEANS = np.array(
    [[5.006, 3.428, 1.462, 0.246], [5.936, 2.770, 4.260, 1.326], [6.588, 2.974, 5.552, 2.026]]
)
IRIS_STDS = np.array(
    [[0.352, 0.379, 0.174, 0.105], [0.516, 0.314, 0.470, 0.198], [0.636, 0.322, 0.552, 0.275]]
)
IRIS_TORCH_HIDDEN = 16
COLOURS = ("red", "green", "blue")
IMAGE_SIZE = 8  # the grid the image classifier resizes to


def iris_samples(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Iris-like measurements (FP32, [n, 4]) and their class indices (INT64, [n])."""
    rng = np.random.default_rng(seed)
    features = np.concatenate(
        [
            rng.normal(mean, std, size=(per_class, 4))
            for mean, std in zip(IRIS_MEANS, IRIS_STDS, strict=True)
        ]
    )
    return features.astype(np.float32), np.repeat(np.arange(3), per_class)


def iris_onnx_weights(version: int) -> tuple[np.ndarray, np.ndarray]:
    """(W [4, 3], b [3]) of a linear classifier, so that logits = x @ W + b.

    Version 1 picks the nearest class mean; version 2 scales each feature by its pooled
    variance (a Gaussian classifier with shared variances), which separates the classes better:
    two versions with visibly different answers for rollout demos.
    """
    scale = np.ones(4) if version == 1 else 1 / (IRIS_STDS**2).mean(axis=0)
    weights = (IRIS_MEANS * scale).T
    bias = -0.5 * (IRIS_MEANS**2 * scale).sum(axis=1)
    return weights.astype(np.float32), bias.astype(np.float32)


def build_iris_onnx(root: Path) -> Path:
    """`iris-onnx/{1,2}/model.onnx` and a `latest` pointer naming version 2."""
    model_root = root / "iris-onnx"
    for version in (1, 2):
        folder = model_root / str(version)
        folder.mkdir(parents=True, exist_ok=True)
        onnx.save(_iris_graph(*iris_onnx_weights(version)), folder / "model.onnx")
    (model_root / "latest").write_text("2")
    return model_root


def _iris_graph(weights: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """input [batch, 4] -> MatMul, Add -> Softmax -> probabilities, ArgMax -> label."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["scaled"]),
            helper.make_node("Add", ["scaled", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "iris",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")],
    )
    # Opset 17 / IR 8 load in every onnxruntime from 1.14 on, older than pyproject's floor.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def iris_net_class() -> type:
    """`IrisNet` from `src/iris_net.py`, the code the torch examples ship."""
    return _import_file(SRC / "iris_net.py", "iris_net").IrisNet  # type: ignore[no-any-return]


def build_iris_torch(root: Path) -> Path:
    """`iris-torch/1/`: a trained IrisNet's state_dict beside a copy of `iris_net.py`."""
    import torch

    folder = root / "iris-torch" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SRC / "iris_net.py", folder / "iris_net.py")
    torch.save(_trained_iris_net().state_dict(), folder / "model.pt")
    return folder.parent


def build_iris_torchscript(root: Path) -> Path:
    """`iris-torchscript/1/model.pt`: the same trained net as a TorchScript archive."""
    import torch

    folder = root / "iris-torchscript" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # torch deprecates TorchScript for torch.export; the example shows serving an archive.
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        torch.jit.save(torch.jit.script(_trained_iris_net()), folder / "model.pt")
    return folder.parent


@functools.cache
def _trained_iris_net() -> torch.nn.Module:
    """150 full-batch Adam steps on iris-like samples: about 99% right on fresh ones."""
    import torch

    features, labels = iris_samples(per_class=50, seed=0)
    x, y = torch.from_numpy(features), torch.from_numpy(labels)
    threads = torch.get_num_threads()
    # One thread: the tensors are tiny, and spinning worker threads crawl on a busy machine.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = iris_net_class()(hidden=IRIS_TORCH_HIDDEN)
            optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
            for _ in range(150):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(net.layers(x), y)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()  # type: ignore[no-any-return]


def build_image_classifier(root: Path) -> Path:
    """`image-classifier/1/`: `predictor.py` and the weights of its linear layer.

    The weights are set, not trained: each class scores its own channel against the other two,
    averaged over the grid, plus a little seeded noise so they look like learned ones.
    """
    folder = root / "image-classifier" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SRC / "predictor.py", folder / "predictor.py")
    pattern = np.full((3, IMAGE_SIZE, IMAGE_SIZE, 3), -0.5)
    for channel in range(3):
        pattern[channel, :, :, channel] = 1.0
    pixels = IMAGE_SIZE * IMAGE_SIZE
    noise = np.random.default_rng(0).normal(0, 0.01, size=(3, pixels * 3))
    np.savez(
        folder / "weights.npz",
        weights=(pattern.reshape(3, -1) / pixels + noise / pixels).astype(np.float32),
        bias=np.zeros(3, np.float32),
        mean=np.float32(0.5),
        std=np.float32(0.25),
        size=np.int64(IMAGE_SIZE),
        labels=np.array(COLOURS),
    )
    return folder.parent


def build_kserve_iris(root: Path) -> Path:
    """`kserve-custom/1/`: `kserve_iris.py`, a KServe custom predictor, beside `weights.npz`.

    The weights are version 1 of `iris-onnx`'s, so the two runtimes can be checked against
    each other.
    """
    folder = root / "kserve-custom" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SRC / "kserve_iris.py", folder / "kserve_iris.py")
    weights, bias = iris_onnx_weights(1)
    np.savez(folder / "weights.npz", weights=weights, bias=bias)
    return folder.parent


def colour_image(colour: str, seed: int, height: int = 12, width: int = 16) -> np.ndarray:
    """A noisy uint8 RGB image ([height, width, 3]) in which `colour` dominates."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 90, size=(height, width, 3))
    pixels[:, :, COLOURS.index(colour)] = rng.integers(160, 256, size=(height, width))
    return pixels.astype(np.uint8)


def encode_ppm(pixels: np.ndarray, binary: bool = True) -> bytes:
    """A uint8 RGB array as a PPM file: P6 (binary) or P3 (ASCII, fits into JSON)."""
    height, width, _ = pixels.shape
    if binary:
        return f"P6 {width} {height} 255\n".encode() + pixels.astype(np.uint8).tobytes()
    return f"P3 {width} {height} 255\n{' '.join(map(str, pixels.ravel()))}\n".encode()


def build_all(root: Path) -> list[Path]:
    """Every example model under `root`; returns the model folders."""
    return [
        build_iris_onnx(root),
        build_iris_torch(root),
        build_iris_torchscript(root),
        build_image_classifier(root),
        build_kserve_iris(root),
    ]


def _import_file(path: Path, name: str) -> ModuleType:
    """Import a file under `name` without putting its folder on `sys.path`.

    It is registered in `sys.modules` because TorchScript reads the class's source through it.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLES / "models"
    started = time.perf_counter()
    for folder in build_all(root):
        print(f"built {folder}")
    print(f"done in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
