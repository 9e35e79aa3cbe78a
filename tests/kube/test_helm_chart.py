"""The Helm chart helm/rayship: lint, render, install, upgrade, uninstall, schema and RBAC.

Everything runs the pinned helm and kubectl against the real kube-apiserver. Pods never run
there, so nothing waits for the operator Deployment to become ready; the RBAC test instead runs
the operator here, as the chart's ServiceAccount (a real token from the TokenRequest API), and
drives a ModelDeployment to Ready on the session's local Ray.
"""

from __future__ import annotations

import json
import re
import secrets
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from controlplane.cluster import ControlPlane, Tools
from rayship.haproxy import IngressLimits
from rayship.local import free_port
from rayship.serving_env import HAPROXY_MAXCONN, serving_environment
from rayship.spec import RayClusterRef
from rayship_operator.clusters import cluster_for
from rayship_operator.settings import OperatorSettings
from support.operator_process import run_operator
from support.ray_cluster import ServeCluster
from support.s3 import S3Server
from support.waiting import eventually

pytestmark = pytest.mark.kube

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "rayship"
CRD_FILE = REPO / "crds" / "modeldeployment.yaml"
PREDICTOR = REPO / "Dockerfile.predictor"
RAYCLUSTER_API = "ray.io/v1/RayCluster"
INSTANCE_TYPE = "node\\.kubernetes\\.io/instance-type"  # a label key, dots escaped for --set

Doc = dict[str, Any]
T = TypeVar("T")


