"""The status decision table: phase and conditions from the plan and what the cluster serves."""

from __future__ import annotations

from typing import Any

import pytest

from rayship.conditions import Kind, Phase, Problem, Reason
from rayship.rollout import Plan, RolloutState, Warm
from rayship_operator.report import (
    Identity,
    Serving,
    api_conditions,
    blocked_status,
    decide,
    status_of,
)

ACTIVE = RolloutState(active=Warm("1", "sha256:1"), live=(Warm("1", "sha256:1"),))
ROLLING = Problem(Reason.ROLLING_OUT, "starting version 2")
BROKEN = Problem(Reason.ROLLED_BACK, "version 2 failed to load: X; still serving version 1")
SERVES_1 = Serving(("1",), 2, routes_in_effect=True)
NOTHING = Serving((), 0, routes_in_effect=True)
ID = Identity("iris", "http://serve/v2/models/iris", "serve:8001")


def a_plan(
    state: RolloutState = ACTIVE, moving: Problem | None = None, problem: Problem | None = None
) -> Plan:
    return Plan(state, (), (), moving, problem, ())


def summary(verdict: Any) -> tuple[Phase, bool, Reason, bool, Reason, bool, Reason]:
    by_kind = {c.type: c for c in verdict.conditions}
    ready, progressing, degraded = (
        by_kind[k] for k in (Kind.READY, Kind.PROGRESSING, Kind.DEGRADED)
    )
    return (
        verdict.phase,
        ready.status,
        ready.reason,
        progressing.status,
        progressing.reason,
        degraded.status,
        degraded.reason,
    )


T, F = True, False
R = Reason


@pytest.mark.parametrize(
    ("plan", "seen", "sent", "expected"),
    [
        # serving, nothing moves, nothing failed
        (a_plan(), SERVES_1, F, (Phase.READY, T, R.SERVING, F, R.ROLLED_OUT, F, R.AS_EXPECTED)),
        # a new version comes up beside the serving one: still Ready
        (
            a_plan(moving=ROLLING),
            SERVES_1,
            T,
            (Phase.PROGRESSING, T, R.SERVING, T, R.ROLLING_OUT, F, R.AS_EXPECTED),
        ),
        # a traffic change just sent (warm rollback): Ready holds
        (
            a_plan(),
            SERVES_1,
            T,
            (Phase.PROGRESSING, T, R.SERVING, T, R.APPLYING_TRAFFIC, F, R.AS_EXPECTED),
        ),
        # routes not yet in effect although nothing was sent this pass
        (
            a_plan(),
            Serving(("1",), 1, routes_in_effect=False),
            F,
            (Phase.PROGRESSING, T, R.SERVING, T, R.APPLYING_TRAFFIC, F, R.AS_EXPECTED),
        ),
        # a broken version was rolled back while 1 serves: Degraded, not Failed
        (
            a_plan(problem=BROKEN),
            SERVES_1,
            F,
            (Phase.DEGRADED, T, R.SERVING, F, R.ROLLED_OUT, T, R.ROLLED_BACK),
        ),
        # the first version is loading
        (
            a_plan(RolloutState(), moving=Problem(R.ROLLING_OUT, "starting version 1")),
            NOTHING,
            T,
            (Phase.PROGRESSING, F, R.NOT_SERVING, T, R.ROLLING_OUT, F, R.AS_EXPECTED),
        ),
        # the first version failed: never served, so nothing "rolled out"
        (
            a_plan(RolloutState(), problem=Problem(R.LOAD_FAILED, "version 1 failed to load: X")),
            NOTHING,
            F,
            (Phase.FAILED, F, R.NOT_SERVING, F, R.NOTHING_ROLLED_OUT, T, R.LOAD_FAILED),
        ),
        # nothing to serve yet and nothing wrong
        (
            a_plan(RolloutState()),
            NOTHING,
            F,
            (Phase.PENDING, F, R.NOT_SERVING, F, R.NOTHING_ROLLED_OUT, F, R.AS_EXPECTED),
        ),
        # the active version's replicas are gone (a crash): the status says so
        (
            a_plan(),
            Serving((), 0, routes_in_effect=True),
            F,
            (Phase.PENDING, F, R.NOT_SERVING, F, R.ROLLED_OUT, F, R.AS_EXPECTED),
        ),
        # a canary split: both versions answer
        (
            a_plan(),
            Serving(("1", "2"), 2, routes_in_effect=True),
            F,
            (Phase.READY, T, R.SERVING, F, R.ROLLED_OUT, F, R.AS_EXPECTED),
        ),
    ],
    ids=[
        "ready",
        "rolling-out",
        "traffic-sent",
        "routes-pending",
        "rolled-back",
        "first-loading",
        "first-failed",
        "pending",
        "replicas-lost",
        "canary",
    ],
)
def test_decision_table(plan: Plan, seen: Serving, sent: bool, expected: tuple[Any, ...]) -> None:
    assert summary(decide(plan, seen, sent)) == expected


