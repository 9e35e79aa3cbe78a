"""The test control plane is a real Kubernetes API server: version, clients, RBAC, CRDs.

Everything here talks to kube-apiserver and etcd started by the ``control_plane``
fixture; nothing is mocked. What this control plane cannot do (run pods, collect
garbage, finalize namespaces) is pinned down in test_limitations.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from controlplane.cluster import ControlPlane, read_versions
from support.waiting import eventually

pytestmark = pytest.mark.kube

PINNED = read_versions()
KUBE_VERSION = PINNED["KUBE_VERSION"]
KUBE_MINOR = KUBE_VERSION.split(".")[1]

T = TypeVar("T")


# ---------------------------------------------------------------- version and clients
def test_api_server_reports_the_pinned_version(
    control_plane: ControlPlane, kube_client: ApiClient
) -> None:
    out = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    server = out["serverVersion"]
    assert server["gitVersion"] == KUBE_VERSION
    assert (server["major"], server["minor"]) == ("1", KUBE_MINOR)

    code = kubernetes.client.VersionApi(kube_client).get_code()
    assert code.git_version == KUBE_VERSION


def test_kubectl_is_within_supported_skew(control_plane: ControlPlane) -> None:
    out = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    client_minor = int(out["clientVersion"]["minor"].rstrip("+"))
    assert abs(client_minor - int(KUBE_MINOR)) <= 1, out["clientVersion"]


def test_kubernetes_client_reads_and_writes(kube_client: ApiClient, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(kube_client)
    names = {ns.metadata.name for ns in core.list_namespace().items}
    assert {"default", "kube-system", namespace} <= names
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "hello"}, "data": {"greeting": "hi"}}
    )
    assert core.read_namespaced_config_map("hello", namespace).data == {"greeting": "hi"}


def test_kopf_reads_the_kubeconfig(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kopf

    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    assert info is not None
    assert info.server == control_plane.url
    assert info.ca_data
    assert info.certificate_data
    assert info.private_key_data
    assert info.default_namespace == "default"


def test_kopf_operator_handles_a_resource(
    control_plane: ControlPlane, widget_crd: str, namespace: str, tmp_path: Path
) -> None:
    """kopf itself logs in with the kubeconfig, watches, and patches status."""
    handlers = tmp_path / "handlers.py"
    handlers.write_text(
        textwrap.dedent("""
        import kopf

        @kopf.on.login()
        def login(**kwargs):
            return kopf.login_with_kubeconfig(**kwargs)

        @kopf.on.create("tests.rayship.io", "v1", "widgets")
        def created(spec, **_):
            return {"seenSize": spec["size"]}
    """)
    )
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=widget_yaml("w1", size=4))
    log = (tmp_path / "kopf.log").open("w")
    kopf_proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--standalone",
            f"--namespace={namespace}",
            "--verbose",
            str(handlers),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=control_plane.env(),
        cwd=tmp_path,
    )
    try:

        def handled() -> Any:
            obj = json.loads(
                control_plane.kubectl("get", "widget", "w1", "-n", namespace, "-o", "json").stdout
            )
            return obj.get("status", {}).get("created")

        try:
            result = eventually(handled, timeout_s=60, what="kopf's handler result in status")
        except AssertionError:
            log.flush()
            raise AssertionError((tmp_path / "kopf.log").read_text()[-4000:]) from None
        assert result == {"seenSize": 4}
    finally:
        kopf_proc.terminate()
        try:
            kopf_proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kopf_proc.kill()
            kopf_proc.wait()
        log.close()


# ---------------------------------------------------------------- helm
TINY_CHART = {
    "Chart.yaml": """
        apiVersion: v2
        name: tiny
        version: 0.1.0
        kubeVersion: ">= 1.{minor}.0-0"
    """,
    "values.yaml": """
        greeting: hello
    """,
    "templates/configmap.yaml": """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{{{ .Release.Name }}}}-settings
        data:
          greeting: {{{{ .Values.greeting | quote }}}}
          kubeVersion: {{{{ .Capabilities.KubeVersion.Version | quote }}}}
    """,
}


def write_chart(root: Path, *, kube_version_constraint: str | None = None) -> Path:
    for name, text in TINY_CHART.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text.format(minor=KUBE_MINOR)).lstrip())
    if kube_version_constraint is not None:
        chart = root / "Chart.yaml"
        lines = [ln for ln in chart.read_text().splitlines() if not ln.startswith("kubeVersion")]
        chart.write_text("\n".join([*lines, f'kubeVersion: "{kube_version_constraint}"']) + "\n")
    return root


def test_helm_reports_pinned_version_and_lists(control_plane: ControlPlane) -> None:
    version = control_plane.helm("version", "--template", "{{.Version}}").stdout.strip()
    assert version == PINNED["HELM_VERSION"]
    releases = json.loads(control_plane.helm("list", "--all-namespaces", "-o", "json").stdout)
    assert isinstance(releases, list)


def test_helm_install_upgrade_uninstall(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    chart = write_chart(tmp_path / "tiny")
    control_plane.helm("install", "tiny", str(chart), "-n", namespace, "--wait", "--timeout=60s")

    def configmap() -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(
            control_plane.kubectl(
                "get", "configmap", "tiny-settings", "-n", namespace, "-o", "json"
            ).stdout
        )
        return obj

    data = configmap()["data"]
    assert data["greeting"] == "hello"
    # helm asked the server: .Capabilities carries the real version, not helm's default
    assert data["kubeVersion"] == KUBE_VERSION

    (release,) = json.loads(control_plane.helm("list", "-n", namespace, "-o", "json").stdout)
    assert (release["name"], release["status"], release["revision"]) == ("tiny", "deployed", "1")

    control_plane.helm("upgrade", "tiny", str(chart), "-n", namespace, "--set", "greeting=bye")
    assert configmap()["data"]["greeting"] == "bye"
    (release,) = json.loads(control_plane.helm("list", "-n", namespace, "-o", "json").stdout)
    assert release["revision"] == "2"

    control_plane.helm("uninstall", "tiny", "-n", namespace, "--wait")
    gone = control_plane.kubectl("get", "configmap", "tiny-settings", "-n", namespace, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr
    assert json.loads(control_plane.helm("list", "-n", namespace, "-o", "json").stdout) == []


def test_helm_kube_version_constraint_sees_the_real_version(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    chart = write_chart(tmp_path / "old", kube_version_constraint="< 1.20.0-0")
    result = control_plane.helm("install", "old", str(chart), "-n", namespace, check=False)
    assert result.returncode != 0
    assert "chart requires kubeVersion: < 1.20.0-0" in result.stderr
    assert KUBE_VERSION in result.stderr


# ---------------------------------------------------------------- RBAC and authentication
def can_i(control_plane: ControlPlane, verb: str, resource: str, ns: str, user: str) -> str:
    result = control_plane.kubectl(
        "auth", "can-i", verb, resource, "-n", ns, f"--as={user}", check=False
    )
    return result.stdout.strip()


def test_rbac_refuses_then_allows_a_service_account(
    control_plane: ControlPlane, namespace: str
) -> None:
    user = f"system:serviceaccount:{namespace}:nobody"
    control_plane.kubectl("create", "serviceaccount", "nobody", "-n", namespace)

    assert can_i(control_plane, "list", "configmaps", namespace, user) == "no"
    refused = control_plane.kubectl(
        "get", "configmaps", "-n", namespace, f"--as={user}", check=False
    )
    assert refused.returncode != 0
    assert "Forbidden" in refused.stderr
    assert f'User "{user}" cannot list resource "configmaps"' in refused.stderr

    control_plane.kubectl(
        "create",
        "role",
        "configmap-reader",
        "--verb=get,list",
        "--resource=configmaps",
        "-n",
        namespace,
    )
    control_plane.kubectl(
        "create",
        "rolebinding",
        "nobody-reads",
        "--role=configmap-reader",
        f"--serviceaccount={namespace}:nobody",
        "-n",
        namespace,
    )

    eventually(
        lambda: can_i(control_plane, "list", "configmaps", namespace, user) == "yes",
        what="RoleBinding to take effect",
    )
    allowed = control_plane.kubectl("get", "configmaps", "-n", namespace, f"--as={user}")
    assert allowed.returncode == 0
    # least privilege holds: nothing beyond the Role
    assert can_i(control_plane, "delete", "configmaps", namespace, user) == "no"
    assert can_i(control_plane, "list", "secrets", namespace, user) == "no"
    assert can_i(control_plane, "list", "configmaps", "default", user) == "no"


def test_service_account_token_authenticates(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """A token from the TokenRequest API, signed with the generated service-account
    key, authenticates as the service account, with only the rights RBAC gives it."""
    control_plane.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    token = control_plane.kubectl(
        "create", "token", "reader", "-n", namespace, "--duration=10m"
    ).stdout.strip()
    admin = json.loads(control_plane.kubeconfig.read_text())
    token_config = {
        **admin,
        "users": [{"name": "reader", "user": {"token": token}}],
        "contexts": [{"name": "reader", "context": {"cluster": "rayship-test", "user": "reader"}}],
        "current-context": "reader",
    }
    kubeconfig = tmp_path / "reader.kubeconfig"
    kubeconfig.write_text(json.dumps(token_config))

    whoami = json.loads(
        control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig).stdout
    )
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:reader"

    refused = control_plane.kubectl(
        "get", "configmaps", "-n", namespace, kubeconfig=kubeconfig, check=False
    )
    assert "Forbidden" in refused.stderr

    # a Role of our own: the aggregated ClusterRoles (view, edit, admin) stay
    # empty without kube-controller-manager (see test_limitations)
    control_plane.kubectl(
        "create", "role", "reader", "--verb=get,list", "--resource=configmaps", "-n", namespace
    )
    control_plane.kubectl(
        "create",
        "rolebinding",
        "reader-reads",
        "--role=reader",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    eventually(
        lambda: (
            control_plane.kubectl(
                "get", "configmaps", "-n", namespace, kubeconfig=kubeconfig, check=False
            ).returncode
            == 0
        ),
        what="RoleBinding to take effect",
    )

    bogus = {**token_config, "users": [{"name": "reader", "user": {"token": token[:-4] + "AAAA"}}]}
    kubeconfig.write_text(json.dumps(bogus))
    rejected = control_plane.kubectl(
        "get", "configmaps", "-n", namespace, kubeconfig=kubeconfig, check=False
    )
    assert rejected.returncode != 0
    assert "Unauthorized" in rejected.stderr or "provide credentials" in rejected.stderr


# ---------------------------------------------------------------- a CRD round trip
WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.tests.rayship.io
spec:
  group: tests.rayship.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      additionalPrinterColumns:
        - {name: Size, type: integer, jsonPath: .spec.size}
        - {name: Phase, type: string, jsonPath: .status.phase}
      schema:
        openAPIV3Schema:
          type: object
          description: A Widget exists only in the control-plane tests.
          properties:
            spec:
              type: object
              description: What the widget should be.
              required: [size]
              x-kubernetes-validations:
                - rule: self.size <= 10
                  message: size must be at most 10
              properties:
                size:
                  type: integer
                  minimum: 0
                  description: How many sprockets the widget turns.
                colour: {type: string, description: The paint on the widget.}
            status:
              type: object
              description: What the widget is, as its controller last saw it.
              x-kubernetes-preserve-unknown-fields: true
              properties:
                phase: {type: string}
                observedGeneration: {type: integer, format: int64}
"""
GROUP, VERSION, PLURAL = "tests.rayship.io", "v1", "widgets"


