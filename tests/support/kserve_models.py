"""KServe custom predictors for the kserve runtime's tests, written as KServe's documentation
writes them (a `kserve.Model` subclass; `load` sets `self.ready`; `predict` takes an
`InferRequest` and builds `InferOutput`s), never importing anything of Rayship's."""

from __future__ import annotations

import textwrap
from pathlib import Path

# Sync handlers, an InferResponse, an InvalidInput for bad input and a plain exception for a bug.
# It reads its factor from a file beside itself, as a model reads its weights, so two versions
# answer differently; `served_by` reports the name it was made with and how often it loaded.
SCALER = """
from pathlib import Path
from typing import Dict

from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

HERE = Path(__file__).resolve().parent


class Scaler(Model):
    def __init__(self, name: str):
        super().__init__(name)
        self.loads = 0

    def load(self):
        self.factor = float((HERE / "factor.txt").read_text())
        self.loads += 1
        self.ready = True

    def predict(self, payload: InferRequest, headers: Dict[str, str] = None) -> InferResponse:
        x = payload.inputs[0].as_numpy()
        if (x < 0).any():
            raise InvalidInput("x must not be negative")
        if (x == 13).any():
            raise ZeroDivisionError("13 reached a division")
        y = x * (payload.parameters or {}).get("scale", self.factor)
        return InferResponse(
            model_name=self.name,
            response_id=payload.id,
            infer_outputs=[
                InferOutput(name="y", shape=list(y.shape), datatype="FP32", data=y),
                InferOutput(
                    name="served_by", shape=[2], datatype="BYTES", data=[self.name, str(self.loads)]
                ),
            ],
        )
"""
SCALER_SPEC = {
    "kserve": {"modelClass": "predictor:Scaler"},
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
    "outputs": [
        {"name": "y", "datatype": "FP32", "shape": [-1]},
        {"name": "served_by", "datatype": "BYTES", "shape": [2]},
    ],
}

# Async load, preprocess and predict, on BYTES: what arrives as `str` gets shouted, what is not
# UTF-8 arrives as bytes and is only marked.
SHOUTER = """
import asyncio

import numpy as np
from kserve import Model
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse


class Shouter(Model):
    def __init__(self, name: str):
        super().__init__(name)

    async def load(self):
        await asyncio.sleep(0)
        self.mark = "!"
        self.ready = True

    async def preprocess(self, payload: InferRequest, headers=None) -> InferRequest:
        text = payload.inputs[0]
        text.data = [t.upper() if isinstance(t, str) else t for t in text.data]
        return payload

    async def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        await asyncio.sleep(0)
        texts = payload.inputs[0].data
        marked = [t + self.mark if isinstance(t, str) else t + self.mark.encode() for t in texts]
        output = InferOutput(name="text", shape=[len(marked)], datatype="BYTES")
        output.set_data_from_numpy(np.array(marked, dtype=object), binary_data=True)
        return InferResponse(model_name=self.name, response_id=payload.id, infer_outputs=[output])
"""
SHOUTER_SPEC = {
    "kserve": {"modelClass": "predictor:Shouter"},
    "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
    "outputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
}

# Ready from its constructor (nothing to load), its tensors declared with KServe's own metadata
# hooks, and a V2 response dict from predict, rounded by a sync postprocess.
AVERAGER = """
from kserve import Model


class Averager(Model):
    def __init__(self, name):
        super().__init__(name)
        self.ready = True

    def get_input_types(self):
        return [{"name": "rows", "datatype": "FP64", "shape": [-1, -1]}]

    def get_output_types(self):
        return [{"name": "mean", "datatype": "FP64", "shape": [-1]}]

    def predict(self, payload, headers=None):
        mean = payload.inputs[0].as_numpy().mean(axis=1)
        return {
            "model_name": self.name,
            "outputs": [
                {"name": "mean", "datatype": "FP64", "shape": list(mean.shape), "data": list(mean)}
            ],
        }

    def postprocess(self, result, headers=None):
        output = result["outputs"][0]
        output["data"] = [round(value, 3) for value in output["data"]]
        return result
"""
AVERAGER_SPEC = {"kserve": {"modelClass": "predictor:Averager"}}


def kserve_version(folder: Path, source: str, **files: str) -> Path:
    """A version folder holding `predictor.py` (from `source`) and `files` (name -> text)."""
    folder.mkdir(parents=True)
    (folder / "predictor.py").write_text(textwrap.dedent(source))
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder
