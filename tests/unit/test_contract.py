"""What `compose` writes is what the replicas read: the contract round-trips through JSON.

Each test composes a config as the operator and local mode do, sends it through JSON as the
dashboard does, and reads it back with the same functions the replicas and the operator's
observers call. A key renamed on one side only makes these fail.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from rayship import manifest
from rayship.contract import (
    SERVER_APP,
    VERSION_DEPLOYMENT,
    PredictionLogging,
    ServerUserConfig,
    VersionArgs,
    VersionUserConfig,
    deployment_user_config,
    model_route,
    split_model,
    version_app_name,
)
from rayship.serveconfig import LiveVersion, ModelRouting, compose, version_args
from rayship.spec import AsyncSpec, LoggingSpec
from rayship_predictors.traffic import TrafficTable


def routing(spec: dict[str, Any], traffic: tuple[tuple[str, int], ...]) -> ModelRouting:
    md = manifest.parse(
        {
            "apiVersion": "serving.rayship.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "cnn"},
            "spec": spec,
        }
    )
    live = (LiveVersion("1", "sha256:1"), LiveVersion("2", "sha256:2"))
    return ModelRouting(md, live, traffic)


PYTORCH = {
    "model": {
        "format": "pytorch",
        "storageUri": "s3://models/cnn",
        "pytorch": {"modelClass": "net:Net", "initArgs": {"width": 8, "names": ["a", "b"]}},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 8, 8]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 10]}],
    },
    "storage": {"endpointUrl": "http://127.0.0.1:9000", "secretRef": {"name": "s3"}},
    "batching": {"maxBatchSize": 4},
    "resources": {"gpu": 1},
}


def through_json(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The applications as a replica's builder and the dashboard see them."""
    decoded = json.loads(json.dumps(config))
    return {app["name"]: app for app in decoded["applications"]}


@pytest.mark.parametrize("traffic", [(("1", 100),), (("1", 70), ("2", 30))], ids=str)
def test_version_args_round_trip(traffic: tuple[tuple[str, int], ...]) -> None:
    planned = routing(PYTORCH, traffic)
    apps = through_json(compose([planned]))
    for live in planned.live:
        read = VersionArgs.from_dict(apps[version_app_name("cnn", live.version)]["args"])
        assert read == version_args(planned, live)
        assert read.runtime.pytorch.init_args == {"width": 8, "names": ["a", "b"]}
        assert read.batching is not None
        assert read.batching.max_batch_size == 4
        assert read.use_gpu


def test_traffic_table_round_trips_to_the_server_replica() -> None:
    planned = routing(PYTORCH, (("1", 70), ("2", 30)))
    server = through_json(compose([planned]))[SERVER_APP]
    tables = ServerUserConfig.from_dict(deployment_user_config(server)).models
    table = TrafficTable.of("cnn", tables["cnn"])
    assert table.traffic == (("1", 70), ("2", 30))
    assert table.app_of("2") == "cnn@2"


def test_siblings_round_trip_to_the_version_replicas() -> None:
    apps = through_json(compose([routing(PYTORCH, (("2", 100),))]))
    app = apps["cnn@1"]
    assert app["deployments"][0]["name"] == VERSION_DEPLOYMENT
    siblings = VersionUserConfig.from_dict(deployment_user_config(app)).versions
    assert siblings == {"1": "cnn@1", "2": "cnn@2"}


def test_async_settings_reach_the_version_replicas_without_restarting_them() -> None:
    """`spec.async` travels in user_config (a lightweight update), never in the args."""
    without = through_json(compose([routing(PYTORCH, (("2", 100),))]))["cnn@2"]
    spec = {**PYTORCH, "async": {"storageUri": "s3://jobs/results", "maxQueued": 5}}
    with_async = through_json(compose([routing(spec, (("2", 100),))]))["cnn@2"]

    jobs = VersionUserConfig.from_dict(deployment_user_config(with_async)).jobs

    assert jobs == AsyncSpec("s3://jobs/results", max_queued=5)
    assert VersionUserConfig.from_dict(deployment_user_config(without)).jobs is None
    assert with_async["args"] == without["args"]


@pytest.mark.parametrize(
    ("logging", "expected"),
    [
        (
            {"url": "https://logs.example:8443/events", "mode": "request", "sampleRate": 0.25},
            LoggingSpec("request", 0.25, url="https://logs.example:8443/events"),
        ),
        ({"storageUri": "s3://logs/cnn"}, LoggingSpec(storage_uri="s3://logs/cnn")),
    ],
    ids=["url", "storageUri"],
)
def test_logging_settings_reach_the_version_replicas_without_restarting_them(
    logging: dict[str, Any], expected: LoggingSpec
) -> None:
    """`spec.logging` travels in user_config (a lightweight update), never in the args, with
    the namespace the replicas cannot know otherwise; the storage is the args' own."""
    without = through_json(compose([routing(PYTORCH, (("2", 100),))]))["cnn@2"]
    with_logging = through_json(compose([routing({**PYTORCH, "logging": logging}, (("2", 100),))]))

    for app in ("cnn@1", "cnn@2"):
        read = VersionUserConfig.from_dict(deployment_user_config(with_logging[app])).logging
        assert read == PredictionLogging(expected, "default")
    assert VersionUserConfig.from_dict(deployment_user_config(without)).logging is None
    assert with_logging["cnn@2"]["args"] == without["args"]


def test_the_config_hash_is_readable_where_the_operator_looks() -> None:
    server = through_json(compose([routing(PYTORCH, (("1", 100),))]))[SERVER_APP]
    assert ServerUserConfig.from_dict(deployment_user_config(server)).config_hash


def test_model_paths_below_the_server_route() -> None:
    """The rest of the grammar (`below_model`, `split_version`) is in test_traffic.py."""
    assert model_route("iris") == "/v2/models/iris"
    assert split_model("/models/iris/ready") == ("iris", "/ready")
    assert split_model("/models/iris") == ("iris", "")
    assert split_model("/health/live") is None
