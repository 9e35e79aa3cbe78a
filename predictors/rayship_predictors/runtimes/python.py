"""The python runtime: a user's `sdk.Predictor` subclass, for models that are mostly code.

The class comes from the version folder (see `imports`), so a new version can change the
pre-processing together with the weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rayship.spec import ModelSpec, TensorDecl
from rayship_predictors.errors import ModelFailure
from rayship_predictors.runtimes.base import TensorSpec
from rayship_predictors.runtimes.imports import import_class
from rayship_predictors.runtimes.loader import RuntimeLoadError, describe
from rayship_predictors.v2.datatypes import V2_TO_NUMPY


class PythonRuntime:
    """One instance of the predictor class, loaded from the version folder."""

    platform = "python"

    def __init__(self, model: ModelSpec, model_dir: Path) -> None:
        if model.python is None:
            raise RuntimeLoadError("python: spec.model.python.predictorClass is required")
        target = model.python.predictor_class
        cls = import_class(target, model_dir, "python: predictor class")
        predict = getattr(cls, "predict", None)
        if not callable(predict) or getattr(predict, "__isabstractmethod__", False):
            raise RuntimeLoadError(
                f"python: predictor class {target!r} has no predict(inputs) method"
            )
        self.inputs = _tensors("inputs", model.inputs, cls, target)
        self.outputs = _tensors("outputs", model.outputs, cls, target)
        try:
            self._predictor: Any = cls()
            load = getattr(self._predictor, "load", None)
            if callable(load):
                load(model_dir)
        except Exception as exc:
            raise RuntimeLoadError(
                f"python: predictor class {target!r} failed to load {model_dir}: {describe(exc)}"
            ) from exc

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call `predict` and hold its result to the declared outputs."""
        result: object = self._predictor.predict(dict(inputs))
        if not isinstance(result, Mapping):
            raise ModelFailure(f"python: predict returned {type(result).__name__}, not a dict")
        missing = [spec.name for spec in self.outputs if spec.name not in result]
        if missing:
            raise ModelFailure(f"python: predict returned no {missing}")
        return {
            spec.name: np.asarray(result[spec.name], dtype=V2_TO_NUMPY[spec.datatype])
            for spec in self.outputs
        }


def _tensors(
    attribute: str, declared: Sequence[TensorDecl], cls: type, target: str
) -> list[TensorSpec]:
    """The spec's declarations when given, else the class attribute, checked."""
    if declared:
        return [TensorSpec(decl.name, decl.datatype, tuple(decl.shape)) for decl in declared]
    tensors = list(getattr(cls, attribute, ()))
    if not tensors:
        raise RuntimeLoadError(
            f"python: neither spec.model.{attribute} nor predictor class {target!r} "
            f"declares {attribute}"
        )
    for tensor in tensors:
        if not isinstance(tensor, TensorSpec) or tensor.datatype not in V2_TO_NUMPY:
            raise RuntimeLoadError(
                f"python: predictor class {target!r} {attribute} must hold sdk.Tensor values "
                f"with a V2 datatype, got {tensor!r}"
            )
    return [TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in tensors]
