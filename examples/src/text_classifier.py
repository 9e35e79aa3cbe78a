"""Label short texts by topic: sentence embeddings plus a linear head trained at build time.

`build_models.py` copies this file, `embedder.py` and the model files into the version folder,
with `head.npz` (the head's weights, bias and labels) trained on embeddings of its labelled
sentences (predictorClass "text_classifier:TextClassifier"). A new head or a new encoder is a
new version folder, so the two always ship together.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The version folder's embedder.py: the runtime puts the folder on sys.path only while this
# module is imported, so this import must stay at the top.
from embedder import decode_texts, load_encoder

from rayship_predictors.sdk import Predictor, Tensor


class TextClassifier(Predictor):
    """Embed, then a softmax over the head's labels: the best label and its probability."""

    inputs = (Tensor("text", "BYTES", (-1,)),)
    outputs = (Tensor("label", "BYTES", (-1,)), Tensor("score", "FP32", (-1,)))

    def load(self, path: Path) -> None:
        self.encoder = load_encoder(path)
        with np.load(path / "head.npz", allow_pickle=False) as head:
            self.weights = head["weights"]  # [labels, 384]
            self.bias = head["bias"]  # [labels]
            self.labels = [str(label).encode() for label in head["labels"]]

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        embeddings = self.encoder.embed(decode_texts(inputs["text"]))
        logits = embeddings @ self.weights.T + self.bias
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        best = probabilities.argmax(axis=1)
        return {
            "label": np.array([self.labels[i] for i in best], dtype=object),
            "score": probabilities[np.arange(len(best)), best].astype(np.float32),
        }
