"""The iris classifier as a KServe custom predictor, written as KServe's documentation writes one.

Nothing here knows about Rayship: the same file runs under KServe's own model server
(`kserve.ModelServer().start([IrisClassifier("kserve-custom")])`) and, copied into a version
folder by `build_models.py`, under `format: kserve` (modelClass "kserve_iris:IrisClassifier").
Its weights are version 1 of the iris-onnx example's, so both answer alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

# The version folder: the weights ship beside this module, so each version loads its own.
HERE = Path(__file__).resolve().parent


class IrisClassifier(Model):
    """A linear layer and softmax over sepal and petal measurements (cm)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.load()

    def load(self) -> bool:
        with np.load(HERE / "weights.npz", allow_pickle=False) as weights:
            self.weights = weights["weights"]
            self.bias = weights["bias"]
        self.ready = True
        return self.ready

    def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        features = payload.inputs[0].as_numpy()
        if features.ndim != 2 or features.shape[1] != 4:
            raise InvalidInput(f"expected [n, 4] measurements, got shape {list(features.shape)}")
        logits = features @ self.weights + self.bias
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        label = logits.argmax(axis=1)
        return InferResponse(
            model_name=self.name,
            response_id=payload.id,
            infer_outputs=[
                InferOutput("probabilities", list(probabilities.shape), "FP32", probabilities),
                InferOutput("label", list(label.shape), "INT64", label),
            ],
        )
