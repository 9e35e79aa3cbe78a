"""What a cluster's writer sends for models it cannot route, and when it holds a config back;
where `cluster_for` says a ModelDeployment's cluster listens.

Serve's application details are built here the way its REST API reports them: each
application's `deployed_app_config` is the config it was given, read through Serve's own schema
(which stores actor options as floats, for one).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ray.serve.schema import ServeApplicationSchema

from rayship.contract import ServerUserConfig, deployment_user_config
from rayship.serveconfig import IngressOptions, compose
from rayship.spec import RayClusterRef
from rayship_operator.clusters import (
    ClusterRef,
    ClusterWriter,
    builds_restarted,
    cluster_for,
    kept_models,
)
from rayship_operator.metrics import OperatorMetrics
from rayship_operator.settings import OperatorSettings
from unit.test_serveconfig import routing

IRIS = routing("iris", ["1", "2"], [("1", 90), ("2", 10)])
WINE = routing("wine", ["3"], [("3", 100)], resources={"cpu": 2, "memory": "1Gi"})


def as_serve_reports(app: dict[str, Any]) -> dict[str, Any]:
    """An application's config as Serve's REST API reports it back."""
    reported: dict[str, Any] = ServeApplicationSchema.model_validate(app).model_dump(
        mode="json", exclude_unset=True
    )
    return reported


def running(config: dict[str, Any], status: str = "RUNNING") -> dict[str, Any]:
    """Serve's application details once `config` is deployed and its replicas run."""
    return {
        app["name"]: {
            "status": status,
            "deployed_app_config": as_serve_reports(app),
            "deployments": {"d": {"status": "HEALTHY", "replicas": [{"replica_id": "r"}]}},
        }
        for app in config["applications"]
    }


def as_json(config: dict[str, Any]) -> str:
    """`config` as its hash sees it."""
    return json.dumps(config, sort_keys=True)


def server_of(config: dict[str, Any]) -> ServerUserConfig:
    """The server application's user_config in `config`."""
    (server,) = [app for app in config["applications"] if app["name"] == "rayship"]
    return ServerUserConfig.from_dict(deployment_user_config(server))


def test_a_kept_model_is_sent_again_exactly_as_it_runs() -> None:
    """The config written without knowing wine's routing equals the one written with it, hash
    included: nothing of wine is deleted or restarted, and a restarted operator that knows
    every routing again finds its config unchanged."""
    both = compose([IRIS, WINE])
    kept = kept_models(running(both), server_of(both), ["wine"])
    assert as_json(compose([IRIS], kept=kept)) == as_json(both)  # 2 == 2.0, but not in JSON


def test_every_model_is_kept_at_once_as_after_an_operator_restart() -> None:
    """A restarted operator's first write keeps every model but its own: each kept model gets
    its own applications and the config is the one the cluster runs."""
    both = compose([IRIS, WINE])
    kept = kept_models(running(both), server_of(both), ["wine", "iris"])
    assert [model.model_name for model in kept] == ["iris", "wine"]
    assert as_json(compose([], kept=kept)) == as_json(both)


def test_the_apps_of_a_split_are_kept_in_the_order_of_its_table() -> None:
    both = compose([IRIS, WINE])
    shuffled = dict(reversed(running(both).items()))
    kept = kept_models(shuffled, server_of(both), ["iris"])
    assert as_json(compose([WINE], kept=kept)) == as_json(both)


def test_a_model_the_cluster_does_not_run_keeps_nothing() -> None:
    only_iris = compose([IRIS])
    assert kept_models(running(only_iris), server_of(only_iris), ["wine"]) == []


def test_applications_serve_is_deleting_are_not_kept() -> None:
    """Sending them again would bring back what a delete just took off."""
    both = compose([IRIS, WINE])
    details = running(both)
    details["wine@3"] = {**details["wine@3"], "status": "DELETING"}
    (kept,) = kept_models(details, server_of(both), ["wine"])
    assert kept.apps == ()


def test_another_model_sharing_a_name_prefix_is_not_kept() -> None:
    """`iris` keeps `iris@…` applications, not those of a model named `iris-2`."""
    config = compose([IRIS, routing("iris-2", ["1"], [("1", 100)])])
    (kept,) = kept_models(running(config), server_of(config), ["iris"])
    assert [app["name"] for app in kept.apps] == ["iris@1", "iris@2"]


def building(config: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """Details while Serve builds the applications `names`: deploying, with no deployments."""
    details = running(config)
    for name in names:
        details[name] = {**details[name], "status": "DEPLOYING", "deployments": {}}
    return details


def test_a_put_during_a_build_of_unchanged_code_restarts_it() -> None:
    config = compose([IRIS, WINE])
    assert builds_restarted(building(config, {"wine@3"}), config) == ["wine@3"]
    assert builds_restarted(running(config), config) == []


def test_a_build_whose_code_changes_anyway_is_not_held_for() -> None:
    """A new digest is new code: Serve must build it again, so waiting would gain nothing."""
    config = compose([IRIS, WINE])
    newer = compose([IRIS, routing("wine", ["3"], [("3", 100)], replicas=2)])
    changed = compose([IRIS, routing("wine", ["3"], [("3", 100)], batching={"maxBatchSize": 4})])
    details = building(config, {"wine@3"})
    assert builds_restarted(details, newer) == ["wine@3"]  # replicas are not code
    assert builds_restarted(details, changed) == []


def test_a_config_is_held_back_for_the_grace_period_at_most() -> None:
    ref = ClusterRef("http://dash", "http://serve", IngressOptions())
    writer = ClusterWriter(ref, 0.2, OperatorMetrics())
    assert not writer._defer([])
    assert writer._defer(["wine@3"])
    assert writer._defer(["wine@3"])
    time.sleep(0.25)
    assert not writer._defer(["wine@3"])  # sent: the next build gets a grace period again
    assert writer._defer(["wine@3"])
    assert not writer._defer([])


def test_the_grpc_port_is_served_on_every_cluster_and_named_with_its_serve_host() -> None:
    settings = OperatorSettings.from_env(
        {"RAYSHIP_SERVE_URL": "http://ray.example:8123", "RAYSHIP_SERVE_GRPC_PORT": "9001"}
    )
    default = cluster_for("ml", None, settings)
    assert default.http == IngressOptions("0.0.0.0", 8123, 9001)
    assert default.grpc_address == "ray.example:9001"
    kuberay = cluster_for("ml", RayClusterRef(name="gpu"), settings)
    assert kuberay.http == IngressOptions("0.0.0.0", 8000, 9001)
    assert kuberay.grpc_address == "gpu-head-svc.ml.svc.cluster.local:9001"
    assert OperatorSettings().serve_grpc_port == 8001  # Triton's, as in local mode
    ipv6 = OperatorSettings(default_serve_url="http://[fd00::1]:8000")
    assert cluster_for("ml", None, ipv6).grpc_address == "[fd00::1]:8001"
