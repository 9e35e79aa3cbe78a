"""The ModelDeployment status as users read it: decided in one place, from what was observed.

`decide` is the whole decision table: from the rollout plan (what should run, what is being
brought up, what failed) and what the cluster was seen serving, it picks the phase and the
three conditions:

- `Ready` is True while some version answers the model's URL, whatever else happens: a
  rollout, a failed version or a traffic change beside a serving version is no outage.
- `Progressing` says what moves: a version or canary coming up (or waiting for resources), or
  a traffic change Serve has not applied yet; False once everything runs as planned.
- `Degraded` says what failed, in one line.

Conditions follow Kubernetes conventions: a lastTransitionTime that changes only when the
condition's status does, and the generation each condition describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rayship.conditions import Condition, Kind, Phase, Problem, Reason
from rayship.rollout import Plan


@dataclass(frozen=True)
class Serving:
    """What the cluster was seen doing for one model, before this pass wrote anything."""

    versions: tuple[str, ...]  # versions answering the model's unversioned URL
    ready_replicas: int  # their answering replicas
    routes_in_effect: bool  # Serve runs exactly the routes and traffic table planned


@dataclass(frozen=True)
class Verdict:
    """The phase and conditions decided for one pass."""

    phase: Phase
    conditions: tuple[Condition, ...]


def phase_of(serving: bool, moving: bool, failed: bool) -> Phase:
    """The one-word summary of the three conditions."""
    if serving:
        return Phase.DEGRADED if failed else Phase.PROGRESSING if moving else Phase.READY
    return Phase.FAILED if failed else Phase.PROGRESSING if moving else Phase.PENDING


def decide(plan: Plan, seen: Serving, config_pending: bool) -> Verdict:
    """Phase and conditions after one reconcile pass (see the module's docstring);
    `config_pending`: the cluster does not run this pass's config yet (just sent, or held back
    while Serve builds an application)."""
    serving = bool(seen.versions)
    shown = ", ".join(seen.versions)
    if serving:
        ready = Condition(Kind.READY, True, Reason.SERVING, f"version {shown} serves")
    else:
        ready = Condition(Kind.READY, False, Reason.NOT_SERVING, "no version serves the model")
    moving = plan.moving
    if moving is None and (config_pending or not seen.routes_in_effect):
        moving = Problem(Reason.APPLYING_TRAFFIC, "Serve is applying the routes and traffic")
    if moving is not None:
        progressing = Condition(Kind.PROGRESSING, True, moving.reason, moving.message)
    elif plan.state.active is not None:
        done = f"version {plan.state.active.version} rolled out"
        progressing = Condition(Kind.PROGRESSING, False, Reason.ROLLED_OUT, done)
    else:
        idle = "no version has rolled out"
        progressing = Condition(Kind.PROGRESSING, False, Reason.NOTHING_ROLLED_OUT, idle)
    degraded = _degraded(plan.problem)
    phase = phase_of(serving, moving is not None, plan.problem is not None)
    return Verdict(phase, (ready, progressing, degraded))


def _degraded(problem: Problem | None) -> Condition:
    if problem is None:
        return Condition(Kind.DEGRADED, False, Reason.AS_EXPECTED, "")
    return Condition(Kind.DEGRADED, True, problem.reason, problem.message)


def api_conditions(
    new: tuple[Condition, ...], previous: list[dict[str, Any]] | None, generation: int, now: str
) -> list[dict[str, Any]]:
    """Conditions in API form, keeping each transition time while its status holds."""
    before = {item.get("type"): item for item in previous or []}
    result = []
    for condition in new:
        status = "True" if condition.status else "False"
        earlier = before.get(condition.type.value) or {}
        unchanged = earlier.get("status") == status and "lastTransitionTime" in earlier
        result.append(
            {
                "type": condition.type.value,
                "status": status,
                "reason": condition.reason.value,
                "message": condition.message,
                "observedGeneration": generation,
                "lastTransitionTime": earlier["lastTransitionTime"] if unchanged else now,
            }
        )
    return result


@dataclass(frozen=True)
class Identity:
    """What every status names: the effective model name, its URL and the address of the V2
    gRPC service that serves it (clients name the model in each request)."""

    model_name: str
    url: str
    grpc_address: str


def status_of(
    plan: Plan,
    seen: Serving,
    *,
    config_pending: bool,
    identity: Identity,
    previous: dict[str, Any],
    generation: int,
    now: str,
) -> dict[str, Any]:
    """The complete status after a reconcile that observed the cluster."""
    verdict = decide(plan, seen, config_pending)
    return {
        **plan.state.to_status(),
        "modelName": identity.model_name,
        "phase": verdict.phase.value,
        "url": identity.url,
        "grpcAddress": identity.grpc_address,
        "readyReplicas": seen.ready_replicas,
        "observedGeneration": generation,
        "conditions": api_conditions(
            verdict.conditions, previous.get("conditions"), generation, now
        ),
    }


def blocked_status(
    problem: Problem, identity: Identity, previous: dict[str, Any], generation: int, now: str
) -> dict[str, Any]:
    """Status for a ModelDeployment the operator cannot act on (a name conflict, unreadable
    credentials, an unreachable cluster): rollout fields and Ready stay as they were, since
    whatever served keeps serving; Degraded says why nothing else happens."""
    earlier = {c.get("type"): c for c in previous.get("conditions") or []}
    was_ready = (earlier.get(Kind.READY.value) or {}).get("status") == "True"
    ready_message = (earlier.get(Kind.READY.value) or {}).get("message") or problem.message
    reason = Reason.SERVING if was_ready else Reason.NOT_SERVING
    ready = Condition(Kind.READY, was_ready, reason, ready_message)
    updated = api_conditions(
        (ready, _degraded(problem)), previous.get("conditions"), generation, now
    )
    untouched = [
        c
        for c in previous.get("conditions") or []
        if c.get("type") not in (Kind.READY.value, Kind.DEGRADED.value)
    ]
    return {
        "modelName": identity.model_name,
        "url": identity.url,
        "grpcAddress": identity.grpc_address,
        "phase": phase_of(was_ready, moving=False, failed=True).value,
        "observedGeneration": generation,
        "conditions": updated + untouched,
    }
