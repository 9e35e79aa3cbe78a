"""Asynchronous invocations on a real Serve with job results in a real S3 (moto on loopback).

Each path a client takes is covered: the model URL owned by a version, the `/v2` server app
splitting a canary, a binary (tritonclient-encoded) request and answer, a failing job, the
per-replica bound, and a replica killed while its job runs. A job is fetched with whatever
replica Serve picks, and its record is checked in the bucket itself, so "any replica can answer"
rests on the store, not on luck.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any, NamedTuple

import numpy as np
import pytest
import tritonclient.http as triton

import ray
from rayship.serveconfig import ModelRouting
from support.http import http_call
from support.models import model_deployment, python_model, route
from support.ray_cluster import ServeCluster
from support.s3 import S3Server

pytestmark = pytest.mark.ray

SLOW = """
import time

from rayship_predictors.sdk import BadRequest, Parameter, Predictor, Tensor


class Slow(Predictor):
    '''Doubles x after sleeping `seconds`; `fail` refuses the request as a client error.'''

    inputs = (Tensor("x", "FP32", (-1,)),)
    outputs = (Tensor("y", "FP32", (-1,)),)
    parameters = (Parameter("seconds", float, 0.0), Parameter("fail", bool, False))

    def predict(self, inputs, parameters):
        time.sleep(parameters["seconds"])
        if parameters["fail"]:
            raise BadRequest("x: refused because the request said fail")
        return {"y": inputs["x"] * 2}
"""

POLL_S = 0.2
JOB_WAIT_S = 60


class Served(NamedTuple):
    cluster: ServeCluster
    s3: S3Server
    bucket: str
    routings: list[ModelRouting]


@pytest.fixture(scope="module")
def served(
    serve_cluster: ServeCluster, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Served:
    """`slow` (2 replicas), `canary` (versions 1 and 2 split 50/50) and `tight` (one replica,
    one job at a time, 6 s timeout), all keeping jobs in one bucket."""
    root = python_model(tmp_path_factory.mktemp("slow"), "slow", SLOW)
    shutil.copytree(root / "1", root / "2")
    bucket = s3_server.new_bucket("jobs")
    model = {
        "format": "python",
        "storageUri": root.as_uri(),
        "python": {"predictorClass": "predictor:Slow"},
    }
    common = {
        "model": model,
        "storage": {"endpointUrl": s3_server.endpoint_url, "region": "us-east-1"},
        "async": {"storageUri": f"s3://{bucket}/results", "resultTtlSeconds": 600},
    }
    tight = {
        **common,
        "async": {"storageUri": f"s3://{bucket}/results", "maxQueued": 1, "timeoutSeconds": 6},
    }
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    routings = [
        route(model_deployment("slow", {**common, "replicas": 2}), {"1": 100}, None, credentials),
        route(model_deployment("canary", common), {"1": 50, "2": 50}, None, credentials),
        route(model_deployment("tight", tight), {"1": 100}, None, credentials),
    ]
    serve_cluster.deploy(routings)
    return Served(serve_cluster, s3_server, bucket, routings)


def call(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of a GET, or a POST when there is a body."""
    return http_call(url, "GET" if body is None else "POST", body, headers)


def infer_body(values: list[float], **parameters: Any) -> bytes:
    return json.dumps(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [len(values)], "data": values}],
            "parameters": parameters,
        }
    ).encode()


def submit(base: str, model: str, body: bytes, wait: int = 0, **headers: str) -> str:
    """Ask for an asynchronous answer; returns the job URL of the 202."""
    status, reply_headers, reply = call(
        f"{base}/v2/models/{model}/infer",
        body,
        {"Prefer": f"respond-async, wait={wait}", "Content-Type": "application/json", **headers},
    )
    assert status == 202, reply
    assert reply_headers["preference-applied"] == "respond-async"
    location = reply_headers["location"]
    assert json.loads(reply)["url"] == location
    return f"{base}{location}"


def result(job_url: str, pending: tuple[int, ...] = (202,)) -> tuple[int, dict[str, str], bytes]:
    """Poll a job while it answers a `pending` status (202: still running). Where the ingress
    may answer on its own (502 in `pending`: a replica being replaced), a connection it drops
    without an answer counts as pending too."""
    deadline = time.monotonic() + JOB_WAIT_S
    while time.monotonic() < deadline:
        try:
            status, headers, body = call(job_url)
        except ConnectionError:
            if 502 not in pending:
                raise
            time.sleep(0.2)
            continue
        if status not in pending:
            return status, headers, body
        if status == 202:
            assert json.loads(body)["status"] == "running"
        time.sleep(POLL_S)
    raise AssertionError(f"{job_url} still running after {JOB_WAIT_S} s")


def test_a_call_done_within_the_wait_is_answered_at_once(served: Served) -> None:
    cluster = served.cluster
    status, _, body = call(
        f"{cluster.url}/v2/models/slow/infer",
        infer_body([1.0, 2.0]),
        {"Prefer": "respond-async, wait=10"},
    )

    assert status == 200
    assert json.loads(body)["outputs"][0]["data"] == [2.0, 4.0]


