"""Generated ModelDeployments against the real operator: each one the API server accepts ends
Ready or with a condition that says why, and the operator survives all of them.

The specs come from the CRD's schema (tests/kube/test_fuzz_resources.py), with only what must
fit this machine overridden: the model is the iris example in the stack's S3, the resources are
tiny, nothing asks pip for packages (no network here) and rollouts give up within a minute.
Everything else is as drawn: runtimes that cannot load an ONNX file, files and versions that
are not there, declared tensors that do not match, name conflicts, auth tokens and variables
from Secrets, odd batching and autoscaling. Any exception those raise in the operator, other
than the user errors it reports, fails a handler (kopf logs it as an ERROR and retries) and
leaves a status that never says why.

Two things the generated specs found are kept out of the big test, each checked by a test of its
own below, where a failure names its cause: a Secret that does not exist, and a RayCluster that
cannot be reached. A third is checked at the big test's end: deleted together, the
ModelDeployments leave no Serve application behind. A fourth, a region botocore refuses, the
CRD now refuses (tests/kube/test_fuzz_resources.py), and `ModelStore` reports as a
StorageError (tests/unit/test_storage_s3.py).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

import kubernetes
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from e2e.conftest import Stack
from kube.test_fuzz_resources import judge, manifest, specs

pytestmark = [pytest.mark.e2e, pytest.mark.kube, pytest.mark.ray]

COUNT = 15
"""Accepted specs applied at once: enough to reach most fields, few enough for a local Ray on
two cores, where every replica is a process and a failing one is started again."""

READINESS_DEADLINE_S = 90
SETTLE_S = 210.0
"""How long all of them may take to end Ready or failed: rollouts give up after
READINESS_DEADLINE_S, and the operator holds the config back while Serve builds an application
(`clusters.builds_restarted`), so on two cores the last of COUNT rollouts takes a while."""


def drawn(strategy: st.SearchStrategy[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`count` examples of `strategy`, the same on every run (derandomized): the first example
    Hypothesis generates is the simplest one, so one example of a list would hold copies of
    it, where a run of `count` examples explores."""
    examples: list[dict[str, Any]] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(strategy)
    def collect(example: dict[str, Any]) -> None:
        examples.append(example)

    collect()
    return examples


def for_local_ray(spec: dict[str, Any], uri: str, endpoint: str) -> dict[str, Any]:
    """`spec` runnable here: the iris model at `uri` on the S3 at `endpoint`, read with the
    stack's Secret, on tiny resources with one replica and no pip; the rest as drawn, but for
    what the two tests at the end of this file check."""
    model = spec["model"]
    model["storageUri"] = uri
    # A drawn version is hardly ever one of the two that exist: half the specs (those without
    # one) roll `latest` (2) out, the others end ModelNotFound. More rollouts at once would
    # not fit: see the note on SETTLE_S.
    storage = spec.setdefault("storage", {})
    storage.update(endpointUrl=endpoint, secretRef={"name": "s3"})
    spec["resources"] = {"cpu": 0, "gpu": 0}
    spec["replicas"] = 1
    if "autoscaling" in spec:
        spec["autoscaling"].update(minReplicas=min(spec["autoscaling"].get("minReplicas", 1), 1))
        spec["autoscaling"]["maxReplicas"] = 1
    spec.pop("rayCluster", None)  # test_a_model_on_an_unreachable_cluster_can_be_deleted
    runtime_env = spec.get("runtimeEnv", {})
    runtime_env.pop("pip", None)
    # test_a_missing_secret_blocks_no_other_model: `secrets_for` creates every Secret named
    # but the stack's own, which holds the S3 credentials.
    runtime_env["envFrom"] = [
        source for source in runtime_env.get("envFrom", []) if source["secretRef"]["name"] != "s3"
    ]
    if "auth" in spec and spec["auth"]["secretRef"]["name"] == "s3":
        del spec["auth"]
    spec.setdefault("rollout", {})["readinessDeadlineSeconds"] = READINESS_DEADLINE_S
    return spec


