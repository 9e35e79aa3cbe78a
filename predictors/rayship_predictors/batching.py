"""Stack several requests' inputs into one batch and split the outputs back.

Dynamic batching must give each request exactly what it would have got alone, so requests are
only stacked along the first (batch) dimension, and only when every other dimension agrees;
anything else runs request by request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Tensors = Mapping[str, np.ndarray]


def batch_key(inputs: Tensors) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    """Requests with equal keys can share a batch: same names, dtypes, and non-batch dims."""
    return tuple(
        (name, str(array.dtype), tuple(array.shape[1:])) for name, array in sorted(inputs.items())
    )


def stack(requests: Sequence[Tensors]) -> tuple[dict[str, np.ndarray], list[int]]:
    """One input dict holding every request's rows, and how many rows each request brought."""
    sizes = [_rows(inputs) for inputs in requests]
    names = requests[0].keys()
    stacked = {name: np.concatenate([inputs[name] for inputs in requests]) for name in names}
    return stacked, sizes


def split(outputs: Mapping[str, np.ndarray], sizes: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Cut batched outputs back into per-request outputs, in request order."""
    bounds = np.cumsum([0, *sizes])
    return [
        {name: array[bounds[i] : bounds[i + 1]] for name, array in outputs.items()}
        for i in range(len(sizes))
    ]


def _rows(inputs: Tensors) -> int:
    """The batch size of one request: the first dimension shared by all its inputs."""
    first_dims = {array.shape[0] if array.ndim else -1 for array in inputs.values()}
    if len(first_dims) != 1 or -1 in first_dims:
        raise ValueError("inputs do not share a first (batch) dimension")
    return first_dims.pop()
