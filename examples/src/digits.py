"""Read a handwritten digit (0-9) from an uploaded PNG or JPEG: the python runtime with Pillow
pre-processing and a small PyTorch CNN.

`build_models.py` trains `DigitNet` on scikit-learn's digits and copies this file into the
version folder beside `model.pt` (the net's state_dict) and `labels.txt` (predictorClass
"digits:DigitClassifier"). The weights ship as a state_dict rather than TorchScript because
`torch.load(weights_only=True)` reads a state_dict without running pickled code, TorchScript is
deprecated in favour of `torch.export`, and the net is already here: this module is the code
the version folder must ship anyway, so a state_dict costs no extra file.

An image becomes what the net was trained on, scikit-learn's `load_digits` convention: an 8x8
grid of 0..16 with the digit bright on a dark background, filling the grid. So an upload is
decoded, turned upright (EXIF), laid on white if it has transparency, made grey, inverted if
its background is light, contrast-stretched to the full range, box-averaged down to 8x8 (as
sklearn's grids count the inked pixels of 4x4 blocks) and scaled to 0..16. The background is
light when the mean of the image's outermost pixels is above the middle of its darkest and
brightest: a digit touches the border far less than its background does. Crop the digit
before uploading: the grid is the whole image.
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from rayship_predictors.sdk import BadRequest, Parameter, Predictor, Tensor

GRID = 8  # sklearn's digits are 8x8
SCALE = 16  # ... of 0..16
FORMATS = ("PNG", "JPEG")
MAX_PIXELS = 4096 * 4096  # bigger uploads are refused before they are decoded
BASE64 = "base64"  # the input parameter `content_type` that says JSON strings are base64


class DigitNet(torch.nn.Module):
    """Two 3x3 convolutions and a 2x2 max-pool over the 8x8 grid, then one linear layer.

    Takes [n, 1, 8, 8] in sklearn's 0..16 units (it scales them itself, so callers and the
    trainer hand it the data set's own values) and returns [n, 10] logits.
    """

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, channels, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(channels, 2 * channels, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
        )
        self.classify = torch.nn.Linear(2 * channels * (GRID // 2) ** 2, 10)

    def forward(self, grids: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(grids / SCALE))  # type: ignore[no-any-return]


class DigitClassifier(Predictor):
    """The `top_k` most probable digits of each image, best first.

    `confidence_threshold` leaves out classes less probable than it. Every row has exactly
    `top_k` columns, the left-out ones padded with label "" and probability 0: a batch must be
    rectangular, and a width that depended on the other images of the call would make an
    answer depend on which requests Serve happened to batch with it. An empty batch answers
    [0, top_k] outputs. JSON cannot carry raw image bytes, so a JSON request sends each image
    base64-encoded and says so with the input parameter `"content_type": "base64"`.
    """

    inputs = (Tensor("image", "BYTES", (-1,)),)
    outputs = (Tensor("label", "BYTES", (-1, -1)), Tensor("probability", "FP32", (-1, -1)))
    parameters = (Parameter("top_k", int, 5), Parameter("confidence_threshold", float, 0.0))

    def load(self, path: Path) -> None:
        """The labels and the net, on one torch thread, process-wide (the replica serves this
        model alone): the replica runs several predict calls at once, and a net this small
        gains nothing from an OpenMP team per call, which only oversubscribes the cores."""
        torch.set_num_threads(1)
        labels = (path / "labels.txt").read_text().split()
        self.labels = np.array([label.encode() for label in labels], dtype=object)
        self.net = DigitNet()
        self.net.load_state_dict(torch.load(path / "model.pt", weights_only=True))
        self.net.eval()

    def predict(
        self,
        inputs: dict[str, np.ndarray],
        parameters: dict[str, object],
        input_parameters: dict[str, dict[str, object]],
    ) -> dict[str, np.ndarray]:
        top_k = self._top_k(parameters["top_k"])
        threshold = _threshold(parameters["confidence_threshold"])
        images = _payloads(inputs["image"].ravel(), input_parameters.get("image", {}))
        grids = np.array(
            [digit_grid(data, f"image[{i}]") for i, data in enumerate(images)], np.float32
        ).reshape(-1, 1, GRID, GRID)
        with torch.inference_mode():
            probabilities = torch.softmax(self.net(torch.from_numpy(grids)), dim=1).numpy()
        best = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        scores = np.take_along_axis(probabilities, best, axis=1)
        kept = scores >= threshold
        return {
            "label": np.where(kept, self.labels[best], b""),
            "probability": np.where(kept, scores, np.float32(0)),
        }

    def _top_k(self, value: object) -> int:
        """`top_k` as an int in 1..number of classes."""
        assert isinstance(value, int)  # the declared Parameter checked the type
        if not 1 <= value <= len(self.labels):
            raise BadRequest(f"parameter 'top_k': must be 1..{len(self.labels)}, got {value}")
        return value


def _threshold(value: object) -> float:
    """`confidence_threshold` as a float in 0..1."""
    assert isinstance(value, float)  # the declared Parameter checked and converted it
    if not 0.0 <= value <= 1.0:
        raise BadRequest(f"parameter 'confidence_threshold': must be 0..1, got {value}")
    return value


def _payloads(images: np.ndarray, parameters: dict[str, object]) -> list[bytes]:
    """The image files: as sent, or base64-decoded when the input says `content_type: base64`."""
    content_type = parameters.get("content_type")
    if content_type is None:
        return list(images)
    if content_type != BASE64:
        raise BadRequest(
            f"input 'image': content_type {content_type!r} is not supported; "
            f"send the files as they are, or base64 with content_type {BASE64!r}"
        )
    return [_from_base64(data, f"image[{i}]") for i, data in enumerate(images)]


def _from_base64(data: bytes, where: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error as error:
        raise BadRequest(f"{where}: content_type is base64 but this is not: {error}") from None


def digit_grid(data: bytes, where: str) -> np.ndarray:
    """An image file as the net's input: [8, 8] floats in 0..16, the digit bright on dark."""
    grey = np.asarray(_decoded(data, where), dtype=np.float64)
    if _border_mean(grey) > (grey.min() + grey.max()) / 2:  # a light background
        grey = 255 - grey
    stretched = ImageOps.autocontrast(Image.fromarray(grey.astype(np.uint8)))
    small = stretched.resize((GRID, GRID), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) * (SCALE / 255)


