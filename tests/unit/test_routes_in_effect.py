"""The operator's observations: does the cluster route a model as planned, and who serves it?

The observed state is shaped like Serve's `GET /api/serve/applications/` answer, built here from
the composed config itself (the e2e tests read the real answer from a real Ray).
"""

from __future__ import annotations

from typing import Any

from rayship import manifest
from rayship.serveconfig import LiveVersion, ModelRouting, compose
from rayship_operator.clusters import ClusterView, routes_in_effect, serving


def routing(traffic: list[tuple[str, int]]) -> ModelRouting:
    md = manifest.parse(
        {
            "apiVersion": "serving.rayship.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "iris"},
            "spec": {"model": {"format": "onnx", "storageUri": "s3://m/iris"}},
        }
    )
    live = (LiveVersion("1", "sha256:1"), LiveVersion("2", "sha256:2"))
    return ModelRouting(md, live, tuple(traffic))


def observed(planned: ModelRouting, status: str = "RUNNING") -> dict[str, Any]:
    """What Serve reports once it runs the config composed for `planned`."""
    replica = {"state": "RUNNING" if status == "RUNNING" else "STARTING"}
    return {
        app["name"]: {
            "status": status,
            "route_prefix": app["route_prefix"],
            "deployed_app_config": app,
            "deployments": {"d": {"replicas": [replica]}},
        }
        for app in compose([planned])["applications"]
    }


def in_effect(state: dict[str, Any], planned: ModelRouting) -> bool:
    """As the operator checks it when the ingress cannot be asked (Serve's own view)."""
    return routes_in_effect(ClusterView.of(state, None), planned)


def test_the_applied_plan_is_in_effect() -> None:
    for traffic in ([("1", 100)], [("1", 90), ("2", 10)]):
        assert in_effect(observed(routing(traffic)), routing(traffic))


def test_an_old_traffic_table_is_not() -> None:
    assert not in_effect(observed(routing([("1", 100)])), routing([("1", 90), ("2", 10)]))


def test_the_model_url_still_on_the_old_version_is_not() -> None:
    state = observed(routing([("2", 100)]))
    state["iris@2"]["route_prefix"] = "/v2/models/iris/versions/2"
    state["iris@1"]["route_prefix"] = "/v2/models/iris"
    assert not in_effect(state, routing([("2", 100)]))


def test_nothing_is_in_effect_until_the_server_app_runs() -> None:
    assert not in_effect(observed(routing([("1", 100)]), "DEPLOYING"), routing([("1", 100)]))


def test_the_ingress_table_wins_over_serve_s_view() -> None:
    """Serve shows the new owner's route before HAProxy routes by it: until the ingress does,
    the old owner serves and the plan is not in effect."""
    planned = routing([("2", 100)])
    state = observed(planned)
    lagging = {"/v2": "rayship", "/v2/models/iris": "iris@1"}
    assert not routes_in_effect(ClusterView.of(state, lagging), planned)
    assert serving(ClusterView.of(state, lagging), "iris") == ("1",)
    caught_up = {"/v2": "rayship", "/v2/models/iris": "iris@2"}
    assert routes_in_effect(ClusterView.of(state, caught_up), planned)
    assert serving(ClusterView.of(state, caught_up), "iris") == ("2",)


def test_a_split_is_served_by_every_version_with_a_share() -> None:
    planned = routing([("1", 90), ("2", 10)])
    state = observed(planned)
    assert serving(ClusterView.of(state, {"/v2": "rayship"}), "iris") == ("1", "2")
    no_server_route = ClusterView.of(state, {})  # the ingress routes nothing to the server app
    assert serving(no_server_route, "iris") == ()


def test_nothing_serves_while_the_owner_has_no_running_replica() -> None:
    planned = routing([("1", 100)])
    state = observed(planned, "DEPLOYING")
    assert serving(ClusterView.of(state, None), "iris") == ()
