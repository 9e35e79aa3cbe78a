"""The CRD is the schema: local validation refuses what the API server would, by field name."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import boto3
import pytest

from rayship import manifest, spec
from rayship.errors import InvalidSpec
from rayship.spec import ModelDeploymentSpec
from rayship.storage.uris import parse_model_uri

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
                "storageUri": "file:///srv/models/iris",
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


def onnx_at(uri: str) -> dict[str, Any]:
    return {"model": {"format": "onnx", "storageUri": uri}}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            onnx_at("file:models/iris"),
            "spec.model.storageUri must be s3://bucket/prefix or file:///absolute/path, "
            "got 'file:models/iris'",
        ),
        (onnx_at("s3://bucket/../x"), "spec.model.storageUri must be s3://bucket/prefix"),
        (onnx_at("s3://bucket//x"), "got 's3://bucket//x'"),
        (onnx_at("s3:///x"), "got 's3:///x'"),
        (onnx_at("file:///srv/m?v=1"), "with no query or fragment, got 'file:///srv/m?v=1'"),
        (
            {"autoscaling": {"minReplicas": 3, "maxReplicas": 2}},
            "spec.autoscaling.minReplicas must not exceed spec.autoscaling.maxReplicas, got 3 > 2",
        ),
        (
            {"model": {"format": "onnx", "storageUri": "s3://m/x", "version": "2"},
             "rollout": {"canary": {"version": "2", "percent": 5}}},
            "spec.rollout.canary.version must differ from spec.model.version, got '2' for both",
        ),
        (
            {"model": {"format": "python", "storageUri": "s3://m/x"}},
            "spec.model.python.predictorClass is required when spec.model.format is 'python', "
            "got no spec.model.python",
        ),
        (
            {"model": {"format": "pytorch", "storageUri": "s3://m/x",
                       "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]}},
            "got 1 inputs and 0 outputs",
        ),
    ],
)  # fmt: skip
def test_rule_messages_show_the_values(fields: dict[str, Any], message: str) -> None:
    """The CRD's messageExpressions, evaluated locally: each refusal quotes what was given."""
    with pytest.raises(manifest.ManifestError) as refused:
        manifest.parse(document(**fields))
    assert message in str(refused.value)


# (uri, valid): each row is checked against the CRD and against the parser the code uses.
STORAGE_URIS = [
    ("s3://models", True),
    ("s3://models/", True),
    ("s3://models//", True),  # uris.py drops one trailing slash: the bucket root
    ("s3://models/iris", True),
    ("s3://models/iris/", True),
    ("S3://models/iris", True),
    ("s3://models/.iris/..v2/...", True),
    ("s3://models/my iris?v=1", True),
    ("s3://models/" + "i" * 255, True),
    ("s3://models/" + "é" * 127, True),
    ("s3:///iris", False),
    ("s3://models//iris", False),
    ("s3://models/iris//", False),
    ("s3://models///", False),
    ("s3://.models/iris", False),
    ("s3://models/./iris", False),
    ("s3://models/../iris", False),
    ("s3://models/iris/..", False),
    ("s3://models/ir\\is", False),
    ("s3://models/ir\tis", False),
    ("s3://models/ir\u200bis", False),
    ("s3://models/" + "i" * 256, False),
    ("s3://models/" + "é" * 128, False),
    ("file:///srv/models", True),
    ("file:///", True),
    ("FILE:///srv/models", True),
    ("file://localhost/srv/models", True),
    ("file:///srv/my%20models", True),
    ("file:///srv/models?", True),  # an empty query is no query to urlsplit
    ("file:models/iris", False),
    ("file:/srv/models", False),
    ("file://models/iris", False),
    ("file://localhost", False),
    ("file:///srv/models?v=1", False),
    ("file:///srv/models#v1", False),
    ("gs://models/iris", False),
    ("models/iris", False),
]


def _uri_id(uri: str) -> str:
    """Short test ids: the long URIs by their length in bytes."""
    return ascii(uri) if len(uri) < 40 else f"{uri[:16]}...({len(uri.encode())} bytes)"


