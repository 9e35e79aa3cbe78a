"""pytest fixtures for the test control plane (see cluster.py).

A conftest.py brings them in, with the hook that builds the binaries before the
first test, by

    from controlplane.fixtures import (
        control_plane, kube_client, kube_tools, kubeconfig, namespace, pytest_collection_finish,
    )

(tests/ is on sys.path through pyproject's ``pythonpath``). Everything here is
session-scoped except ``namespace``.

If the binaries cannot be built, ``kube_tools`` fails (never skips) with the
build step's error: CI must not turn a broken toolchain into skipped tests.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from controlplane.cluster import BuildError, ControlPlane, StartError, Tools, ensure_binaries

if TYPE_CHECKING:
    import kubernetes.client

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS_DIR = REPO_ROOT / "crds"


_built: Tools | str | None = None  # build.sh's result for this process, or its error


def _build_once() -> Tools | str:
    global _built  # noqa: PLW0603
    if _built is None:
        try:
            _built = ensure_binaries()
        except BuildError as exc:
            _built = str(exc)
    return _built


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build or reuse the binaries once tests are selected and before the first one
    runs, so a cold build (minutes) is not charged to one test's timeout."""
    if not any(item.get_closest_marker("kube") for item in session.items) or _built is not None:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            "control plane: building or reusing binaries (tests/controlplane/build.sh)"
        )
    start = time.monotonic()
    result = _build_once()
    if reporter is not None:
        outcome = "failed" if isinstance(result, str) else "ready"
        reporter.write_line(f"control plane: binaries {outcome} in {time.monotonic() - start:.1f}s")


@pytest.fixture(scope="session")
def kube_tools() -> Tools:
    """Paths of kube-apiserver, etcd, helm and kubectl, built or reused by build.sh.

    Fails, never skips, when they cannot be built."""
    result = _build_once()
    if isinstance(result, str):
        pytest.fail(f"could not build the control-plane binaries:\n{result}", pytrace=False)
    return result


@pytest.fixture(scope="session")
def control_plane(
    kube_tools: Tools, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """A running etcd + kube-apiserver with every CRD under crds/ applied and Established.

    For the session, KUBECONFIG points at it, so a client that loads its default
    configuration reaches this control plane and never a developer's cluster.
    Stopped at the end of the session whatever the tests did; the processes also
    die with the pytest process if it is killed outright."""
    plane = ControlPlane(kube_tools, state_dir=tmp_path_factory.mktemp("controlplane"))
    saved = os.environ.get("KUBECONFIG")
    try:
        error = None
        try:
            plane.start()
        except StartError as exc:
            error = str(exc)
        if error is not None:
            pytest.fail(f"the control plane did not start:\n{error}", pytrace=False)
        os.environ["KUBECONFIG"] = str(plane.kubeconfig)
        plane.apply_crds(CRDS_DIR)
        yield plane
    finally:
        if saved is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = saved
        plane.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    """Path of the admin kubeconfig (client certificate in group system:masters)."""
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def kube_client(control_plane: ControlPlane) -> Iterator[kubernetes.client.ApiClient]:
    """The official kubernetes client, configured from the control plane's kubeconfig."""
    import kubernetes

    client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call, unused-ignore]
        config_file=str(control_plane.kubeconfig)
    )
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call, unused-ignore]


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A fresh namespace named after the test.

    It is not deleted afterwards: with no namespace controller a deleted
    namespace would only sit in Terminating (see test_limitations), and the
    whole etcd is thrown away at the end of the session anyway."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", name)
    return name


__all__ = [
    "control_plane",
    "kube_client",
    "kube_tools",
    "kubeconfig",
    "namespace",
    "pytest_collection_finish",
]
