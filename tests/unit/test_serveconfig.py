"""The Serve config composed for a cluster: routes, traffic in user_config, resources."""

from __future__ import annotations

import dataclasses
import gc
import json
from typing import Any

import pytest

from rayship import manifest
from rayship.contract import ServerUserConfig
from rayship.errors import InvalidSpec
from rayship.serveconfig import (
    IngressOptions,
    LiveVersion,
    ModelRouting,
    app_names,
    compose,
    config_hash,
    memory_bytes,
)
from rayship.spec import RuntimeSpec


def routing(
    name: str, live: list[str], traffic: list[tuple[str, int]], **spec: Any
) -> ModelRouting:
    body: dict[str, Any] = {"model": {"format": "onnx", "storageUri": f"s3://m/{name}"}, **spec}
    md = manifest.parse(
        {
            "apiVersion": "serving.rayship.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": body,
        }
    )
    return ModelRouting(md, tuple(LiveVersion(v, f"sha256:{v}") for v in live), tuple(traffic))


def apps(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {app["name"]: app for app in config["applications"]}


def test_a_split_leaves_every_version_without_a_route() -> None:
    """The server app at /v2 then catches the model's URLs and forwards them by the split."""
    config = compose([routing("iris", ["1", "2"], [("1", 90), ("2", 10)])])
    by_name = apps(config)
    assert set(by_name) == {"rayship", "iris@1", "iris@2"}
    assert by_name["rayship"]["route_prefix"] == "/v2"
    assert by_name["iris@1"]["route_prefix"] is None
    assert by_name["iris@2"]["route_prefix"] is None
    assert by_name["iris@2"]["args"]["version"] == "2"
    assert by_name["iris@2"]["args"]["digest"] == "sha256:2"


def test_the_version_taking_all_traffic_owns_the_model_url() -> None:
    by_name = apps(compose([routing("iris", ["1", "2"], [("2", 100)])]))
    assert by_name["iris@2"]["route_prefix"] == "/v2/models/iris"
    assert by_name["iris@1"]["route_prefix"] is None


def test_no_traffic_leaves_the_model_url_to_the_server_app() -> None:
    by_name = apps(compose([routing("iris", ["1"], [])]))
    assert by_name["iris@1"]["route_prefix"] is None


def test_traffic_tables_travel_in_the_server_user_config() -> None:
    by_name = apps(compose([routing("iris", ["1", "2"], [("1", 90), ("2", 10)])]))
    server = by_name["rayship"]["deployments"][0]
    assert server["user_config"]["models"] == {
        "iris": {
            "versions": {"1": "iris@1", "2": "iris@2"},
            "traffic": [["1", 90], ["2", 10]],
        }
    }
    assert server["ray_actor_options"] == {"num_cpus": 0.0}


def test_versions_learn_their_live_siblings_through_user_config() -> None:
    by_name = apps(compose([routing("iris", ["2", "1"], [("1", 100)])]))
    siblings = {"2": "iris@2", "1": "iris@1"}
    assert by_name["iris@2"]["deployments"][0]["user_config"] == {"versions": siblings}


def test_moving_traffic_changes_only_routes_and_user_config() -> None:
    """Neither is in Serve's code version, so no replica restarts (see serveconfig's doc)."""
    before = apps(compose([routing("iris", ["1", "2"], [("1", 100)])]))
    after = apps(compose([routing("iris", ["1", "2"], [("2", 100)])]))
    for name in ("iris@1", "iris@2"):
        assert before[name]["route_prefix"] != after[name]["route_prefix"]
        assert {**before[name], "route_prefix": None} == {**after[name], "route_prefix": None}
    assert before["rayship"] != after["rayship"]


@pytest.mark.parametrize(
    "change",
    [
        {"model": {"version": "2"}},
        {"model": {"version": "latest", "pollIntervalSeconds": 5}},
        {"rollout": {"canary": {"version": "2", "percent": 30}}},
        {"rollout": {"readinessDeadlineSeconds": 30, "keepPreviousSeconds": 5}},
    ],
    ids=["version", "poll-interval", "canary", "rollout-timing"],
)
def test_spec_changes_that_move_traffic_leave_every_version_app_as_it_was(
    change: dict[str, Any],
) -> None:
    """A version app's args and deployment options hold only what defines the version: Serve
    restarts replicas when those change, so requesting another version or a canary must not."""
    base = {"model": {"format": "onnx", "storageUri": "s3://m/iris", "version": "1"}}
    changed = {
        **base,
        **change,
        "model": {**base["model"], **change.get("model", {})},
    }
    before = apps(compose([routing("iris", ["1", "2"], [("1", 100)], **base)]))
    after = apps(compose([routing("iris", ["1", "2"], [("1", 100)], **changed)]))
    for name in ("iris@1", "iris@2"):
        assert before[name] == after[name]


def test_version_args_hold_no_requested_version() -> None:
    args = apps(compose([routing("iris", ["1"], [("1", 100)])]))["iris@1"]["args"]
    assert args["version"] == "1"
    assert "poll_interval_seconds" not in json.dumps(args)
    runtime_fields = {field.name for field in dataclasses.fields(RuntimeSpec)}
    assert set(args["runtime"]) == runtime_fields
    assert not runtime_fields & {"version", "poll_interval_seconds", "storage_uri", "name"}


def test_resources_and_autoscaling_become_serve_options() -> None:
    model = routing(
        "big",
        ["1"],
        [("1", 100)],
        resources={"cpu": 2, "gpu": 0.5, "memory": "1Gi"},
        autoscaling={"minReplicas": 0, "maxReplicas": 5, "targetOngoingRequests": 4},
        maxOngoingRequests=8,
    )
    deployment = apps(compose([model]))["big@1"]["deployments"][0]
    assert deployment["ray_actor_options"] == {"num_cpus": 2.0, "num_gpus": 0.5, "memory": 2.0**30}
    assert deployment["max_ongoing_requests"] == 8
    assert deployment["autoscaling_config"]["min_replicas"] == 0
    assert deployment["autoscaling_config"]["max_replicas"] == 5
    assert deployment["autoscaling_config"]["target_ongoing_requests"] == 4.0
    assert "num_replicas" not in deployment


def test_fixed_replicas_without_autoscaling() -> None:
    deployment = apps(compose([routing("m", ["1"], [("1", 100)], replicas=3)]))["m@1"]
    assert deployment["deployments"][0]["num_replicas"] == 3
    assert "num_gpus" not in deployment["deployments"][0]["ray_actor_options"]


def test_server_app_knows_every_model_and_http_options_apply() -> None:
    config = compose(
        [routing("b", ["1"], [("1", 100)]), routing("a", ["1"], [("1", 100)])],
        IngressOptions("127.0.0.1", 8123),
    )
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8123}
    server = apps(config)["rayship"]["deployments"][0]
    assert sorted(server["user_config"]["models"]) == ["a", "b"]


