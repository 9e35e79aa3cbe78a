"""KServe custom predictors: a `kserve.Model` subclass from the version folder, served unchanged.

The class is made as KServe's model server expects it made, `Class(name)` with the V2 model
name, and loaded once: KServe's server never calls `load` itself (the user's `__main__` or the
class's own constructor does, and the server then refuses a model whose `ready` is false), so
`load()` runs here only when construction left `ready` false, sync or async, and `ready` must
be true afterwards. Each request then goes through `Model.__call__`, the very method KServe's
data plane calls: `preprocess`, `predict` and `postprocess` in order, coroutines awaited and sync
handlers called inline on the event loop, response headers passed to models that ask for them.
Calling it rather than a copy of it keeps those rules KServe's own.

What the model sees is what KServe's V2 REST path would give it: an `InferRequest` whose inputs
hold flat `data` lists (BYTES as `str`), the request's `parameters` (None when there are none)
and each input's own, and empty headers (HTTP headers stop at Rayship's transport). It may
answer with an `InferResponse` or a V2 response dict (`{"outputs": [{name, datatype, shape,
data}]}`), the two forms KServe's REST path accepts. Rayship's codec and routes stay in front,
so KServe parses no request here, and rollouts, canaries, batching and versions apply as to any
runtime. `kserve.errors.InvalidInput` becomes a 400 with its message; anything else the model
raises is left to the data plane, which answers 500 naming the model and version.

Tensor metadata: `spec.model.inputs` / `outputs` when given, else what the class's
`get_input_types()` / `get_output_types()` (KServe's own metadata hooks) return. A model that
declares neither is refused at load: every request is checked against the declared inputs, so
a model with none would be Ready yet answer every request with 400.

This is the only module that imports kserve, and only when a kserve model loads.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from rayship.spec import RuntimeSpec, TensorDecl
from rayship_predictors.errors import BadRequest, ModelFailure
from rayship_predictors.runtimes.base import Parameters, TensorSpec
from rayship_predictors.runtimes.errors import RuntimeLoadError, describe
from rayship_predictors.runtimes.imports import import_class
from rayship_predictors.v2.codec import JSON
from rayship_predictors.v2.datatypes import V2_TO_NUMPY, v2_datatype_of


class KserveRuntime:
    """One instance of the user's `kserve.Model` subclass, loaded from the version folder."""

    platform = "kserve"

    def __init__(self, model: RuntimeSpec, model_dir: Path, model_name: str) -> None:
        if model.kserve is None:
            raise RuntimeLoadError("kserve: spec.model.kserve.modelClass is required")
        self._kserve = _import_kserve()
        self.name = model_name
        target = model.kserve.model_class
        what = f"kserve: model class {target!r}"
        cls = import_class(target, model_dir, "kserve: model class")
        if not issubclass(cls, self._kserve.Model):
            raise RuntimeLoadError(f"{what} is not a kserve.Model subclass")
        try:
            self._model: Any = cls(model_name)
            if not self._model.ready:
                _run_to_completion(self._model.load())
        except Exception as exc:
            raise RuntimeLoadError(f"{what} failed to load {model_dir}: {describe(exc)}") from exc
        if not self._model.ready:
            raise RuntimeLoadError(
                f"{what} did not become ready loading {model_dir}: load() must set "
                "self.ready = True, as KServe's model server requires"
            )
        self.inputs = _tensors("inputs", model.inputs, self._model.get_input_types, what)
        self.outputs = _tensors("outputs", model.outputs, self._model.get_output_types, what)

    async def infer_async(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, JSON]
    ) -> dict[str, np.ndarray]:
        """One request through the model's preprocess, predict and postprocess.

        Awaited on the replica's event loop, as KServe's server awaits a model on its own: a
        sync handler blocks the loop while it runs, exactly as under KServe, and no two run at
        once, so models written for KServe need not be thread-safe here either.
        """
        request = self._request(inputs, parameters)
        try:
            response, _headers = await self._model(request, headers={})
        except self._kserve.errors.InvalidInput as exc:
            raise BadRequest(f"model {self.name!r} refused the input: {exc}") from None
        return self._outputs(response)

    def infer(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, JSON]
    ) -> dict[str, np.ndarray]:
        """`infer_async` for a caller with no event loop (a script, a worker thread).

        The data plane awaits `infer_async` instead; this runs the same call on a loop of its
        own, so a model whose async handlers hold objects bound to another loop fails here.
        """
        return asyncio.run(self.infer_async(inputs, parameters))

    def _request(self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, JSON]) -> Any:
        """The `InferRequest` KServe's V2 REST path would build for these inputs."""
        per_input = parameters.inputs if isinstance(parameters, Parameters) else {}
        infer_inputs = [
            self._kserve.InferInput(
                name=name,
                shape=list(array.shape),
                datatype=v2_datatype_of(array),
                data=_data(array),
                parameters=dict(per_input.get(name) or {}),
            )
            for name, array in inputs.items()
        ]
        return self._kserve.InferRequest(
            model_name=self.name, infer_inputs=infer_inputs, parameters=dict(parameters) or None
        )

    def _outputs(self, response: object) -> dict[str, np.ndarray]:
        """The model's answer as the declared outputs, each cast to its declared datatype."""
        if isinstance(response, dict):
            response = self._from_dict(response)
        if not isinstance(response, self._kserve.InferResponse):
            raise ModelFailure(
                f"model {self.name!r} returned {type(response).__name__}, not an InferResponse "
                "or a V2 response dict"
            )
        arrays = {output.name: self._array(output) for output in response.outputs}
        declared = [spec.name for spec in self.outputs]
        undeclared = sorted(set(arrays) - set(declared))
        if undeclared:
            raise ModelFailure(
                f"model {self.name!r} returned outputs {undeclared} it does not declare; "
                f"its outputs are {declared}"
            )
        missing = [name for name in declared if name not in arrays]
        if missing:
            raise ModelFailure(f"model {self.name!r} returned no {missing}")
        return {spec.name: self._cast(spec, arrays[spec.name]) for spec in self.outputs}

    def _from_dict(self, response: dict[str, Any]) -> Any:
        try:
            return self._kserve.InferResponse.from_rest(response)
        except (KeyError, TypeError) as exc:
            raise ModelFailure(
                f"model {self.name!r} returned a dict that is not a V2 response "
                '({"outputs": [{"name", "datatype", "shape", "data"}]}): '
                f"{describe(exc)}"
            ) from None

    def _array(self, output: Any) -> np.ndarray:
        try:
            array: np.ndarray = output.as_numpy()
        except (TypeError, ValueError) as exc:
            raise ModelFailure(
                f"model {self.name!r}: output {output.name!r} does not fit its datatype "
                f"{output.datatype} and shape {output.shape}: {describe(exc)}"
            ) from None
        return array

    def _cast(self, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(array, dtype=V2_TO_NUMPY[spec.datatype])
        except (TypeError, ValueError) as exc:
            raise ModelFailure(
                f"model {self.name!r}: output {spec.name!r} is not {spec.datatype}: {describe(exc)}"
            ) from None


def _import_kserve() -> ModuleType:
    """Import kserve, whose absence reads as what to install.

    Importing it parses the process's command line (kserve.model_server reads its flags at
    import time); a replica's command line is Ray's, which is none of KServe's business, so the
    import sees an empty one.
    """
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        return importlib.import_module("kserve")
    except ImportError as exc:
        raise RuntimeLoadError(
            f"kserve: the kserve runtime needs KServe: pip install 'rayship[kserve]' "
            f"({describe(exc)})"
        ) from exc
    finally:
        sys.argv = argv


def _run_to_completion(result: object) -> None:
    """Wait for `load()` when it is `async def`, which KServe allows.

    Serve makes the runtime on the replica's event loop thread, where `asyncio.run` refuses to
    nest and waiting on a coroutine scheduled onto that same loop would never return, so the
    coroutine runs on a loop of its own in a helper thread. That loop is gone afterwards:
    objects bound to it (an aiohttp session) must be made in the handlers instead.
    """
    if inspect.iscoroutine(result):
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kserve-load") as pool:
            pool.submit(asyncio.run, result).result()


def _data(array: np.ndarray) -> list[Any]:
    """An input's `data` as KServe's REST path hands it over: a flat list of Python values.

    BYTES elements become `str`, as KServe decodes them; one that is not UTF-8 (KServe would
    fail the request) stays `bytes`, so a model that can take bytes still gets them.
    """
    flat: list[Any] = array.ravel().tolist()
    if array.dtype != np.object_:
        return flat
    return [_text(item) for item in flat]


def _text(item: object) -> object:
    if isinstance(item, bytes):
        try:
            return item.decode()
        except UnicodeDecodeError:
            return item
    return item


def _tensors(
    attribute: str, declared: Sequence[TensorDecl], offered: Callable[[], object], what: str
) -> list[TensorSpec]:
    """The spec's declarations when given, else the model's `get_<input|output>_types()`."""
    if declared:
        return [TensorSpec(decl.name, decl.datatype, tuple(decl.shape)) for decl in declared]
    method = f"get_{attribute.removesuffix('s')}_types()"
    try:
        entries = offered()
    except Exception as exc:
        raise RuntimeLoadError(f"{what}: {method} failed: {describe(exc)}") from exc
    if not entries:
        raise RuntimeLoadError(
            f"{what}: neither spec.model.{attribute} nor the class's {method} declares "
            f"{attribute}; declare them in spec.model.{attribute}"
        )
    if not isinstance(entries, list | tuple):
        raise RuntimeLoadError(f"{what}: {method} must return a list, got {entries!r}")
    return [_tensor(entry, method, what) for entry in entries]


def _tensor(entry: object, method: str, what: str) -> TensorSpec:
    """One entry of `get_input_types()`: V2 metadata, `{"name", "datatype", "shape"}`."""
    if isinstance(entry, Mapping):
        name, datatype, shape = entry.get("name"), entry.get("datatype"), entry.get("shape")
        if (
            isinstance(name, str)
            and name
            and isinstance(datatype, str)
            and datatype in V2_TO_NUMPY
            and isinstance(shape, list | tuple)
            and all(type(dim) is int and dim >= -1 for dim in shape)
        ):
            return TensorSpec(name, datatype, tuple(shape))
    raise RuntimeLoadError(
        f"{what}: {method} entry {entry!r} must be "
        '{"name": ..., "datatype": <a V2 datatype>, "shape": [...]}'
    )