# ---------------------------------------------------------------- helpers
def render(plane: ControlPlane, *args: str, release: str = "rayship") -> list[Doc]:
    """`helm template` with extra arguments, parsed; fails on any helm error."""
    out = plane.helm("template", release, str(CHART), "--namespace", "rayship-system", *args)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def index(docs: list[Doc]) -> dict[tuple[str, str], Doc]:
    """Documents by (kind, name); for documents whose names are unique."""
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def one(docs: list[Doc], kind: str) -> Doc:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def container_env(deployment: Doc) -> dict[str, Any]:
    """The operator container's env: plain values as strings, valueFrom as its dict."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def rules(role: Doc) -> set[tuple[str, str, str, tuple[str, ...]]]:
    """(apiGroup, resource, verb, resourceNames) of every rule, flattened."""
    return {
        (group, resource, verb, tuple(rule.get("resourceNames", ())))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


WATCH_RULES = {
    ("serving.rayship.io", "modeldeployments", "list", ()),
    ("serving.rayship.io", "modeldeployments", "watch", ()),
    ("serving.rayship.io", "modeldeployments", "patch", ()),
    ("serving.rayship.io", "modeldeployments/status", "patch", ()),
    ("", "events", "create", ()),
    ("", "secrets", "get", ()),
}
CRD_RULES = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list", ()),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch", ()),
}


def get_json(plane: ControlPlane, *args: str) -> Doc:
    found: Doc = json.loads(plane.kubectl("get", *args, "-o", "json").stdout)
    return found


def exists(plane: ControlPlane, *args: str) -> bool:
    return plane.kubectl("get", *args, check=False).returncode == 0


def suffix() -> str:
    return secrets.token_hex(3)


# ---------------------------------------------------------------- lint and the CRD
def test_lint_is_clean(control_plane: ControlPlane) -> None:
    for extra in ([], ["--set", "operator.watchNamespaces={a,b}", "--set", "operator.peering=p"]):
        out = control_plane.helm("lint", "--strict", str(CHART), *extra)
        assert "0 chart(s) failed" in out.stdout
        assert "[WARNING]" not in out.stdout
        assert "[ERROR]" not in out.stdout


def test_the_chart_ships_the_crds_of_crds_itself(control_plane: ControlPlane) -> None:
    """One source: the chart's CRDs are links to crds/ (the ModelDeployment and kopf's peering
    resources), and helm reads exactly those files."""
    sources = sorted((REPO / "crds").glob("*.yaml"))
    assert [p.name for p in sources] == ["kopf-peering.yaml", "modeldeployment.yaml"]
    for source in sources:
        link = CHART / "crds" / source.name
        assert link.is_symlink()
        assert link.resolve() == source.resolve()
    shown = control_plane.helm("show", "crds", str(CHART)).stdout
    assert all(p.read_text().strip() in shown for p in sources)  # files as they are, unjoined
    expected = [d for p in sources for d in yaml.safe_load_all(p.read_text())]
    crds = [
        d
        for d in render(control_plane, "--include-crds")
        if d["kind"] == "CustomResourceDefinition"
    ]
    assert crds == expected
    # without --include-crds the CRD is not a template: helm never upgrades or deletes it
    assert not [d for d in render(control_plane) if d["kind"] == "CustomResourceDefinition"]


# ---------------------------------------------------------------- what the templates render
def test_default_install_objects(control_plane: ControlPlane) -> None:
    docs = render(control_plane)
    assert sorted(index(docs)) == [
        ("ClusterRole", "rayship-operator"),
        ("ClusterRoleBinding", "rayship-operator"),
        ("Deployment", "rayship-operator"),
        ("Service", "rayship-operator-metrics"),
        ("ServiceAccount", "rayship-operator"),
    ]
    assert all(d["metadata"].get("namespace", "rayship-system") == "rayship-system" for d in docs)


def test_deployment_runs_one_locked_down_operator(control_plane: ControlPlane) -> None:
    deployment = one(render(control_plane), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}  # never two standalone operators at once
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["serviceAccountName"] == "rayship-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/rayship/rayship-operator:0.1.0"
    assert container["command"] == ["python", "-m", "rayship_operator"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # kopf's liveness endpoint (RAYSHIP_LIVENESS_ENDPOINT) and the metrics (RAYSHIP_METRICS_ADDRESS)
    assert container["ports"] == [
        {"name": "health", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["limits"]["memory"]
    # the read-only root gets a writable /tmp and nothing else
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert "emptyDir" in pod["volumes"][0]


def test_every_operator_setting_is_a_chart_value(control_plane: ControlPlane) -> None:
    """The env the chart writes is what OperatorSettings.from_env reads, value for value."""
    docs = render(
        control_plane,
        "--set", "ray.dashboard=http://ray.example:8265",
        "--set", "ray.serveUrl=http://ray.example:8000",
        "--set", "ray.serveHttpHost=127.0.0.1",
        "--set", "ray.kuberayDashboardPort=9265",
        "--set", "ray.kuberayServePort=9000",
        "--set", "ray.kuberayServeGrpcPort=9001",
        "--set-json", "operator.reconcileSeconds=2.5",
        "--set-json", "operator.settleSeconds=12",
        "--set-json", "operator.settlePollSeconds=0.5",
        "--set-json", "operator.buildGraceSeconds=4",
        "--set-json", "operator.deleteGraceSeconds=30",
        "--set", "operator.clusterDomain=cluster.example",
        "--set", "operator.watchNamespaces={team-a,team-b}",
        "--set", "operator.peering=rayship",
        "--set", "operator.peeringLifetimeSeconds=20",
        "--set", "operator.logLevel=DEBUG",
        "--set", "metrics.port=9191",
        "--set", "s3.endpoint=http://minio.storage:9000",
        "--set", "s3.region=eu-west-1",
    )  # fmt: skip
    env = container_env(one(docs, "Deployment"))
    read = set(
        re.findall(
            r'"(RAYSHIP_[A-Z0-9_]+)"', (REPO / "operator/rayship_operator/settings.py").read_text()
        )
    )
    assert read  # the settings module names its variables
    assert read == {name for name in env if name.startswith("RAYSHIP_")}
    assert OperatorSettings.from_env(env) == OperatorSettings(
        default_dashboard="http://ray.example:8265",
        default_serve_url="http://ray.example:8000",
        serve_http_host="127.0.0.1",
        serve_grpc_port=9001,
        reconcile_seconds=2.5,
        settle_seconds=12.0,
        settle_poll_seconds=0.5,
        build_grace_seconds=4.0,
        delete_grace_seconds=30.0,
        cluster_domain="cluster.example",
        dashboard_port=9265,
        serve_port=9000,
        s3_endpoint="http://minio.storage:9000",
        s3_region="eu-west-1",
        namespaces=("team-a", "team-b"),
        peering="rayship",
        peering_lifetime_seconds=20,
        log_level="DEBUG",
        metrics_address="0.0.0.0:9191",
    )
    # defaults: no default cluster, no S3 overrides, cluster-wide, standalone
    defaults = OperatorSettings.from_env(container_env(one(render(control_plane), "Deployment")))
    assert (defaults.namespaces, defaults.peering, defaults.s3_endpoint) == ((), None, None)


def test_metrics_have_a_service_to_scrape_and_an_optional_service_monitor(
    control_plane: ControlPlane,
) -> None:
    docs = render(control_plane, "--set", "metrics.serviceMonitor.enabled=true")
    deployment = one(docs, "Deployment")
    service = one(docs, "Service")
    assert service["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "prometheus.io/path": "/metrics",
    }
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitor = one(docs, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    assert [d for d in render(control_plane) if d["kind"] == "ServiceMonitor"] == []

    off = render(control_plane, "--set", "metrics.enabled=false")
    assert [d for d in off if d["kind"] == "Service"] == []
    assert container_env(one(off, "Deployment"))["RAYSHIP_METRICS_ADDRESS"] == ""


def test_ray_auth_token_comes_from_a_secret(control_plane: ControlPlane) -> None:
    docs = render(control_plane, "--set", "ray.authTokenSecret.name=ray-token")
    env = container_env(one(docs, "Deployment"))
    assert env["RAY_AUTH_TOKEN"] == {"secretKeyRef": {"name": "ray-token", "key": "token"}}
    assert "RAY_AUTH_TOKEN" not in container_env(one(render(control_plane), "Deployment"))


def test_server_wide_inference_tokens_come_from_a_secret(control_plane: ControlPlane) -> None:
    docs = render(control_plane, "--set", "auth.existingSecret=model-tokens")
    env = container_env(one(docs, "Deployment"))
    assert env["RAYSHIP_AUTH_TOKENS"] == {"secretKeyRef": {"name": "model-tokens", "key": "tokens"}}
    assert "RAYSHIP_AUTH_TOKENS" not in container_env(one(render(control_plane), "Deployment"))


def test_cluster_wide_rbac_is_exactly_what_the_operator_uses(control_plane: ControlPlane) -> None:
    objects = index(render(control_plane))
    assert rules(objects["ClusterRole", "rayship-operator"]) == WATCH_RULES | CRD_RULES
    binding = objects["ClusterRoleBinding", "rayship-operator"]
    assert binding["roleRef"]["name"] == "rayship-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rayship-operator", "namespace": "rayship-system"}
    ]


def test_namespaced_rbac_uses_roles_per_watched_namespace(control_plane: ControlPlane) -> None:
    docs = render(control_plane, "--set", "operator.watchNamespaces={team-a,team-b}")
    objects = index(docs)
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(rules(r) == WATCH_RULES for r in roles)
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    # the only cluster-scoped rights: kopf's reads of CRDs and namespaces
    assert rules(objects["ClusterRole", "rayship-operator-discovery"]) == CRD_RULES | {
        ("", "namespaces", "list", ()),
        ("", "namespaces", "watch", ()),
    }
    assert ("ClusterRole", "rayship-operator") not in objects

    kinds = {
        d["kind"]
        for d in render(
            control_plane,
            "--set",
            "operator.watchNamespaces={team-a}",
            "--set",
            "rbac.clusterDiscovery=false",
        )
    }
    assert kinds == {"ServiceAccount", "Deployment", "Service", "Role", "RoleBinding"}


def test_secret_access_can_be_narrowed_or_removed(control_plane: ControlPlane) -> None:
    narrowed = one(
        render(control_plane, "--set", "rbac.secrets.resourceNames={s3-credentials}"), "ClusterRole"
    )
    assert ("", "secrets", "get", ("s3-credentials",)) in rules(narrowed)
    assert not [r for r in rules(narrowed) if r[1] == "secrets" and not r[3]]
    removed = one(render(control_plane, "--set", "rbac.secrets.enabled=false"), "ClusterRole")
    assert not [r for r in rules(removed) if r[1] == "secrets"]


def test_peering_allows_replicas_and_grants_peering_objects(control_plane: ControlPlane) -> None:
    docs = render(control_plane, "--set", "replicaCount=2", "--set", "operator.peering=rayship")
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert ("kopf.dev", "clusterkopfpeerings", "patch", ()) in rules(one(docs, "ClusterRole"))
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "rayship"
    namespaced = render(
        control_plane, "--set", "operator.peering=p", "--set", "operator.watchNamespaces={a,b}"
    )
    for role in (d for d in namespaced if d["kind"] == "Role"):
        assert ("kopf.dev", "kopfpeerings", "patch", ()) in rules(role)
    peerings = [d["metadata"] for d in namespaced if d["kind"] == "KopfPeering"]
    assert [(m["namespace"], m["name"]) for m in peerings] == [("a", "p"), ("b", "p")]
    assert not [d for d in render(control_plane) if d["kind"].endswith("KopfPeering")]


def test_optional_raycluster_with_gpu_workers_and_autoscaler(control_plane: ControlPlane) -> None:
    assert not [d for d in render(control_plane) if d["kind"] == "RayCluster"]
    docs = render(
        control_plane,
        "--api-versions", RAYCLUSTER_API,
        "--set", "rayCluster.enabled=true",
        "--set", "rayCluster.gpuWorkers.gpus=2",
        "--set", f"rayCluster.gpuWorkers.nodeSelector.{INSTANCE_TYPE}=g5.xlarge",
        "--set", "ray.authTokenSecret.name=ray-token",
    )  # fmt: skip
    cluster = one(docs, "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "serve"
    ]
    assert f"ray[serve]=={spec['rayVersion']}" in pins
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["upscalingMode"] == "Default"
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    (head_container,) = head["template"]["spec"]["containers"]
    assert head_container["image"] == "ghcr.io/rayship/rayship-predictor:0.1.0"
    assert "nvidia.com/gpu" not in head_container["resources"].get("limits", {})
    assert {p["name"]: p["containerPort"] for p in head_container["ports"]}["serve"] == 8000
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    gpu = groups["gpu"]
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (0, 2)
    pod = gpu["template"]["spec"]
    (worker,) = pod["containers"]
    assert worker["image"] == "ghcr.io/rayship/rayship-predictor:0.1.0-gpu"
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "g5.xlarge"}
    assert worker["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "ray-token"
    assert (
        "nvidia.com/gpu"
        not in groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    )
    # the operator's default cluster is this RayCluster, addressed as the operator addresses one
    env = container_env(one(docs, "Deployment"))
    expected = cluster_for(
        "rayship-system", RayClusterRef(name=cluster["metadata"]["name"]), OperatorSettings()
    )
    assert (env["RAYSHIP_RAY_DASHBOARD"], env["RAYSHIP_SERVE_URL"]) == (
        expected.dashboard,
        expected.serve_url,
    )


def test_the_v2_grpc_port_is_on_the_ray_head_and_in_the_operators_settings(
    control_plane: ControlPlane,
) -> None:
    """One value, ray.kuberayServeGrpcPort, is both the head container's `serve-grpc` port
    (KubeRay puts the head's named ports on its head service) and the gRPC port the operator
    writes into every cluster's Serve config and shows in status.grpcAddress."""
    for values, port in (([], 8001), (["--set", "ray.kuberayServeGrpcPort=9001"], 9001)):
        docs = render(control_plane, "--api-versions", RAYCLUSTER_API,
                      "--set", "rayCluster.enabled=true", *values)  # fmt: skip
        cluster = one(docs, "RayCluster")
        (head,) = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in head["ports"]}
        assert ports["serve-grpc"] == port
        assert len(set(ports.values())) == len(ports)  # no two names for one port
        env = container_env(one(docs, "Deployment"))
        assert env["RAYSHIP_SERVE_GRPC_PORT"] == str(port)
        settings = OperatorSettings.from_env(env)
        name = cluster["metadata"]["name"]
        head_service = f"{name}-head-svc.rayship-system.svc.cluster.local:{port}"
        # the default cluster (the chart points it at this RayCluster) and the RayCluster named
        # in a spec: Serve listens on the port, and status.grpcAddress is the head service's
        default = cluster_for("rayship-system", None, settings)
        named = cluster_for("rayship-system", RayClusterRef(name=name), settings)
        for ref in (default, named):
            assert ref.http.grpc_port == port
            assert ref.grpc_address == head_service