def test_app_names_are_exactly_the_composed_version_apps() -> None:
    routings = [routing("iris", ["1", "2"], [("1", 100)]), routing("m", ["3"], [("3", 100)])]
    composed = {app["name"] for app in compose(routings)["applications"]}
    assert sorted(app_names(routings)) == sorted(composed - {"rayship"})


def server_config(config: dict[str, Any]) -> ServerUserConfig:
    return ServerUserConfig.from_dict(apps(config)["rayship"]["deployments"][0]["user_config"])


def test_the_config_carries_its_own_stable_and_sensitive_hash() -> None:
    one = compose([routing("iris", ["1"], [("1", 100)])])
    again = compose([routing("iris", ["1"], [("1", 100)])])
    other = compose([routing("iris", ["1", "2"], [("1", 100)])])
    assert server_config(one).config_hash == server_config(again).config_hash
    assert server_config(one).config_hash != server_config(other).config_hash
    assert config_hash(one) == config_hash(again)


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("512", 512), ("1Ki", 1024), ("2Gi", 2 * 2**30), ("1.5G", 1_500_000_000), ("3M", 3_000_000)],
)
def test_memory_quantities(quantity: str, expected: int) -> None:
    assert memory_bytes(quantity) == expected


def test_bad_memory_quantity_names_the_field() -> None:
    with pytest.raises(InvalidSpec, match=r"spec\.resources\.memory"):
        memory_bytes("two gigs")