def test_ready_message_names_every_serving_version() -> None:
    verdict = decide(a_plan(), Serving(("1", "2"), 2, True), False)
    assert verdict.conditions[0].message == "version 1, 2 serves"


def test_transition_time_changes_only_with_the_status() -> None:
    first = api_conditions(decide(a_plan(), SERVES_1, False).conditions, None, 1, "t1")
    assert {c["lastTransitionTime"] for c in first} == {"t1"}
    # the reason and message of Progressing change, its status does not
    moving = decide(a_plan(moving=ROLLING), SERVES_1, True).conditions
    second = {c["type"]: c for c in api_conditions(moving, first, 2, "t2")}
    assert second["Ready"]["lastTransitionTime"] == "t1"
    assert second["Progressing"]["lastTransitionTime"] == "t2"
    assert second["Degraded"]["lastTransitionTime"] == "t1"
    assert {c["observedGeneration"] for c in second.values()} == {2}
    # Degraded turns on: only its time moves
    broken = decide(a_plan(problem=BROKEN), SERVES_1, False).conditions
    third = {c["type"]: c for c in api_conditions(broken, list(second.values()), 2, "t3")}
    assert third["Ready"]["lastTransitionTime"] == "t1"
    assert third["Progressing"]["lastTransitionTime"] == "t3"
    assert third["Degraded"]["lastTransitionTime"] == "t3"
    assert third["Degraded"]["message"] == BROKEN.message


def test_status_carries_model_name_replicas_and_rollout_fields() -> None:
    status = status_of(
        a_plan(), SERVES_1, config_pending=False, identity=ID, previous={}, generation=3, now="t"
    )
    assert status["modelName"] == "iris"
    assert status["url"] == ID.url
    assert status["grpcAddress"] == "serve:8001"
    assert status["readyReplicas"] == 2
    assert status["phase"] == "Ready"
    assert status["activeVersion"] == "1"
    assert status["observedGeneration"] == 3


def test_a_blocked_object_keeps_its_ready_condition_and_says_why() -> None:
    served = status_of(
        a_plan(), SERVES_1, config_pending=False, identity=ID, previous={}, generation=1, now="t1"
    )
    unreachable = Problem(Reason.CLUSTER_UNREACHABLE, "Ray dashboard at http://x unreachable")
    blocked = blocked_status(unreachable, ID, served, 1, "t2")
    by_type = {c["type"]: c for c in blocked["conditions"]}
    assert blocked["phase"] == "Degraded"
    assert by_type["Ready"]["status"] == "True"
    assert by_type["Ready"]["lastTransitionTime"] == "t1"
    assert by_type["Degraded"]["reason"] == "ClusterUnreachable"
    assert by_type["Progressing"] == {c["type"]: c for c in served["conditions"]}["Progressing"]
    assert (blocked["url"], blocked["grpcAddress"]) == (ID.url, ID.grpc_address)
    never = blocked_status(Problem(Reason.NAME_CONFLICT, "taken"), ID, {}, 1, "t")
    assert never["phase"] == "Failed"
    assert {c["type"]: c for c in never["conditions"]}["Ready"]["status"] == "False"