def _decoded(data: bytes, where: str) -> Image.Image:
    """The greyscale image in `data`, upright; a BadRequest naming `where` for anything else.

    Pillow reports a damaged file with whichever exception its decoder hit (OSError,
    SyntaxError, ValueError, zlib.error, struct.error...), so every one of them is the
    client's bad file, not a failure of the model.
    """
    try:
        image = Image.open(io.BytesIO(data))
        _check_header(image, where)
        image.load()  # decodes the pixels: a truncated or corrupt file fails here
        upright = ImageOps.exif_transpose(image)
    except BadRequest:
        raise
    except Exception as error:
        raise BadRequest(f"{where}: not a PNG or JPEG image ({_reason(data, error)})") from None
    return _on_white(upright).convert("L")


def _check_header(image: Image.Image, where: str) -> None:
    """Refuse other formats, and sizes too big to decode, before decoding anything."""
    if image.format not in FORMATS:
        raise BadRequest(f"{where}: not a PNG or JPEG image ({image.format} given)")
    if image.width * image.height > MAX_PIXELS:
        raise BadRequest(
            f"{where}: {image.width}x{image.height} is more than the {MAX_PIXELS} pixels "
            "this model decodes"
        )


def _reason(data: bytes, error: Exception) -> str:
    """Pillow's complaint, with a hint when the client sent base64 but did not say so.

    Pillow's message for an unknown format names an internal BytesIO object: replaced.
    """
    reason = "unknown file format" if isinstance(error, UnidentifiedImageError) else str(error)
    if data and _is_base64(data):
        return f"{reason}; base64? then give the input the parameter content_type '{BASE64}'"
    return reason


def _is_base64(data: bytes) -> bool:
    try:
        base64.b64decode(data, validate=True)
    except binascii.Error:
        return False
    return True


def _on_white(image: Image.Image) -> Image.Image:
    """Transparent pixels as white paper: a digit drawn on a transparent canvas stays visible."""
    if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
        return image
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)


def _border_mean(grey: np.ndarray) -> float:
    """The mean of the outermost rows and columns: the background's brightness."""
    edges = (grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1])
    return float(np.concatenate(edges).mean())
