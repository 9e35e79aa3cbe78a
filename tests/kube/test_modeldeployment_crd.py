"""The ModelDeployment CRD on a real API server: invalid objects refused, naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controlplane.cluster import ControlPlane

pytestmark = pytest.mark.kube


def document(name: str, **spec: Any) -> str:
    body: dict[str, Any] = {"model": {"format": "onnx", "storageUri": "s3://models/iris"}}
    body.update(spec)
    return json.dumps(
        {
            "apiVersion": "serving.rayship.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": body,
        }
    )


def apply(plane: ControlPlane, namespace: str, manifest: str) -> tuple[int, str]:
    done = plane.kubectl("-n", namespace, "apply", "-f", "-", input=manifest, check=False)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"model": {"format": "tf", "storageUri": "s3://m/x"}}, "spec.model.format"),
        ({"model": {"format": "onnx", "storageUri": "gs://m/x"}}, "spec.model.storageUri"),
        ({"replicas": 0}, "spec.replicas"),
        ({"autoscaling": {"minReplicas": 3, "maxReplicas": 2}}, "spec.autoscaling.minReplicas"),
        ({"rollout": {"canary": {"version": "2", "percent": 150}}}, "spec.rollout.canary.percent"),
        ({"rollout": {"canary": {"percent": 10}}}, "spec.rollout.canary.version"),
        ({"model": {"format": "python", "storageUri": "s3://m/x"}}, "spec.model.python"),
        ({"model": {"format": "pytorch", "storageUri": "s3://m/x"}}, "spec.model.inputs"),
        ({"resources": {"memory": "lots"}}, "spec.resources.memory"),
    ],
)
def test_invalid_objects_are_refused_naming_the_field(
    control_plane: ControlPlane, namespace: str, spec: dict[str, Any], named: str
) -> None:
    code, output = apply(control_plane, namespace, document("bad", **spec))
    assert code != 0
    assert named in output
    listed = control_plane.kubectl("-n", namespace, "get", "md", "-o", "name").stdout
    assert listed.strip() == ""


def test_defaults_are_applied_by_the_api_server(
    control_plane: ControlPlane, namespace: str
) -> None:
    code, output = apply(control_plane, namespace, document("iris"))
    assert code == 0, output
    got = json.loads(
        control_plane.kubectl("-n", namespace, "get", "md", "iris", "-o", "json").stdout
    )
    assert got["spec"]["model"]["version"] == "latest"
    assert got["spec"]["rollout"]["readinessDeadlineSeconds"] == 300
    assert got["spec"]["resources"] == {"cpu": 1, "gpu": 0}


def test_model_name_is_immutable(control_plane: ControlPlane, namespace: str) -> None:
    first = document("named", model={"name": "a", "format": "onnx", "storageUri": "s3://m/x"})
    assert apply(control_plane, namespace, first)[0] == 0
    second = document("named", model={"name": "b", "format": "onnx", "storageUri": "s3://m/x"})
    code, output = apply(control_plane, namespace, second)
    assert code != 0
    assert "spec.model.name is immutable" in output


def test_short_name_and_printer_columns(control_plane: ControlPlane, namespace: str) -> None:
    assert apply(control_plane, namespace, document("cols"))[0] == 0
    header = control_plane.kubectl("-n", namespace, "get", "md").stdout.splitlines()[0].split()
    assert header == ["NAME", "MODEL", "VERSION", "PHASE", "READY", "URL", "AGE"]


def test_explain_teaches_the_fields(control_plane: ControlPlane) -> None:
    explained = control_plane.kubectl("explain", "modeldeployment.spec.rollout.canary").stdout
    assert "A second live version that receives a share of the traffic" in explained
    assert "percent" in explained
