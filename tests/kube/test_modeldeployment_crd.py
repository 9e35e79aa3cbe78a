"""The ModelDeployment CRD on a real API server: invalid objects refused, naming the field and
quoting the value."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import kubernetes
import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from controlplane.cluster import ControlPlane
from rayship.contract import API_VERSION, CRD_VERSION, GROUP, KIND, PLURAL
from unit.test_manifest import (
    LARGEST_RUNTIME_ENV,
    LARGEST_TENSORS,
    LOGGING_ACCEPTED,
    LOGGING_BOUNDS,
    LOGGING_REFUSALS,
    LOGGING_S3_URIS,
    RAY_CLUSTER_NAMES,
    REGIONS,
    RUNTIME_ENV_REFUSALS,
    SECRET_NAMES,
    SECRET_PLACES,
    STORAGE_URIS,
    TENSOR_NAMES,
    UPPER_BOUNDS,
    VALUE_REFUSALS,
    past,
    secret_named,
    tensors_named,
)

pytestmark = pytest.mark.kube


def body(name: str, **spec: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"model": {"format": "onnx", "storageUri": "s3://models/iris"}}
    fields.update(spec)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": fields}


def document(name: str, **spec: Any) -> str:
    return json.dumps(body(name, **spec))


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
        ({"async": {"storageUri": "gs://jobs/x"}}, "spec.async.storageUri"),
        ({"async": {"resultTtlSeconds": 60}}, "spec.async.storageUri"),
        ({"async": {"storageUri": "s3://jobs", "maxQueued": 0}}, "spec.async.maxQueued"),
        ({"auth": {"key": "tokens"}}, "spec.auth.secretRef"),
        ({"auth": {"secretRef": {"name": "t"}, "key": "no spaces"}}, "spec.auth.key"),
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


def named(name: str | None, version: str = "1") -> str:
    """ModelDeployment `named`, with spec.model.name `name` (None: absent)."""
    model = {"format": "onnx", "storageUri": "s3://m/x", "version": version}
    if name is not None:
        model["name"] = name
    return document("named", model=model)


@pytest.mark.parametrize(
    ("before", "after", "said"),
    [
        ("a", "b", "got 'b' where it was 'a'"),
        (None, "b", "got 'b' where it was none (so metadata.name 'named')"),
        ("a", None, "got none (so metadata.name 'named') where it was 'a'"),
    ],
    ids=["changed", "added", "removed"],
)
def test_the_model_name_cannot_change_on_update(
    control_plane: ControlPlane, namespace: str, before: str | None, after: str | None, said: str
) -> None:
    """Adding or removing spec.model.name moves the model URL as surely as changing it."""
    assert apply(control_plane, namespace, named(before))[0] == 0

    code, output = apply(control_plane, namespace, named(after, version="2"))

    assert code != 0
    assert "spec.model.name: Invalid value" in output
    immutable = "spec.model.name is immutable (it names the model URL /v2/models/<name>)"
    assert f"{immutable}, {said}" in output
    stored = control_plane.kubectl("-n", namespace, "get", "md", "named", "-o", "json").stdout
    assert json.loads(stored)["spec"]["model"]["version"] == "1"


@pytest.mark.parametrize(
    ("before", "after"),
    [("a", "a"), (None, None), (None, "named"), ("named", None)],
    ids=["kept", "never-set", "added-as-metadata-name", "removed-was-metadata-name"],
)
def test_updates_that_keep_the_effective_name_pass(
    control_plane: ControlPlane, namespace: str, before: str | None, after: str | None
) -> None:
    assert apply(control_plane, namespace, named(before))[0] == 0

    code, output = apply(control_plane, namespace, named(after, version="2"))

    assert code == 0, output
    stored = control_plane.kubectl("-n", namespace, "get", "md", "named", "-o", "json").stdout
    assert json.loads(stored)["spec"]["model"]["version"] == "2"


@pytest.mark.parametrize(
    "uri", ["file:models/iris", "s3://bucket/../x", "s3://bucket//x", "s3:///x", "file://x/y"]
)
def test_bad_storage_uris_are_refused_quoting_them(
    control_plane: ControlPlane, namespace: str, uri: str
) -> None:
    manifest = document("uri", model={"format": "onnx", "storageUri": uri})

    code, output = apply(control_plane, namespace, manifest)

    assert code != 0
    assert "spec.model.storageUri: Invalid value" in output
    assert f"got '{uri}'" in output


@pytest.mark.parametrize(
    "uri", ["s3://models/iris", "s3://models", "file:///srv/models/iris", "S3://models/ir is"]
)
def test_good_storage_uris_are_accepted(
    control_plane: ControlPlane, namespace: str, uri: str
) -> None:
    manifest = document("uri", model={"format": "onnx", "storageUri": uri})

    code, output = apply(control_plane, namespace, manifest)

    assert code == 0, output
    stored = control_plane.kubectl("-n", namespace, "get", "md", "uri", "-o", "json").stdout
    assert json.loads(stored)["spec"]["model"]["storageUri"] == uri


def test_the_api_server_judges_storage_uris_like_local_validation(
    kube_client: ApiClient, namespace: str
) -> None:
    """The unit table, whose verdicts local validation and rayship.storage share, holds on the
    API server too: Go's regexp and cel-go read the rules as cel-python and RE2 do."""
    api = kubernetes.client.CustomObjectsApi(kube_client)
    verdicts: dict[str, bool | str] = {}
    for uri, _ in STORAGE_URIS:
        manifest = body("uri", model={"format": "onnx", "storageUri": uri})
        try:
            api.create_namespaced_custom_object(
                GROUP, CRD_VERSION, namespace, PLURAL, manifest, dry_run="All"
            )
            verdicts[uri] = True
        except ApiException as refused:
            # a refusal for another reason is kept whole, so the comparison below shows it
            why = str(refused.body)
            verdicts[uri] = False if "spec.model.storageUri: Invalid value" in why else why
    assert verdicts == dict(STORAGE_URIS)


