"""The python runtime: a user's `sdk.Predictor` subclass, for models that are mostly code.

The class comes from the version folder (see `imports`), so a new version can change the
pre-processing together with the weights. How `predict` is called is read from it once, at
load: `def` or `async def`, and which of `parameters` / `input_parameters` it names.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rayship.spec import RuntimeSpec, TensorDecl
from rayship_predictors.errors import ModelFailure
from rayship_predictors.runtimes.base import Parameters, ParameterSpec, TensorSpec
from rayship_predictors.runtimes.errors import RuntimeLoadError, describe
from rayship_predictors.runtimes.imports import import_class
from rayship_predictors.v2.codec import JSON
from rayship_predictors.v2.datatypes import V2_TO_NUMPY

# What `predict` may take besides the inputs, each passed by name only when it names it.
_CONTEXT = ("parameters", "input_parameters")

Tensors = Mapping[str, np.ndarray]


class PythonRuntime:
    """One instance of the predictor class, loaded from the version folder.

    For an `async def predict` it also has `infer_async` (`base.AsyncInfer`), which the data
    plane awaits on the replica's event loop; for a plain `def predict` it has none, so the
    data plane runs `infer` in its thread pool. That attribute is set per instance, since the
    class alone cannot say which kind of predictor it will load.
    """

    platform = "python"
    infer_async: Callable[[Tensors, Mapping[str, JSON]], Awaitable[dict[str, np.ndarray]]]

    def __init__(self, model: RuntimeSpec, model_dir: Path) -> None:
        if model.python is None:
            raise RuntimeLoadError("python: spec.model.python.predictorClass is required")
        target = model.python.predictor_class
        cls = import_class(target, model_dir, "python: predictor class")
        if not callable(getattr(cls, "predict", None)):
            raise RuntimeLoadError(
                f"python: predictor class {target!r} has no predict(inputs) method"
            )
        self.inputs = _tensors("inputs", model.inputs, cls, target)
        self.outputs = _tensors("outputs", model.outputs, cls, target)
        self.parameters = _parameters(cls, target)
        try:
            self._predictor: Any = cls()
            load = getattr(self._predictor, "load", None)
            if callable(load):
                load(model_dir)
        except Exception as exc:
            raise RuntimeLoadError(
                f"python: predictor class {target!r} failed to load {model_dir}: {describe(exc)}"
            ) from exc
        self._context = _context_names(self._predictor.predict, target)
        if inspect.iscoroutinefunction(self._predictor.predict):
            self.infer_async = self._infer_async

    def infer(self, inputs: Tensors, parameters: Mapping[str, JSON]) -> dict[str, np.ndarray]:
        """Call `predict` and hold its result to the declared outputs.

        An `async def predict` runs to completion in an event loop of its own here, for callers
        outside one; the data plane awaits `infer_async` instead.
        """
        if hasattr(self, "infer_async"):
            return asyncio.run(self._infer_async(inputs, parameters))
        return self._outputs(self._predictor.predict(dict(inputs), **self._kwargs(parameters)))

    async def _infer_async(
        self, inputs: Tensors, parameters: Mapping[str, JSON]
    ) -> dict[str, np.ndarray]:
        result = await self._predictor.predict(dict(inputs), **self._kwargs(parameters))
        return self._outputs(result)

    def _kwargs(self, parameters: Mapping[str, JSON]) -> dict[str, object]:
        """The parameters `predict` names, as fresh dicts it may change."""
        given: dict[str, object] = {}
        if "parameters" in self._context:
            given["parameters"] = dict(parameters)
        if "input_parameters" in self._context:
            per_input = parameters.inputs if isinstance(parameters, Parameters) else {}
            given["input_parameters"] = {name: dict(p) for name, p in per_input.items()}
        return given

    def _outputs(self, result: object) -> dict[str, np.ndarray]:
        if not isinstance(result, Mapping):
            raise ModelFailure(f"python: predict returned {type(result).__name__}, not a dict")
        missing = [spec.name for spec in self.outputs if spec.name not in result]
        if missing:
            raise ModelFailure(f"python: predict returned no {missing}")
        return {
            spec.name: np.asarray(result[spec.name], dtype=V2_TO_NUMPY[spec.datatype])
            for spec in self.outputs
        }


def _context_names(predict: Callable[..., object], target: str) -> frozenset[str]:
    """Which of `_CONTEXT` the bound `predict` names (all of them for `**kwargs`).

    Anything else it requires could never be passed, so that fails the load, not every request.
    """
    signature = inspect.signature(predict)
    kinds = inspect.Parameter
    arguments = list(signature.parameters.values())
    takes_inputs = bool(arguments) and arguments[0].kind in (
        kinds.POSITIONAL_ONLY,
        kinds.POSITIONAL_OR_KEYWORD,
        kinds.VAR_POSITIONAL,
    )
    unknown = [
        a.name
        for a in arguments[1:]
        if a.name not in _CONTEXT
        and a.default is kinds.empty
        and a.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD)
    ]
    if not takes_inputs or unknown:
        raise RuntimeLoadError(
            f"python: predictor class {target!r} has predict{signature}; it must take the "
            f"inputs first, then only {' and '.join(_CONTEXT)}, by name"
        )
    if any(a.kind is kinds.VAR_KEYWORD for a in arguments):
        return frozenset(_CONTEXT)
    return frozenset(a.name for a in arguments[1:] if a.name in _CONTEXT)


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
        if attribute == "outputs" and tensor.optional:
            raise RuntimeLoadError(
                f"python: predictor class {target!r} output {tensor.name!r} is optional; "
                "only inputs can be"
            )
    return [replace(t, shape=tuple(t.shape)) for t in tensors]


def _parameters(cls: type, target: str) -> list[ParameterSpec]:
    """The class's declared request parameters, checked."""
    declared = list(getattr(cls, "parameters", ()))
    for parameter in declared:
        if not isinstance(parameter, ParameterSpec):
            raise RuntimeLoadError(
                f"python: predictor class {target!r} parameters must hold sdk.Parameter "
                f"values, got {parameter!r}"
            )
    return declared