@pytest.mark.parametrize(("uri", "valid"), STORAGE_URIS, ids=[_uri_id(u) for u, _ in STORAGE_URIS])
def test_storage_uri_rules_accept_what_the_storage_code_parses(uri: str, valid: bool) -> None:
    """The CRD must not admit a URI the operator then fails on, nor refuse one it can serve."""
    try:
        manifest.parse(document(model={"format": "onnx", "storageUri": uri}))
        crd_accepts = True
    except manifest.ManifestError:
        crd_accepts = False
    try:
        parse_model_uri(uri)
        code_accepts = True
    except InvalidSpec:
        code_accepts = False
    assert (crd_accepts, code_accepts) == (valid, valid)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"rule": "false", "messageExpression": "'got ' + string(self)"}, "got 7"),
        ({"rule": "false", "messageExpression": "'%d of %s, 100%%'.format([self, 'x'])"},
         "7 of x, 100%"),
        ({"rule": "false", "messageExpression": "'%x'.format([self])", "message": "static"},
         "static"),
        ({"rule": "false", "messageExpression": "'%d %d'.format([self])", "message": "static"},
         "static"),
        ({"rule": "false", "messageExpression": "self.missing", "message": "static"}, "static"),
        ({"rule": "false", "messageExpression": "'two\\nlines'", "message": "static"}, "static"),
        ({"rule": "false", "messageExpression": "' '", "message": "static"}, "static"),
        ({"rule": "false", "messageExpression": "' '"}, "failed rule: false"),
    ],
)  # fmt: skip
def test_message_expression_falls_back_like_the_api_server(
    rule: dict[str, str], expected: str
) -> None:
    """An erroring, blank or multi-line messageExpression gives way to message, then the rule;
    `format`, which cel-python lacks, is provided for the verbs the CRD uses."""
    schema = {"type": "integer", "x-kubernetes-validations": [rule]}
    assert manifest._cel_errors(schema, 7, "spec.x") == [f"spec.x: {expected}"]


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


def test_load_file_resolves_relative_file_uris_against_the_yaml_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "deploy"
    folder.mkdir()
    path = folder / "models.yaml"
    path.write_text(
        "apiVersion: serving.rayship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: a}\n"
        "spec: {model: {format: onnx, storageUri: 'file:models/a'},"
        " async: {storageUri: 'file:jobs'}}\n---\n"
        "apiVersion: serving.rayship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: b}\n"
        "spec: {model: {format: onnx, storageUri: 'file:../shared/b'}}\n---\n"
        "apiVersion: serving.rayship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: c}\n"
        "spec: {model: {format: onnx, storageUri: 'file:///srv/c'}}\n---\n"
        "apiVersion: serving.rayship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: d}\n"
        "spec: {model: {format: onnx, storageUri: 's3://m/d'}}\n"
    )
    monkeypatch.chdir(tmp_path)  # so resolving against the working directory would be wrong

    loaded = manifest.load_file(Path("deploy/models.yaml"))
    uris = [md.spec.model.storage_uri for md in loaded]

    assert uris == [
        (folder / "models" / "a").resolve().as_uri(),
        (tmp_path / "shared" / "b").resolve().as_uri(),
        "file:///srv/c",
        "s3://m/d",
    ]
    assert loaded[0].spec.async_ is not None
    assert loaded[0].spec.async_.storage_uri == (folder / "jobs").resolve().as_uri()


def test_load_file_still_refuses_bad_absolute_uris(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "apiVersion: serving.rayship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: a}\n"
        "spec: {model: {format: onnx, storageUri: 'file://models/a'}}\n"
    )
    with pytest.raises(manifest.ManifestError, match="got 'file://models/a'"):
        manifest.load_file(path)


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


