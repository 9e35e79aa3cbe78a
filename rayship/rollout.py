"""Rollout, rollback and canary decisions: pure functions of (spec, state, observation).

The operator persists a `RolloutState` in the ModelDeployment's status, observes storage and the
Serve applications, and calls `plan`. Nothing here does I/O, so every rule below is unit-tested
without a cluster:

- A new version starts beside the active one; traffic moves only once its app runs.
- If it fails to load, or is not running by the readiness deadline, it is removed, traffic
  stays on the active version, and the failure is remembered for this generation of the spec so
  it is not retried in a loop.
- The previous version stays warm for `keepPreviousSeconds`; switching back to a warm version is
  instant (its app already runs, so only the traffic table changes).
- A canary takes `percent` of unversioned traffic once its app runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from rayship.serveconfig import LiveVersion
from rayship.spec import ModelDeploymentSpec
from rayship.status import AppState
from rayship.storage import ResolvedVersion

HISTORY_LIMIT = 10
FAILED_LIMIT = 10

# Condition reasons, as users read them in `kubectl describe`.
ROLLED_OUT = "RolledOut"
ROLLING_OUT = "RollingOut"
ROLLED_BACK = "RolledBack"
LOAD_FAILED = "LoadFailed"
CANARY_FAILED = "CanaryFailed"
MODEL_NOT_FOUND = "ModelNotFound"


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass(frozen=True)
class Warm:
    """A version with an application on the cluster; `retire_after` None means keep it."""

    version: str
    digest: str
    retire_after: datetime | None = None


@dataclass(frozen=True)
class Failure:
    """A version that failed for a spec generation, so it is not retried in a loop."""

    version: str
    digest: str
    generation: int
    message: str


@dataclass(frozen=True)
class RolloutState:
    """What the operator remembers between reconciles (kept in the object's status)."""

    active: Warm | None = None
    live: tuple[Warm, ...] = ()
    target: str | None = None
    target_started: datetime | None = None
    canary: str | None = None
    failures: tuple[Failure, ...] = ()
    history: tuple[dict[str, Any], ...] = ()

    def to_status(self) -> dict[str, Any]:
        """The status fields that persist this state."""
        return {
            "activeVersion": self.active.version if self.active else None,
            "activeDigest": self.active.digest if self.active else None,
            "liveVersions": [
                {"version": w.version, "digest": w.digest, "retireAfter": _time(w.retire_after)}
                for w in self.live
            ],
            "rolloutTarget": self.target,
            "rolloutStarted": _time(self.target_started),
            "canaryVersion": self.canary,
            "failures": [dataclasses.asdict(f) for f in self.failures],
            "history": list(self.history),
        }

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> RolloutState:
        """The state a status describes (an empty status is the initial state)."""
        live = tuple(
            Warm(item["version"], item.get("digest", ""), _parse_time(item.get("retireAfter")))
            for item in status.get("liveVersions") or []
        )
        active_version = status.get("activeVersion")
        active = None
        if active_version:
            active = Warm(active_version, status.get("activeDigest") or "")
        return cls(
            active=active,
            live=live,
            target=status.get("rolloutTarget"),
            target_started=_parse_time(status.get("rolloutStarted")),
            canary=status.get("canaryVersion"),
            failures=tuple(Failure(**f) for f in status.get("failures") or []),
            history=tuple(status.get("history") or ()),
        )


@dataclass(frozen=True)
class Observed:
    """What the operator saw this time: resolved versions and the Serve applications."""

    now: datetime
    generation: int
    target: ResolvedVersion | None
    canary: ResolvedVersion | None = None
    problem: tuple[str, str] | None = None  # (reason, message) when resolution failed
    apps: dict[str, AppState] = field(default_factory=dict)  # by version


@dataclass(frozen=True)
class Condition:
    """A Kubernetes-style condition (lastTransitionTime is set by the status writer)."""

    type: str
    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to emit for a transition."""

    warning: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    """The decision: new state, what the cluster should run, and what users should read."""

    state: RolloutState
    live: tuple[LiveVersion, ...]
    traffic: tuple[tuple[str, int], ...]
    phase: str
    conditions: tuple[Condition, ...]
    events: tuple[Event, ...]
    ready_replicas: int


class _Planner:
    """One planning pass; mutable scratch state, so `plan` itself stays a pure function."""

    def __init__(self, spec: ModelDeploymentSpec, state: RolloutState, seen: Observed) -> None:
        self.spec = spec
        self.seen = seen
        self.state = state
        self.live = {warm.version: warm for warm in state.live}
        self.active = state.active
        self.target = state.target
        self.target_started = state.target_started
        self.failures = list(state.failures)
        self.history = list(state.history)
        self.events: list[Event] = []
        self.problem: tuple[str, str] | None = seen.problem
        self.canary: str | None = None
        self.canary_percent = 0

    # --- helpers ---------------------------------------------------------------------------

    def _failed_before(self, resolved: ResolvedVersion) -> Failure | None:
        for failure in self.failures:
            if (failure.version, failure.digest, failure.generation) == (
                resolved.version,
                resolved.digest,
                self.seen.generation,
            ):
                return failure
        return None

    def _record(self, version: str, digest: str, outcome: str, message: str) -> None:
        entry = {
            "version": version,
            "digest": digest,
            "requested": self.spec.model.version,
            "outcome": outcome,
            "message": message,
            "time": _time(self.seen.now),
        }
        self.history = [entry, *self.history][:HISTORY_LIMIT]

    def _fail(self, resolved: ResolvedVersion, message: str) -> None:
        failure = Failure(resolved.version, resolved.digest, self.seen.generation, message)
        self.failures = [failure, *self.failures][:FAILED_LIMIT]
        if resolved.version not in self._keep():
            self.live.pop(resolved.version, None)

    def _keep(self) -> set[str]:
        return {v for v in (self.active.version if self.active else None, self.canary) if v}

    def _app(self, version: str) -> AppState | None:
        return self.seen.apps.get(version)

    def _deadline_passed(self) -> bool:
        if self.target_started is None:
            return False
        deadline = timedelta(seconds=self.spec.rollout.readiness_deadline_seconds)
        return self.seen.now - self.target_started > deadline

    # --- steps -----------------------------------------------------------------------------

    def roll_out(self, resolved: ResolvedVersion) -> None:
        """Bring `resolved` up beside the active version; switch when it runs."""
        if self.active is not None and resolved.version == self.active.version:
            self.target = self.target_started = None
            return
        failed = self._failed_before(resolved)
        if failed is not None:
            reason = ROLLED_BACK if self.active else LOAD_FAILED
            self.problem = (reason, failed.message)
            self.target = self.target_started = None
            return
        if self.target != resolved.version:
            self.target, self.target_started = resolved.version, self.seen.now
            self.events.append(Event(False, ROLLING_OUT, f"rolling out version {resolved.version}"))
        self.live.setdefault(resolved.version, Warm(resolved.version, resolved.digest))
        app = self._app(resolved.version)
        if app is not None and app.running:
            self._switch_to(resolved)
        elif (app is not None and app.failed) or self._deadline_passed():
            self._give_up(resolved, app)

    def _switch_to(self, resolved: ResolvedVersion) -> None:
        previous = self.active
        if previous is not None:
            keep = timedelta(seconds=self.spec.rollout.keep_previous_seconds)
            self.live[previous.version] = replace(previous, retire_after=self.seen.now + keep)
        self.active = Warm(resolved.version, resolved.digest)
        self.live[resolved.version] = self.active
        self.target = self.target_started = None
        what = f"version {resolved.version} serves"
        if previous is not None:
            what += f" (was {previous.version}, kept warm for rollback)"
        self._record(resolved.version, resolved.digest, ROLLED_OUT, what)
        self.events.append(Event(False, ROLLED_OUT, what))

    def _give_up(self, resolved: ResolvedVersion, app: AppState | None) -> None:
        if app is not None and app.failed:
            why = app.message or f"version {resolved.version} failed to deploy"
        else:
            deadline = self.spec.rollout.readiness_deadline_seconds
            why = f"version {resolved.version} was not ready within {deadline}s"
        self.target = self.target_started = None
        self._fail(resolved, why)
        if self.active is not None:
            message = f"{why}; still serving version {self.active.version}"
            self.problem = (ROLLED_BACK, message)
            self._record(resolved.version, resolved.digest, ROLLED_BACK, message)
        else:
            self.problem = (LOAD_FAILED, why)
            self._record(resolved.version, resolved.digest, "Failed", why)

    def run_canary(self, resolved: ResolvedVersion, percent: int) -> None:
        """Give the canary its share once it runs; never while nothing else is active."""
        if self.active is None or resolved.version == self.active.version:
            return
        failed = self._failed_before(resolved)
        if failed is not None:
            self.problem = (CANARY_FAILED, failed.message)
            return
        self.live.setdefault(resolved.version, Warm(resolved.version, resolved.digest))
        self.live[resolved.version] = replace(self.live[resolved.version], retire_after=None)
        app = self._app(resolved.version)
        if app is not None and app.running:
            if self.state.canary != resolved.version:
                self.events.append(
                    Event(False, "CanaryStarted", f"canary {resolved.version} takes {percent}%")
                )
            self.canary, self.canary_percent = resolved.version, percent
        elif app is not None and app.failed:
            message = app.message or f"canary {resolved.version} failed to deploy"
            self._fail(resolved, message)
            self.problem = (CANARY_FAILED, message)

    def retire(self) -> None:
        """Drop versions nobody needs once their keep-warm window has passed."""
        needed = self._keep() | ({self.target} if self.target else set())
        for version, warm in list(self.live.items()):
            if version in needed:
                continue
            if warm.retire_after is None:
                keep = timedelta(seconds=self.spec.rollout.keep_previous_seconds)
                self.live[version] = replace(warm, retire_after=self.seen.now + keep)
            elif self.seen.now >= warm.retire_after:
                del self.live[version]

    # --- result ----------------------------------------------------------------------------

    def traffic(self) -> tuple[tuple[str, int], ...]:
        if self.active is None:
            return ()
        if self.canary is None:
            return ((self.active.version, 100),)
        return (
            (self.active.version, 100 - self.canary_percent),
            (self.canary, self.canary_percent),
        )

    def phase(self, serving: bool) -> str:
        if self.target is not None:
            return "Progressing"
        if serving:
            return "Degraded" if self.problem else "Ready"
        return "Failed" if self.problem else "Pending"

    def conditions(self, serving: bool) -> tuple[Condition, ...]:
        active = self.active.version if self.active else None
        ready_message = f"version {active} serves" if serving else "no version serves yet"
        if self.target:
            progressing = Condition("Progressing", True, ROLLING_OUT, f"rolling out {self.target}")
        else:
            progressing = Condition("Progressing", False, ROLLED_OUT, ready_message)
        if self.problem:
            degraded = Condition("Degraded", True, self.problem[0], self.problem[1])
        else:
            degraded = Condition("Degraded", False, "AsExpected", "")
        ready = Condition("Ready", serving, "Serving" if serving else "NotServing", ready_message)
        return ready, progressing, degraded

    def result(self) -> Plan:
        active_app = self._app(self.active.version) if self.active else None
        serving = active_app is not None and active_app.running
        state = RolloutState(
            active=self.active,
            live=tuple(sorted(self.live.values(), key=lambda w: w.version)),
            target=self.target,
            target_started=self.target_started,
            canary=self.canary,
            failures=tuple(self.failures),
            history=tuple(self.history),
        )
        return Plan(
            state=state,
            live=tuple(LiveVersion(w.version, w.digest) for w in state.live),
            traffic=self.traffic(),
            phase=self.phase(serving),
            conditions=self.conditions(serving),
            events=tuple(self.events),
            ready_replicas=active_app.running_replicas if active_app else 0,
        )


def plan(spec: ModelDeploymentSpec, state: RolloutState, observed: Observed) -> Plan:
    """Decide the next state of one ModelDeployment from what was observed.

    Warning Events for Degraded transitions are not decided here: the reconciler posts one
    whenever the Degraded condition changes, whatever caused it.
    """
    planner = _Planner(spec, state, observed)
    if observed.problem is not None and state.active is not None:
        reason, message = observed.problem
        if reason == MODEL_NOT_FOUND:
            message = f"{message}; still serving version {state.active.version}"
            planner.problem = (ROLLED_BACK, message)
    if observed.target is not None:
        planner.roll_out(observed.target)
    canary = spec.rollout.canary
    if canary is not None and observed.canary is not None:
        planner.run_canary(observed.canary, canary.percent)
    planner.retire()
    return planner.result()