def test_a_slow_call_becomes_a_job_kept_in_s3(served: Served) -> None:
    cluster, s3, bucket, _ = served
    job_url = submit(cluster.url, "slow", infer_body([3.0], seconds=1.5))
    job_id = job_url.rsplit("/", 1)[1]

    running, _, _ = call(job_url)
    status, _, body = result(job_url)

    assert running == 202
    assert status == 200
    assert json.loads(body)["outputs"][0]["data"] == [6.0]
    stored = s3.client.get_object(Bucket=bucket, Key=f"results/slow/{job_id}")["Body"].read()
    assert stored.endswith(body)
    for _ in range(6):  # two replicas: Serve spreads these, and each answers from the bucket
        assert call(job_url)[0] == 200


def test_binary_requests_get_binary_results(served: Served) -> None:
    cluster = served.cluster
    x = triton.InferInput("x", [3], "FP32")
    x.set_data_from_numpy(np.array([1, 2, 3], np.float32), binary_data=True)
    wanted = triton.InferRequestedOutput("y", binary_data=True)
    body, json_size = triton.InferenceServerClient.generate_request_body(
        [x], outputs=[wanted], parameters={"seconds": 1.0}
    )
    job_url = submit(
        cluster.url, "slow", body, **{"Inference-Header-Content-Length": str(json_size)}
    )

    status, headers, answer = result(job_url)

    assert status == 200
    parsed = triton.InferenceServerClient.parse_response_body(
        answer, header_length=int(headers["inference-header-content-length"])
    )
    np.testing.assert_array_equal(parsed.as_numpy("y"), [2, 4, 6])


def test_a_failed_job_answers_its_v2_error(served: Served) -> None:
    cluster = served.cluster
    job_url = submit(cluster.url, "slow", infer_body([1.0], seconds=1.0, fail=True))

    status, _, body = result(job_url)

    assert status == 400
    assert json.loads(body) == {"error": "x: refused because the request said fail"}


def test_jobs_through_a_canary_split(served: Served) -> None:
    cluster = served.cluster
    job_urls = [
        submit(cluster.url, "canary", infer_body([float(i)], seconds=1.0)) for i in range(4)
    ]

    answers = [result(url) for url in job_urls]

    assert [json.loads(body)["outputs"][0]["data"] for _, _, body in answers] == [
        [0.0],
        [2.0],
        [4.0],
        [6.0],
    ]
    assert {json.loads(body)["model_version"] for _, _, body in answers} <= {"1", "2"}


def test_unknown_jobs_are_404_with_a_v2_body(served: Served) -> None:
    cluster = served.cluster

    status, _, body = call(f"{cluster.url}/v2/models/slow/jobs/{'0' * 32}")

    assert status == 404
    assert "not found" in json.loads(body)["error"]


def test_over_the_bound_is_429_and_a_killed_replica_loses_its_job(served: Served) -> None:
    cluster = served.cluster
    job_url = submit(cluster.url, "tight", infer_body([1.0], seconds=30.0))

    status, _, body = call(
        f"{cluster.url}/v2/models/tight/infer",
        infer_body([1.0], seconds=1.0),
        {"Prefer": "respond-async"},
    )
    assert status == 429
    assert "maxQueued" in json.loads(body)["error"]

    kill_replicas(cluster, "tight@1")
    # While Serve replaces the replica, the ingress may answer 502/503 on its own.
    status, _, body = result(job_url, pending=(202, 502, 503))

    assert status == 500, body
    assert "was lost" in json.loads(body)["error"]


def test_a_graceful_stop_lets_running_jobs_finish(served: Served) -> None:
    """Last in the module: it deletes `tight`. Serve stops its replica gracefully, which waits
    for the job (`rayship_predictors.jobs.DRAIN_SECONDS`) and stores its answer."""
    cluster, s3, bucket, _ = served
    job_url = submit(cluster.url, "tight", infer_body([5.0], seconds=2.0))
    job_id = job_url.rsplit("/", 1)[1]

    cluster.deploy([r for r in served.routings if r.model_name != "tight"])

    stored = s3.client.get_object(Bucket=bucket, Key=f"results/tight/{job_id}")["Body"].read()
    head, _, body = stored.partition(b"\n")
    assert json.loads(head)["status"] == 200
    assert json.loads(body)["outputs"][0]["data"] == [10.0]


def kill_replicas(cluster: ServeCluster, app: str) -> None:
    """Kill an application's replica actors outright, as a crash would; Serve replaces them."""
    replicas = [
        replica
        for deployment in cluster.dashboard.applications()[app]["deployments"].values()
        for replica in deployment["replicas"]
    ]
    assert replicas
    for replica in replicas:
        ray.kill(ray.get_actor(replica["actor_name"], namespace="serve"), no_restart=True)