def test_runtime_env_is_typed() -> None:
    md = manifest.parse(
        document(
            runtimeEnv={
                "pip": ["pyjokes==0.8.3", "art>=6"],
                "env": [{"name": "GREETING", "value": "hello"}, {"name": "EMPTY"}],
                "envFrom": [
                    {"secretRef": {"name": "api"}},
                    {"secretRef": {"name": "db"}, "prefix": "DB_", "keys": ["USER", "PASSWORD"]},
                ],
            }
        )
    )
    assert md.spec.runtime_env == spec.RuntimeEnvSpec(
        pip=("pyjokes==0.8.3", "art>=6"),
        env=(spec.EnvVar("GREETING", "hello"), spec.EnvVar("EMPTY", "")),
        env_from=(
            spec.EnvFromSource(spec.SecretRef("api")),
            spec.EnvFromSource(spec.SecretRef("db"), "DB_", ("USER", "PASSWORD")),
        ),
    )
    assert manifest.parse(document()).spec.runtime_env == spec.RuntimeEnvSpec()


# (spec.runtimeEnv, the field refused, what the refusal says): the CRD's rules on runtimeEnv,
# checked here by local validation and in tests/kube on the API server.
_NAMES = "spec.runtimeEnv environment variable names must be letters, digits and _, not starting "
_PIP = "spec.runtimeEnv.pip items must be requirements on one line (a package name or a URL), "
RUNTIME_ENV_REFUSALS = [
    (
        {"env": [{"name": "A", "value": "1"}, {"name": "B"}, {"name": "A", "value": "2"}]},
        "spec.runtimeEnv.env",
        "spec.runtimeEnv.env names must be unique, got 'A' more than once",
    ),
    ({"env": [{"name": "1A"}]}, "spec.runtimeEnv.env[0].name", _NAMES + "with a digit, got '1A'"),
    (
        {"env": [{"name": "OK"}, {"name": "API-KEY"}]},
        "spec.runtimeEnv.env[1].name",
        _NAMES + "with a digit, got 'API-KEY'",
    ),
    (
        {"pip": ["pyjokes", "-r requirements.txt"]},
        "spec.runtimeEnv.pip[1]",
        _PIP + "not pip options or paths, got '-r requirements.txt'",
    ),
    (
        {"pip": ["./wheels/x.whl"]},
        "spec.runtimeEnv.pip[0]",
        _PIP + "not pip options or paths, got './wheels/x.whl'",
    ),
    # a value with a line break makes the messageExpression multi-line: the plain message shows
    (
        {"pip": ["pyjokes\n--index-url=http://mirror"]},
        "spec.runtimeEnv.pip[0]",
        _PIP + "not pip options or paths\n",
    ),
    (
        {"envFrom": [{"secretRef": {"name": "api"}, "prefix": "1_"}]},
        "spec.runtimeEnv.envFrom[0].prefix",
        "spec.runtimeEnv.envFrom prefixes must be letters, digits and _, not starting with a "
        "digit, got '1_'",
    ),
    (
        {"envFrom": [{"secretRef": {"name": "api"}, "keys": ["TOKEN", "tls.crt"]}]},
        "spec.runtimeEnv.envFrom[0].keys[1]",
        _NAMES + "with a digit, got 'tls.crt'",
    ),
]


@pytest.mark.parametrize(("runtime_env", "field", "said"), RUNTIME_ENV_REFUSALS)
def test_runtime_env_refusals_name_the_field_and_show_the_value(
    runtime_env: dict[str, Any], field: str, said: str
) -> None:
    with pytest.raises(manifest.ManifestError) as refused:
        manifest.parse(document(runtimeEnv=runtime_env))
    assert f"{field}: {said}" in str(refused.value) + "\n"


@pytest.mark.parametrize(
    ("runtime_env", "named"),
    [
        ({"pip": ["p"] * 65}, "spec.runtimeEnv.pip"),
        ({"pip": [""]}, "spec.runtimeEnv.pip"),
        ({"env": [{"name": f"V{i}"} for i in range(65)]}, "spec.runtimeEnv.env"),
        ({"env": [{"name": "V", "value": "x" * 8193}]}, "spec.runtimeEnv.env.0.value"),
        ({"env": [{"value": "x"}]}, "'name' is a required property"),
        ({"envFrom": [{"prefix": "P_"}]}, "'secretRef' is a required property"),
        ({"envFrom": [{"secretRef": {"name": "s"}}] * 17}, "spec.runtimeEnv.envFrom"),
        ({"envFrom": [{"secretRef": {"name": "s"}, "keys": ["K"] * 65}]}, "keys"),
    ],
    ids=["pip-items", "pip-empty", "env-items", "value-length", "no-name", "no-secret",
         "envfrom-items", "keys-items"],
)  # fmt: skip
def test_runtime_env_bounds(runtime_env: dict[str, Any], named: str) -> None:
    with pytest.raises(manifest.ManifestError) as refused:
        manifest.parse(document(runtimeEnv=runtime_env))
    assert named in str(refused.value)


