"""An MLServer 1.7 custom runtime wrapping the benchmark's ONNX model.

Loaded by `mlserver start` in its own virtual environment (bench/server_bench.py writes the
settings.json and model-settings.json next to a copy of this file).
"""

from __future__ import annotations

import numpy as np
import onnxruntime
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):  # type: ignore[misc]
    """One ONNX Runtime session behind the V2 protocol."""

    async def load(self) -> bool:
        path = self.settings.parameters.uri
        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.output_names = [output.name for output in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
        arrays = self.session.run(None, inputs)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[
                NumpyCodec.encode_output(name, np.asarray(array))
                for name, array in zip(self.output_names, arrays, strict=True)
            ],
        )
