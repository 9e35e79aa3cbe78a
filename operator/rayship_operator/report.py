"""The ModelDeployment status as users read it, from a rollout plan.

Conditions follow Kubernetes conventions: a lastTransitionTime that changes only when the
condition's status does, and the generation each condition describes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rayship_operator.rollout import Condition, Plan


def applying_traffic(plan: Plan) -> Plan:
    """A plan whose traffic table Serve has not applied yet is not Ready: say Progressing."""
    if plan.phase != "Ready":
        return plan
    progressing = Condition("Progressing", True, "ApplyingTraffic", "Serve is applying the split")
    conditions = tuple(progressing if c.type == "Progressing" else c for c in plan.conditions)
    return dataclasses.replace(plan, phase="Progressing", conditions=conditions)


def conditions(
    new: tuple[Condition, ...], previous: list[dict[str, Any]] | None, generation: int, now: str
) -> list[dict[str, Any]]:
    """Conditions in API form, keeping each transition time while its status holds."""
    before = {item.get("type"): item for item in previous or []}
    result = []
    for condition in new:
        status = "True" if condition.status else "False"
        earlier = before.get(condition.type) or {}
        unchanged = earlier.get("status") == status and "lastTransitionTime" in earlier
        result.append(
            {
                "type": condition.type,
                "status": status,
                "reason": condition.reason,
                "message": condition.message,
                "observedGeneration": generation,
                "lastTransitionTime": earlier["lastTransitionTime"] if unchanged else now,
            }
        )
    return result


def status_from_plan(
    plan: Plan, url: str, previous: dict[str, Any], generation: int, now: str
) -> dict[str, Any]:
    """The complete status after a reconcile."""
    return {
        **plan.state.to_status(),
        "phase": plan.phase,
        "url": url,
        "readyReplicas": plan.ready_replicas,
        "observedGeneration": generation,
        "conditions": conditions(plan.conditions, previous.get("conditions"), generation, now),
    }


def problem_status(
    reason: str, message: str, previous: dict[str, Any], generation: int, now: str
) -> dict[str, Any]:
    """Status for a ModelDeployment the operator cannot act on (conflict, unreachable cluster).

    Rollout fields stay as they were: whatever serves keeps serving.
    """
    serving = previous.get("phase") in ("Ready", "Degraded")
    phase = "Degraded" if serving else "Failed"
    ready = Condition("Ready", serving, "Serving" if serving else "NotServing", message)
    degraded = Condition("Degraded", True, reason, message)
    updated = conditions((ready, degraded), previous.get("conditions"), generation, now)
    untouched = [
        c for c in previous.get("conditions") or [] if c.get("type") not in ("Ready", "Degraded")
    ]
    return {"phase": phase, "observedGeneration": generation, "conditions": updated + untouched}
