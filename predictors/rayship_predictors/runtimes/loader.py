"""Turn a ModelSpec and a local version folder into a loaded `Runtime`.

Every way a load can fail (missing file, bad class path, user code raising, an artifact the
runtime rejects) ends as one `RuntimeLoadError` whose message names the artifact and the version
folder, so the caller can put it into a status condition as it is, without a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import assert_never

from rayship.spec import ModelSpec
from rayship_predictors.runtimes.base import Runtime


class RuntimeLoadError(Exception):
    """A version folder could not be loaded; the message is meant for the model's owner."""


def describe(exc: BaseException) -> str:
    """One line about a foreign exception for a `RuntimeLoadError` message.

    Import errors already read as sentences ("No module named 'net'"); anything else keeps its
    type, since "KeyError: 'fc.weight'" says more than "'fc.weight'".
    """
    if isinstance(exc, ImportError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def load_runtime(model: ModelSpec, model_dir: Path, use_gpu: bool) -> Runtime:
    """Load the version in `model_dir` with the runtime `model.format` names.

    `use_gpu` asks for CUDA; a runtime falls back to the CPU when CUDA is not usable there.
    Runtimes are imported here, when first needed, so a replica imports only its own.
    """
    if not model_dir.is_dir():
        raise RuntimeLoadError(f"{model.format}: version folder {model_dir} does not exist")
    match model.format:
        case "onnx":
            from rayship_predictors.runtimes.onnx import OnnxRuntime

            return OnnxRuntime(model, model_dir, use_gpu)
        case "pytorch":
            from rayship_predictors.runtimes.pytorch import PytorchRuntime

            return PytorchRuntime(model, model_dir, use_gpu)
        case "python":
            from rayship_predictors.runtimes.python import PythonRuntime

            return PythonRuntime(model, model_dir)
        case _:
            assert_never(model.format)
