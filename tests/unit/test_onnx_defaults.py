"""The ONNX Runtime session's intra-op threads: left unset in the spec, Rayship sizes the pool
so the calls its replica runs at once keep its cores busy without oversubscribing them
(bench/cpu_models_bench.py chose this default); set, the spec's value is what the real session
gets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rayship import manifest
from rayship.spec import OnnxOptions, RuntimeSpec
from rayship_predictors.runtimes.loader import load_runtime
from rayship_predictors.runtimes.onnx import OnnxRuntime, default_intra_op_threads
from rayship_predictors.settings import PredictorSettings


@pytest.mark.parametrize(
    ("concurrent_calls", "cpus", "expected"),
    [
        (4, 2, 1),  # four predict threads on two cores: each call on its own thread alone
        (4, 16, 13),  # four calling threads and 12 pool threads keep 16 cores busy
        (2, 2, 1),
        (1, 2, 2),  # one call at a time uses every core
        (0, 8, 8),  # inline on the event loop: one call at a time too
        (8, 2, 1),  # never fewer than one
    ],
)
def test_default_shares_the_cores_between_concurrent_calls(
    concurrent_calls: int, cpus: int, expected: int
) -> None:
    assert default_intra_op_threads(concurrent_calls, cpus) == expected


def test_default_counts_the_cores_this_process_may_use() -> None:
    assert default_intra_op_threads(1) == len(os.sched_getaffinity(0))


def test_unset_spec_gives_the_session_the_default(example_models: Path) -> None:
    """The real session is made with the default, for a default replica's predict threads."""
    folder = example_models / "iris-onnx" / "1"
    runtime = OnnxRuntime(RuntimeSpec(format="onnx"), folder, use_gpu=False)

    expected = default_intra_op_threads(PredictorSettings().predict_threads)
    assert runtime.intra_op_threads == expected


@pytest.mark.parametrize(
    ("settings", "batched"),
    [
        (PredictorSettings(predict_threads=1), False),
        (PredictorSettings(predict_threads=0), False),  # inline: one call at a time
        (PredictorSettings(), True),  # one batch at a time, whatever the threads
    ],
)
def test_one_call_at_a_time_gets_every_core(
    example_models: Path, settings: PredictorSettings, batched: bool
) -> None:
    """As a version replica loads its runtime: the calls it runs at once, through the loader."""
    folder = example_models / "iris-onnx" / "1"
    calls = settings.concurrent_calls(batched)
    runtime = load_runtime(RuntimeSpec(format="onnx"), folder, False, concurrent_calls=calls)

    assert isinstance(runtime, OnnxRuntime)
    assert runtime.intra_op_threads == len(os.sched_getaffinity(0))


def test_intra_op_threads_in_the_spec_win(example_models: Path) -> None:
    folder = example_models / "iris-onnx" / "1"
    spec = RuntimeSpec(format="onnx", onnx=OnnxOptions(intra_op_threads=3))

    assert OnnxRuntime(spec, folder, use_gpu=False).intra_op_threads == 3


def test_a_manifest_without_intra_op_threads_leaves_the_choice_to_rayship() -> None:
    """The CRD's default (0) is what selects Rayship's default."""
    document = {
        "apiVersion": "serving.rayship.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m"},
        "spec": {"model": {"format": "onnx", "storageUri": "s3://bucket/m"}},
    }
    assert manifest.parse(document).spec.model.runtime.onnx.intra_op_threads == 0
