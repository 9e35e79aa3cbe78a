"""The operator's Ready check: does the observed Serve state route a model as planned?

The observed state is shaped like Serve's `GET /api/serve/applications/` answer, built here from
the composed config itself (the e2e tests read the real answer from a real Ray).
"""

from __future__ import annotations

from typing import Any

from rayship import manifest
from rayship.serveconfig import LiveVersion, ModelRouting, compose
from rayship_operator.clusters import routes_in_effect


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
    return {
        app["name"]: {
            "status": status,
            "route_prefix": app["route_prefix"],
            "deployed_app_config": app,
        }
        for app in compose([planned])["applications"]
    }


def test_the_applied_plan_is_in_effect() -> None:
    for traffic in ([("1", 100)], [("1", 90), ("2", 10)]):
        assert routes_in_effect(observed(routing(traffic)), routing(traffic))


def test_an_old_traffic_table_is_not() -> None:
    assert not routes_in_effect(observed(routing([("1", 100)])), routing([("1", 90), ("2", 10)]))


def test_the_model_url_still_on_the_old_version_is_not() -> None:
    state = observed(routing([("2", 100)]))
    state["iris@2"]["route_prefix"] = "/v2/models/iris/versions/2"
    state["iris@1"]["route_prefix"] = "/v2/models/iris"
    assert not routes_in_effect(state, routing([("2", 100)]))


def test_nothing_is_in_effect_until_the_server_app_runs() -> None:
    assert not routes_in_effect(observed(routing([("1", 100)]), "DEPLOYING"), routing([("1", 100)]))
