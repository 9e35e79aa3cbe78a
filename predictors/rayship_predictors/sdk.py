"""The public base class of the python runtime: declare your tensors, write `predict`.

Subclass `Predictor` in a module shipped in the model's version folder and name it in
`spec.model.python.predictorClass` as "module:Class". Everything a predictor needs comes from
this one module, so user code does not depend on the package's internal layout.

    import numpy as np
    from rayship_predictors.sdk import BadRequest, Predictor, Tensor

    class Upper(Predictor):
        inputs = (Tensor("text", "BYTES", (-1,)),)
        outputs = (Tensor("text", "BYTES", (-1,)),)

        def predict(self, inputs):
            return {"text": np.array([t.upper() for t in inputs["text"]], dtype=object)}
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from rayship_predictors.errors import BadRequest
from rayship_predictors.runtimes.base import TensorSpec as Tensor

__all__ = ["BadRequest", "Predictor", "Tensor"]


class Predictor(ABC):
    """A model written in Python: pre-processing, a model call, post-processing.

    `inputs` and `outputs` are the V2 metadata clients see (a `-1` dimension is variable);
    `spec.model.inputs` / `outputs` in the ModelDeployment replace them when given. The runtime
    creates one instance per replica with no arguments, calls `load` once, then `predict` for
    every request. Raise `BadRequest` for input the model cannot take (the client gets a 400).
    Import helper modules from the version folder at the top of your module: the folder is on
    `sys.path` only while this class is imported.
    """

    inputs: ClassVar[Sequence[Tensor]] = ()
    outputs: ClassVar[Sequence[Tensor]] = ()

    def load(self, path: Path) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Read what the model needs (weights, vocabularies) from the version folder `path`."""

    @abstractmethod
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Map input names to arrays onto output names to arrays, one row per batch item.

        Inputs arrive validated against `inputs` (BYTES as object arrays of `bytes`); outputs are
        converted to the declared datatypes.
        """