@pytest.mark.parametrize(
    ("spec", "said"),
    [
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
            "spec.model.format is pytorch (a state_dict carries no tensor names), "
            "got 1 inputs and 0 outputs",
        ),
    ],
    ids=["autoscaling", "canary", "python", "pytorch"],
)  # fmt: skip
def test_refusals_show_the_values(
    control_plane: ControlPlane, namespace: str, spec: dict[str, Any], said: str
) -> None:
    """kubectl prints each rule's messageExpression, not `Invalid value: "object"` alone."""
    code, output = apply(control_plane, namespace, document("bad", **spec))

    assert code != 0
    assert said in output


def test_short_name_and_printer_columns(control_plane: ControlPlane, namespace: str) -> None:
    assert apply(control_plane, namespace, document("cols"))[0] == 0
    header = control_plane.kubectl("-n", namespace, "get", "md").stdout.splitlines()[0].split()
    assert header == ["NAME", "MODEL", "VERSION", "PHASE", "READY", "URL", "AGE"]


def table_row(table: str) -> dict[str, str]:
    """The only row of a `kubectl get` table, by column: kubectl aligns each cell under its
    header and leaves an empty cell blank, so cells are cut at the headers' offsets."""
    header, row = table.splitlines()
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    ends = [*starts[1:], len(row)]
    return {
        name: row[start:end].strip()
        for name, start, end in zip(header.split(), starts, ends, strict=True)
    }


def test_the_model_column_shows_status_model_name(
    control_plane: ControlPlane, namespace: str
) -> None:
    """The operator writes the effective name to the status, so MODEL is filled even when
    spec.model.name is not; the column never reads the spec."""
    plane = control_plane
    model = {"name": "spec-name", "format": "onnx", "storageUri": "s3://m/x"}
    assert apply(plane, namespace, document("cols", model=model))[0] == 0
    before = table_row(plane.kubectl("-n", namespace, "get", "md", "cols").stdout)

    status = json.dumps({"status": {"modelName": "status-name"}})
    plane.kubectl("-n", namespace, "patch", "md", "cols", "--subresource=status", "--type=merge",
                  "-p", status)  # fmt: skip
    after = table_row(plane.kubectl("-n", namespace, "get", "md", "cols").stdout)

    assert (before["NAME"], before["MODEL"]) == ("cols", "")
    assert (after["NAME"], after["MODEL"]) == ("cols", "status-name")


def test_explain_teaches_the_fields(control_plane: ControlPlane) -> None:
    explained = control_plane.kubectl("explain", "modeldeployment.spec.rollout.canary").stdout
    assert "A second live version that receives a share of the traffic" in explained
    assert "percent" in explained


