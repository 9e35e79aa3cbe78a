"""Turn a RuntimeSpec and a local version folder into a loaded `Runtime`.

Every way a load can fail (missing file, bad class path, user code raising, an artifact the
runtime rejects) ends as one `RuntimeLoadError` whose message names the artifact and the version
folder, so the caller can put it into a status condition as it is, without a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import assert_never

from rayship.spec import RuntimeSpec
from rayship_predictors.runtimes.base import Runtime
from rayship_predictors.runtimes.errors import RuntimeLoadError
from rayship_predictors.settings import PredictorSettings


def load_runtime(
    model: RuntimeSpec,
    model_dir: Path,
    use_gpu: bool,
    *,
    model_name: str = "model",
    concurrent_calls: int = PredictorSettings.predict_threads,
    cpus: int | None = None,
) -> Runtime:
    """Load the version in `model_dir` with the runtime `model.format` names.

    `use_gpu` asks for CUDA; a runtime falls back to the CPU when CUDA is not usable there.
    `model_name` is the V2 model name, which a kserve model is constructed with (by default
    "model", KServe's own default name). `concurrent_calls`, how many calls the replica runs at
    once, and `cpus`, the cores it may use (by default those the process may run on), size an
    ONNX model's default intra-op threads.
    Runtimes are imported here, when first needed, so a replica imports only its own.
    """
    if not model_dir.is_dir():
        raise RuntimeLoadError(f"{model.format}: version folder {model_dir} does not exist")
    match model.format:
        case "onnx":
            from rayship_predictors.runtimes.onnx import OnnxRuntime

            return OnnxRuntime(
                model, model_dir, use_gpu, concurrent_calls=concurrent_calls, cpus=cpus
            )
        case "pytorch":
            from rayship_predictors.runtimes.pytorch import PytorchRuntime

            return PytorchRuntime(model, model_dir, use_gpu)
        case "python":
            from rayship_predictors.runtimes.python import PythonRuntime

            return PythonRuntime(model, model_dir)
        case "kserve":
            from rayship_predictors.runtimes.kserve import KserveRuntime

            return KserveRuntime(model, model_dir, model_name)
        case _:
            assert_never(model.format)
