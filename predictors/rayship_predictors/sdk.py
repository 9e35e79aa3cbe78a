"""Everything user code needs to write a python-runtime model: declare tensors, write `predict`.

Subclass `Predictor` in a module shipped in the model's version folder and name it in
`spec.model.python.predictorClass` as "module:Class". Import only from this module
(`__all__`), so user code does not depend on the package's internal layout.

The simplest predictor maps input arrays to output arrays:

    import numpy as np
    from rayship_predictors.sdk import Predictor, Tensor

    class Upper(Predictor):
        inputs = (Tensor("text", "BYTES", (-1,)),)
        outputs = (Tensor("text", "BYTES", (-1,)),)

        def predict(self, inputs):
            return {"text": np.array([t.upper() for t in inputs["text"]], dtype=object)}

`predict` runs in a thread of the replica's pool, so a slow call never stalls the others:
several calls run at once (up to RAYSHIP_PREDICT_THREADS, 4 by default), so keep request state
in local variables, not on `self`. A predictor that waits on I/O (a remote model, a feature
store) can be `async def` instead; it is awaited on the replica's event loop, where any number
of calls can wait at once, so it must never block: await the I/O, keep compute short.
aiohttp comes with Ray, so every replica has it:

    import aiohttp
    import numpy as np
    from rayship_predictors.sdk import Predictor, Tensor

    class Embed(Predictor):
        inputs = (Tensor("text", "BYTES", (-1,)),)
        outputs = (Tensor("vector", "FP32", (-1, -1)),)

        def load(self, path):
            self.url = (path / "endpoint.txt").read_text().strip()

        async def predict(self, inputs):
            texts = [t.decode() for t in inputs["text"]]
            async with aiohttp.ClientSession() as session:
                async with session.post(self.url, json={"texts": texts}) as reply:
                    vectors = (await reply.json())["vectors"]
            return {"vector": np.array(vectors, dtype=np.float32)}

V2 requests carry `parameters`, the request's and each input's. A predictor that wants them
names them in its signature: `parameters` (the request's, a `dict[str, JSON]`) and/or
`input_parameters` (input name -> that input's dict, for the inputs that have any). The runtime
passes only what `predict` names, so the one-argument form above keeps working, and a new
predictor asks for exactly what it uses, as plain dicts, with no request object to learn.
Parameters the class declares are checked and defaulted before `predict` runs: a client sending
`{"top_k": "five"}` gets a 400 saying `parameter 'top_k': expected an integer, got "five"`,
and leaving out a `Parameter` declared without a default is a 400 too. Parameters it does not
declare reach `predict` as the client sent them, less the binary tensor
extension's own (`binary_data_output`, `binary_data_size`):

    import numpy as np
    from rayship_predictors.sdk import Parameter, Predictor, Tensor

    class TopK(Predictor):
        inputs = (Tensor("logits", "FP32", (-1, -1)),)
        outputs = (Tensor("indices", "INT64", (-1, -1)), Tensor("scores", "FP32", (-1, -1)))
        parameters = (Parameter("top_k", int, 3), Parameter("temperature", float, 1.0))

        def predict(self, inputs, parameters):
            logits = inputs["logits"] / parameters["temperature"]
            scores = np.exp(logits - logits.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
            indices = np.argsort(-scores, axis=1)[:, : parameters["top_k"]]
            return {"indices": indices, "scores": np.take_along_axis(scores, indices, axis=1)}

An input can be `optional`: a request may leave it out, and it then gets its `default` (an
array of the declared datatype and a shape that fits) or, without one, is absent from `inputs`.
A missing input that is not optional is still a 400 naming it. Metadata and `/config` mark
optional inputs with `"optional": true`:

    import numpy as np
    from rayship_predictors.sdk import Predictor, Tensor

    class Threshold(Predictor):
        inputs = (
            Tensor("scores", "FP32", (-1,)),
            Tensor("threshold", "FP32", (1,), optional=True, default=[0.5]),
            Tensor("mask", "BOOL", (-1,), optional=True),
        )
        outputs = (Tensor("hits", "BOOL", (-1,)),)

        def predict(self, inputs):
            hits = inputs["scores"] > inputs["threshold"][0]
            if "mask" in inputs:
                hits &= inputs["mask"]
            return {"hits": hits}

Arrays decoded from binary requests are read-only views, and defaults are shared by every
request: copy an input before changing it in place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from rayship_predictors.errors import BadRequest
from rayship_predictors.runtimes.base import ParameterSpec as Parameter
from rayship_predictors.runtimes.base import TensorSpec as Tensor
from rayship_predictors.v2.codec import JSON

__all__ = ["JSON", "BadRequest", "Parameter", "Predictor", "Tensor"]

Outputs = dict[str, np.ndarray]


class Predictor:
    """A model written in Python: pre-processing, a model call, post-processing.

    `inputs` and `outputs` are the V2 metadata clients see (a `-1` dimension is variable);
    `spec.model.inputs` / `outputs` in the ModelDeployment replace them when given (and are
    never optional). `parameters` declares the request parameters `predict` takes. The runtime
    creates one instance per replica with no arguments, calls `load` once, then `predict` for
    every request. Raise `BadRequest` for input the model cannot take (the client gets a 400).
    Import helper modules from the version folder at the top of your module: the folder is on
    `sys.path` only while this class is imported.
    """

    inputs: ClassVar[Sequence[Tensor]] = ()
    outputs: ClassVar[Sequence[Tensor]] = ()
    parameters: ClassVar[Sequence[Parameter]] = ()

    predict: Callable[..., Outputs | Awaitable[Outputs]]
    """Map input names to arrays onto output names to arrays, one row per batch item.

    Write it as `predict(self, inputs)`, optionally also taking `parameters` and/or
    `input_parameters` by those names, and as `def` or `async def` (the module docstring shows
    each). Inputs arrive validated against `inputs` (BYTES as object arrays of `bytes`);
    outputs are converted to the declared datatypes. Declared as an attribute rather than an
    abstract method so that every one of those signatures type-checks as an override.
    """

    def load(self, path: Path) -> None:
        """Read what the model needs (weights, vocabularies) from the version folder `path`."""
