"""The operator end to end: kubectl apply, the real API server, a local Ray, S3, V2 clients.

Each test gets a fresh namespace with an S3 Secret and an operator process watching it. Pods never
run on the test control plane; the Ray cluster is the session's local Ray, reached through the
operator's default-cluster settings.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

from e2e.conftest import Stack
from support.http import http_call
from support.perf_analyzer import perf_analyzer
from support.ray_cluster import ServeCluster
from support.traffic import condition, settled
from support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.kube, pytest.mark.ray]

ROW = np.array([[6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def infer(serve: ServeCluster, model: str, version: str = "") -> dict[str, Any]:
    """One V2 inference through tritonclient; returns the response JSON."""
    client = triton.InferenceServerClient(url=serve.address)
    given = triton.InferInput("input", list(ROW.shape), "FP32")
    given.set_data_from_numpy(ROW)
    response: dict[str, Any] = client.infer(model, [given], model_version=version).get_response()
    return response


def ready_on(version: str) -> Any:
    return lambda s: s.get("phase") == "Ready" and s.get("activeVersion") == version


def new_model(stack: Stack, name: str, versions: tuple[str, ...] = ("1", "2")) -> str:
    uri = f"s3://{stack.s3.new_bucket()}/{name}"
    stack.upload_iris(uri, versions)
    return uri


def events(stack: Stack, name: str) -> list[dict[str, Any]]:
    listed = json.loads(
        stack.kubectl(
            "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json"
        )
    )
    return list(listed["items"])


def test_apply_serve_bump_and_history(stack: Stack) -> None:
    uri = new_model(stack, "iris")
    stack.apply(stack.model_deployment("iris", uri, "1"))
    status = stack.wait_for("iris", ready_on("1"))
    assert status["url"] == f"{stack.serve.url}/v2/models/iris"
    assert status["readyReplicas"] == 1
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Ready")["observedGeneration"] == 1
    assert infer(stack.serve, "iris")["model_version"] == "1"

    stack.kubectl("patch", "md", "iris", "--type=merge", "-p", '{"spec":{"model":{"version":"2"}}}')
    status = stack.wait_for("iris", ready_on("2"))
    assert infer(stack.serve, "iris")["model_version"] == "2"
    assert [h["version"] for h in status["history"]][:2] == ["2", "1"]
    assert status["history"][0]["digest"].startswith("sha256:")
    assert {v["version"] for v in status["liveVersions"]} == {"1", "2"}  # 1 kept warm
    assert infer(stack.serve, "iris", version="1")["model_version"] == "1"
    printed = stack.kubectl("get", "md", "iris")
    assert "iris" in printed
    assert "Ready" in printed
    reasons = {e["reason"] for e in events(stack, "iris")}
    assert {"RollingOut", "RolledOut"} <= reasons


def grpc_infer(address: str, model: str, version: str = "") -> tuple[str, list[int]]:
    """One V2 inference through tritonclient's gRPC client at `address` (host:port); returns
    the answering version and the predicted labels."""
    client = triton_grpc.InferenceServerClient(url=address)
    try:
        given = triton_grpc.InferInput("input", list(ROW.shape), "FP32")
        given.set_data_from_numpy(ROW)
        result = client.infer(model, [given], model_version=version)
        response: dict[str, Any] = result.get_response(as_json=True)
        return response["model_version"], result.as_numpy("label").ravel().tolist()
    finally:
        client.close()


def test_status_grpc_address_serves_the_model_and_follows_a_switch(
    stack: Stack, tmp_path: Path
) -> None:
    """status.grpcAddress is where V2 gRPC clients reach the model: it answers with the active
    version, and after a rollout (and a rollback to the warm previous version) with the new
    one; a request naming a live version gets that version."""
    uri = new_model(stack, "iris-grpc")
    stack.apply(stack.model_deployment("iris-grpc", uri, "1"))
    status = stack.wait_for("iris-grpc", ready_on("1"))
    address = status["grpcAddress"]
    assert address == stack.serve.grpc_address
    assert grpc_infer(address, "iris-grpc") == ("1", [2])
    # Triton's perf_analyzer, unmodified: metadata and ModelConfig, then ModelInfer
    row = perf_analyzer(address, "iris-grpc", "grpc", "input:1,4", tmp_path / "perf.csv")
    assert float(row["Inferences/Second"]) > 0, row

    stack.patch("iris-grpc", {"model": {"version": "2"}})
    status = stack.wait_for("iris-grpc", ready_on("2"))
    assert status["grpcAddress"] == address
    assert grpc_infer(address, "iris-grpc")[0] == "2"
    assert grpc_infer(address, "iris-grpc", version="1")[0] == "1"  # kept warm

    stack.patch("iris-grpc", {"model": {"version": "1"}})  # back to the warm version
    stack.wait_for("iris-grpc", settled(3, activeVersion="1"))
    assert grpc_infer(address, "iris-grpc")[0] == "1"


def test_latest_is_resolved_from_the_pointer(stack: Stack) -> None:
    uri = new_model(stack, "ptr", ("1", "2", "3"))
    stack.s3.set_latest(uri, "2")
    stack.apply(stack.model_deployment("ptr", uri, "latest"))
    status = stack.wait_for("ptr", ready_on("2"))
    assert status["history"][0]["requested"] == "latest"


def test_missing_version_keeps_the_old_one_serving(stack: Stack) -> None:
    uri = new_model(stack, "keep")
    stack.apply(stack.model_deployment("keep", uri, "1"))
    stack.wait_for("keep", ready_on("1"))
    stack.kubectl("patch", "md", "keep", "--type=merge", "-p", '{"spec":{"model":{"version":"9"}}}')
    status = stack.wait_for(
        "keep", lambda s: condition(s, "Degraded").get("reason") == "RolledBack"
    )
    message = condition(status, "Degraded")["message"]
    assert f"{uri}/9/ not found" in message
    assert "still serving version 1" in message
    assert status["activeVersion"] == "1"
    assert infer(stack.serve, "keep")["model_version"] == "1"
    warnings = [e for e in events(stack, "keep") if e["type"] == "Warning"]
    assert any("9/ not found" in e["message"] for e in warnings)
    assert "Traceback" not in json.dumps(status)


def test_version_that_fails_to_load_is_rolled_back(stack: Stack) -> None:
    uri = new_model(stack, "broken")
    stack.s3.upload_version(uri, "3", {"model.onnx": b"this is not an onnx model"})
    stack.apply(stack.model_deployment("broken", uri, "1"))
    stack.wait_for("broken", ready_on("1"))
    stack.kubectl(
        "patch", "md", "broken", "--type=merge", "-p", '{"spec":{"model":{"version":"3"}}}'
    )
    status = stack.wait_for(
        "broken", lambda s: condition(s, "Degraded").get("reason") == "RolledBack"
    )
    assert status["activeVersion"] == "1"
    assert status["history"][0]["outcome"] == "RolledBack"
    assert "3" not in {v["version"] for v in status["liveVersions"]}
    assert infer(stack.serve, "broken")["model_version"] == "1"

    # what the operator's /metrics says of it (the operator is this test's own)
    scraped = operator_metrics(stack)
    mine = (("modeldeployment", "broken"), ("namespace", stack.namespace))
    assert scraped["rayship_operator_rollouts_total", mine] == 1
    assert scraped["rayship_operator_automatic_rollbacks_total", mine] == 1
    rolled_back = (*mine, ("reason", "RolledBack"))
    assert scraped["rayship_operator_degraded_total", rolled_back] == 1
    assert scraped["rayship_operator_time_to_ready_seconds_count", ()] == 1  # generation 1 only
    assert scraped["rayship_operator_reconciles_total", (("result", "ok"),)] >= 2
    assert ("rayship_operator_reconciles_total", (("result", "error"),)) not in scraped
    cluster = (("cluster", stack.serve.dashboard.address),)
    assert scraped["rayship_operator_config_writes_total", cluster] >= 2  # version 1, then 3

    stack.kubectl("delete", "md", "broken")
    assert ("rayship_operator_rollouts_total", mine) not in operator_metrics(stack)


def operator_metrics(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the operator's Prometheus endpoint serves, by name and sorted labels."""
    with urllib.request.urlopen(stack.operator.metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_cli_rolls_back_to_the_previous_good_version(stack: Stack, tmp_path: Path) -> None:
    uri = new_model(stack, "cli")
    stack.apply(stack.model_deployment("cli", uri, "1"))
    stack.wait_for("cli", ready_on("1"))
    stack.kubectl("patch", "md", "cli", "--type=merge", "-p", '{"spec":{"model":{"version":"2"}}}')
    stack.wait_for("cli", ready_on("2"))
    # No -n: the namespace comes from the kubeconfig's current context, as for kubectl.
    config = json.loads(stack.plane.kubeconfig.read_text())
    for context in config["contexts"]:
        context["context"]["namespace"] = stack.namespace
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps(config))

    code, printed = stack.rayship("status", "cli", kubeconfig=kubeconfig)
    assert code == 0
    assert f"ModelDeployment {stack.namespace}/cli\n" in printed
    assert "active:    2" in printed
    code, printed = stack.rayship("history", "cli", kubeconfig=kubeconfig)
    assert code == 0
    assert "RolledOut" in printed
    code, printed = stack.rayship("rollback", "cli", kubeconfig=kubeconfig)
    assert (code, printed) == (0, f"{stack.namespace}/cli: spec.model.version 2 -> 1\n")
    stack.wait_for("cli", ready_on("1"))
    assert infer(stack.serve, "cli")["model_version"] == "1"
    assert stack.get("cli")["spec"]["model"]["version"] == "1"