def test_largest_runtime_env_is_valid() -> None:
    """Every bound at its maximum: what tests/kube checks against the API server's CEL budget."""
    manifest.parse(document(runtimeEnv=LARGEST_RUNTIME_ENV))


LARGEST_RUNTIME_ENV: dict[str, Any] = {
    "pip": [f"package-{i}" + "x" * 490 for i in range(64)],
    "env": [{"name": f"V{i:03}" + "_" * 124, "value": "v" * 8192} for i in range(64)],
    "envFrom": [
        {
            "secretRef": {"name": f"s{i}" + "s" * 250},
            "prefix": "P" * 64,
            "keys": [f"K{k:03}" + "_" * 124 for k in range(64)],
        }
        for i in range(16)
    ],
}


# Found by tests/kube/test_fuzz_resources.py: documents the API server judges otherwise than
# local validation did. A YAML key left empty (`replicas:`) is a null, which the API server
# drops before defaulting; it matches patterns with RE2, where `$` is the end of the text.
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"replicas": None}, ("replicas", 1)),
        ({"batching": None}, ("batching", None)),
        ({"rollout": {"canary": None, "keepPreviousSeconds": None}},
         ("rollout", spec.RolloutSpec())),
        ({"replicas": 2.0}, ("replicas", 2)),
    ],
    ids=["defaulted", "absent", "nested", "integral-float"],
)  # fmt: skip
def test_what_the_api_server_accepts_parses_alike(
    fields: dict[str, Any], expected: tuple[str, Any]
) -> None:
    field, value = expected
    parsed = getattr(manifest.parse(document(**fields)).spec, field)
    assert (parsed, type(parsed)) == (value, type(value))


