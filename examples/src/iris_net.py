"""A small iris classifier: four measurements in, class probabilities and the label out.

`build_models.py` copies this file into the version folder beside `model.pt`, so the folder
carries the class its state_dict belongs to (modelClass "iris_net:IrisNet").
"""

from __future__ import annotations

import torch
from torch import nn


class IrisNet(nn.Module):
    """Linear, ReLU, linear; `forward` returns (probabilities, label) like the ONNX example."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.layers(x)
        return torch.softmax(logits, dim=-1), torch.argmax(logits, dim=-1)