def widget_yaml(name: str, *, size: int) -> str:
    return (
        f"apiVersion: {GROUP}/{VERSION}\nkind: Widget\nmetadata: {{name: {name}}}\n"
        f"spec: {{size: {size}}}\n"
    )


@pytest.fixture(scope="module")
def widget_crd(control_plane: ControlPlane) -> str:
    control_plane.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    control_plane.wait_established(["widgets.tests.rayship.io"])
    return "widgets.tests.rayship.io"


def test_crd_is_explained_and_listed(
    control_plane: ControlPlane, widget_crd: str, namespace: str
) -> None:
    # OpenAPI for a new CRD is published a moment after it is Established
    explained = eventually(
        lambda: control_plane.kubectl("explain", "widgets.spec.size", check=False).stdout,
        what="kubectl explain widgets.spec.size",
    )
    assert "How many sprockets the widget turns." in explained
    assert "tests.rayship.io" in explained

    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=widget_yaml("w", size=3))
    table = control_plane.kubectl("get", "wdg", "-n", namespace).stdout
    assert table.split("\n")[0].split()[:3] == ["NAME", "SIZE", "PHASE"]
    assert table.split("\n")[1].split()[:2] == ["w", "3"]


def test_crd_schema_and_cel_validation_are_enforced(
    kube_client: ApiClient, widget_crd: str, namespace: str
) -> None:
    api = kubernetes.client.CustomObjectsApi(kube_client)

    def create(spec: dict[str, Any]) -> ApiException:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Widget",
            "metadata": {"name": "bad"},
            "spec": spec,
        }
        with pytest.raises(ApiException) as caught:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        assert caught.value.status == 422
        return caught.value

    assert "spec.size: Invalid value" in create({"size": "big"}).body
    assert "spec.size: Required value" in create({"colour": "red"}).body
    assert "size must be at most 10" in create({"size": 11}).body


