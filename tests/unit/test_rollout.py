"""Rollout, rollback and canary rules, decided without a cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rayship import manifest
from rayship.conditions import Problem, Reason
from rayship.errors import InvalidSpec
from rayship.rollout import Observed, Plan, RolloutState, plan, resolution_problem
from rayship.spec import ModelDeploymentSpec
from rayship.status import AppState
from rayship.storage import ModelNotFound, ResolvedVersion, StorageError

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RUNNING = AppState("RUNNING", "", 1)
DEPLOYING = AppState("DEPLOYING", "", 0)
FAILED = AppState(
    "DEPLOY_FAILED",
    "Deploying app 'iris@3' failed with exception:\nTraceback (most recent call last):\n"
    '  File "loader.py", line 3, in load\n'
    "\x1b[36mray::ServeReplica:iris@3:ModelVersion.initialize()\x1b[39m\n"
    "rayship_predictors.runtimes.errors.RuntimeLoadError: onnx: model.onnx is not an ONNX model",
    0,
)
UNSCHEDULABLE = AppState(
    "DEPLOYING",
    "Deployment 'ModelVersion' in application 'iris@2' has 1 replicas that have taken more than "
    "30s to be scheduled. This may be due to waiting for the cluster to auto-scale or for a "
    "runtime environment to be installed. Resources required for each replica: "
    "{'CPU': 1.0, 'GPU': 4.0}, total resources available: {'CPU': 15.0}. Use `ray status` for "
    "more details.",
    0,
)


def spec(version: str = "latest", **fields: Any) -> ModelDeploymentSpec:
    body = {"model": {"format": "onnx", "storageUri": "s3://models/iris", "version": version}}
    body.update(fields)
    doc = {"apiVersion": "serving.rayship.io/v1alpha1", "kind": "ModelDeployment",
           "metadata": {"name": "iris"}, "spec": body}  # fmt: skip
    return manifest.parse(doc).spec


def v(name: str) -> ResolvedVersion:
    return ResolvedVersion(name, f"sha256:{name}")


def step(
    state: RolloutState,
    target: str | None,
    apps: dict[str, AppState],
    at: timedelta = timedelta(),
    *,
    the_spec: ModelDeploymentSpec | None = None,
    canary: str | None = None,
    generation: int = 1,
) -> Plan:
    seen = Observed(
        now=T0 + at,
        generation=generation,
        target=v(target) if target else None,
        canary=v(canary) if canary else None,
        apps=apps,
    )
    return plan(the_spec or spec(), state, seen)


def serving(version: str) -> RolloutState:
    """A state where `version` is active and running."""
    first = step(RolloutState(), version, {version: RUNNING})
    assert first.state.active is not None
    return first.state


def test_first_version_serves_once_running() -> None:
    starting = step(RolloutState(), "1", {})
    assert starting.moving == Problem(Reason.ROLLING_OUT, "starting version 1")
    assert starting.traffic == ()
    assert [w.version for w in starting.live] == ["1"]
    running = step(starting.state, "1", {"1": RUNNING})
    assert running.moving is None
    assert running.problem is None
    assert running.traffic == (("1", 100),)
    assert running.state.history[0]["outcome"] == "RolledOut"
    assert [e.reason for e in running.events] == ["RolledOut"]


def test_new_version_starts_beside_the_old_and_traffic_waits() -> None:
    state = serving("1")
    rolling = step(state, "2", {"1": RUNNING, "2": DEPLOYING})
    assert rolling.moving is not None
    assert rolling.traffic == (("1", 100),)
    assert {w.version for w in rolling.live} == {"1", "2"}
    done = step(rolling.state, "2", {"1": RUNNING, "2": RUNNING}, timedelta(seconds=30))
    assert done.traffic == (("2", 100),)
    assert done.moving is None
    assert {w.version for w in done.live} == {"1", "2"}  # 1 kept warm


def test_failed_version_rolls_back_and_is_not_retried() -> None:
    state = serving("1")
    rolling = step(state, "3", {"1": RUNNING})
    failed = step(rolling.state, "3", {"1": RUNNING, "3": FAILED}, timedelta(seconds=5))
    assert failed.traffic == (("1", 100),)
    assert failed.problem == Problem(
        Reason.ROLLED_BACK,
        "version 3 failed to load: RuntimeLoadError: onnx: model.onnx is not an ONNX model; "
        "still serving version 1",
    )
    assert [w.version for w in failed.live] == ["1"]
    assert failed.state.history[0]["outcome"] == "RolledBack"
    assert failed.state.history[0]["message"] == failed.problem.message
    again = step(failed.state, "3", {"1": RUNNING}, timedelta(seconds=10))
    assert [w.version for w in again.live] == ["1"]
    assert again.problem == failed.problem
    assert again.moving is None
    retried = step(failed.state, "3", {"1": RUNNING}, timedelta(seconds=10), generation=2)
    assert retried.moving is not None
    assert retried.problem is None


def test_not_ready_by_the_deadline_rolls_back() -> None:
    the_spec = spec(rollout={"readinessDeadlineSeconds": 60})
    state = serving("1")
    rolling = step(state, "2", {"1": RUNNING, "2": DEPLOYING}, the_spec=the_spec)
    late = step(
        rolling.state, "2", {"1": RUNNING, "2": DEPLOYING}, timedelta(seconds=61), the_spec=the_spec
    )
    assert late.traffic == (("1", 100),)
    assert late.problem is not None
    assert "version 2 was not ready within 60s" in late.problem.message


def test_unschedulable_replicas_name_the_resources_while_waiting_and_at_the_deadline() -> None:
    the_spec = spec(rollout={"readinessDeadlineSeconds": 60})
    state = serving("1")
    apps = {"1": RUNNING, "2": UNSCHEDULABLE}
    waiting = step(state, "2", apps, the_spec=the_spec)
    resources = "each replica needs {'CPU': 1.0, 'GPU': 4.0}, the cluster has {'CPU': 15.0}"
    assert waiting.moving == Problem(
        Reason.WAITING_FOR_RESOURCES, f"version 2 waits for resources: {resources} available"
    )
    late = step(waiting.state, "2", apps, timedelta(seconds=61), the_spec=the_spec)
    assert late.problem is not None
    assert late.problem.message == (
        f"version 2 was not ready within 60s: it waits for resources: {resources} available; "
        "still serving version 1"
    )


def test_slow_replicas_that_need_no_resources_are_not_waiting_for_resources() -> None:
    """Serve's 30 s message names what each replica needs; needing nothing, a replica is slow
    for another reason, and the version is rolling out as usual."""
    slow = AppState("DEPLOYING", UNSCHEDULABLE.message.replace("{'CPU': 1.0, 'GPU': 4.0}", "{}"), 0)
    waiting = step(serving("1"), "2", {"1": RUNNING, "2": slow})
    assert waiting.moving is not None
    assert waiting.moving.reason == Reason.ROLLING_OUT


def test_rollback_to_a_warm_version_is_instant() -> None:
    state = step(serving("1"), "2", {"1": RUNNING, "2": RUNNING}).state
    back = step(state, "1", {"1": RUNNING, "2": RUNNING}, timedelta(seconds=10))
    assert back.traffic == (("1", 100),)
    assert back.moving is None
    assert back.problem is None
    assert back.state.history[0]["version"] == "1"


def test_previous_version_retires_after_the_keep_window() -> None:
    the_spec = spec(rollout={"keepPreviousSeconds": 100})
    state = step(serving("1"), "2", {"1": RUNNING, "2": RUNNING}, the_spec=the_spec).state
    apps = {"1": RUNNING, "2": RUNNING}
    kept = step(state, "2", apps, timedelta(seconds=99), the_spec=the_spec)
    assert {w.version for w in kept.live} == {"1", "2"}
    gone = step(kept.state, "2", apps, timedelta(seconds=101), the_spec=the_spec)
    assert [w.version for w in gone.live] == ["2"]


def test_canary_takes_its_share_once_running() -> None:
    the_spec = spec(version="1", rollout={"canary": {"version": "2", "percent": 20}})
    state = serving("1")
    starting = step(state, "1", {"1": RUNNING}, the_spec=the_spec, canary="2")
    assert starting.traffic == (("1", 100),)
    assert {w.version for w in starting.live} == {"1", "2"}
    split = step(starting.state, "1", {"1": RUNNING, "2": RUNNING}, the_spec=the_spec, canary="2")
    assert split.traffic == (("1", 80), ("2", 20))
    assert split.state.canary == "2"
    ended = step(split.state, "1", {"1": RUNNING, "2": RUNNING})
    assert ended.traffic == (("1", 100),)
    assert ended.state.canary is None


def test_failed_canary_keeps_all_traffic_on_active() -> None:
    the_spec = spec(version="1", rollout={"canary": {"version": "3", "percent": 50}})
    result = step(serving("1"), "1", {"1": RUNNING, "3": FAILED}, the_spec=the_spec, canary="3")
    assert result.traffic == (("1", 100),)
    assert result.problem is not None
    assert result.problem.reason == Reason.CANARY_FAILED
    assert result.problem.message.startswith("canary 3 failed to load: RuntimeLoadError")


def test_missing_version_rolls_back_naming_the_uri() -> None:
    missing = Problem(Reason.MODEL_NOT_FOUND, "s3://models/iris/9/ not found")
    seen = Observed(T0, 1, None, problem=missing, apps={"1": RUNNING})
    result = plan(spec("9"), serving("1"), seen)
    assert result.traffic == (("1", 100),)
    assert result.problem == Problem(
        Reason.ROLLED_BACK, "s3://models/iris/9/ not found; still serving version 1"
    )


def test_missing_first_version_fails() -> None:
    missing = Problem(Reason.MODEL_NOT_FOUND, "no versions under s3://models/iris/")
    result = plan(spec(), RolloutState(), Observed(T0, 1, None, problem=missing))
    assert result.traffic == ()
    assert result.problem == missing


def test_state_survives_the_status_round_trip() -> None:
    state = step(serving("1"), "2", {"1": RUNNING, "2": DEPLOYING}).state
    assert RolloutState.from_status(state.to_status()) == state
    assert RolloutState.from_status({}) == RolloutState()


def test_status_never_carries_nulls_inside_live_versions() -> None:
    """The API server drops them, and kopf then warns that its patch was not applied as sent."""
    kept = step(serving("1"), "2", {"1": RUNNING, "2": RUNNING}).state
    for item in kept.to_status()["liveVersions"]:
        assert None not in item.values()
    assert {
        item["version"]: "retireAfter" in item for item in kept.to_status()["liveVersions"]
    } == {
        "1": True,
        "2": False,
    }


def test_a_spec_change_the_serving_version_cannot_apply_is_degraded_not_an_outage() -> None:
    """Serve keeps the last good replicas of an app whose update failed (a bad runtimeEnv)."""
    update_failed = AppState("DEPLOY_FAILED", "RuntimeEnvSetupError: no such package", 1)
    result = step(serving("1"), "1", {"1": update_failed}, timedelta(seconds=5))
    assert result.traffic == (("1", 100),)
    assert result.problem == Problem(
        Reason.LOAD_FAILED,
        "version 1 failed to apply the spec change: RuntimeEnvSetupError: no such package; "
        "its replicas that still run keep serving",
    )
    assert update_failed.answering


def test_replicas_of_the_serving_version_that_fail_are_not_a_failed_spec_change() -> None:
    """A replica crashed or its node was lost: Serve reports the app UNHEALTHY while it
    replaces the replica, and no spec change is involved."""
    message = "A replica's health check failed. This deployment will be UNHEALTHY until the "
    unhealthy = AppState("UNHEALTHY", message + "replica recovers or a new deploy happens.", 1)
    result = step(serving("1"), "1", {"1": unhealthy}, timedelta(seconds=5))
    assert result.traffic == (("1", 100),)
    assert result.problem is not None
    assert result.problem.reason == Reason.REPLICAS_UNHEALTHY
    assert result.problem.message.startswith("version 1 has failing replicas, which Serve")
    assert "spec change" not in result.problem.message


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ModelNotFound("s3://m/iris/9/", "s3://m/iris/9/ not found"), Reason.MODEL_NOT_FOUND),
        (InvalidSpec("invalid version '..' for s3://m/iris"), Reason.INVALID_SPEC),
        (StorageError("s3://m/iris/", "S3 refused s3://m/iris/"), Reason.STORAGE_ERROR),
    ],
    ids=["missing", "invalid", "storage"],
)
def test_a_failed_resolution_names_its_reason(
    error: StorageError | InvalidSpec, reason: Reason
) -> None:
    assert resolution_problem(error) == Problem(reason, str(error))
