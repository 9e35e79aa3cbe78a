"""What the test control plane cannot do, pinned down so no test pretends otherwise.

It is kube-apiserver and etcd only, as in controller-runtime's envtest: no kubelet,
no scheduler, no kube-controller-manager. So:

- no pod is ever scheduled or run; a Deployment gets no ReplicaSet and no pods;
- no garbage collection: dependents outlive their owners;
- no namespace controller: a deleted namespace stays Terminating, contents and all,
  until something finalizes it by hand;
- no ClusterRole aggregation: the built-in view, edit and admin ClusterRoles
  have no rules, so binding them grants nothing;
- no "default" ServiceAccount or kube-root-ca.crt ConfigMap in new namespaces
  (the TokenRequest API works: tokens for existing ServiceAccounts are issued).

Each test watches for a short while (QUIET_S) that nothing happens; if one of these
starts to fail, something began running controllers and the README must change.
"""

from __future__ import annotations

import json
import time

import kubernetes
import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from controlplane.cluster import ControlPlane

pytestmark = pytest.mark.kube

QUIET_S = 3.0


def test_deployment_gets_no_replicaset_and_pods_are_never_scheduled(
    kube_client: ApiClient, namespace: str
) -> None:
    apps = kubernetes.client.AppsV1Api(kube_client)
    core = kubernetes.client.CoreV1Api(kube_client)
    labels = {"app": "idle"}
    container = {"name": "c", "image": "registry.invalid/idle:0"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "idle"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
    )
    # a bare pod is accepted (the ServiceAccount admission plugin is off) but never scheduled
    core.create_namespaced_pod(
        namespace, {"metadata": {"name": "bare"}, "spec": {"containers": [container]}}
    )
    time.sleep(QUIET_S)

    deployment = apps.read_namespaced_deployment("idle", namespace)
    assert deployment.status.replicas is None
    assert deployment.status.ready_replicas is None
    assert deployment.status.observed_generation is None  # no controller ever looked at it
    assert apps.list_namespaced_replica_set(namespace).items == []
    (pod,) = core.list_namespaced_pod(namespace).items
    assert pod.metadata.name == "bare"
    assert pod.spec.node_name is None
    assert pod.status.phase == "Pending"
    assert pod.status.conditions is None


def test_no_garbage_collection_of_dependents(kube_client: ApiClient, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(kube_client)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": "dependent",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner.metadata.uid,
                    }
                ],
            }
        },
    )
    core.delete_namespaced_config_map("owner", namespace)
    time.sleep(QUIET_S)

    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("owner", namespace)
    assert caught.value.status == 404
    # a real cluster's garbage collector would have deleted it by now
    dependent = core.read_namespaced_config_map("dependent", namespace)
    assert dependent.metadata.owner_references[0].uid == owner.metadata.uid


def test_deleted_namespace_stays_terminating_until_finalized_by_hand(
    control_plane: ControlPlane, kube_client: ApiClient
) -> None:
    core = kubernetes.client.CoreV1Api(kube_client)
    name = f"doomed-{int(time.time() * 1000) % 100000}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(name, {"metadata": {"name": "left-behind"}})
    core.delete_namespace(name)
    time.sleep(QUIET_S)

    stuck = core.read_namespace(name)
    assert stuck.status.phase == "Terminating"
    assert stuck.spec.finalizers == ["kubernetes"]
    assert core.read_namespaced_config_map("left-behind", name).metadata.name == "left-behind"
    with pytest.raises(ApiException) as caught:  # a Terminating namespace takes nothing new
        core.create_namespaced_config_map(name, {"metadata": {"name": "new"}})
    assert caught.value.status == 403

    # what a test must do itself: clear the finalizer through the finalize subresource
    body = {**json.loads(control_plane.kubectl("get", "namespace", name, "-o", "json").stdout)}
    body["spec"]["finalizers"] = []
    control_plane.kubectl(
        "replace", "--raw", f"/api/v1/namespaces/{name}/finalize", "-f", "-", input=json.dumps(body)
    )
    with pytest.raises(ApiException) as caught:
        core.read_namespace(name)
    assert caught.value.status == 404


def test_no_default_service_account_or_root_ca_configmap(
    control_plane: ControlPlane, kube_client: ApiClient, namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(kube_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "worker"}})
    time.sleep(QUIET_S)

    # kube-controller-manager would have added the "default" ServiceAccount and
    # the kube-root-ca.crt ConfigMap to every namespace
    accounts = [sa.metadata.name for sa in core.list_namespaced_service_account(namespace).items]
    assert accounts == ["worker"]
    assert core.list_namespaced_config_map(namespace).items == []
    # tokens still come from the TokenRequest API, served by the API server itself
    token = control_plane.kubectl("create", "token", "worker", "-n", namespace).stdout.strip()
    assert token.count(".") == 2


def test_aggregated_cluster_roles_stay_empty(control_plane: ControlPlane, namespace: str) -> None:
    view = json.loads(control_plane.kubectl("get", "clusterrole", "view", "-o", "json").stdout)
    assert view["aggregationRule"]["clusterRoleSelectors"]
    assert not view.get("rules")  # kube-controller-manager would aggregate them in
    # the pieces it would aggregate are there
    piece = json.loads(
        control_plane.kubectl("get", "clusterrole", "system:aggregate-to-view", "-o", "json").stdout
    )
    assert piece["rules"]

    user = f"system:serviceaccount:{namespace}:viewer"
    control_plane.kubectl("create", "serviceaccount", "viewer", "-n", namespace)
    control_plane.kubectl(
        "create",
        "rolebinding",
        "viewer",
        "--clusterrole=view",
        f"--serviceaccount={namespace}:viewer",
        "-n",
        namespace,
    )
    time.sleep(QUIET_S)
    can_i = control_plane.kubectl(
        "auth", "can-i", "list", "configmaps", "-n", namespace, f"--as={user}", check=False
    )
    assert can_i.stdout.strip() == "no"