def secrets_for(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Secrets that `specs` read, each holding every key any of them reads from it."""
    secrets: dict[str, dict[str, str]] = {}
    for spec in specs:
        auth = spec.get("auth")
        if auth is not None:
            keys = secrets.setdefault(auth["secretRef"]["name"], {})
            keys[auth.get("key", "tokens")] = "token-a"
        for source in spec.get("runtimeEnv", {}).get("envFrom", []):
            keys = secrets.setdefault(source["secretRef"]["name"], {})
            keys.update(dict.fromkeys(source.get("keys") or ["VALUE"], "v"))
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}
        for name, data in secrets.items()
    ]


def outcome(item: dict[str, Any]) -> str | None:
    """`Ready`, or the reason and message of the Degraded condition that says why not, for the
    object's current generation; None while neither."""
    status = item.get("status") or {}
    if status.get("observedGeneration") != item["metadata"]["generation"]:
        return None
    if status.get("phase") == "Ready":
        return "Ready"
    for condition in status.get("conditions") or []:
        said = (condition.get("reason"), condition.get("message"))
        if condition.get("type") == "Degraded" and condition.get("status") == "True" and all(said):
            return f"{said[0]}: {said[1]}"
    return None


def outcomes(stack: Stack) -> dict[str, str | None]:
    """`outcome` of every ModelDeployment in the stack's namespace, by name."""
    listed = json.loads(stack.kubectl("get", "md", "-o", "json"))["items"]
    return {item["metadata"]["name"]: outcome(item) for item in listed}


def wait_outcome(stack: Stack, name: str, timeout_s: float) -> str | None:
    """`name`'s outcome once it has one, or None after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (said := outcomes(stack).get(name)) is None and time.monotonic() < deadline:
        time.sleep(1)
    return said


HANDLER_FAILED = re.compile(
    r"^\[[^]]+\] (kopf\.objects|asyncio|rayship_operator)\S* +\[(ERROR|CRITICAL)"
)
"""A log line of a handler that raised (kopf logs `Handler 'reconcile' failed with an exception
and will try again`, with the traceback, and writes no status), or of a task that died. The
operator's own WARNINGs may carry a traceback too: Serve's, of a version that failed to load."""


def assert_operator_healthy(stack: Stack) -> None:
    """The operator still answers its liveness probe and no handler of it ever raised."""
    with urllib.request.urlopen(stack.operator.env["RAYSHIP_LIVENESS_ENDPOINT"], timeout=10) as ok:
        assert ok.status == 200
    log = stack.operator.log.read_text(errors="replace").splitlines()
    assert [line for line in log if HANDLER_FAILED.match(line)] == [], stack.operator.tail(200)


def iris(stack: Stack) -> str:
    """A fresh S3 prefix holding iris versions 1 and 2."""
    uri = f"s3://{stack.s3.new_bucket()}/fuzz"
    stack.upload_iris(uri, ("1", "2"))
    return uri


def test_accepted_specs_end_ready_or_say_why(stack: Stack) -> None:
    """COUNT specs the API server accepts, applied together as a team would: each must end
    Ready or Degraded with a reason and a message, with no handler of the operator raising on
    the way, and deleting them must take their applications off Serve."""
    uri = iris(stack)
    client = kubernetes.config.new_client_from_config(config_file=str(stack.plane.kubeconfig))
    api = kubernetes.client.CustomObjectsApi(client)
    unique = {
        json.dumps(spec, sort_keys=True): spec
        for spec in (
            for_local_ray(drawn_spec, uri, stack.s3.endpoint_url)
            for drawn_spec in drawn(specs(), 30 * COUNT)
        )
    }
    valid = [
        spec for spec in unique.values() if judge(api, stack.namespace, spec, strict=True).stored
    ]
    client.close()
    assert len(valid) >= COUNT
    # Hypothesis draws neighbours in turn: evenly spaced ones differ more than the first few.
    accepted = {f"fuzz-{i}": valid[i * len(valid) // COUNT] for i in range(COUNT)}

    try:
        for secret in secrets_for(list(accepted.values())):
            stack.apply(secret)
        for name, spec in accepted.items():
            stack.apply(manifest(spec, name))
        seen = outcomes(stack)
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline and None in seen.values():
            time.sleep(2)
            seen = outcomes(stack)
        print("\n".join(f"{name}: {said}" for name, said in sorted(seen.items())))

        assert_operator_healthy(stack)
        undecided = {name: spec for name, spec in accepted.items() if seen[name] is None}
        assert undecided == {}, f"{json.dumps(undecided)}\n{stack.operator.tail()}"
    finally:
        stack.kubectl("delete", "md", "--all", "--wait=true", "--timeout=90s", check=False)
    assert outcomes(stack) == {}
    # Deleted together, each one's delete handler rewrites the Serve config without it, and
    # keeps the others as the cluster runs them until their own handlers take them off.
    models = {spec["model"].get("name", name) for name, spec in accepted.items()}
    deadline = time.monotonic() + 60
    left = applications_of(stack, models)
    while left and time.monotonic() < deadline:
        time.sleep(2)
        left = applications_of(stack, models)
    assert left == []


def applications_of(stack: Stack, models: set[str]) -> list[str]:
    """The Serve applications of `models` still on the cluster (`<model>@<version>`)."""
    return sorted(
        app for app in stack.serve.dashboard.applications() if app.split("@")[0] in models
    )


# --- what the generated specs found ----------------------------------------------------------


def test_a_missing_secret_blocks_no_other_model(stack: Stack) -> None:
    """One ModelDeployment whose auth Secret does not exist (yet), beside one that is fine."""
    uri = iris(stack)
    for name in ("blocked", "fine"):
        spec = for_local_ray({"model": {"version": "1"}}, uri, stack.s3.endpoint_url)
        spec["model"]["format"] = "onnx"
        if name == "blocked":
            spec["auth"] = {"secretRef": {"name": "not-there"}}
        stack.apply(manifest(spec, name))

    assert "CredentialsError" in str(wait_outcome(stack, "blocked", 30))
    assert wait_outcome(stack, "fine", 60) == "Ready"


def test_a_model_whose_secret_went_keeps_serving_beside_a_new_one(stack: Stack) -> None:
    """A restarted operator cannot know the routing of a model whose Secret was deleted since
    it was deployed. Its applications must stay as they run, same replicas, while the config
    written for a model applied next to it goes through."""
    uri = iris(stack)
    tokens = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tokens"}}
    stack.apply({**tokens, "stringData": {"tokens": "token-a"}})
    spec = for_local_ray({"model": {"version": "1"}}, uri, stack.s3.endpoint_url)
    spec["model"]["format"] = "onnx"
    stack.apply(manifest({**spec, "auth": {"secretRef": {"name": "tokens"}}}, "orphaned"))
    assert wait_outcome(stack, "orphaned", 90) == "Ready"
    replicas = stack.serve.replica_ids("orphaned")

    stack.kubectl("delete", "secret", "tokens")
    stack.operator.restart()
    stack.wait_for("orphaned", lambda status: "CredentialsError" in json.dumps(status), 30)
    stack.apply(manifest(spec, "beside"))

    assert wait_outcome(stack, "beside", 90) == "Ready"
    assert stack.serve.replica_ids("orphaned") == replicas
    assert_operator_healthy(stack)


def test_a_model_on_an_unreachable_cluster_can_be_deleted(stack: Stack) -> None:
    """spec.rayCluster names a RayCluster that does not exist (a typo): the status says so,
    and deleting the ModelDeployment must not wait for that cluster."""
    spec = for_local_ray({"model": {"version": "1"}}, iris(stack), stack.s3.endpoint_url)
    spec["model"]["format"] = "onnx"
    spec["rayCluster"] = {"name": "no-such-cluster"}
    stack.apply(manifest(spec, "nowhere"))
    assert "ClusterUnreachable" in str(wait_outcome(stack, "nowhere", 30))

    stack.kubectl("delete", "md", "nowhere", "--wait=false")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "nowhere" in outcomes(stack):
        time.sleep(1)

    assert "nowhere" not in outcomes(stack)
