"""ONNX Runtime: an `.onnx` export, which carries its own tensor names, types and shapes.

The model's own metadata is what V2 clients see; declarations in the spec are optional and
only checked against it, so a YAML that drifted from the export fails at load, not per request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from rayship.spec import RuntimeSpec, TensorDecl
from rayship_predictors.errors import BadRequest
from rayship_predictors.runtimes.base import TensorSpec
from rayship_predictors.runtimes.errors import RuntimeLoadError, describe
from rayship_predictors.settings import PredictorSettings
from rayship_predictors.v2.codec import JSON
from rayship_predictors.v2.datatypes import NUMPY_TO_V2

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

# ONNX element type names (as in "tensor(float)") that are not also numpy dtype names.
_ONNX_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
    "string": np.dtype(np.object_),
}


class OnnxRuntime:
    """One `InferenceSession`, on CUDA when asked for and available, else on the CPU."""

    platform = "onnxruntime_onnx"

    def __init__(
        self,
        model: RuntimeSpec,
        model_dir: Path,
        use_gpu: bool,
        *,
        concurrent_calls: int = PredictorSettings.predict_threads,
        cpus: int | None = None,
    ) -> None:
        """`concurrent_calls`: how many `infer` calls the replica runs at once (its predict
        threads, or 1 when it runs one dynamic batch at a time), and `cpus`, the cores it may
        use (its CPU reservation; None: those the process may run on), size the default
        intra-op threads. The defaults are a default replica's."""
        path = model_dir / model.onnx.file
        if not path.is_file():
            raise RuntimeLoadError(f"onnx: {model.onnx.file} not found in {model_dir}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = model.onnx.intra_op_threads or default_intra_op_threads(
            concurrent_calls, cpus
        )
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=_providers(use_gpu)
            )
        except Exception as exc:
            raise RuntimeLoadError(f"onnx: cannot load {path}: {describe(exc)}") from exc
        self.inputs = [_tensor_spec(arg, path) for arg in self._session.get_inputs()]
        self.outputs = [_tensor_spec(arg, path) for arg in self._session.get_outputs()]
        _check_declared("spec.model.inputs", model.inputs, self.inputs, path)
        _check_declared("spec.model.outputs", model.outputs, self.outputs, path)
        self._output_names = [spec.name for spec in self.outputs]
        self._bytes_inputs = {spec.name for spec in self.inputs if spec.datatype == "BYTES"}

    @property
    def intra_op_threads(self) -> int:
        """The intra-op threads the session was made with."""
        threads: int = self._session.get_session_options().intra_op_num_threads
        return threads

    @property
    def providers(self) -> list[str]:
        """The execution providers the session really uses, best first."""
        return list(self._session.get_providers())

    def infer(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, JSON]
    ) -> dict[str, np.ndarray]:
        """Run the session; BYTES travel as `bytes`, ONNX strings as `str`, so convert both ways.

        `parameters` are ignored: a graph takes only tensors.
        """
        feed = {
            name: _utf8_to_str(name, array) if name in self._bytes_inputs else array
            for name, array in inputs.items()
        }
        results = self._session.run(self._output_names, feed)
        return {
            name: _str_to_utf8(array) if array.dtype == np.object_ else array
            for name, array in zip(self._output_names, results, strict=True)
        }


def default_intra_op_threads(concurrent_calls: int, cpus: int | None = None) -> int:
    """The intra-op pool size for a session whose replica runs `concurrent_calls` calls at once
    (0 counts as 1: predict threads 0 run one call at a time on the event loop) on `cpus` cores
    (by default those this process may run on).

    A session's pool is shared by the calls running on it, and each calling thread computes
    too, so a pool of `cpus - calls + 1` keeps `cpus` threads busy when every call runs, and
    gives a lone call all of them. ONNX Runtime's own choice, a pool of a thread per physical
    core, oversubscribes the cores as soon as the predict threads run calls side by side: on
    two cores the CPU-bound models of bench/cpu_models_bench.py served more requests with no
    pool (1, the calling thread alone) than with its choice.
    """
    usable = cpus or _usable_cpus()
    return max(1, usable - max(1, concurrent_calls) + 1)


def _usable_cpus() -> int:
    """The cores this process may run on (its affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _providers(use_gpu: bool) -> list[str]:
    if not use_gpu:
        return [CPU]
    if CUDA in ort.get_available_providers():
        return [CUDA, CPU]
    log.warning("onnx: a GPU was requested but this onnxruntime has no %s; using the CPU", CUDA)
    return [CPU]


def _tensor_spec(arg: Any, path: Path) -> TensorSpec:
    """V2 metadata for an `onnxruntime.NodeArg`; symbolic or unknown dimensions become -1."""
    element = arg.type.removeprefix("tensor(").removesuffix(")")
    try:
        dtype: np.dtype[Any] = (
            _ONNX_TO_NUMPY[element] if element in _ONNX_TO_NUMPY else np.dtype(element)
        )
        datatype = NUMPY_TO_V2[dtype]
    except (TypeError, KeyError):
        raise RuntimeLoadError(
            f"onnx: {path} tensor {arg.name!r} has type {arg.type}, which V2 cannot carry"
        ) from None
    shape = tuple(dim if isinstance(dim, int) else -1 for dim in arg.shape)
    return TensorSpec(arg.name, datatype, shape)


def _check_declared(
    field: str, declared: Sequence[TensorDecl], actual: Sequence[TensorSpec], path: Path
) -> None:
    """Fail when a declaration in the spec contradicts the model; no declaration is fine."""
    if not declared:
        return
    by_name = {spec.name: spec for spec in actual}
    if {decl.name for decl in declared} != set(by_name):
        raise RuntimeLoadError(
            f"onnx: {field} declares {sorted(d.name for d in declared)} but {path} has "
            f"{sorted(by_name)}"
        )
    for decl in declared:
        spec = by_name[decl.name]
        if decl.datatype != spec.datatype or not _shapes_agree(decl.shape, spec.shape):
            raise RuntimeLoadError(
                f"onnx: {field} {decl.name!r} is {decl.datatype} {list(decl.shape)} but {path} "
                f"has {spec.datatype} {list(spec.shape)}"
            )


def _shapes_agree(declared: Sequence[int], actual: Sequence[int]) -> bool:
    return len(declared) == len(actual) and all(
        a == b or -1 in (a, b) for a, b in zip(declared, actual, strict=True)
    )


def _utf8_to_str(name: str, array: np.ndarray) -> np.ndarray:
    # onnxruntime would str() a bytes element into "b'...'" without complaint.
    try:
        text = [v.decode() if isinstance(v, bytes) else v for v in array.ravel()]
    except UnicodeDecodeError:
        raise BadRequest(f"input {name!r}: ONNX string tensors hold UTF-8 text") from None
    return np.array(text, dtype=np.object_).reshape(array.shape)


def _str_to_utf8(array: np.ndarray) -> np.ndarray:
    encoded = [v.encode() if isinstance(v, str) else v for v in array.ravel()]
    return np.array(encoded, dtype=np.object_).reshape(array.shape)