RUNTIME_ENV = {
    "pip": ["pyjokes==0.8.3"],
    "env": [{"name": "GREETING", "value": "hello"}, {"name": "SHARED", "value": "from env"}],
    "envFrom": [{"secretRef": {"name": "api"}}],
}


def test_runtime_env_becomes_every_version_apps_runtime_env() -> None:
    model = routing("iris", ["1", "2"], [("1", 100)], runtimeEnv=RUNTIME_ENV)
    model = dataclasses.replace(model, env_from={"TOKEN": "t0ken", "SHARED": "from secret"})
    for name in ("iris@1", "iris@2"):
        assert apps(compose([model]))[name]["runtime_env"] == {
            "pip": ["pyjokes==0.8.3"],
            "env_vars": {"TOKEN": "t0ken", "SHARED": "from env", "GREETING": "hello"},
        }
    assert "runtime_env" not in apps(compose([model]))["rayship"]


def test_storage_credentials_win_over_the_runtime_env() -> None:
    """The replicas read the model with spec.storage.secretRef's keys, whatever env says."""
    runtime_env = {"env": [{"name": "AWS_ACCESS_KEY_ID", "value": "mine"}]}
    model = dataclasses.replace(
        routing("iris", ["1"], [("1", 100)], runtimeEnv=runtime_env),
        environment={"AWS_ACCESS_KEY_ID": "from-secret", "AWS_SECRET_ACCESS_KEY": "s"},
        env_from={"AWS_ACCESS_KEY_ID": "from-env-from"},
    )
    variables = apps(compose([model]))["iris@1"]["runtime_env"]["env_vars"]
    assert variables == {"AWS_ACCESS_KEY_ID": "from-secret", "AWS_SECRET_ACCESS_KEY": "s"}


def test_no_runtime_env_writes_none() -> None:
    """An empty runtime_env is still a change to Serve: it would restart every replica."""
    assert "runtime_env" not in apps(compose([routing("iris", ["1"], [("1", 100)])]))["iris@1"]
    pip_only = routing("iris", ["1"], [("1", 100)], runtimeEnv={"pip": ["art"]})
    assert apps(compose([pip_only]))["iris@1"]["runtime_env"] == {"pip": ["art"]}


@pytest.mark.parametrize(
    "change",
    [
        {"runtimeEnv": {**RUNTIME_ENV, "pip": ["pyjokes==0.8.2"]}},
        {"runtimeEnv": {**RUNTIME_ENV, "env": [{"name": "GREETING", "value": "hi"}]}},
    ],
    ids=["pip", "env"],
)
def test_runtime_env_changes_redefine_every_live_version(change: dict[str, Any]) -> None:
    """The environment is part of what defines a version's replicas: Serve restarts them for a
    new runtime_env, and only that part of each version app changes."""
    before = apps(compose([routing("iris", ["1", "2"], [("1", 100)], runtimeEnv=RUNTIME_ENV)]))
    after = apps(compose([routing("iris", ["1", "2"], [("1", 100)], **change)]))
    for name in ("iris@1", "iris@2"):
        assert before[name]["runtime_env"] != after[name]["runtime_env"]
        assert {**before[name], "runtime_env": None} == {**after[name], "runtime_env": None}


def test_secret_values_travel_only_in_the_runtime_env() -> None:
    """The README names the version apps' runtime_env as where values show: nowhere else."""
    model = dataclasses.replace(
        routing("iris", ["1"], [("1", 100)], runtimeEnv=RUNTIME_ENV), env_from={"TOKEN": "t0ken"}
    )
    app = apps(compose([model]))["iris@1"]
    assert "t0ken" not in json.dumps({**app, "runtime_env": None})
    assert app["runtime_env"]["env_vars"]["TOKEN"] == "t0ken"


@pytest.mark.parametrize("enabled", [True, False], ids=["collector-on", "collector-off"])
def test_compose_leaves_the_garbage_collector_as_it_found_it(enabled: bool) -> None:
    """compose pauses the cyclic collector while it builds the config (its cost grew faster
    than the models without), and hands it back on or off as it was, even when it raises."""
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        compose([routing("iris", ["1"], [("1", 100)])])
        assert gc.isenabled() is enabled
        with pytest.raises(AttributeError):
            compose([None])  # type: ignore[list-item]
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