@pytest.mark.parametrize(("runtime_env", "field", "said"), RUNTIME_ENV_REFUSALS)
def test_runtime_env_refusals_name_the_field_and_show_the_value(
    control_plane: ControlPlane,
    namespace: str,
    runtime_env: dict[str, Any],
    field: str,
    said: str,
) -> None:
    """The same refusals as local validation's (tests/unit/test_manifest.py), from cel-go."""
    code, output = apply(control_plane, namespace, document("env", runtimeEnv=runtime_env))

    assert code != 0
    assert f"{field}: Invalid value: " in output
    assert f": {said}" in output + "\n"


@pytest.mark.parametrize(
    ("runtime_env", "said"),
    [
        ({"pip": ["p"] * 65}, "spec.runtimeEnv.pip: Too many: 65: must have at most 64 items"),
        ({"env": [{"name": "V", "value": "x" * 8193}]},
         "spec.runtimeEnv.env[0].value: Too long: may not be more than 8192 bytes"),
        ({"envFrom": [{"prefix": "P_"}]}, "spec.runtimeEnv.envFrom[0].secretRef: Required value"),
    ],
    ids=["pip-items", "value-length", "no-secret"],
)  # fmt: skip
def test_runtime_env_bounds_are_enforced(
    control_plane: ControlPlane, namespace: str, runtime_env: dict[str, Any], said: str
) -> None:
    code, output = apply(control_plane, namespace, document("env", runtimeEnv=runtime_env))

    assert code != 0
    assert said in output