def test_cli_refuses_a_version_missing_from_storage(stack: Stack) -> None:
    uri = new_model(stack, "cli-missing")
    stack.apply(stack.model_deployment("cli-missing", uri, "2"))
    stack.wait_for("cli-missing", ready_on("2"))
    generation = stack.get("cli-missing")["metadata"]["generation"]

    code, printed = stack.rayship("rollback", "-n", stack.namespace, "cli-missing", "--to", "99")
    assert (code, printed) == (1, f"rayship: {uri}/99/ not found; spec.model.version left at 2\n")
    after = stack.get("cli-missing")
    assert after["spec"]["model"]["version"] == "2"
    assert after["metadata"]["generation"] == generation
    # Version 1 is not live either, but exists: looked up in S3 with the Secret, then patched.
    code, printed = stack.rayship("rollback", "-n", stack.namespace, "cli-missing", "--to", "1")
    assert (code, printed) == (0, f"{stack.namespace}/cli-missing: spec.model.version 2 -> 1\n")
    stack.wait_for("cli-missing", ready_on("1"))


def test_canary_splits_traffic_and_runs_async_jobs(stack: Stack) -> None:
    uri = new_model(stack, "canary")
    canary = {"canary": {"version": "2", "percent": 25}, "readinessDeadlineSeconds": 60}
    jobs = {"storageUri": f"{uri}-jobs"}  # the model's bucket, read with its Secret
    stack.apply(stack.model_deployment("canary", uri, "1", rollout=canary, **{"async": jobs}))
    stack.wait_for("canary", lambda s: s.get("canaryVersion") == "2" and s.get("phase") == "Ready")
    seen = Counter(infer(stack.serve, "canary")["model_version"] for _ in range(400))
    assert set(seen) == {"1", "2"}
    assert 0.17 < seen["2"] / 400 < 0.33, seen

    answers = [async_infer(stack.serve, "canary") for _ in range(4)]
    assert all(answer["outputs"][1]["data"] == [2] for answer in answers), answers


