"""PyTorch: a state_dict plus the `nn.Module` class that owns it, or a TorchScript archive.

This is the only module that imports torch, and only when a pytorch model loads, so ONNX and
python models are served without torch installed. Neither artifact records V2 tensor names or
datatypes, hence `spec.model.inputs` and `outputs` are required here.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rayship.spec import RuntimeSpec, TensorDecl
from rayship_predictors.errors import ModelFailure
from rayship_predictors.runtimes.base import TensorSpec
from rayship_predictors.runtimes.errors import RuntimeLoadError, describe
from rayship_predictors.runtimes.imports import import_class
from rayship_predictors.v2.codec import JSON
from rayship_predictors.v2.datatypes import V2_TO_NUMPY

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class PytorchRuntime:
    """A module in eval mode on one device; `platform` says which kind of artifact it came from.

    "pytorch_libtorch" (Triton's name) for TorchScript, "pytorch" for a state_dict, which needs
    Python and the model's class to run.
    """

    def __init__(self, model: RuntimeSpec, model_dir: Path, use_gpu: bool) -> None:
        self.inputs = _declared("inputs", model.inputs)
        self.outputs = _declared("outputs", model.outputs)
        _require_torch()
        options = model.pytorch
        path = model_dir / options.file
        if not path.is_file():
            raise RuntimeLoadError(f"pytorch: {options.file} not found in {model_dir}")
        self.device = _device(use_gpu)
        if options.model_class is None:
            self.platform = "pytorch_libtorch"
            self._module = _load_torchscript(path, self.device)
        else:
            self.platform = "pytorch"
            self._module = _load_state_dict(
                options.model_class, options.init_args, model_dir, path, self.device
            )

    def infer(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, JSON]
    ) -> dict[str, np.ndarray]:
        """Call forward with the inputs as positional tensors, in declared order.

        `parameters` are ignored: forward takes only tensors.
        """
        import torch

        # Arrays decoded from a request buffer may be read-only, which torch only warns about.
        args = [
            torch.from_numpy(np.require(inputs[spec.name], requirements=["C", "W"])).to(self.device)
            for spec in self.inputs
        ]
        with torch.inference_mode():
            result = self._module(*args)
        return self._named(result)

    def _named(self, result: object) -> dict[str, np.ndarray]:
        """Map forward's tensor, tuple or dict onto the declared outputs, cast to their dtypes."""
        import torch

        names = [spec.name for spec in self.outputs]
        if isinstance(result, torch.Tensor):
            values: list[object] = [result]
        elif isinstance(result, tuple | list):
            values = list(result)
        elif isinstance(result, Mapping):
            missing = [name for name in names if name not in result]
            if missing:
                raise ModelFailure(f"pytorch: forward returned a dict without {missing}")
            values = [result[name] for name in names]
        else:
            raise ModelFailure(
                f"pytorch: forward returned {type(result).__name__}; "
                "expected a tensor, a tuple or a dict of tensors"
            )
        if len(values) != len(names):
            raise ModelFailure(
                f"pytorch: forward returned {len(values)} tensors for the {len(names)} "
                "in spec.model.outputs"
            )
        named = {}
        for spec, value in zip(self.outputs, values, strict=True):
            if not isinstance(value, torch.Tensor):
                raise ModelFailure(f"pytorch: output {spec.name!r} is {type(value).__name__}")
            array = value.cpu().numpy()
            named[spec.name] = array.astype(V2_TO_NUMPY[spec.datatype], copy=False)
        return named


def _declared(field: str, declared: Sequence[TensorDecl]) -> list[TensorSpec]:
    if not declared:
        raise RuntimeLoadError(
            f"pytorch: spec.model.{field} is required: "
            "a PyTorch model does not record tensor names or V2 datatypes"
        )
    for decl in declared:
        if decl.datatype == "BYTES":
            raise RuntimeLoadError(
                f"pytorch: spec.model.{field} {decl.name!r} is BYTES, which a tensor cannot hold"
            )
    return [TensorSpec(decl.name, decl.datatype, tuple(decl.shape)) for decl in declared]


def _require_torch() -> None:
    """Import torch once, up front, so its absence reads as what to install."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise RuntimeLoadError(
            "pytorch: the pytorch runtime needs torch: pip install 'rayship[torch]'"
        ) from exc


def _device(use_gpu: bool) -> torch.device:
    import torch

    cuda = use_gpu and torch.cuda.is_available()
    if use_gpu and not cuda:
        log.warning("pytorch: a GPU was requested but torch sees no CUDA device; using the CPU")
    return torch.device("cuda" if cuda else "cpu")


def _load_torchscript(path: Path, device: torch.device) -> torch.nn.Module:
    import torch

    try:
        with warnings.catch_warnings():
            # torch deprecates TorchScript for torch.export; existing archives still need serving.
            warnings.filterwarnings("ignore", r"`torch\.jit\.load` is deprecated", FutureWarning)
            module: torch.nn.Module = torch.jit.load(str(path), map_location=device)  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise RuntimeLoadError(
            f"pytorch: {path} is not a TorchScript archive (a state_dict needs "
            f"spec.model.pytorch.modelClass): {describe(exc)}"
        ) from exc
    return module.eval()


def _load_state_dict(
    target: str, init_args: dict[str, Any], model_dir: Path, path: Path, device: torch.device
) -> torch.nn.Module:
    import torch

    cls = import_class(target, model_dir, "pytorch: model class")
    if not issubclass(cls, torch.nn.Module):
        raise RuntimeLoadError(f"pytorch: model class {target!r} is not a torch.nn.Module")
    try:
        module: torch.nn.Module = cls(**init_args).to(device)
    except Exception as exc:
        raise RuntimeLoadError(
            f"pytorch: model class {target!r} failed with initArgs {init_args}: {describe(exc)}"
        ) from exc
    try:
        module.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    except Exception as exc:
        raise RuntimeLoadError(
            f"pytorch: cannot load {path} into {target!r}: {describe(exc)}"
        ) from exc
    return module.eval()
