"""Batched requests get exactly what they would have got alone."""

from __future__ import annotations

import numpy as np
import pytest

from rayship_predictors import batching


def test_stack_then_split_round_trips_rows() -> None:
    requests = [
        {"x": np.arange(4, dtype=np.float32).reshape(1, 4)},
        {"x": np.arange(8, dtype=np.float32).reshape(2, 4) + 10},
        {"x": np.arange(4, dtype=np.float32).reshape(1, 4) + 100},
    ]
    stacked, sizes = batching.stack(requests)
    assert sizes == [1, 2, 1]
    assert stacked["x"].shape == (4, 4)
    parts = batching.split({"y": stacked["x"] * 2}, sizes)
    for request, part in zip(requests, parts, strict=True):
        np.testing.assert_array_equal(part["y"], request["x"] * 2)


def test_batch_key_separates_incompatible_requests() -> None:
    a = {"x": np.zeros((1, 4), np.float32)}
    b = {"x": np.zeros((3, 4), np.float32)}
    c = {"x": np.zeros((1, 5), np.float32)}
    d = {"x": np.zeros((1, 4), np.float64)}
    assert batching.batch_key(a) == batching.batch_key(b)
    assert batching.batch_key(a) != batching.batch_key(c)
    assert batching.batch_key(a) != batching.batch_key(d)


def test_inputs_without_a_shared_batch_dimension_are_refused() -> None:
    with pytest.raises(ValueError, match="batch"):
        batching.stack([{"x": np.zeros((2, 4)), "y": np.zeros((3, 4))}])
