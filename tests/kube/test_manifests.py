"""manifests/: the plain-YAML install is current with the chart, and kubectl applies it and the
example ModelDeployments to the real API server."""

from __future__ import annotations

import json
import os
import subprocess
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.cluster import ControlPlane, Tools
from rayship.manifest import load_file
from rayship.spec import ModelFormat

pytestmark = pytest.mark.kube

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
EXAMPLES = sorted((MANIFESTS / "examples").glob("*.yaml"))


def test_install_yaml_is_rendered_from_the_current_chart(kube_tools: Tools, tmp_path: Path) -> None:
    env = {**os.environ, "HELM": kube_tools.helm}
    subprocess.run(
        [str(REPO / "scripts" / "render-manifests"), str(tmp_path)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    fresh = (tmp_path / "install.yaml").read_text()
    assert (MANIFESTS / "install.yaml").read_text() == fresh, (
        "manifests/install.yaml is stale: run scripts/render-manifests"
    )


def test_install_yaml_holds_the_namespace_crd_operator_and_rbac() -> None:
    docs = [d for d in yaml.safe_load_all((MANIFESTS / "install.yaml").read_text()) if d]
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Namespace", "rayship-system"),  # first, so the namespaced objects after it can land
        ("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev"),
        ("CustomResourceDefinition", "kopfpeerings.kopf.dev"),
        ("CustomResourceDefinition", "modeldeployments.serving.rayship.io"),
        ("ServiceAccount", "rayship-operator"),
        ("ClusterRole", "rayship-operator"),
        ("ClusterRoleBinding", "rayship-operator"),
        ("Service", "rayship-operator-metrics"),
        ("Deployment", "rayship-operator"),
    ]
    assert docs[3] == yaml.safe_load((REPO / "crds" / "modeldeployment.yaml").read_text())


def test_examples_cover_every_runtime_and_validate_locally() -> None:
    formats: set[str] = set()
    for path in EXAMPLES:
        (md,) = load_file(path)  # the same validation (schema, CEL rules) as the CLI
        assert md.name == path.stem
        assert md.spec.model.storage_uri.startswith("s3://"), path
        formats.add(md.spec.model.format)
    assert formats == set(typing.get_args(ModelFormat))


def get(plane: ControlPlane, *args: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(plane.kubectl("get", *args, "-o", "json").stdout)
    return found


def test_kubectl_apply_manifests_then_examples(control_plane: ControlPlane, namespace: str) -> None:
    plane = control_plane
    out = plane.kubectl("apply", "-f", str(MANIFESTS)).stdout
    assert "namespace/rayship-system" in out
    assert "deployment.apps/rayship-operator" in out
    plane.wait_established(["modeldeployments.serving.rayship.io"])
    deployment = get(plane, "deployment", "rayship-operator", "-n", "rayship-system")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "rayship-operator"
    binding = get(plane, "clusterrolebinding", "rayship-operator")
    assert binding["subjects"][0]["namespace"] == "rayship-system"
    # applying again changes nothing
    again = plane.kubectl("apply", "-f", str(MANIFESTS)).stdout
    assert set(again.split("\n")) - {""} == {
        line.replace("created", "unchanged").replace("configured", "unchanged")
        for line in out.split("\n")
        if line
    }

    applied = plane.kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / "examples")).stdout
    names = {md["metadata"]["name"] for md in get(plane, "md", "-n", namespace)["items"]}
    assert names == {path.stem for path in EXAMPLES}, applied
    # the API server filled the CRD's defaults
    onnx = get(plane, "md", "iris-onnx", "-n", namespace)
    assert onnx["spec"]["rollout"]["readinessDeadlineSeconds"] == 300
    # and its CEL rules hold on the examples too: a canary equal to the version is refused
    gpu = (MANIFESTS / "examples" / "iris-onnx-gpu.yaml").read_text()
    refused = plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=gpu.replace('version: "2"', 'version: "1"'),
        check=False,
    )  # fmt: skip
    assert "spec.rollout.canary.version must differ from spec.model.version" in refused.stderr
