"""The interface every runtime implements: load once, describe tensors, infer on numpy arrays.

The data plane only ever sees this interface, so ONNX Runtime, PyTorch and user Python classes
are interchangeable behind the V2 endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor as V2 metadata describes it; -1 in `shape` is a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_metadata(self) -> dict[str, object]:
        """The V2 metadata form: `{"name", "datatype", "shape"}`."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


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

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named arrays (already validated against `inputs`)."""
        ...