def test_nulls_under_preserved_fields_are_kept() -> None:
    model = {"format": "pytorch", "storageUri": "s3://m/x", "pytorch": {"initArgs": {"a": None}}}
    tensors = [{"name": "x", "datatype": "FP32", "shape": [-1]}]
    parsed = manifest.parse(document(model={**model, "inputs": tensors, "outputs": tensors}))
    assert parsed.spec.model.pytorch.init_args == {"a": None}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"model": {"format": None, "storageUri": "s3://m/x"}}, "'format' is a required property"),
        ({"model": {"format": "onnx", "storageUri": "s3://m/x", "name": "iris\n"}},
         "spec.model.name: 'iris\\n' does not match"),
        ({"model": {"format": "onnx", "storageUri": "s3://m/x", "version": "2\n"}},
         "spec.model.version: '2\\n' does not match"),
        ({"model": {"format": "onnx", "storageUri": "s3://m/\udc3d"}},
         "spec.model.storageUri: 's3://m/\\udc3d' is not valid Unicode text"),
        ({"runtimeEnv": {"pip": [None]}}, "spec.runtimeEnv.pip.0: None is not of type 'string'"),
    ],
    ids=["required-null", "name-newline", "version-newline", "lone-surrogate", "null-item"],
)  # fmt: skip
def test_what_the_api_server_refuses_is_refused_alike(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(manifest.ManifestError) as refused:
        manifest.parse(document(**fields))
    assert named in str(refused.value)


# (spec fields, the field refused, what the refusal says): the CRD's rules on names, checked
# here by local validation and in tests/kube on the API server. A value with a line break makes
# the messageExpression multi-line: the plain message, which names the field too, shows.
_REGION = (
    "spec.storage.region must be a region name such as eu-west-1: 1 to 63 letters, digits and "
    "'-', not only digits, and neither starting nor ending with '-'"
)
_SECRET = (
    "lowercase letters, digits, '-' and '.', each part between dots starting and ending with a "
    "letter or digit"
)
_CLUSTER = (
    "spec.rayCluster.name must be a RayCluster name whose head Service <name>-head-svc can "
    "exist: lowercase letters, digits and '-', starting with a letter and ending with a letter "
    "or digit"
)
_S3_URI = (
    "spec.model.storageUri must be s3://bucket/prefix where the bucket and each prefix segment "
    "are non-empty, neither . nor .., printable, at most 255 bytes and without backslashes (the "
    "bucket not starting with .)"
)


def tensors_named(inputs: list[str], outputs: list[str]) -> dict[str, Any]:
    """Spec fields declaring tensors of these names (a pytorch model, which must declare both)."""
    return {
        "model": {
            "format": "pytorch",
            "storageUri": "s3://models/iris",
            "inputs": [{"name": name, "datatype": "FP32", "shape": [-1]} for name in inputs],
            "outputs": [{"name": name, "datatype": "FP32", "shape": [-1]} for name in outputs],
        }
    }


VALUE_REFUSALS = [
    ({"storage": {"region": "eu west 1"}}, "spec.storage.region", f"{_REGION}, got 'eu west 1'"),
    ({"storage": {"region": "eu-west-1\n"}}, "spec.storage.region", f"{_REGION}\n"),
    (
        {"storage": {"secretRef": {"name": "S3-Credentials"}}},
        "spec.storage.secretRef.name",
        f"spec.storage.secretRef.name must be a Secret name: {_SECRET}, got 'S3-Credentials'",
    ),
    (
        {"auth": {"secretRef": {"name": "tokens."}}},
        "spec.auth.secretRef.name",
        f"spec.auth.secretRef.name must be a Secret name: {_SECRET}, got 'tokens.'",
    ),
    (
        {"runtimeEnv": {"envFrom": [{"secretRef": {"name": "api"}},
                                    {"secretRef": {"name": "a_b"}}]}},
        "spec.runtimeEnv.envFrom[1].secretRef.name",
        f"spec.runtimeEnv.envFrom secretRef names must be Secret names: {_SECRET}, got 'a_b'",
    ),
    ({"rayCluster": {"name": "2-gpus"}}, "spec.rayCluster.name", f"{_CLUSTER}, got '2-gpus'"),
    ({"rayCluster": {"name": "gpu.pool"}}, "spec.rayCluster.name", f"{_CLUSTER}, got 'gpu.pool'"),
    ({"model": {"format": "onnx", "storageUri": "s3://models/a\nb"}}, "spec.model.storageUri",
     f"{_S3_URI}\n"),
    (
        {"async": {"storageUri": "gs://jobs/a\nb"}},
        "spec.async.storageUri",
        "spec.async.storageUri must be s3://bucket/prefix or file:///absolute/path\n",
    ),
    (
        tensors_named(["0", "0"], ["y"]),
        "spec.model.inputs",
        "spec.model.inputs names must be unique, got '0' more than once",
    ),
    (
        tensors_named(["x"], ["y", "z", "z", "y"]),
        "spec.model.outputs",
        "spec.model.outputs names must be unique, got 'y' more than once",
    ),
    (
        tensors_named(["x", "a\nb", "a\nb"], ["y"]),
        "spec.model.inputs",
        "spec.model.inputs names must be unique\n",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "field", "said"), VALUE_REFUSALS)
def test_value_refusals_name_the_field_and_show_the_value(
    fields: dict[str, Any], field: str, said: str
) -> None:
    with pytest.raises(manifest.ManifestError) as refused:
        manifest.parse(document(**fields))
    assert f"{field}: {said}" in str(refused.value) + "\n"


# (region, valid): spec.storage.region against the S3 client botocore builds for it (for "" and
# a trailing line break it builds no valid endpoint; the others it refuses by name).
REGIONS = [
    ("eu-west-1", True),
    ("us-gov-west-1", True),
    ("EU-WEST-1", True),
    ("1a", True),
    ("a--b", True),
    ("r" * 63, True),
    ("r" * 64, False),
    ("", False),
    ("123", False),
    ("-eu", False),
    ("eu-", False),
    ("eu west 1", False),
    ("eu_west_1", False),
    ("eu.west", False),
    ("eu-west-1\n", False),
]


def _accepts(fields: dict[str, Any]) -> bool:
    try:
        manifest.parse(document(**fields))
    except manifest.ManifestError:
        return False
    return True


@pytest.mark.usefixtures("aws_test_env")
@pytest.mark.parametrize(("region", "valid"), REGIONS, ids=[ascii(r) for r, _ in REGIONS])
def test_region_rule_accepts_what_botocore_accepts(region: str, valid: bool) -> None:
    """The CRD must not admit a region the storage code then fails on: botocore checks it when
    the client is made, long after the API server said yes."""
    try:
        boto3.session.Session().client("s3", region_name=region)
        botocore_accepts = True
    except ValueError:  # InvalidRegionError is one
        botocore_accepts = False
    assert (_accepts({"storage": {"region": region}}), botocore_accepts) == (valid, valid)


# (name, valid): Secret names (DNS-1123 subdomains), in each field that names a Secret; in
# tests/kube the API server creates a Secret of each name that is valid, and of no other.
SECRET_NAMES = [
    ("s3", True),
    ("0", True),
    ("team.s3-credentials.v2", True),
    ("s" * 253, True),
    ("s" * 254, False),
    ("", False),
    ("S3", False),
    ("s3_credentials", False),
    ("-s3", False),
    ("s3-", False),
    (".s3", False),
    ("s3..v2", False),
    ("s3.-v2", False),
    ("s3\n", False),
]


def secret_named(place: str, name: str) -> dict[str, Any]:
    """Spec fields that name the Secret `name` in `place`, one of SECRET_PLACES."""
    ref = {"secretRef": {"name": name}}
    return {"runtimeEnv": {"envFrom": [ref]}} if place == "runtimeEnv" else {place: ref}


SECRET_PLACES = ("storage", "auth", "runtimeEnv")
"""Where a spec names a Secret: spec.storage, spec.auth and spec.runtimeEnv.envFrom[]."""


@pytest.mark.parametrize("place", SECRET_PLACES)
@pytest.mark.parametrize(("name", "valid"), SECRET_NAMES, ids=[_uri_id(n) for n, _ in SECRET_NAMES])
def test_secret_names_are_checked_wherever_a_secret_is_named(
    place: str, name: str, valid: bool
) -> None:
    assert _accepts(secret_named(place, name)) == valid


# (name, valid): spec.rayCluster.name; in tests/kube valid exactly when an object (a Secret,
# named as a RayCluster is) and its head Service, <name>-head-svc, can both have the name.
RAY_CLUSTER_NAMES = [
    ("gpu-pool", True),
    ("r", True),
    ("r2", True),
    ("r" * 54, True),
    ("r" * 55, False),
    ("", False),
    ("2r", False),
    ("r-", False),
    ("gpu.pool", False),
    ("GPU", False),
    ("gpu_pool", False),
    ("r\n", False),
]


@pytest.mark.parametrize(
    ("name", "valid"), RAY_CLUSTER_NAMES, ids=[_uri_id(n) for n, _ in RAY_CLUSTER_NAMES]
)
def test_ray_cluster_names_are_those_of_a_head_service(name: str, valid: bool) -> None:
    assert _accepts({"rayCluster": {"name": name}}) == valid


# (spec fields at an upper bound, the field, a value past it): the bounds the CRD puts on
# resources and on every delay, checked here and on the API server.
UPPER_BOUNDS = [
    ({"resources": {"cpu": 1024}}, "spec.resources.cpu", 1024.5),
    ({"resources": {"gpu": 64}}, "spec.resources.gpu", 64.5),
    ({"autoscaling": {"minReplicas": 1000, "maxReplicas": 1000}},
     "spec.autoscaling.minReplicas", 1001),
    ({"autoscaling": {"targetOngoingRequests": 10000}},
     "spec.autoscaling.targetOngoingRequests", 10000.5),
    ({"autoscaling": {"upscaleDelaySeconds": 86400}}, "spec.autoscaling.upscaleDelaySeconds",
     86401),
    ({"autoscaling": {"downscaleDelaySeconds": 86400}},
     "spec.autoscaling.downscaleDelaySeconds", 86400.5),
]  # fmt: skip


def past(fields: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    """`fields` with `field` (spec.<section>.<name>) set to `value`."""
    section, name = field.split(".")[1:]
    return {**fields, section: {**fields[section], name: value}}


@pytest.mark.parametrize(("fields", "field", "beyond"), UPPER_BOUNDS)
def test_upper_bounds(fields: dict[str, Any], field: str, beyond: Any) -> None:
    manifest.parse(document(**fields))
    with pytest.raises(manifest.ManifestError) as refused:
        manifest.parse(document(**past(fields, field, beyond)))
    assert f"{field}: {beyond} is greater than the maximum" in str(refused.value)


# (input names, output names, valid): each list names a tensor once, exactly (requests and
# answers carry tensors by name); an input and an output may share one. Checked here and in
# tests/kube on the API server.
TENSOR_NAMES = [
    (["x"], ["y"], True),
    (["x", "y", "z"], ["p", "q"], True),
    (["x", "X", "x ", " x"], ["y"], True),
    (["0", "00", "0.0"], ["y"], True),
    (["x"], ["x"], True),
    (["x", "y"], ["y", "x"], True),
    (["0", "0"], ["y"], False),
    (["x", "y", "x"], ["y"], False),
    (["x"], ["y", "y"], False),
    (["x", "x"], ["y", "y"], False),
    (["é", "é"], ["y"], False),
    (["a\nb", "a\nb"], ["y"], False),
    (["t" * 128, "t" * 128], ["y"], False),
]


@pytest.mark.parametrize(
    ("inputs", "outputs", "valid"), TENSOR_NAMES, ids=[ascii(row[:2])[:40] for row in TENSOR_NAMES]
)
def test_tensor_names_are_unique_in_each_list(
    inputs: list[str], outputs: list[str], valid: bool
) -> None:
    assert _accepts(tensors_named(inputs, outputs)) == valid


LARGEST_TENSORS: dict[str, Any] = {
    "format": "pytorch",
    "storageUri": "s3://models/iris",
    "inputs": [
        {"name": f"in{i:02}" + "x" * 124, "datatype": "FP32", "shape": [-1, *range(1, 16)]}
        for i in range(64)
    ],
    "outputs": [
        {"name": f"out{i:02}" + "y" * 123, "datatype": "INT64", "shape": [-1, *range(1, 16)]}
        for i in range(64)
    ],
}
"""spec.model with both tensor lists at their bounds, every name distinct and 128 characters
long: the most the uniqueness rules can cost (tests/kube checks the API server's CEL budget)."""


def test_largest_tensor_declarations_are_valid() -> None:
    parsed = manifest.parse(document(model=LARGEST_TENSORS)).spec.model
    assert (len(parsed.inputs), len(parsed.outputs)) == (64, 64)


def test_the_first_name_declared_twice_is_named() -> None:
    """Among 64 equal names at their longest, the message names one, on one line."""
    inputs = [LARGEST_TENSORS["inputs"][0]] * 64
    with pytest.raises(manifest.ManifestError) as refused:
        manifest.parse(document(model={**LARGEST_TENSORS, "inputs": inputs}))
    said = f"spec.model.inputs: spec.model.inputs names must be unique, got '{inputs[0]['name']}'"
    assert f"{said} more than once\n" in str(refused.value) + "\n"


# --- spec.logging: tables checked here and, in tests/kube, on the API server -----------------

# (spec.logging, the LoggingSpec it parses to)
LOGGING_ACCEPTED = [
    ({"url": "http://receiver.logs/events"}, spec.LoggingSpec(url="http://receiver.logs/events")),
    (
        {"url": "HTTPS://user@logs.example:8443/v1?x=1#y", "mode": "request", "sampleRate": 0},
        spec.LoggingSpec("request", 0.0, url="HTTPS://user@logs.example:8443/v1?x=1#y"),
    ),
    (
        {"storageUri": "s3://logs/iris", "mode": "response", "sampleRate": 0.5},
        spec.LoggingSpec("response", 0.5, storage_uri="s3://logs/iris"),
    ),
    ({"storageUri": "s3://logs", "sampleRate": 1}, spec.LoggingSpec(storage_uri="s3://logs")),
]

_ONE_SINK = "spec.logging needs exactly one sink: spec.logging.url or spec.logging.storageUri"
_URL = "spec.logging.url must be an http:// or https:// URL with a host and no whitespace"
_LOG_S3 = (
    "spec.logging.storageUri must be s3://bucket/prefix where the bucket and each prefix segment "
    "are non-empty, neither . nor .., printable, at most 255 bytes and without backslashes (the "
    "bucket not starting with .)"
)

# (spec.logging, the field refused, what the refusal says)
LOGGING_REFUSALS = [
    ({"mode": "request"}, "spec.logging", f"{_ONE_SINK}, got neither"),
    ({"url": "http://r/", "storageUri": "s3://logs"}, "spec.logging", f"{_ONE_SINK}, got both"),
    ({"url": "ftp://r/x"}, "spec.logging.url", f"{_URL}, got 'ftp://r/x'"),
    ({"url": "receiver.logs:80"}, "spec.logging.url", f"{_URL}, got 'receiver.logs:80'"),
    ({"url": "http:///events"}, "spec.logging.url", f"{_URL}, got 'http:///events'"),
    ({"url": "http://r/a b"}, "spec.logging.url", f"{_URL}, got 'http://r/a b'"),
    ({"url": "http://r/\nx"}, "spec.logging.url", f"{_URL}\n"),
    (
        {"storageUri": "file:///var/log/iris"},
        "spec.logging.storageUri",
        "spec.logging.storageUri must be s3://bucket/prefix, got 'file:///var/log/iris'",
    ),
    ({"storageUri": "s3://logs//iris"}, "spec.logging.storageUri",
     f"{_LOG_S3}, got 's3://logs//iris'"),
]  # fmt: skip

# (spec.logging, the field the schema's bounds and enum refuse)
LOGGING_BOUNDS = [
    ({"url": "http://r/", "sampleRate": 1.5}, "spec.logging.sampleRate"),
    ({"url": "http://r/", "sampleRate": -0.1}, "spec.logging.sampleRate"),
    ({"url": "http://r/", "mode": "both"}, "spec.logging.mode"),
    ({"url": "http://r/" + "x" * 2040}, "spec.logging.url"),
]


@pytest.mark.parametrize(("logging", "expected"), LOGGING_ACCEPTED)
def test_logging_is_typed(logging: dict[str, Any], expected: spec.LoggingSpec) -> None:
    parsed = manifest.parse(document(logging=logging)).spec.logging
    assert (parsed, type(parsed.sample_rate) if parsed else None) == (expected, float)


@pytest.mark.parametrize(("logging", "field", "said"), LOGGING_REFUSALS)
def test_logging_refusals_name_the_field_and_show_the_value(
    logging: dict[str, Any], field: str, said: str
) -> None:
    with pytest.raises(manifest.ManifestError) as refused:
        manifest.parse(document(logging=logging))
    assert f"{field}: {said}" in str(refused.value) + "\n"


@pytest.mark.parametrize(("logging", "field"), LOGGING_BOUNDS)
def test_logging_bounds_name_the_field(logging: dict[str, Any], field: str) -> None:
    with pytest.raises(manifest.ManifestError) as refused:
        manifest.parse(document(logging=logging))
    assert f"{field}: " in str(refused.value)


LOGGING_S3_URIS = [(uri, valid) for uri, valid in STORAGE_URIS if uri.lower().startswith("s3:")]
"""The S3 rows of the storage URI table: spec.logging.storageUri takes what the model's does."""


@pytest.mark.parametrize(
    ("uri", "valid"), LOGGING_S3_URIS, ids=[_uri_id(u) for u, _ in LOGGING_S3_URIS]
)
def test_logging_storage_uris_are_those_the_storage_code_parses(uri: str, valid: bool) -> None:
    assert _accepts({"logging": {"storageUri": uri}}) == valid