def test_crd_watch_spec_status_and_generation(
    kube_client: ApiClient, widget_crd: str, namespace: str
) -> None:
    api = kubernetes.client.CustomObjectsApi(kube_client)
    args = (GROUP, VERSION, namespace, PLURAL)
    created = api.create_namespaced_custom_object(
        *args,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 1},
        },
    )
    assert created["metadata"]["generation"] == 1
    assert "status" not in created

    # a spec change: generation bumps, and a watch from the creation's
    # resourceVersion delivers it as MODIFIED
    patched = api.patch_namespaced_custom_object(*args[:3], PLURAL, "w", {"spec": {"size": 5}})
    assert patched["metadata"]["generation"] == 2
    watch = kubernetes.watch.Watch()
    events = []
    for event in watch.stream(
        api.list_namespaced_custom_object,
        *args,
        resource_version=created["metadata"]["resourceVersion"],
        timeout_seconds=20,
    ):
        events.append((event["type"], event["object"]["spec"]["size"]))
        if event["type"] == "MODIFIED":
            watch.stop()
    assert events == [("MODIFIED", 5)]

    # status through the status subresource: status changes, spec and generation do not
    status = {"status": {"phase": "Ready", "observedGeneration": 2}}
    after_status = api.patch_namespaced_custom_object_status(
        *args[:3],
        PLURAL,
        "w",
        {
            **status,
            "spec": {"size": 9},
        },
    )
    assert after_status["status"] == status["status"]
    assert after_status["spec"] == {"size": 5}
    assert after_status["metadata"]["generation"] == 2

    # status through the main resource is ignored; spec applies
    after_main = api.patch_namespaced_custom_object(
        *args[:3],
        PLURAL,
        "w",
        {
            "spec": {"size": 6},
            "status": {"phase": "Hacked"},
        },
    )
    assert after_main["status"]["phase"] == "Ready"
    assert after_main["spec"] == {"size": 6}
    assert after_main["metadata"]["generation"] == 3

    # metadata changes do not bump generation either
    labelled = api.patch_namespaced_custom_object(
        *args[:3], PLURAL, "w", {"metadata": {"labels": {"a": "b"}}}
    )
    assert labelled["metadata"]["generation"] == 3
    assert labelled["metadata"]["resourceVersion"] != after_main["metadata"]["resourceVersion"]