def test_tokens_from_a_secret_guard_the_model(stack: Stack) -> None:
    tokens = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "model-tokens"}}
    stack.apply({**tokens, "stringData": {"tokens": "token-a token-b"}})
    uri = new_model(stack, "guarded", ("1",))
    guard = {"secretRef": {"name": "model-tokens"}}
    stack.apply(stack.model_deployment("guarded", uri, "1", auth=guard))
    stack.wait_for("guarded", ready_on("1"))
    url = f"{stack.serve.url}/v2/models/guarded/infer"
    row = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ROW[0].tolist()}
    body = json.dumps({"inputs": [row]}).encode()

    refused, _, said = http_call(url, "POST", body)
    served, _, answer = http_call(url, "POST", body, {"Authorization": "Bearer token-b"})

    assert refused == 401, said
    assert "needs a bearer token" in json.loads(said)["error"]
    assert served == 200, answer
    assert "token-a" not in stack.operator.tail()


def async_infer(serve: ServeCluster, model: str) -> dict[str, Any]:
    """One inference asked for as an asynchronous job (wait=0: always a 202), then fetched."""
    row = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ROW[0].tolist()}
    request = urllib.request.Request(
        f"{serve.url}/v2/models/{model}/infer",
        data=json.dumps({"inputs": [row]}).encode(),
        headers={"Prefer": "respond-async, wait=0", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as accepted:
        assert accepted.status == 202
        job_url = f"{serve.url}{accepted.headers['Location']}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(job_url, timeout=30) as reply:
            if reply.status == 200:
                answer: dict[str, Any] = json.loads(reply.read())
                return answer
        time.sleep(0.2)
    raise AssertionError(f"{job_url} still running after 30 s")


def test_operator_restart_mid_rollout_finishes_it(stack: Stack) -> None:
    uri = new_model(stack, "restart")
    stack.apply(stack.model_deployment("restart", uri, "1"))
    stack.wait_for("restart", ready_on("1"))
    stack.kubectl(
        "patch", "md", "restart", "--type=merge", "-p", '{"spec":{"model":{"version":"2"}}}'
    )
    stack.wait_for("restart", lambda s: s.get("rolloutTarget") == "2")
    stack.operator.restart()
    stack.wait_for("restart", ready_on("2"))
    assert infer(stack.serve, "restart")["model_version"] == "2"


def test_restart_when_settled_redeploys_nothing(stack: Stack) -> None:
    uri = new_model(stack, "settled")
    stack.apply(stack.model_deployment("settled", uri, "1"))
    stack.wait_for("settled", ready_on("1"))
    time.sleep(3)
    before = stack.serve.dashboard.applications()
    stack.operator.restart()
    stack.wait_for("settled", lambda s: s.get("phase") == "Ready")
    time.sleep(5)  # several reconcile ticks of the new operator process
    after = stack.serve.dashboard.applications()
    # Earlier tests' applications may still be being deleted by Serve: compare this model's
    # and the server application (which carries the config hash).
    mine = {"rayship", "settled@1"}
    assert mine <= before.keys()
    assert mine <= after.keys()
    for name in mine:
        assert after[name]["last_deployed_time_s"] == before[name]["last_deployed_time_s"], name


def test_lost_applications_are_applied_again(stack: Stack) -> None:
    uri = new_model(stack, "lost")
    stack.apply(stack.model_deployment("lost", uri, "1"))
    stack.wait_for("lost", ready_on("1"))
    stack.serve.dashboard.delete_all()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if infer(stack.serve, "lost")["model_version"] == "1":
                break
        except Exception:  # not served yet: keep polling until the deadline
            time.sleep(1)
    assert infer(stack.serve, "lost")["model_version"] == "1"


def test_delete_removes_its_app_and_only_its_app(stack: Stack) -> None:
    uri_a, uri_b = new_model(stack, "alpha"), new_model(stack, "beta")
    stack.apply(stack.model_deployment("alpha", uri_a, "1"))
    stack.apply(stack.model_deployment("beta", uri_b, "2"))
    stack.wait_for("alpha", ready_on("1"))
    stack.wait_for("beta", ready_on("2"))
    stack.kubectl("delete", "md", "alpha", "--wait=true", "--timeout=60s")
    deadline = time.monotonic() + 60
    apps = stack.serve.dashboard.applications()
    while "alpha@1" in apps and time.monotonic() < deadline:
        time.sleep(0.5)  # Serve deletes applications in the background
        apps = stack.serve.dashboard.applications()
    assert "alpha@1" not in apps
    assert "beta@2" in apps
    assert infer(stack.serve, "beta")["model_version"] == "2"


def test_delete_during_a_rollout_is_prompt_and_final(stack: Stack) -> None:
    """A ModelDeployment deleted while its timer is settling a rollout (a version whose replica
    cannot be placed keeps it Progressing): the finalizer goes without waiting for kopf's
    60 s re-check of stopped timers, and no reconcile still running brings the application
    back after the delete removed it."""
    uri = new_model(stack, "stuck")
    stack.apply(stack.model_deployment("stuck", uri, "1", resources={"cpu": 1000}))
    stack.wait_for("stuck", lambda s: s.get("phase") == "Progressing")
    time.sleep(3)  # a few ticks in: one is settling when the delete comes
    started = time.monotonic()
    stack.kubectl("delete", "md", "stuck", "--wait=true", "--timeout=40s")
    print(f"delete during a rollout took {time.monotonic() - started:.1f}s")
    eventually(
        lambda: "stuck@1" not in stack.serve.dashboard.applications(),
        timeout_s=60,
        what="stuck@1 removed",
    )
    time.sleep(3)  # long enough for a late tick to have written it back
    assert "stuck@1" not in stack.serve.dashboard.applications()


def test_moving_to_another_cluster_takes_it_off_the_old_one(stack: Stack) -> None:
    """spec.rayCluster changed: the cluster it left stops running the model (its replicas and
    GPUs are freed) without an operator restart; moving back serves it again."""
    uri = new_model(stack, "mover")
    stack.apply(stack.model_deployment("mover", uri, "1"))
    stack.wait_for("mover", ready_on("1"))

    stack.patch("mover", {"rayCluster": {"name": "elsewhere"}})
    # No KubeRay head service resolves from this machine: the status says so...
    status = stack.wait_for(
        "mover", lambda s: condition(s, "Degraded").get("reason") == "ClusterUnreachable"
    )
    assert "elsewhere-head-svc" in condition(status, "Degraded")["message"]
    # ...and the session's Ray, which it left, no longer runs it.
    eventually(
        lambda: "mover@1" not in stack.serve.dashboard.applications(),
        timeout_s=60,
        what="mover@1 removed from the cluster it left",
    )

    stack.patch("mover", {"rayCluster": None})
    stack.wait_for("mover", settled(3, activeVersion="1"))
    assert infer(stack.serve, "mover")["model_version"] == "1"


def test_name_conflict_leaves_the_older_serving(stack: Stack) -> None:
    uri = new_model(stack, "shared")
    first = stack.model_deployment("first", uri, "1")
    first["spec"]["model"]["name"] = "shared"
    second = stack.model_deployment("second", uri, "2")
    second["spec"]["model"]["name"] = "shared"
    stack.apply(first)
    stack.wait_for("first", ready_on("1"))
    stack.apply(second)
    status = stack.wait_for(
        "second", lambda s: condition(s, "Degraded").get("reason") == "NameConflict"
    )
    assert f"{stack.namespace}/first" in condition(status, "Degraded")["message"]
    assert infer(stack.serve, "shared")["model_version"] == "1"
    assert stack.get("first")["status"]["phase"] == "Ready"


def test_no_request_fails_while_versions_switch(stack: Stack) -> None:
    uri = new_model(stack, "steady")
    stack.apply(stack.model_deployment("steady", uri, "1"))
    stack.wait_for("steady", ready_on("1"))
    counts: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        client = triton.InferenceServerClient(url=stack.serve.address)
        given = triton.InferInput("input", list(ROW.shape), "FP32")
        given.set_data_from_numpy(ROW)
        deadline = time.monotonic() + 240
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                counts[client.infer("steady", [given]).get_response()["model_version"]] += 1
            except Exception as error:  # every failure is counted and reported
                counts[f"failed: {error}"] += 1

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(2)
        stack.kubectl(
            "patch", "md", "steady", "--type=merge", "-p", '{"spec":{"model":{"version":"2"}}}'
        )
        stack.wait_for("steady", ready_on("2"))
        time.sleep(2)
        stack.kubectl(
            "patch", "md", "steady", "--type=merge", "-p", '{"spec":{"model":{"version":"1"}}}'
        )
        stack.wait_for("steady", ready_on("1"))
        time.sleep(2)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    failures = {k: v for k, v in counts.items() if k.startswith("failed")}
    assert not failures, failures
    assert counts["1"] > 0
    assert counts["2"] > 0
