"""Fixtures for tests against the real control plane (kube-apiserver + etcd on loopback).

The fixtures live in tests/controlplane/fixtures.py so other suites (e2e) can
import the same ones. tests/ is on sys.path through pyproject's ``pythonpath``;
the fallback below adds tests/ (never the repository root, whose operator/
folder must not shadow the standard library) when pytest runs without it.
"""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from controlplane.fixtures import (  # noqa: E402
    control_plane,
    kube_client,
    kube_tools,
    kubeconfig,
    namespace,
    pytest_collection_finish,
)

__all__ = [
    "control_plane",
    "kube_client",
    "kube_tools",
    "kubeconfig",
    "namespace",
    "pytest_collection_finish",
]
