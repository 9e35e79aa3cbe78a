"""KServe's Python model server (kserve 0.21) wrapping the benchmark's ONNX model.

Runs in its own virtual environment (see bench/server_bench.py), never in the project's:

    python kserve_server.py --model_path model.onnx --model_name iris --http_port 8080
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import onnxruntime
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.model_server import parser as kserve_parser


class OnnxModel(Model):  # type: ignore[misc]
    """One ONNX Runtime session behind the V2 protocol."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.session: onnxruntime.InferenceSession | None = None
        self.load()

    def load(self) -> bool:
        self.session = onnxruntime.InferenceSession(self.path, providers=["CPUExecutionProvider"])
        self.ready = True
        return True

    async def predict(
        self, payload: InferRequest, headers: Any = None, response_headers: Any = None
    ) -> InferResponse:
        assert self.session is not None
        inputs = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
        names = [output.name for output in self.session.get_outputs()]
        arrays = self.session.run(None, inputs)
        binary = bool((payload.parameters or {}).get("binary_data_output", False))
        outputs = []
        for name, result in zip(names, arrays, strict=True):
            array = np.asarray(result)
            datatype = "FP32" if array.dtype == np.float32 else "INT64"
            output = InferOutput(name=name, shape=list(array.shape), datatype=datatype)
            output.set_data_from_numpy(array, binary_data=binary)
            outputs.append(output)
        return InferResponse(
            response_id=payload.id or "", model_name=self.name, infer_outputs=outputs
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve_parser])
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    ModelServer(workers=1, enable_latency_logging=False).start(
        [OnnxModel(args.model_name, args.model_path)]
    )
