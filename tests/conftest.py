"""Fixtures that start real parts, shared by every test folder; and the one rule of where
tests run.

kserve and tritonclient's gRPC client each bring their own generated types of the V2
protocol's proto (`inference.*`), and protobuf refuses two definitions of one type in a
process, whichever comes second. Tests that load KServe predictors in the test process
(marked `kserve_inprocess`) therefore cannot run in a session that imported
`tritonclient.grpc`: they are skipped there, saying so, and `scripts/test` runs them in a
pytest process of their own. (Replicas never meet the clash: Rayship's own gRPC types live in
a package of their own, and tritonclient is no dependency of theirs.)
"""

from __future__ import annotations

import sys

import pytest

pytest_plugins = ["support.s3", "support.ray_cluster", "support.models"]

KSERVE_ALONE = (
    "kserve's generated V2 types clash with tritonclient.grpc's, which this session imported; "
    "scripts/test runs these alone: pytest -m kserve_inprocess tests/unit/test_runtime_kserve.py "
    "tests/unit/test_runtimes.py"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the `kserve_inprocess` tests where they cannot load kserve (see above)."""
    if "tritonclient.grpc" not in sys.modules:
        return
    for item in items:
        if item.get_closest_marker("kserve_inprocess"):
            item.add_marker(pytest.mark.skip(reason=KSERVE_ALONE))