def test_the_largest_runtime_env_fits_the_cel_budget(
    control_plane: ControlPlane, namespace: str
) -> None:
    """Every list and string at its bound: the API server must evaluate all rules within its
    per-request CEL cost budget (the CRD was already admitted with their estimated cost)."""
    manifest = document("big", runtimeEnv=LARGEST_RUNTIME_ENV)
    # create, not apply: apply's last-applied annotation would outgrow the annotations' limit
    done = control_plane.kubectl("-n", namespace, "create", "-f", "-", input=manifest, check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    stored = control_plane.kubectl("-n", namespace, "get", "md", "big", "-o", "json").stdout
    assert json.loads(stored)["spec"]["runtimeEnv"] == LARGEST_RUNTIME_ENV


@pytest.mark.parametrize(
    ("field", "taught"),
    [
        ("runtimeEnv", "Python packages and environment variables for the replicas"),
        ("runtimeEnv.pip", "Requirements in pip's format"),
        ("runtimeEnv.env", "as in a Kubernetes container"),
        ("runtimeEnv.env.name", "letters, digits and _"),
        ("runtimeEnv.env.value", "absent means empty"),
        ("runtimeEnv.envFrom", "every key of the Secret (or only those in keys)"),
        ("runtimeEnv.envFrom.secretRef", "The Secret, in this namespace"),
        ("runtimeEnv.envFrom.prefix", "Prepended to each key"),
        ("runtimeEnv.envFrom.keys", "absent takes every key"),
    ],
)
def test_explain_teaches_the_runtime_env(
    control_plane: ControlPlane, field: str, taught: str
) -> None:
    explained = control_plane.kubectl("explain", f"md.spec.{field}").stdout
    assert taught in " ".join(explained.split())


@pytest.mark.parametrize(("spec", "field", "said"), VALUE_REFUSALS)
def test_value_refusals_name_the_field_and_show_the_value(
    control_plane: ControlPlane, namespace: str, spec: dict[str, Any], field: str, said: str
) -> None:
    """The same refusals as local validation's (tests/unit/test_manifest.py), from cel-go: a
    value with a line break gets the rule's plain message, never `failed rule: ...`."""
    code, output = apply(control_plane, namespace, document("value", **spec))

    assert code != 0
    assert f"{field}: Invalid value: " in output
    assert f": {said}" in output + "\n"
    assert "failed rule" not in output


def test_rules_run_on_values_a_pattern_refused(control_plane: ControlPlane, namespace: str) -> None:
    """A pattern's refusal does not keep the API server from running the rules on the value, so
    even a rule on pattern-checked fields can be handed a line break to quote: it falls back to
    its plain message."""
    model = {"format": "onnx", "storageUri": "s3://m/x", "version": "2\n"}
    canary = {"version": "2\n", "percent": 5}
    manifest = document("canary", model=model, rollout={"canary": canary})

    code, output = apply(control_plane, namespace, manifest)

    assert code != 0
    assert "spec.model.version: Invalid value: " in output
    said = "spec.rollout.canary.version must differ from spec.model.version"
    assert f'spec.rollout.canary.version: Invalid value: "object": {said}\n' in output + "\n"


def verdicts(
    api: kubernetes.client.CustomObjectsApi, namespace: str, specs: list[dict[str, Any]]
) -> list[bool | str]:
    """Whether the API server accepts each spec (a server-side dry run); a refusal for anything
    but fields under spec is kept whole, so a comparison shows it."""
    judged: list[bool | str] = []
    for spec in specs:
        try:
            api.create_namespaced_custom_object(
                GROUP, CRD_VERSION, namespace, PLURAL, body("judged", **spec), dry_run="All"
            )
            judged.append(True)
        except ApiException as refused:
            causes = (json.loads(refused.body).get("details") or {}).get("causes") or []
            # A string over its maxLength keeps the rules from running, which adds a cause
            # saying so, on the field "<nil>".
            fields = [cause.get("field", "") for cause in causes]
            fields = [field for field in fields if field != "<nil>"]
            under_spec = fields and all(field.startswith("spec.") for field in fields)
            judged.append(False if under_spec else str(refused.body))
    return judged


def test_the_api_server_judges_regions_like_botocore(
    kube_client: ApiClient, namespace: str
) -> None:
    """The unit table, whose verdicts botocore shares, holds on the API server too."""
    api = kubernetes.client.CustomObjectsApi(kube_client)
    regions = [region for region, _ in REGIONS]
    judged = verdicts(api, namespace, [{"storage": {"region": region}} for region in regions])
    assert list(zip(regions, judged, strict=True)) == REGIONS


def object_named(
    core: kubernetes.client.CoreV1Api, namespace: str, kind: Literal["Secret", "Service"], name: str
) -> bool:
    """Whether the API server would create a Secret or a Service named `name` (dry run)."""
    metadata = {"name": name}
    try:
        if kind == "Secret":
            core.create_namespaced_secret(namespace, {"metadata": metadata}, dry_run="All")
        else:
            spec = {"ports": [{"port": 8265}]}
            core.create_namespaced_service(
                namespace, {"metadata": metadata, "spec": spec}, dry_run="All"
            )
    except ApiException as refused:
        if refused.status != 422:
            raise
        return False
    return True


def test_secret_names_are_those_a_secret_can_have(kube_client: ApiClient, namespace: str) -> None:
    """Each field that names a Secret accepts exactly the names the API server gives Secrets."""
    api = kubernetes.client.CustomObjectsApi(kube_client)
    core = kubernetes.client.CoreV1Api(kube_client)
    for name, valid in SECRET_NAMES:
        judged = verdicts(api, namespace, [secret_named(place, name) for place in SECRET_PLACES])
        secret = object_named(core, namespace, "Secret", name)
        assert (secret, judged) == (valid, [valid] * len(SECRET_PLACES)), ascii(name)


def test_ray_cluster_names_are_those_a_head_service_can_have(
    kube_client: ApiClient, namespace: str
) -> None:
    """spec.rayCluster.name accepts exactly the names an object (a RayCluster is named as a
    Secret is) can have whose head Service, as the operator names it, can exist too."""
    api = kubernetes.client.CustomObjectsApi(kube_client)
    core = kubernetes.client.CoreV1Api(kube_client)
    for name, valid in RAY_CLUSTER_NAMES:
        [judged] = verdicts(api, namespace, [{"rayCluster": {"name": name}}])
        cluster = object_named(core, namespace, "Secret", name)
        head = object_named(core, namespace, "Service", f"{name}-head-svc")
        assert (judged, cluster and head) == (valid, valid), ascii(name)


@pytest.mark.parametrize(("spec", "field", "beyond"), UPPER_BOUNDS)
def test_upper_bounds_are_enforced(
    kube_client: ApiClient, namespace: str, spec: dict[str, Any], field: str, beyond: Any
) -> None:
    api = kubernetes.client.CustomObjectsApi(kube_client)
    assert verdicts(api, namespace, [spec]) == [True]

    manifest = body("past", **past(spec, field, beyond))
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_custom_object(
            GROUP, CRD_VERSION, namespace, PLURAL, manifest, dry_run="All"
        )

    said = json.loads(refused.value.body)["message"]
    assert f"{field}: Invalid value: {beyond}: {field} in body should be less than" in said


def test_the_api_server_judges_tensor_names_alike(kube_client: ApiClient, namespace: str) -> None:
    """The unit table of tensor names, each list's unique, holds on the API server too."""
    api = kubernetes.client.CustomObjectsApi(kube_client)
    specs = [tensors_named(inputs, outputs) for inputs, outputs, _ in TENSOR_NAMES]
    judged = verdicts(api, namespace, specs)
    assert list(zip(TENSOR_NAMES, judged, strict=True)) == [(row, row[2]) for row in TENSOR_NAMES]


def test_the_largest_tensor_declarations_fit_the_cel_budget(
    kube_client: ApiClient, namespace: str
) -> None:
    """Both tensor lists at their bounds, every name distinct and at its longest, beside the
    largest runtimeEnv: the API server's CEL budget is per object, and the uniqueness rules
    compare each name with every other. Then the same with every name repeated, where the
    messages run as well: refused by the rules, naming the name, not for running out."""
    api = kubernetes.client.CustomObjectsApi(kube_client)
    spec = {"model": LARGEST_TENSORS, "runtimeEnv": LARGEST_RUNTIME_ENV}
    assert verdicts(api, namespace, [spec]) == [True]

    model = {**LARGEST_TENSORS}
    model["inputs"] = [LARGEST_TENSORS["inputs"][0]] * 64
    model["outputs"] = [LARGEST_TENSORS["outputs"][0]] * 64
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_custom_object(
            GROUP, CRD_VERSION, namespace, PLURAL, body("twice", **{**spec, "model": model}),
            dry_run="All",
        )  # fmt: skip

    causes = json.loads(refused.value.body)["details"]["causes"]
    # The API server reports the two list rules in no fixed order.
    assert sorted((cause["field"], cause["message"]) for cause in causes) == [
        (
            f"spec.model.{field}",
            f'Invalid value: "array": spec.model.{field} names must be unique, got '
            f"'{model[field][0]['name']}' more than once",
        )
        for field in ("inputs", "outputs")
    ]


def test_the_api_server_accepts_the_logging_local_validation_accepts(
    kube_client: ApiClient, namespace: str
) -> None:
    """spec.logging: every accepted row of the unit table, the S3 prefixes the storage code
    parses and no other, and the number sampleRate defaults to."""
    api = kubernetes.client.CustomObjectsApi(kube_client)
    accepted = [{"logging": logging} for logging, _ in LOGGING_ACCEPTED]
    assert verdicts(api, namespace, accepted) == [True] * len(accepted)
    uris = [uri for uri, _ in LOGGING_S3_URIS]
    judged = verdicts(api, namespace, [{"logging": {"storageUri": uri}} for uri in uris])
    assert list(zip(uris, judged, strict=True)) == LOGGING_S3_URIS

    created = api.create_namespaced_custom_object(
        GROUP, CRD_VERSION, namespace, PLURAL, body("logs", logging={"url": "http://r/"})
    )
    assert created["spec"]["logging"] == {"url": "http://r/", "mode": "all", "sampleRate": 1}


@pytest.mark.parametrize(("logging", "field", "said"), LOGGING_REFUSALS)
def test_logging_refusals_name_the_field_and_show_the_value(
    control_plane: ControlPlane, namespace: str, logging: dict[str, Any], field: str, said: str
) -> None:
    """The same refusals as local validation's (tests/unit/test_manifest.py), from cel-go."""
    code, output = apply(control_plane, namespace, document("logs", logging=logging))

    assert code != 0
    assert f"{field}: Invalid value: " in output
    assert f": {said}" in output + "\n"
    assert "failed rule" not in output


@pytest.mark.parametrize(("logging", "field"), LOGGING_BOUNDS)
def test_logging_bounds_are_enforced(
    kube_client: ApiClient, namespace: str, logging: dict[str, Any], field: str
) -> None:
    api = kubernetes.client.CustomObjectsApi(kube_client)
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_custom_object(
            GROUP, CRD_VERSION, namespace, PLURAL, body("logs", logging=logging), dry_run="All"
        )
    causes = json.loads(refused.value.body)["details"]["causes"]
    # As in verdicts(): a refused value keeps the rules from running, a cause on "<nil>".
    assert [cause["field"] for cause in causes if cause["field"] != "<nil>"] == [field]


def test_explain_teaches_logging(control_plane: ControlPlane) -> None:
    explained = " ".join(control_plane.kubectl("explain", "md.spec.logging").stdout.split())
    assert "exactly one sink, url or storageUri" in explained
    for field in ("mode", "sampleRate", "storageUri", "url"):
        assert field in explained
