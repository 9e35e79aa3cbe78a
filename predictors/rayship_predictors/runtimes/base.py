"""The interface every runtime implements: load once, describe tensors, infer on numpy arrays.

The data plane only ever sees this interface, so ONNX Runtime, PyTorch and user Python classes
are interchangeable behind the V2 endpoints. Two extensions are optional, found by
`isinstance` on the protocols below, so a runtime that needs neither implements neither:
`AsyncInfer` (awaited on the replica's event loop instead of running `infer` in a thread) and
`DeclaresParameters` (request parameters the data plane checks and defaults before `infer`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from rayship_predictors.errors import BadRequest
from rayship_predictors.v2.codec import JSON, encode_json
from rayship_predictors.v2.datatypes import V2_TO_NUMPY


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor as V2 metadata describes it; -1 in `shape` is a variable dimension.

    An `optional` input may be left out of a request. It then gets `default` (any array-like,
    converted once here to the datatype and made read-only, since every request shares it), or
    is absent from the inputs when there is no default. Equality ignores `default`: two specs
    describe the same tensor whatever they fall back to.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    optional: bool = False
    default: npt.ArrayLike | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.default is not None:
            object.__setattr__(self, "default", self._default_array(self.default))

    def accepts(self, shape: tuple[int, ...]) -> bool:
        """True when an array of `shape` fits: the declared rank, every fixed dimension equal.

        An empty declared shape accepts any array (nothing was declared to hold it to).
        """
        return not self.shape or (
            len(shape) == len(self.shape)
            and all(want in (-1, got) for got, want in zip(shape, self.shape, strict=True))
        )

    def to_metadata(self) -> dict[str, object]:
        """The V2 metadata form: `{"name", "datatype", "shape"}`, plus `"optional": true`."""
        metadata: dict[str, object] = {
            "name": self.name,
            "datatype": self.datatype,
            "shape": list(self.shape),
        }
        if self.optional:
            metadata["optional"] = True
        return metadata

    def _default_array(self, value: npt.ArrayLike) -> np.ndarray:
        """`value` as this tensor's array; a mistake is a ValueError when the class is defined."""
        where = f"tensor {self.name!r}"
        if not self.optional:
            raise ValueError(f"{where}: a default needs optional=True")
        if self.datatype not in V2_TO_NUMPY:
            raise ValueError(f"{where}: unknown datatype {self.datatype!r}")
        try:
            array = np.array(value, dtype=V2_TO_NUMPY[self.datatype])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: default is not {self.datatype}: {error}") from None
        if self.datatype == "BYTES" and not all(isinstance(v, bytes) for v in array.flat):
            raise ValueError(f"{where}: a BYTES default holds bytes, as requests do")
        if not self.accepts(array.shape):
            raise ValueError(
                f"{where}: default of shape {list(array.shape)} does not fit {list(self.shape)}"
            )
        array.flags.writeable = False
        return array


class _Required(enum.Enum):
    """The type of `REQUIRED`, so `ParameterSpec.default` can say "no default" apart from null."""

    REQUIRED = enum.auto()


REQUIRED: Final = _Required.REQUIRED

# The Python types JSON values parse into, with how an error message names each.
_JSON_TYPES: dict[type, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
}
_SHOWN_CHARS = 60  # of a wrong value in an error message: enough to recognise it


@dataclass(frozen=True)
class ParameterSpec:
    """A request parameter a model takes: its name, JSON type and default.

    Without a default the parameter is required. A `float` parameter also takes JSON integers
    (as floats), and nothing else is converted: `true` is not an integer, nor `5.0` one.
    """

    name: str
    type: type
    default: JSON | _Required = REQUIRED

    def __post_init__(self) -> None:
        if self.type not in _JSON_TYPES:
            names = ", ".join(t.__name__ for t in _JSON_TYPES)
            raise ValueError(f"parameter {self.name!r}: type must be one of {names}")
        default = self.default
        if default is not REQUIRED and default is not None and not self._fits(default):
            raise ValueError(
                f"parameter {self.name!r}: default {default!r} is not {_JSON_TYPES[self.type]}"
            )

    def parse(self, value: JSON) -> JSON:
        """The client's value, checked: a wrong type is a BadRequest naming the parameter."""
        if not self._fits(value):
            shown = encode_json(value).decode()
            if len(shown) > _SHOWN_CHARS:
                shown = shown[:_SHOWN_CHARS] + "..."
            raise BadRequest(
                f"parameter {self.name!r}: expected {_JSON_TYPES[self.type]}, got {shown}"
            )
        return float(value) if self.type is float and isinstance(value, int) else value

    def _fits(self, value: object) -> bool:
        return type(value) is self.type or (self.type is float and type(value) is int)


class Parameters(Mapping[str, JSON]):
    """The `parameters` a runtime's `infer` gets: the request's, read-only, as a mapping.

    Each input's own parameters ride along in `inputs` (input name -> its parameters, for the
    inputs that have any) instead of widening `infer`'s signature, which every runtime
    implements: a runtime that wants only the request's parameters uses this as the mapping
    it is, and one that wants an input's looks in `inputs`.
    """

    def __init__(
        self,
        request: Mapping[str, JSON] | None = None,
        inputs: Mapping[str, Mapping[str, JSON]] | None = None,
    ) -> None:
        self._request: Mapping[str, JSON] = request or {}
        self.inputs: Mapping[str, Mapping[str, JSON]] = inputs or {}

    def __getitem__(self, name: str) -> JSON:
        return self._request[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._request)

    def __len__(self) -> int:
        return len(self._request)

    def __repr__(self) -> str:
        return f"Parameters({dict(self._request)!r}, inputs={dict(self.inputs)!r})"


class Runtime(Protocol):
    """A loaded model. Implementations are constructed with the local version folder."""

    @property
    def inputs(self) -> list[TensorSpec]:
        """The tensors `infer` accepts."""
        ...

    @property
    def outputs(self) -> list[TensorSpec]:
        """The tensors `infer` returns."""
        ...

    @property
    def platform(self) -> str:
        """The V2 `platform` string, e.g. `onnxruntime_onnx`."""
        ...

    def infer(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, JSON]
    ) -> dict[str, np.ndarray]:
        """Run the model on named arrays (already validated against `inputs`).

        `parameters` are the request's (a `Parameters`, whose `inputs` has each input's). The
        data plane calls this in a worker thread, several calls at once up to the replica's
        RAYSHIP_PREDICT_THREADS, so it must be thread-safe; ONNX Runtime sessions and torch
        modules in inference mode are, and release the GIL while they compute.
        """
        ...


@runtime_checkable
class AsyncInfer(Protocol):
    """A runtime whose calls wait on I/O: awaited on the replica's event loop, not in a thread."""

    async def infer_async(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, JSON]
    ) -> dict[str, np.ndarray]:
        """What `Runtime.infer` returns; the data plane awaits this instead when it exists."""
        ...


@runtime_checkable
class DeclaresParameters(Protocol):
    """A runtime that names the request parameters it takes, with their types and defaults."""

    @property
    def parameters(self) -> Sequence[ParameterSpec]:
        """Checked and defaulted by the data plane; undeclared parameters pass untouched."""
        ...
