"""Name the dominant colour of PPM images: the python runtime with real pre-processing.

`build_models.py` copies this file into the version folder beside `weights.npz`
(predictorClass "predictor:ColourClassifier"). PPM (netpbm) keeps the example free of image
libraries, and its ASCII form (P3) fits into a JSON request.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rayship_predictors.sdk import BadRequest, Predictor, Tensor

_HEADER_FIELD = re.compile(rb"(?:\s|#[^\n]*\n)+(\d+)")  # whitespace or comments, then a number


class ColourClassifier(Predictor):
    """Decode, resize to a fixed grid, normalise, then a linear layer and softmax."""

    inputs = (Tensor("image", "BYTES", (-1,)),)
    outputs = (Tensor("label", "BYTES", (-1,)), Tensor("confidence", "FP32", (-1,)))

    def load(self, path: Path) -> None:
        with np.load(path / "weights.npz", allow_pickle=False) as weights:
            self.weights = weights["weights"]
            self.bias = weights["bias"]
            self.mean = float(weights["mean"])
            self.std = float(weights["std"])
            self.size = int(weights["size"])
            self.labels = [str(label) for label in weights["labels"]]

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        features = np.stack([self._features(image) for image in inputs["image"].ravel()])
        logits = features @ self.weights.T + self.bias
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        best = probabilities.argmax(axis=1)
        return {
            "label": np.array([self.labels[i].encode() for i in best], dtype=object),
            "confidence": probabilities[np.arange(len(best)), best].astype(np.float32),
        }

    def _features(self, image: bytes | str) -> np.ndarray:
        pixels = decode_ppm(image.encode() if isinstance(image, str) else bytes(image))
        height, width, _ = pixels.shape
        rows = np.arange(self.size) * height // self.size  # nearest-neighbour resize
        cols = np.arange(self.size) * width // self.size
        features: np.ndarray = ((pixels[rows][:, cols] - self.mean) / self.std).ravel()
        return features


def decode_ppm(data: bytes) -> np.ndarray:
    """(height, width, 3) floats in [0, 1] from a binary (P6) or ASCII (P3) PPM image."""
    magic = data[:2]
    if magic not in (b"P3", b"P6"):
        raise BadRequest("image: not a PPM image (P3 or P6)")
    fields, position = [], 2
    for _ in range(3):
        match = _HEADER_FIELD.match(data, position)
        if match is None:
            raise BadRequest("image: malformed PPM header")
        fields.append(int(match.group(1)))
        position = match.end()
    width, height, maxval = fields
    if width == 0 or height == 0 or not 0 < maxval < 65536:
        raise BadRequest(f"image: bad PPM size {width}x{height} or maxval {maxval}")
    count = width * height * 3
    if magic == b"P6":
        dtype = np.dtype(np.uint8 if maxval < 256 else ">u2")
        body = data[position + 1 : position + 1 + count * dtype.itemsize]  # one whitespace byte
        if len(body) < count * dtype.itemsize:
            raise BadRequest("image: PPM pixel data is truncated")
        values = np.frombuffer(body, dtype)
    else:
        words = data[position:].split()[:count]
        if len(words) < count or not all(word.isdigit() for word in words):
            raise BadRequest("image: PPM pixel data is truncated or not numeric")
        values = np.array([int(word) for word in words])
    return values.reshape(height, width, 3).astype(np.float64) / maxval
