"""The runtimes on CUDA answer what they answer on the CPU. Without a usable GPU each test skips
and says why: torch without a CUDA device, or an onnxruntime without the CUDA provider (the
`onnxruntime` wheel has none; `onnxruntime-gpu` does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rayship.spec import PytorchOptions, RuntimeSpec, TensorDecl
from rayship_predictors.runtimes.loader import load_runtime
from rayship_predictors.runtimes.onnx import OnnxRuntime
from rayship_predictors.runtimes.pytorch import PytorchRuntime
from support.models import build_models

pytestmark = pytest.mark.gpu

IRIS_TENSORS: dict[str, Any] = {
    "inputs": (TensorDecl("input", "FP32", (-1, 4)),),
    "outputs": (TensorDecl("probabilities", "FP32", (-1, 3)), TensorDecl("label", "INT64", (-1,))),
}


def iris_batch() -> np.ndarray:
    features, _ = build_models.iris_samples(per_class=100, seed=11)
    return features  # type: ignore[no-any-return]


def assert_same_answers(cpu: dict[str, np.ndarray], gpu: dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(gpu["probabilities"], cpu["probabilities"], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(gpu["label"], cpu["label"])


def test_onnx_on_cuda_equals_cpu(tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has no CUDAExecutionProvider (needs onnxruntime-gpu)")
    folder = build_models.build_iris_onnx(tmp_path) / "2"
    model = RuntimeSpec(format="onnx")

    gpu = load_runtime(model, folder, use_gpu=True)
    cpu = load_runtime(model, folder, use_gpu=False)

    assert isinstance(gpu, OnnxRuntime)
    assert gpu.providers[0] == "CUDAExecutionProvider"
    batch = {"input": iris_batch()}
    assert_same_answers(cpu.infer(batch, {}), gpu.infer(batch, {}))


@pytest.mark.parametrize("artifact", ["state_dict", "torchscript"])
def test_pytorch_on_cuda_equals_cpu(tmp_path: Path, artifact: str) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    if artifact == "state_dict":
        folder = build_models.build_iris_torch(tmp_path) / "1"
        options = PytorchOptions(model_class="iris_net:IrisNet", init_args={"hidden": 16})
    else:
        folder = build_models.build_iris_torchscript(tmp_path) / "1"
        options = PytorchOptions()
    model = RuntimeSpec(format="pytorch", pytorch=options, **IRIS_TENSORS)

    gpu = load_runtime(model, folder, use_gpu=True)
    cpu = load_runtime(model, folder, use_gpu=False)

    assert isinstance(gpu, PytorchRuntime)
    assert gpu.device.type == "cuda"
    batch = {"input": iris_batch()}
    assert_same_answers(cpu.infer(batch, {}), gpu.infer(batch, {}))