def ray_containers(cluster: Doc) -> list[Doc]:
    spec = cluster["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for group in groups for c in group["template"]["spec"]["containers"]]


def test_every_ray_node_serves_with_local_modes_settings(control_plane: ControlPlane) -> None:
    """The RayCluster's containers carry `serving_environment` (throughput mode, the hardened
    HAProxy, the handle transport limit, prompt logs), with the launcher where the predictor
    image installs it. KubeRay pods cannot run here (no container runtime), so the limits
    themselves are proven on local mode's Ray with these same variables
    (tests/ray/test_ingress_limits.py)."""
    installed = re.search(r"python -m rayship\.haproxy (\S+)", PREDICTOR.read_text())
    assert installed, "Dockerfile.predictor installs no HAProxy launcher"
    launcher = f"{installed.group(1)}/haproxy"
    cluster = one(render(control_plane, "--api-versions", RAYCLUSTER_API,
                         "--set", "rayCluster.enabled=true"), "RayCluster")  # fmt: skip
    for container in ray_containers(cluster):
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == serving_environment({}, launcher), container["name"]

    tuned = one(
        render(control_plane, "--api-versions", RAYCLUSTER_API,
               "--set", "rayCluster.enabled=true",
               "--set", "rayCluster.ingress.headerTimeoutSeconds=3",
               "--set", "rayCluster.ingress.connectionsPerClient=64",
               "--set", "rayCluster.ingress.maxConnections=2000"),
        "RayCluster",
    )  # fmt: skip
    for container in ray_containers(tuned):
        env = {e["name"]: e["value"] for e in container["env"]}
        assert IngressLimits.from_env(env) == IngressLimits(
            header_timeout_s=3, connections_per_client=64
        )
        assert env[HAPROXY_MAXCONN] == "2000"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "replicaCount=-1"], "at '/replicaCount': minimum: got -1, want 1"),
        (["--set", "operator.logLevel=LOUD"], "at '/operator/logLevel': value must be one of"),
        (["--set", "operator.watchNamespace=a"], "'watchNamespace' not allowed"),
        (["--set", "operator.watchNamespaces={Team_A}"], "at '/operator/watchNamespaces/0'"),
        (["--set", "ray.dashboard=ray-head:8265"], "at '/ray/dashboard'"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (["--set", "rayCluster.gpuWorkers.gpus=0"], "at '/rayCluster/gpuWorkers/gpus'"),
        (["--set", "rayCluster.ingress.keepAliveSeconds=0"], "at '/rayCluster/ingress/"),
        (["--set", "s3.region=eu west"], "at '/s3/region'"),
        (["--set-string", "s3.region=123"], "at '/s3/region'"),  # botocore refuses it too
        (["--set-json", "operator.deleteGraceSeconds=-1"], "at '/operator/deleteGraceSeconds'"),
        (["--set", "metrics.port=8080"], "at '/metrics/port'"),
        (["--set", "replicaCount=2"], "replicaCount: 2 replicas need operator.peering"),
        (["--set", "rayCluster.enabled=true"], "rayCluster.enabled: the cluster has no"),
        (["--set", "tracing.otlpEndpoint=otel:4317"], "at '/tracing/otlpEndpoint'"),
        (["--set", "grafana.dashboard.label=grafana dashboard"], "at '/grafana/dashboard/label'"),
        (["--set", "grafana.dashboard.namespace=Monitoring"], "at '/grafana/dashboard/namespace'"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_naming_the_field(
    control_plane: ControlPlane, values: list[str], message: str
) -> None:
    result = control_plane.helm("template", "rayship", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert message in result.stderr


# ---------------------------------------------------------------- install on a clean API server
@pytest.fixture(scope="module")
def clean_plane(
    kube_tools: Tools, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """An API server of this module's own, without the CRDs the session's plane pre-applies,
    so that `helm install` is seen creating the CRD."""
    plane = ControlPlane(kube_tools, state_dir=tmp_path_factory.mktemp("clean-plane"))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


def test_install_upgrade_uninstall(clean_plane: ControlPlane) -> None:
    plane = clean_plane
    plane.kubectl("create", "namespace", "rayship-system")
    assert not exists(plane, "crd", "modeldeployments.serving.rayship.io")

    refused = plane.helm(
        "install",
        "rayship",
        str(CHART),
        "-n",
        "rayship-system",
        "--set",
        "replicaCount=0",
        check=False,
    )
    assert refused.returncode != 0
    assert "at '/replicaCount': minimum: got 0, want 1" in refused.stderr
    assert not exists(plane, "deployment", "rayship-operator", "-n", "rayship-system")

    out = plane.helm("install", "rayship", str(CHART), "-n", "rayship-system")
    assert (
        "kubectl -n rayship-system rollout status deployment/rayship-operator" in out.stdout
    )  # NOTES
    plane.wait_established(["modeldeployments.serving.rayship.io"])
    assert get_json(plane, "crd", "modeldeployments.serving.rayship.io")["spec"]["names"][
        "shortNames"
    ] == ["md"]
    deployment = get_json(plane, "deployment", "rayship-operator", "-n", "rayship-system")
    assert container_env(deployment)["RAYSHIP_LOG_LEVEL"] == "INFO"
    assert exists(plane, "serviceaccount", "rayship-operator", "-n", "rayship-system")
    assert exists(plane, "clusterrole", "rayship-operator")
    assert exists(plane, "clusterrolebinding", "rayship-operator")
    # the API server accepts a ModelDeployment through the CRD helm installed
    plane.kubectl(
        "apply", "-n", "rayship-system", "-f", str(REPO / "manifests/examples/iris-onnx.yaml")
    )

    plane.kubectl("create", "namespace", "team-a")
    plane.helm(
        "upgrade", "rayship", str(CHART), "-n", "rayship-system",
        "--set", "operator.logLevel=DEBUG", "--set", "operator.watchNamespaces={team-a}",
    )  # fmt: skip
    (release,) = json.loads(plane.helm("list", "-n", "rayship-system", "-o", "json").stdout)
    assert (release["revision"], release["status"]) == ("2", "deployed")
    env = container_env(get_json(plane, "deployment", "rayship-operator", "-n", "rayship-system"))
    assert (env["RAYSHIP_LOG_LEVEL"], env["RAYSHIP_NAMESPACES"]) == ("DEBUG", "team-a")
    assert exists(plane, "role", "rayship-operator", "-n", "team-a")
    assert not exists(plane, "clusterrole", "rayship-operator")  # cluster-wide rights withdrawn

    plane.helm("uninstall", "rayship", "-n", "rayship-system", "--wait")
    for args in (
        ("deployment", "rayship-operator", "-n", "rayship-system"),
        ("serviceaccount", "rayship-operator", "-n", "rayship-system"),
        ("role", "rayship-operator", "-n", "team-a"),
        ("clusterrole", "rayship-operator-discovery"),
    ):
        assert not exists(plane, *args), args
    # Helm never deletes a CRD from crds/ (that would delete every ModelDeployment)
    assert exists(plane, "crd", "modeldeployments.serving.rayship.io")
    assert exists(plane, "md", "iris-onnx", "-n", "rayship-system")


# ---------------------------------------------------------------- RBAC, as kubectl auth can-i says
def can_i(plane: ControlPlane, user: str, verb: str, resource: str, *where: str) -> bool:
    result = plane.kubectl("auth", "can-i", verb, resource, *where, f"--as={user}", check=False)
    return result.stdout.strip() == "yes"


def install(plane: ControlPlane, namespace: str, *values: str) -> str:
    """Install the chart into `namespace` as a fresh release; returns its ServiceAccount user."""
    release = f"rs-{suffix()}"
    plane.helm("install", release, str(CHART), "-n", namespace, *values)
    return f"system:serviceaccount:{namespace}:{release}-rayship-operator"


def test_namespaced_operator_can_do_its_job_and_nothing_else(
    control_plane: ControlPlane, namespace: str
) -> None:
    plane = control_plane
    other = f"other-{suffix()}"
    plane.kubectl("create", "namespace", other)
    user = install(
        plane, namespace,
        "--set", f"operator.watchNamespaces={{{namespace}}}",
        "--set", "rbac.secrets.resourceNames={s3-credentials}",
    )  # fmt: skip
    here = ("-n", namespace)
    eventually(lambda: can_i(plane, user, "watch", "modeldeployments", *here), what="binding")
    for verb, resource in [
        ("list", "modeldeployments.serving.rayship.io"),
        ("watch", "modeldeployments.serving.rayship.io"),
        ("patch", "modeldeployments.serving.rayship.io"),
        ("patch", "modeldeployments.serving.rayship.io/status"),
        ("create", "events"),
        ("get", "secrets/s3-credentials"),
    ]:
        assert can_i(plane, user, verb, resource, *here), (verb, resource)
    for verb, resource, where in [
        # Secrets: only the one it was given, and never listed or watched
        ("get", "secrets/other-secret", here),
        ("list", "secrets", here),
        ("watch", "secrets", here),
        ("create", "secrets", here),
        ("delete", "secrets/s3-credentials", here),
        # no pods, no workloads, no ConfigMaps
        ("get", "pods", here),
        ("create", "pods", here),
        ("create", "pods/exec", here),
        ("create", "deployments.apps", here),
        ("get", "configmaps", here),
        # ModelDeployments are the users': the operator never creates, replaces or deletes them
        ("create", "modeldeployments.serving.rayship.io", here),
        ("update", "modeldeployments.serving.rayship.io", here),
        ("delete", "modeldeployments.serving.rayship.io", here),
        ("get", "modeldeployments.serving.rayship.io", here),
        # other namespaces: nothing
        ("list", "modeldeployments.serving.rayship.io", ("-n", other)),
        ("patch", "modeldeployments.serving.rayship.io", ("-n", other)),
        ("create", "events", ("-n", other)),
        ("get", "secrets/s3-credentials", ("-n", other)),
        ("list", "modeldeployments.serving.rayship.io", ("--all-namespaces",)),
        # cluster scope: reading CRDs and namespaces only
        ("create", "customresourcedefinitions", ()),
        ("delete", "namespaces", ()),
        ("create", "clusterroles", ()),
        ("create", "rolebindings", here),
    ]:
        assert not can_i(plane, user, verb, resource, *where), (verb, resource, where)
    assert can_i(plane, user, "watch", "customresourcedefinitions")
    assert can_i(plane, user, "list", "namespaces")


def test_cluster_wide_operator_reaches_every_namespace_but_no_more(
    control_plane: ControlPlane, namespace: str
) -> None:
    plane = control_plane
    user = install(plane, namespace)
    anywhere = ("-n", f"any-{suffix()}")
    eventually(lambda: can_i(plane, user, "watch", "modeldeployments", *anywhere), what="binding")
    assert can_i(plane, user, "list", "modeldeployments.serving.rayship.io", "--all-namespaces")
    assert can_i(plane, user, "patch", "modeldeployments.serving.rayship.io/status", *anywhere)
    assert can_i(plane, user, "create", "events", *anywhere)
    assert can_i(plane, user, "get", "secrets", *anywhere)
    assert not can_i(plane, user, "list", "secrets", *anywhere)
    assert not can_i(plane, user, "list", "secrets", "--all-namespaces")
    assert not can_i(plane, user, "get", "pods", *anywhere)
    assert not can_i(plane, user, "delete", "modeldeployments.serving.rayship.io", *anywhere)
    assert not can_i(plane, user, "list", "namespaces")  # kopf needs none cluster-wide
    assert not can_i(plane, user, "update", "customresourcedefinitions")


# ---------------------------------------------------------------- RBAC is sufficient: run it
def token_kubeconfig(plane: ControlPlane, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount with a TokenRequest token, the
    way the pod's mounted token would (no impersonation: the operator's own client uses it)."""
    token = plane.kubectl(
        "create", "token", account, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    admin = json.loads(plane.kubeconfig.read_text())
    cluster = admin["clusters"][0]["name"]
    config = {
        **admin,
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {
                "name": account,
                "context": {"cluster": cluster, "user": account, "namespace": namespace},
            }
        ],
        "current-context": account,
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


@pytest.mark.e2e
@pytest.mark.ray
def test_operator_as_the_charts_service_account_serves_a_model(  # noqa: PLR0917 (fixtures)
    control_plane: ControlPlane,
    namespace: str,
    serve_cluster: ServeCluster,
    s3_server: S3Server,
    example_models: Path,
    tmp_path: Path,
) -> None:
    """Install the chart; run the operator with the env of the Deployment it created and the
    token of the ServiceAccount it created; a ModelDeployment whose credentials are in a Secret
    becomes Ready and answers; deleting it is cleaned up. RBAC is therefore sufficient."""
    plane = control_plane
    release = f"rs-{suffix()}"
    plane.helm(
        "install", release, str(CHART), "-n", namespace,
        "--set", f"operator.watchNamespaces={{{namespace}}}",
        "--set", "rbac.secrets.resourceNames={s3-credentials}",
        "--set", f"ray.dashboard={serve_cluster.dashboard.address}",
        "--set", f"ray.serveUrl={serve_cluster.url}",
        "--set", f"ray.serveHttpHost={serve_cluster.http.host}",
        "--set", f"ray.kuberayServeGrpcPort={serve_cluster.http.grpc_port}",
        "--set", f"s3.endpoint={s3_server.endpoint_url}",
        "--set", "s3.region=us-east-1",
        "--set", "operator.reconcileSeconds=1",
    )  # fmt: skip
    account = f"{release}-rayship-operator"
    deployment = get_json(plane, "deployment", account, "-n", namespace)
    chart_env = {k: v for k, v in container_env(deployment).items() if isinstance(v, str)}

    plane.kubectl(
        "create", "secret", "generic", "s3-credentials", "-n", namespace,
        "--from-literal=AWS_ACCESS_KEY_ID=testing", "--from-literal=AWS_SECRET_ACCESS_KEY=testing",
    )  # fmt: skip
    model = f"iris-sa-{suffix()}"
    uri = f"s3://{s3_server.new_bucket()}/{model}"
    s3_server.upload_version(uri, "1", example_models / "iris-onnx" / "1")
    md = {
        "apiVersion": "serving.rayship.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": model, "namespace": namespace},
        "spec": {
            "model": {"format": "onnx", "storageUri": uri, "version": "1"},
            "storage": {"secretRef": {"name": "s3-credentials"}},  # endpoint from the chart
        },
    }

    env = plane.env()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(name, None)  # the credentials must come from the Secret
    env.update(chart_env)
    env["KUBECONFIG"] = str(token_kubeconfig(plane, namespace, account, tmp_path / "sa.kubeconfig"))
    # the chart's :8080 may be taken on a shared machine; the endpoint is a setting
    env["RAYSHIP_LIVENESS_ENDPOINT"] = f"http://127.0.0.1:{free_port()}/healthz"
    log = tmp_path / "operator.log"
    with run_operator(env, log) as operator:
        plane.kubectl("apply", "-f", "-", input=json.dumps(md))

        def ready() -> Doc:
            status: Doc = get_json(plane, "md", model, "-n", namespace).get("status") or {}
            return status if status.get("phase") == "Ready" else {}

        try:
            status = eventually(ready, timeout_s=240, what=f"{model} Ready")
        except AssertionError as error:
            raise AssertionError(f"{error}\noperator log:\n{operator.tail(80)}") from None
        assert status["activeVersion"] == "1"
        assert status["url"] == f"{serve_cluster.url}/v2/models/{model}"

        body = {
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [6.7, 3.0, 5.2, 2.3]}
            ]
        }
        request = urllib.request.Request(
            status["url"] + "/infer",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert {o["name"] for o in answer["outputs"]} == {"probabilities", "label"}

        # kopf posted Events as the ServiceAccount
        listed = get_json(
            plane, "events", "-n", namespace, "--field-selector", f"involvedObject.name={model}"
        )
        assert listed["items"], operator.tail()

        # deletion: the operator removes the model's apps and its finalizer (a patch)
        plane.kubectl("delete", "md", model, "-n", namespace, "--wait=false")
        eventually(
            lambda: not exists(plane, "md", model, "-n", namespace), timeout_s=120, what="deletion"
        )
        text = log.read_text(errors="replace")
    for refusal in ("Forbidden", "Not enough permissions", "Failed to post an event"):
        assert refusal not in text, f"{refusal!r} in the operator log:\n{operator.tail(80)}"


# ---------------------------------------------------------------- observability
DASHBOARD = CHART / "dashboards" / "rayship.json"
# Labels Ray Serve adds to every ray.serve.metrics series, beside the metric's own tag keys.
SERVE_LABELS = {"application", "deployment", "replica"}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def scraped_series() -> dict[str, set[str]]:
    """Every series name a Prometheus scrape holds, with its label names: the operator's from
    its own registry, the predictors' from a real VersionMetrics as Ray exports them (`ray_`
    prefix, `_total` on counters)."""
    from prometheus_client.metrics import MetricWrapperBase
    from ray.util import metrics as ray_metrics

    from rayship_operator.metrics import OperatorMetrics
    from rayship_predictors.metrics import VersionMetrics

    found: dict[str, set[str]] = {}
    families: list[tuple[str, str, set[str]]] = [
        (m._name, m._type, set(m._labelnames))
        for m in vars(OperatorMetrics()).values()
        if isinstance(m, MetricWrapperBase)
    ]
    ray_types = {ray_metrics.Counter: "counter", ray_metrics.Gauge: "gauge"}
    ray_types[ray_metrics.Histogram] = "histogram"
    for m in vars(VersionMetrics("m", "1")).values():
        if isinstance(m, ray_metrics.Metric):
            (kind,) = [k for cls, k in ray_types.items() if isinstance(m, cls)]
            families.append((f"ray_{m.info['name']}", kind, set(m.info["tag_keys"]) | SERVE_LABELS))
    for name, kind, labels in families:
        for end in SUFFIXES[kind]:
            found[name + end] = labels | ({"le"} if end == "_bucket" else set())
    return found


def dashboard_queries(dashboard: Doc) -> list[tuple[str, str]]:
    """(PromQL, legend) of every panel target and query variable."""
    targets = [(t["expr"], t.get("legendFormat", "")) for p in dashboard["panels"]
               for t in p.get("targets", [])]  # fmt: skip
    variables = [(v["query"]["query"], "") for v in dashboard["templating"]["list"]
                 if v["type"] == "query"]  # fmt: skip
    return targets + variables


def test_grafana_dashboard_is_grafana_json_over_one_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "rayship"
    assert dashboard["schemaVersion"] >= 36  # the panel and variable shapes used here
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    for name in ("model", "version"):
        assert variables[name]["type"] == "query"
        assert variables[name]["query"]["query"].startswith(
            "label_values(ray_rayship_inference_requests_total"
        )
        assert variables[name]["query"]["query"].endswith(f", {name})")
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Models", "Operator"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    taken: set[tuple[int, int]] = set()  # grid cells: panels neither overlap nor overflow
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(grid["x"] + i, grid["y"] + j) for i in range(grid["w"]) for j in range(grid["h"])}
        assert not cells & taken, panel["title"]
        taken |= cells
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            # the model panels follow the model and version pickers
            if "ray_rayship_" in target["expr"]:
                assert 'model=~"$model"' in target["expr"], panel["title"]
                assert 'version=~"$version"' in target["expr"], panel["title"]


def test_dashboard_queries_only_series_and_labels_that_are_exported() -> None:
    """Every name in the dashboard's PromQL is a series the operator or the predictors export
    (their metrics modules, instantiated), and every label it matches, groups by or shows in a
    legend is one that series carries (a typo would only ever show an empty panel)."""
    series = scraped_series()
    assert "rayship_operator_reconciles_total" in series  # the sources were read
    assert "ray_rayship_inference_requests_total" in series
    used: set[str] = set()
    for expr, legend in dashboard_queries(json.loads(DASHBOARD.read_text())):
        names = set(re.findall(r"\b(?:ray_rayship|rayship_operator)_\w+", expr))
        assert names, expr
        unknown = names - series.keys()
        assert not unknown, f"{sorted(unknown)} in {expr}"
        used |= names
        grouped = {
            label.strip()
            for clause in re.findall(r"\bby \(([^)]*)\)", expr)
            for label in clause.split(",")
        }
        matched = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
        shown = set(re.findall(r"label_values\([^,]+,\s*(\w+)\)", expr))
        for name in names:
            missing = (grouped | matched | shown) - series[name]
            assert not missing, f"{name} has no {sorted(missing)}: {expr}"
        # after `sum by`, a legend can only name what was kept
        assert set(re.findall(r"\{\{(\w+)\}\}", legend)) <= grouped, (legend, expr)
    # the panels the dashboard promises: every data-plane and operator family appears
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in series}
    assert families == {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}


def test_grafana_dashboard_configmap_is_opt_in(control_plane: ControlPlane, namespace: str) -> None:
    assert not [d for d in render(control_plane) if d["kind"] == "ConfigMap"]
    dashboard = json.loads(DASHBOARD.read_text())
    config_map = one(render(control_plane, "--set", "grafana.dashboard.enabled=true"), "ConfigMap")
    metadata = config_map["metadata"]
    assert (metadata["name"], metadata["namespace"]) == ("rayship-dashboard", "rayship-system")
    assert metadata["labels"]["grafana_dashboard"] == "1"  # the sidecar's default label
    assert json.loads(config_map["data"]["rayship.json"]) == dashboard
    moved = one(
        render(control_plane, "--set", "grafana.dashboard.enabled=true",
               "--set", "grafana.dashboard.namespace=monitoring",
               "--set", "grafana.dashboard.label=dashboards.example.com/grafana"),
        "ConfigMap",
    )  # fmt: skip
    assert moved["metadata"]["namespace"] == "monitoring"
    assert moved["metadata"]["labels"]["dashboards.example.com/grafana"] == "1"
    assert "grafana_dashboard" not in moved["metadata"]["labels"]

    # the API server stores it whole (a ConfigMap holds at most 1 MiB)
    release = f"rs-{suffix()}"
    plane = control_plane
    plane.helm("install", release, str(CHART), "-n", namespace,
               "--set", "grafana.dashboard.enabled=true",
               "--set", f"operator.watchNamespaces={{{namespace}}}")  # fmt: skip
    stored = get_json(plane, "configmap", f"{release}-rayship-dashboard", "-n", namespace)
    assert stored["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(stored["data"]["rayship.json"]) == dashboard


def test_ray_pods_are_scraped_on_rays_metrics_port(
    control_plane: ControlPlane, namespace: str
) -> None:
    """Head and workers declare Ray's metrics export port, `ray start` exports there, and the
    pods carry the scrape annotations; a PodMonitor selects the cluster's pods by KubeRay's
    `ray.io/cluster` label. The test API server has no monitoring.coreos.com or ray.io CRDs,
    so the PodMonitor and RayCluster are checked as rendered, as the ServiceMonitor is; the
    pod templates themselves go to the API server as Pods (server-side dry run)."""
    ray = ("--api-versions", RAYCLUSTER_API, "--set", "rayCluster.enabled=true")
    docs = render(control_plane, *ray, "--set", "metrics.serviceMonitor.enabled=true")
    cluster = one(docs, "RayCluster")
    spec = cluster["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    assert len(groups) == 3  # head, cpu, gpu
    for group in groups:
        annotations = group["template"]["metadata"]["annotations"]
        port = int(annotations["prometheus.io/port"])
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }
        assert group["rayStartParams"]["metrics-export-port"] == str(port)
        (container,) = group["template"]["spec"]["containers"]
        assert {"name": "metrics", "containerPort": port} in container["ports"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**group["template"]["metadata"], "name": f"ray-{suffix()}"},
            "spec": group["template"]["spec"],
        }
        control_plane.kubectl(
            "create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(pod)
        )
    assert port == 8080  # KubeRay's default, which its docs and dashboards expect

    monitor = one(docs, "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == cluster["metadata"]["namespace"]
    assert monitor["spec"]["selector"] == {
        "matchLabels": {"ray.io/cluster": cluster["metadata"]["name"]}
    }
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    labelled = render(control_plane, *ray, "--set", "metrics.serviceMonitor.enabled=true",
                      "--set", "metrics.serviceMonitor.labels.release=prometheus")  # fmt: skip
    assert one(labelled, "PodMonitor")["metadata"]["labels"]["release"] == "prometheus"

    assert not [d for d in render(control_plane, *ray) if d["kind"] == "PodMonitor"]
    without_ray = render(control_plane, "--set", "metrics.serviceMonitor.enabled=true")
    assert not [d for d in without_ray if d["kind"] == "PodMonitor"]
    off = render(control_plane, *ray, "--set", "metrics.enabled=false",
                 "--set", "metrics.serviceMonitor.enabled=true")  # fmt: skip
    assert not [d for d in off if d["kind"] in ("PodMonitor", "ServiceMonitor")]
    off_spec = one(off, "RayCluster")["spec"]
    for group in [off_spec["headGroupSpec"], *off_spec["workerGroupSpecs"]]:
        assert "annotations" not in group["template"]["metadata"]


def test_tracing_endpoint_reaches_every_ray_container_only_when_set(
    control_plane: ControlPlane,
) -> None:
    ray = ("--api-versions", RAYCLUSTER_API, "--set", "rayCluster.enabled=true")
    for container in ray_containers(one(render(control_plane, *ray), "RayCluster")):
        assert not [e for e in container["env"] if e["name"].startswith("OTEL_")]
    traced = render(control_plane, *ray,
                    "--set", "tracing.otlpEndpoint=http://otel-collector.observability:4317",
                    "--set", "tracing.serviceName=models-eu")  # fmt: skip
    containers = ray_containers(one(traced, "RayCluster"))
    assert [c["name"] for c in containers] == ["ray-head", "ray-worker", "ray-worker"]
    for container in containers:
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
        assert env["OTEL_SERVICE_NAME"] == "models-eu"
    default_name = render(control_plane, *ray, "--set", "tracing.otlpEndpoint=http://otel:4317")
    for container in ray_containers(one(default_name, "RayCluster")):
        assert {"name": "OTEL_SERVICE_NAME", "value": "rayship"} in container["env"]
    # the operator's container is not the predictors'
    assert not [n for n in container_env(one(traced, "Deployment")) if n.startswith("OTEL_")]