def test_finalizer_holds_deletion_until_removed(
    kube_client: ApiClient, widget_crd: str, namespace: str
) -> None:
    """The API server's own finalizer semantics (kopf relies on them) do work here."""
    api = kubernetes.client.CustomObjectsApi(kube_client)
    args = (GROUP, VERSION, namespace, PLURAL)
    created = api.create_namespaced_custom_object(
        *args,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Widget",
            "metadata": {"name": "held", "finalizers": ["tests.rayship.io/hold"]},
            "spec": {"size": 1},
        },
    )
    api.delete_namespaced_custom_object(*args[:3], PLURAL, "held")
    held = api.get_namespaced_custom_object(*args[:3], PLURAL, "held")
    assert held["metadata"]["deletionTimestamp"]

    api.patch_namespaced_custom_object(
        *args[:3], PLURAL, "held", {"metadata": {"finalizers": None}}
    )
    watch = kubernetes.watch.Watch()
    seen = []
    for event in watch.stream(
        api.list_namespaced_custom_object,
        *args,
        resource_version=created["metadata"]["resourceVersion"],
        timeout_seconds=20,
    ):
        seen.append(event["type"])
        if event["type"] == "DELETED":
            watch.stop()
    assert seen[-1] == "DELETED"
    with pytest.raises(ApiException) as caught:
        api.get_namespaced_custom_object(*args[:3], PLURAL, "held")
    assert caught.value.status == 404


# ---------------------------------------------------------------- the project's own CRDs
def _crd_names() -> list[str]:
    """CRD files in crds/ (an empty list shows up as one skipped test)."""
    crds = Path(__file__).resolve().parents[2] / "crds"
    return sorted(p.name for p in crds.glob("*.y*ml")) if crds.is_dir() else []


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("crd_file", _crd_names())
def test_project_crds_are_applied_and_explained(control_plane: ControlPlane, crd_file: str) -> None:
    """Every CRD in crds/ was applied by the fixture, and `kubectl explain` teaches
    its description and the fields of its spec."""
    path = Path(__file__).resolve().parents[2] / "crds" / crd_file
    names = control_plane.kubectl("get", "-f", str(path), "-o", "name").stdout.split()
    assert names
    for name in names:
        crd = json.loads(control_plane.kubectl("get", name, "-o", "json").stdout)
        assert crd["metadata"]["name"] in control_plane.crds
        spec = crd["spec"]
        version = next(v for v in spec["versions"] if v["storage"])
        schema = version["schema"]["openAPIV3Schema"]
        api_version = f"--api-version={spec['group']}/{version['name']}"
        plural = spec["names"]["plural"]

        def explain(field: str, api_version: str = api_version) -> str:
            return control_plane.kubectl("explain", field, api_version, check=False).stdout

        explained = eventually(partial(explain, plural), what=f"explain {plural}")
        assert f"KIND:       {spec['names']['kind']}" in explained
        if "description" in schema:
            assert _words(schema["description"]) in _words(explained)
        spec_fields = schema.get("properties", {}).get("spec", {}).get("properties", {})
        explained_spec = explain(f"{plural}.spec")
        for field in spec_fields:
            assert re.search(rf"^\s+{re.escape(field)}\s+<", explained_spec, re.MULTILINE), field
