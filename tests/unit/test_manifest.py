"""The CRD is the schema: local validation refuses what the API server would, by field name."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest

from rayship import manifest, spec
from rayship.spec import ModelDeploymentSpec

REPO = Path(__file__).resolve().parents[2]


def document(**spec_fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": {"format": "onnx", "storageUri": "s3://models/iris"}}
    body.update(spec_fields)
    return {
        "apiVersion": "serving.rayship.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "team-a"},
        "spec": body,
    }


def test_defaults_come_from_the_crd() -> None:
    md = manifest.parse(document())
    assert md.name == "iris"
    assert md.namespace == "team-a"
    assert md.model_name == "iris"
    assert md.spec.model.version == "latest"
    assert md.spec.model.poll_interval_seconds == 60
    assert md.spec.model.onnx.file == "model.onnx"
    assert md.spec.resources.cpu == 1.0
    assert md.spec.rollout.readiness_deadline_seconds == 300
    assert md.spec.autoscaling is None
    assert md.spec.batching is None


def test_full_spec_is_typed() -> None:
    md = manifest.parse(
        document(
            model={
                "name": "iris-net",
                "format": "pytorch",
                "storageUri": "file:models/iris",
                "version": "3",
                "pytorch": {"modelClass": "net:Iris", "initArgs": {"hidden": 8}},
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
            },
            resources={"cpu": 2, "gpu": 1, "memory": "2Gi"},
            autoscaling={"minReplicas": 1, "maxReplicas": 4},
            batching={"maxBatchSize": 16},
            rollout={"canary": {"version": "4", "percent": 10}},
            rayCluster={"name": "gpu-cluster"},
        )
    )
    model = md.spec.model
    assert md.model_name == "iris-net"
    assert model.pytorch.model_class == "net:Iris"
    assert model.pytorch.init_args == {"hidden": 8}
    assert model.inputs == (spec.TensorDecl("x", "FP32", (-1, 4)),)
    assert md.spec.resources == spec.ResourceSpec(cpu=2.0, memory="2Gi", gpu=1.0)
    assert md.spec.autoscaling == spec.AutoscalingSpec(min_replicas=1, max_replicas=4)
    assert md.spec.batching == spec.BatchingSpec(max_batch_size=16, batch_wait_timeout_ms=5.0)
    assert md.spec.rollout.canary == spec.CanarySpec("4", 10)
    assert md.spec.ray_cluster == spec.RayClusterRef("gpu-cluster")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"model": {"format": "tf", "storageUri": "s3://m/x"}}, "spec.model.format"),
        ({"model": {"format": "onnx", "storageUri": "gs://m/x"}}, "spec.model.storageUri"),
        ({"model": {"format": "onnx"}}, "'storageUri' is a required property"),
        ({"replicas": 0}, "spec.replicas"),
        ({"autoscaling": {"minReplicas": 3, "maxReplicas": 2}}, "spec.autoscaling.minReplicas"),
        ({"rollout": {"canary": {"version": "2", "percent": 101}}}, "spec.rollout.canary.percent"),
        (
            {"rollout": {"canary": {"version": "latest", "percent": 5}}},
            "canary.version must differ",
        ),
        ({"model": {"format": "python", "storageUri": "s3://m/x"}}, "spec.model.python"),
        ({"model": {"format": "pytorch", "storageUri": "s3://m/x"}}, "spec.model.inputs"),
        ({"resources": {"memory": "lots"}}, "spec.resources.memory"),
        ({"model": {"format": "onnx", "storageUri": "s3://m/x", "version": "../x"}}, "version"),
    ],
)
def test_invalid_documents_name_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(manifest.ManifestError) as refused:
        manifest.parse(document(**fields))
    assert "ModelDeployment 'iris'" in str(refused.value)
    assert named in str(refused.value)


def test_wrong_kind_is_refused() -> None:
    doc = document()
    doc["kind"] = "InferenceService"
    with pytest.raises(manifest.ManifestError, match="apiVersion/kind"):
        manifest.parse(doc)


def test_load_file_reads_every_document(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "apiVersion: serving.rayship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: a}\n"
        "spec: {model: {format: onnx, storageUri: 's3://m/a'}}\n---\n"
        "apiVersion: serving.rayship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: b}\n"
        "spec: {model: {format: onnx, storageUri: 's3://m/b'}}\n"
    )
    assert [md.name for md in manifest.load_file(path)] == ["a", "b"]


def test_load_file_reports_yaml_errors(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("spec: [unclosed\n")
    with pytest.raises(manifest.ManifestError, match="not valid YAML"):
        manifest.load_file(path)


def test_packaged_crd_is_the_one_in_crds() -> None:
    packaged = REPO / "rayship" / "crd" / "modeldeployment.yaml"
    assert packaged.read_bytes() == (REPO / "crds" / "modeldeployment.yaml").read_bytes()


def _crd_fields(schema: dict[str, Any]) -> set[str]:
    return {spec._snake(name) for name in schema.get("properties", {})}


def _dataclass_of(hint: Any) -> Any:
    """The dataclass inside Optional[...] / tuple[...] hints, or None."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        found = _dataclass_of(arg)
        if found is not None:
            return found
    return None


def _assert_same_fields(cls: Any, schema: dict[str, Any], path: str) -> None:
    fields = {field.name for field in dataclasses.fields(cls)}
    assert fields == _crd_fields(schema), f"{path}: dataclass {cls.__name__} and CRD differ"
    hints = typing.get_type_hints(cls)
    for name, sub in schema.get("properties", {}).items():
        nested = _dataclass_of(hints[spec._snake(name)])
        target = sub.get("items", sub)
        if nested is not None:
            _assert_same_fields(nested, target, f"{path}.{name}")


def test_dataclasses_mirror_the_crd_schema() -> None:
    """The typed spec and the CRD cannot drift: same fields at every level."""
    _assert_same_fields(ModelDeploymentSpec, manifest.crd_schema()["properties"]["spec"], "spec")
